/* modelsync console: adding a model (or a version) from the Models page, as ML-Kraken's "add
 * model" form: a SavedModel .tar.gz is sent to the master, which publishes it with the checks of
 * `modelsync publish`. The progress shows both legs: the file to the master (the upload's own
 * progress), then the master's publishing to the bucket (its streamed NDJSON lines). */
"use strict";

(function () {
  const {$, el} = window.ms;
  const card = $("#add-model");
  const form = $("#add-form");
  const bar = $("#add-progress");
  const box = $("#add-result");
  const mib = (n) => (n / 1048576).toFixed(1) + " MiB";

  function status(text, state, done, total) {
    box.hidden = false;
    box.className = "result " + (state === "err" ? "err" : "ok");
    box.dataset.state = state;
    box.textContent = text;
    bar.hidden = total === undefined;
    if (total !== undefined) bar.value = total ? done / total : 0;
  }

  function hint() {
    const name = $("#add-name").value.trim() || "NAME";
    const cli = $("#add-cli");
    cli.textContent = cli.textContent.replace(/--model \S+/, "--model " + name);
  }

  $("#add-open").addEventListener("click", () => {
    card.hidden = false;
    const models = (window.ms.data.models || {models: []}).models.map((m) => m.model);
    $("#add-models").replaceChildren(...models.map((m) => el("option", {value: m})));
    $("#add-name").focus();
  });
  $("#add-close").addEventListener("click", () => { card.hidden = true; });
  $("#add-name").addEventListener("input", hint);

  function publishLine(line) {
    const doc = JSON.parse(line);
    if (doc.phase === "received") {
      status("Received " + mib(doc.bytes) + ": checking it and publishing to the bucket\u2026",
             "pending", 0, 1);
    } else if (doc.phase === "uploading") {
      status("Publishing to the bucket: " + mib(doc.done) + " of " + mib(doc.total), "pending",
             doc.done, doc.total);
    } else if (doc.phase === "done") {
      const p = doc.published;
      status((p.unchanged ? "Unchanged: the bucket already holds this content as " :
              "Published ") + p.uri + " (version " + p.version + ", " + p.files + " files, " +
             mib(p.bytes) + ")", "ok", 1, 1);
    } else if (doc.phase === "error") {
      status("Refused: " + doc.error + " (HTTP " + doc.status + ")", "err");
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("#add-name").value.trim();
    const file = $("#add-file").files[0];
    let tags;
    try {
      tags = window.ms.parseTags($("#add-tags").value).map(([k, v]) => k + "=" + v);
    } catch (exc) {
      return status(exc.message, "err");
    }
    if (!name || !file) return status("Give a model name and choose a .tar.gz.", "err");
    const q = new URLSearchParams();
    const description = $("#add-description").value.trim();
    if (description) q.set("description", description);
    for (const t of tags) q.append("tag", t);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/models/" + encodeURIComponent(name) + "/versions?" + q.toString());
    xhr.setRequestHeader("X-CSRF-Token", window.ms.csrf);
    xhr.setRequestHeader("Content-Type", "application/gzip");
    xhr.setRequestHeader("Accept", "application/x-ndjson");
    let seen = 0;
    const readLines = () => {
      const text = xhr.responseText;
      const end = text.lastIndexOf("\n") + 1;
      for (const line of text.slice(seen, end).split("\n").filter(Boolean)) publishLine(line);
      seen = Math.max(seen, end);
    };
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        status("Sending to the master: " + mib(e.loaded) + " of " + mib(e.total), "pending",
               e.loaded, e.total);
      }
    });
    xhr.addEventListener("progress", readLines);
    xhr.addEventListener("load", () => {
      if (xhr.status !== 200) {
        let message = xhr.statusText;
        try { message = JSON.parse(xhr.responseText).error || message; } catch (exc) { /* text */ }
        return status("Refused: " + message + " (HTTP " + xhr.status + ")", "err");
      }
      readLines();
      window.ms.refreshBanner();
    });
    xhr.addEventListener("error", () => status("The master cannot be reached.", "err"));
    $("#add-send").disabled = true;
    xhr.addEventListener("loadend", () => { $("#add-send").disabled = false; });
    status("Sending to the master\u2026", "pending", 0, file.size);
    xhr.send(file);
  });
})();
