# The R example's server (plumber), following modelsync's container contract:
#   GET  /ping          200 once the model is loaded
#   POST /invocations   JSON ({"instances": [[wt, hp], ...]} or records, "inputs",
#                       {"dataframe_split": {"columns", "data"}}, {"dataframe_records": [...]})
#                       or CSV (text/csv, rows of wt,hp with an optional header)
#                       -> {"predictions": [mpg, ...]}; a body it cannot read: 400 {"error"}
library(jsonlite)

model <- readRDS(Sys.getenv("MODEL_PATH", "/app/model.rds"))
features <- attr(model, "features")

bad_input <- function(message) {
  structure(class = c("bad_input", "error", "condition"),
            list(message = message, call = NULL))
}

as_frame <- function(rows) {
  if (is.data.frame(rows)) {
    missing <- setdiff(features, names(rows))
    if (length(missing) > 0) stop(bad_input(paste("a record lacks", paste(missing, collapse = ", "))))
    frame <- rows[, features, drop = FALSE]
  } else {
    m <- if (is.matrix(rows)) rows else if (is.list(rows)) do.call(rbind, rows) else matrix(rows, nrow = 1)
    if (is.null(m) || ncol(m) != length(features)) {
      stop(bad_input(sprintf("each row must have %d numbers (%s)", length(features),
                             paste(features, collapse = ", "))))
    }
    frame <- as.data.frame(m)
    names(frame) <- features
  }
  for (f in features) {
    values <- suppressWarnings(as.numeric(frame[[f]]))
    if (any(is.na(values))) stop(bad_input(paste("every value must be a number:", f)))
    frame[[f]] <- values
  }
  frame
}

rows_from_json <- function(text) {
  doc <- tryCatch(fromJSON(text, simplifyVector = TRUE),
                  error = function(e) stop(bad_input(paste("the body is not JSON:", conditionMessage(e)))))
  if (!is.list(doc)) stop(bad_input("expected a JSON object"))
  if (!is.null(doc$instances)) return(doc$instances)
  if (!is.null(doc$inputs)) return(doc$inputs)
  if (!is.null(doc$dataframe_split)) {
    split <- doc$dataframe_split
    frame <- as.data.frame(split$data)
    if (!is.null(split$columns)) names(frame) <- split$columns
    return(frame)
  }
  if (!is.null(doc$dataframe_records)) return(doc$dataframe_records)
  stop(bad_input("expected one of instances, inputs, dataframe_split, dataframe_records"))
}

rows_from_csv <- function(text) {
  lines <- strsplit(trimws(text), "\n", fixed = TRUE)[[1]]
  header <- length(lines) > 0 && identical(trimws(strsplit(lines[[1]], ",")[[1]]), features)
  frame <- tryCatch(read.csv(text = text, header = header, strip.white = TRUE),
                    error = function(e) stop(bad_input(paste("the body is not CSV:", conditionMessage(e)))))
  if (!header) names(frame) <- features[seq_len(min(ncol(frame), length(features)))]
  if (ncol(frame) != length(features)) stop(bad_input("each row must have 2 numbers (wt, hp)"))
  frame
}

#* @get /ping
#* @serializer unboxedJSON
function() {
  list(status = "ready", features = features)
}

#* @post /invocations
#* @serializer unboxedJSON list(digits = NA)
function(req, res) {
  text <- if (is.null(req$bodyRaw)) "" else rawToChar(req$bodyRaw)
  ctype <- tolower(trimws(strsplit(if (is.null(req$HTTP_CONTENT_TYPE)) "" else req$HTTP_CONTENT_TYPE, ";")[[1]][1]))
  tryCatch({
    rows <- if (identical(ctype, "text/csv")) rows_from_csv(text) else rows_from_json(text)
    frame <- as_frame(rows)
    list(predictions = I(round(as.numeric(predict(model, newdata = frame)), 6)))
  }, bad_input = function(e) {
    res$status <- 400
    list(error = conditionMessage(e))
  })
}
