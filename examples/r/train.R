# Train the R example's model: a linear regression of fuel economy (mpg) on weight (wt, 1000 lb)
# and horsepower (hp), on the mtcars data set that ships with R. Saved with saveRDS.
#   Rscript train.R [OUT]      # default: model.rds
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[[1]] else "model.rds"
model <- lm(mpg ~ wt + hp, data = mtcars)
attr(model, "features") <- c("wt", "hp")
saveRDS(model, out)
cat(sprintf('{"model": "%s", "r_squared": %.4f, "rows": %d}\n',
            out, summary(model)$r.squared, nrow(mtcars)))
