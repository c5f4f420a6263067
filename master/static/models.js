/* modelsync console: the Models page. One row per model: versions, policy, how many nodes
 * serve it, and its last minute of traffic; filter, sort, choose columns, auto-refresh. */
"use strict";

(function () {
  const {el, $, badge, dash, ver, join, timeCell, num, pct, msec} = window.ms;
  const HIDDEN_KEY = "modelsync.console.models.hidden-columns";
  let spark = {minutes: [], models: {}};
  const serving = (m) => m.serving_versions || [];  // AVAILABLE on a live serving node now

  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const maxOr = (xs, d) => (xs.length ? Math.max(...xs) : d);

  function availability(m) {
    return m.target_versions.map((v) => {
      const s = m.summary[String(v)] || {available: 0, on_disk: 0};
      return {v, available: s.available, of: m.serving_nodes};
    });
  }
  function availableShare(m) {
    const a = availability(m);
    return a.length && m.serving_nodes ? Math.min(...a.map((x) => x.available / x.of)) : -1;
  }

  function modelCell(m) {
    const link = el("a", {href: "/models/" + encodeURIComponent(m.model), class: "model-link"},
                    m.model);
    const probs = m.problems || [];
    return [link, probs.length
      ? [" ", badge("\u26A0 " + probs.length, "warn", probs.join("\n"))] : null];
  }
  function availableCell(m) {
    if (m.policy.disabled) return dash();
    if (!m.serving_nodes) return badge("no serving node", "bad");
    const a = availability(m);
    if (!a.length) return dash();
    return join(a.map((x) => badge("v" + x.v + " " + x.available + "/" + x.of,
      x.available === x.of ? "ok" : x.available ? "warn" : "bad",
      "AVAILABLE on " + x.available + " of " + x.of + " serving nodes")));
  }
  function labelsCell(m) {
    const labels = Object.entries(m.policy.labels || {});
    if (!labels.length) return dash();
    return join(labels.map(([name, v]) => (name in m.labels
      ? badge(name + " \u2192 v" + v, "info")
      : badge(name + " \u2192 v" + v, "warn", "its version is not complete in the bucket"))));
  }
  function convergedCell(m) {
    if (m.policy.disabled) return dash();
    if (!m.converged) return badge("converging", "warn", "not every target AVAILABLE everywhere");
    if (!m.converged_since) return badge("converged", "ok");
    return timeCell(m.converged_since, true);
  }
  /** Requests per minute over the complete minutes: the minute under way is left out, so the
   * line never ends in a dip that is only the minute not being over yet. */
  function completeMinutes(m) {
    const values = spark.models[m.model] || spark.minutes.map(() => 0);
    return spark.partial === null || spark.partial === undefined ? values
      : values.filter((v, i) => spark.minutes[i] !== spark.partial);
  }
  function trendCell(m) {
    const values = completeMinutes(m);
    const total = sum(values);
    return el("span", {class: "trend", title: total + " requests in the last " + values.length +
                       " complete minutes, at most " + maxOr(values, 0) + " per minute",
                       dataset: {total: String(total), points: String(values.length)}},
              window.ms.sparkline(values, 120, 24));
  }

  // a staged rollout that needs an eye on it: waiting for validation, baking, paused, rolled back
  const ROLLOUT = {
    validating: ["waiting", "warn", "waiting for the stage's nodes to validate v"],
    baking: ["baking", "info", "baking v"],
    paused: ["paused", "warn", "paused by an operator: v"],
    rolled_back: ["rolled back", "bad", "rolled back (and rejected): v"],
  };
  function rolloutBadge(m) {
    const ro = m.rollout;
    const known = ro && ROLLOUT[ro.status];
    if (!known) return null;
    return badge(known[0] + " v" + ro.version, "rollout " + known[1],
                 known[2] + ro.version + (ro.reason ? " \u2014 " + ro.reason : ""));
  }
  function stateCell(m) {
    return [m.policy.disabled ? badge("disabled", "bad") : badge("enabled", "ok"), rolloutBadge(m)];
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (exc) {  // no clipboard API (a page not served over HTTPS): select and copy
      const area = el("textarea", {class: "copy-buffer", readonly: true}, text);
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "copied";
    button.dataset.copied = text;
    setTimeout(() => { button.textContent = "copy id"; }, 1500);
  }
  function actionsCell(m) {
    const copy = el("button", {type: "button", class: "copy-id", title: "copy \u201c" + m.model +
                               "\u201d to the clipboard", dataset: {model: m.model}}, "copy id");
    copy.addEventListener("click", () => copyText(m.model, copy));
    if (!window.ms.admin) return el("span", {class: "row-actions"}, copy);
    const stop = !m.policy.disabled;
    const toggle = el("button", {type: "button", class: "toggle-serving" + (stop ? " danger" : ""),
                                 dataset: {model: m.model}}, stop ? "stop" : "start");
    toggle.addEventListener("click", () => act(
      stop ? "Stopping " + m.model : "Starting " + m.model,
      stop ? "Stop " + m.model + "? Every node stops serving it (the policy's disabled)."
        : "Start " + m.model + "? Every node serves it again.",
      "PUT", "/v1/models/" + encodeURIComponent(m.model) + "/policy", {disabled: stop},
      (d) => m.model + (d.policy.disabled ? " stopped: no node serves it" : " started")));
    return el("span", {class: "row-actions"}, toggle, copy);
  }

  const columns = [
    {key: "model", label: "Model", sort: (m) => m.model, cell: modelCell},
    {key: "targets", label: "Target versions", sort: (m) => maxOr(m.target_versions, null),
     cell: (m) => (m.target_versions.length ? join(m.target_versions.map(ver), ", ") : dash())},
    {key: "serving", label: "Serving", sort: (m) => maxOr(serving(m), null),
     cell: (m) => (serving(m).length ? join(serving(m).map(ver), ", ") : dash())},
    {key: "available", label: "AVAILABLE on", sort: availableShare, cell: availableCell},
    {key: "labels", label: "Labels", sort: (m) => Object.keys(m.policy.labels).join(",") || null,
     cell: labelsCell},
    {key: "pin", label: "Pin", sort: (m) => m.policy.pin,
     cell: (m) => (m.policy.pin ? badge("pinned v" + m.policy.pin, "info") : dash())},
    {key: "state", label: "State", sort: (m) => (m.policy.disabled ? 1 : 0) +
       (m.rollout && ROLLOUT[m.rollout.status] ? 0.5 : 0), cell: stateCell},
    {key: "converged", label: "Converged since", sort: (m) => m.converged_since,
     cell: convergedCell},
    {key: "rps", label: "req/s", num: true, sort: (m) => m.last_minute.rps,
     cell: (m) => num(m.last_minute.rps, 2)},
    {key: "errors", label: "Errors", num: true, sort: (m) => m.last_minute.error_rate,
     cell: (m) => el("span", {class: m.last_minute.error_rate > 0.01 ? "bad-text" : ""},
                     pct(m.last_minute.error_rate))},
    {key: "p99", label: "p99", num: true, sort: (m) => m.last_minute.p99_ms,
     cell: (m) => msec(m.last_minute.p99_ms)},
    {key: "trend", label: "Requests, 15 min", sort: (m) => sum(completeMinutes(m)),
     cell: trendCell},
    {key: "actions", label: "", cell: actionsCell},
  ];

  const {act} = window.ms.actions("#models-result", () => refresh.now());
  const table = window.ms.table($("#models"), columns, {
    sort: {key: "model", dir: 1},
    empty: "No model in the bucket, the policy or on any node yet.",
    rowData: (m) => ({model: m.model}),
    rowClass: (m) => (m.policy.disabled ? "disabled" : null),
  });

  // column chooser, remembered in localStorage
  function loadHidden() {
    try {
      const keys = JSON.parse(localStorage.getItem(HIDDEN_KEY) || "[]");
      return Array.isArray(keys) ? keys.filter((k) => columns.some((c) => c.key === k)) : [];
    } catch (exc) {
      return [];
    }
  }
  let hidden = new Set(loadHidden());
  $("#columns-menu").replaceChildren(...columns.filter((c) => c.key !== "model" && c.label).map((c) =>
    el("label", {}, el("input", {type: "checkbox", checked: !hidden.has(c.key),
                                 dataset: {col: c.key}, onchange: (ev) => {
                                   if (ev.target.checked) hidden.delete(c.key); else hidden.add(c.key);
                                   localStorage.setItem(HIDDEN_KEY, JSON.stringify([...hidden]));
                                   table.hidden = hidden;
                                 }}), c.label)));
  table.hidden = hidden;
  $("#filter").addEventListener("input", (ev) => { table.filter = ev.target.value; });

  async function load() {
    const [models, sparklines] = await Promise.all([
      window.ms.get("/v1/models"), window.ms.get("/v1/metrics/sparklines?since=15m")]);
    spark = sparklines;
    window.ms.data.models = models;
    window.ms.data.sparklines = sparklines;
    $("#models-count").textContent = models.models.length +
      (models.models.length === 1 ? " model" : " models");
    table.rows = models.models;
  }
  const refresh = window.ms.autoRefresh(load, 5000);
})();
