/* modelsync console: the Jobs page. Submit a file or pasted rows for a model (admin), and every
 * job: its state, a progress bar (rows scored of all, rows/s), its errors, download, cancel.
 * Uploads go straight from the browser to POST /v1/jobs (the file is streamed, never read here
 * whole); one Idempotency-Key per submit, so a retried click never makes a second job. */
"use strict";

(function () {
  const {el, $, badge, timeCell, num, bytes, DASH, admin} = window.ms;
  const openErrors = new Set();  // job ids whose error list is unfolded (kept across refreshes)
  let source = "file";
  let pendingKey = null;  // the key of a submit that has not been answered yet

  function progressCell(j) {
    const p = j.progress || {};
    const total = p.rows_total || j.rows || 0;
    const done = p.rows_done || 0;
    const bar = el("progress", {max: String(Math.max(total, 1)), value: String(done),
                                "aria-label": "rows scored"});
    const rate = p.rows_per_s ? " \u00b7 " + num(p.rows_per_s, 0) + " rows/s" : "";
    return el("div", {class: "jobbar"}, bar,
      el("span", {class: "small"}, num(done, 0) + " / " + num(total, 0) + " rows" + rate));
  }
  function errorsCell(j) {
    const p = j.progress || {};
    if (!p.errors) return el("span", {class: "muted"}, "0");
    const box = el("details", {class: "job-errors", open: openErrors.has(j.id),
                               ontoggle: (ev) => { ev.target.open ? openErrors.add(j.id) : openErrors.delete(j.id); }},
      el("summary", {}, num(p.errors, 0) + (p.errors === 1 ? " error" : " errors")),
      el("ul", {}, (p.first_errors || []).map((e) => el("li", {}, e))),
      el("div", {class: "muted small"}, "the first error of each chunk" +
         (j.state === "done" ? "; \u201cErrors\u201d downloads them all" : "")));
    return box;
  }
  function versionsCell(j) {
    const vs = Object.entries((j.progress || {}).versions || {});
    if (!vs.length) return j.version ? el("span", {class: "v"}, "v" + j.version) : el("span", {class: "muted"}, DASH);
    return vs.map(([v, n]) => el("div", {class: "small"}, el("span", {class: "v"}, "v" + v), " \u00d7 " + num(n, 0)));
  }
  function actionsCell(j) {
    const kids = [];
    if (j.state === "done") {
      kids.push(el("a", {href: "/v1/jobs/" + j.id + "/result", download: "job-" + j.id + ".jsonl",
                         class: "download"}, "Download"));
      if ((j.progress || {}).errors) {
        kids.push(el("a", {href: "/v1/jobs/" + j.id + "/result?errors=1",
                           download: "job-" + j.id + "-errors.jsonl", class: "download-errors"}, "Errors"));
      }
    }
    if (admin && (j.state === "queued" || j.state === "running")) {
      kids.push(el("button", {type: "button", class: "danger cancel", onclick: () => cancel(j)}, "Cancel"));
    }
    return el("div", {class: "job-actions"}, kids.length ? kids : el("span", {class: "muted"}, DASH));
  }

  const columns = [
    {key: "job", label: "Job", sort: (j) => j.created_at, cell: (j) => [
      el("div", {class: "job-id", title: j.id}, j.id.slice(0, 12)),
      el("div", {class: "muted small"}, timeCell(j.created_at), " \u00b7 " + j.source + " " + j.format +
         " \u00b7 " + bytes(j.bytes))]},
    {key: "model", label: "Model", sort: (j) => j.model, cell: (j) => [
      el("a", {href: "/models/" + encodeURIComponent(j.model)}, j.model),
      j.label ? el("span", {class: "muted small"}, " @" + j.label) : j.version ? el("span", {class: "muted small"}, " v" + j.version) : null]},
    {key: "state", label: "State", sort: (j) => j.state, cell: (j) => badge(j.state, "state-" + j.state)},
    {key: "progress", label: "Progress", sort: (j) => (j.progress || {}).fraction, cell: progressCell},
    {key: "errors", label: "Errors", cls: "wrap", sort: (j) => (j.progress || {}).errors, cell: errorsCell},
    {key: "versions", label: "Scored by", cell: versionsCell},
    {key: "finished", label: "Ended", sort: (j) => j.finished_at, cell: (j) => timeCell(j.finished_at)},
    {key: "actions", label: "", cell: actionsCell},
  ];
  const table = window.ms.table($("#jobs"), columns, {
    sort: {key: "job", dir: -1},
    empty: "No job yet.",
    rowData: (j) => ({job: j.id, state: j.state}),
    rowClass: (j) => "job job-" + j.state,
  });
  $("#filter").addEventListener("input", (ev) => { table.filter = ev.target.value; });

  function result(ok, text, state) {
    const box = $("#submit-result");
    if (!box) return;
    box.hidden = false;
    box.className = "result " + (ok ? "ok" : "err");
    box.dataset.state = state || (ok ? "ok" : "err");
    box.textContent = text;
  }

  async function cancel(j) {
    if (!window.confirm("Cancel job " + j.id + " (" + j.model + ")? Chunks not scored yet never will be.")) return;
    try {
      await window.ms.request("POST", "/v1/jobs/" + j.id + "/cancel");
    } catch (exc) {
      window.ms.setPageProblem("Cancel failed: " + exc.message);
    }
    refresher.now();
  }

  // --- submit ------------------------------------------------------------------------------------
  function newKey() {
    const a = new Uint8Array(12);
    window.crypto.getRandomValues(a);
    return "console-" + Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  async function post(path, body, ctype, key) {
    const headers = {"Content-Type": ctype, "X-CSRF-Token": window.ms.csrf, "Idempotency-Key": key,
                     Accept: "application/json"};
    let resp;
    try {
      resp = await fetch(path, {method: "POST", credentials: "same-origin", headers, body});
    } catch (exc) {
      throw new window.ms.ApiError(0, "the master cannot be reached (" + exc.message + ")");
    }
    let doc = null;
    try { doc = await resp.json(); } catch (exc) { doc = null; }
    if (!resp.ok) throw new window.ms.ApiError(resp.status, (doc && doc.error) || String(resp.status));
    return doc;
  }
  function pastedRows(text) {
    const trimmed = text.trim();
    if (!trimmed) throw new Error("paste a JSON array of rows, or JSON Lines");
    if (trimmed.startsWith("[")) {
      try { return {rows: JSON.parse(trimmed)}; } catch (exc) { /* JSON Lines then */ }
    }
    return {lines: trimmed + "\n"};
  }
  async function submit(ev) {
    ev.preventDefault();
    const model = $("#job-model").value;
    const version = $("#job-version").value;
    if (!model) return result(false, "Choose a model.");
    const key = pendingKey || (pendingKey = newKey());
    const query = "?model=" + encodeURIComponent(model) + (version ? "&" + version : "");
    const webhook = $("#job-webhook").value.trim();
    const hook = webhook ? "&webhook=" + encodeURIComponent(webhook) : "";
    result(true, "Submitting\u2026", "pending");
    $("#job-submit").disabled = true;
    try {
      let doc;
      if (source === "file") {
        const file = $("#job-file").files[0];
        if (!file) throw new Error("choose a file");
        const csv = /\.csv$/i.test(file.name) || file.type === "text/csv";
        doc = await post("/v1/jobs" + query + hook, file, csv ? "text/csv" : "application/x-ndjson", key);
      } else {
        const pasted = pastedRows($("#job-rows").value);
        if (pasted.rows) {
          const body = {model, rows: pasted.rows};
          if (version) {
            const [k, v] = version.split("=");
            body[k] = k === "version" ? Number(v) : decodeURIComponent(v);
          }
          if (webhook) body.webhook = webhook;
          doc = await post("/v1/jobs", JSON.stringify(body), "application/json", key);
        } else {
          doc = await post("/v1/jobs" + query + hook, new Blob([pasted.lines]), "application/x-ndjson", key);
        }
      }
      pendingKey = null;
      result(true, "Job " + doc.id + " submitted: " + num(doc.rows, 0) + " rows in " + doc.chunks +
             (doc.chunks === 1 ? " chunk" : " chunks") + ".", "ok");
    } catch (exc) {
      if (!exc.status || exc.status >= 500 || exc.status === 409) {
        // not answered, or the broker/bucket hiccuped: the same key retries the same job
      } else {
        pendingKey = null;
      }
      result(false, "Submit failed: " + exc.message + (exc.status ? " (HTTP " + exc.status + ")" : ""));
    } finally {
      $("#job-submit").disabled = false;
    }
    refresher.now();
  }
  function setSource(which) {
    source = which;
    for (const [id, on] of [["#src-file", which === "file"], ["#src-paste", which === "paste"]]) {
      $(id).classList.toggle("on", on);
      $(id).setAttribute("aria-pressed", String(on));
    }
    $("#file-row").hidden = which !== "file";
    $("#paste-row").hidden = which !== "paste";
  }
  async function loadModels() {
    const doc = await window.ms.get("/v1/models");
    const select = $("#job-model");
    const current = select.value;
    const names = (doc.models || []).filter((m) => (m.versions_in_bucket || []).length)
      .map((m) => m.model).sort();
    select.replaceChildren(...names.map((n) => el("option", {value: n, selected: n === current}, n)));
    window.ms.data.models = doc;
    versionsFor(select.value);
  }
  function versionsFor(model) {
    const m = ((window.ms.data.models || {}).models || []).find((x) => x.model === model) || {};
    const select = $("#job-version");
    const keep = select.value;
    const versions = (m.versions_in_bucket || []).slice().sort((a, b) => b - a);
    const labels = Object.keys((m.policy || {}).labels || {}).sort();
    select.replaceChildren(el("option", {value: ""}, "latest served"),
      ...labels.map((l) => el("option", {value: "label=" + encodeURIComponent(l), selected: keep === "label=" + l}, "label " + l)),
      ...versions.map((v) => el("option", {value: "version=" + v, selected: keep === "version=" + v}, "v" + v)));
  }
  if ($("#submit-form")) {
    $("#submit-form").addEventListener("submit", submit);
    $("#src-file").addEventListener("click", () => setSource("file"));
    $("#src-paste").addEventListener("click", () => setSource("paste"));
    $("#job-model").addEventListener("change", (ev) => versionsFor(ev.target.value));
    $("#job-rows").placeholder = '[{"x": 1.0}, {"x": 2.5}]';
    loadModels().catch((exc) => result(false, "Models: " + exc.message));
  }

  // --- the table ---------------------------------------------------------------------------------
  function renderHead(doc) {
    const jobs = doc.jobs || [];
    const running = jobs.filter((j) => j.state === "running" || j.state === "queued").length;
    $("#jobs-count").textContent = jobs.length + (jobs.length === 1 ? " job" : " jobs") +
      (running ? ", " + running + " running or queued" : "");
    const off = $("#jobs-off");
    off.hidden = doc.enabled;
    $("#jobs-off-text").textContent = doc.enabled ? "" :
      "Jobs are off on this master: it has no broker (MODELSYNC_BROKER_URL).";
    const w = doc.workers || {};
    const names = w.names || [];
    $("#jobs-workers").replaceChildren(!doc.enabled ? "" : w.error ? badge("broker down", "bad", w.error)
      : badge(names.length + (names.length === 1 ? " worker" : " workers"), names.length ? "ok" : "warn",
              names.join("\n") || "no worker answered the last ping"));
    const limits = doc.limits || {};
    if ($("#submit-limits")) {
      $("#submit-limits").textContent = "uploads up to " + bytes(limits.max_upload_bytes) +
        ", pasted rows up to " + bytes(limits.max_inline_bytes) + ", " + num(limits.chunk_rows, 0) + " rows per chunk";
    }
    $("#jobs-retention").textContent = limits.ttl_s ? "a job and its result are kept " +
      num(limits.ttl_s / 86400, 1) + " days after it ends" : "";
  }
  async function load(cluster) {
    const doc = await window.ms.get("/v1/jobs?limit=100");
    window.ms.data.jobs = doc;
    renderHead(doc);
    table.rows = doc.jobs || [];
    return cluster;
  }
  const refresher = window.ms.autoRefresh(load, 2000);
})();
