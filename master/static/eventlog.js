/* modelsync console: the event and audit log (the Events page, and a model's page), newest
 * first, filtered by kind, model, node and age; a row's details expand on a click. */
"use strict";

window.ms.eventLog = function eventLog(opts) {
  const {el, $, badge, timeCell} = window.ms;
  const tableEl = $("#events");
  const expanded = new Set();  // event ids whose details are open (kept over refreshes)
  const filters = {kind: $("#ev-kind"), model: $("#ev-model"), node: $("#ev-node"),
                   since: $("#ev-since"), limit: $("#ev-limit")};
  const countEl = $("#ev-count");
  let last = [];

  function query() {
    const q = new URLSearchParams();
    const model = opts.model || (filters.model ? filters.model.value.trim() : "");
    if (model) q.set("model", model);
    if (filters.kind && filters.kind.value) q.set("kind", filters.kind.value);
    if (filters.node && filters.node.value.trim()) q.set("node", filters.node.value.trim());
    if (filters.since && filters.since.value) {
      q.set("since", String(Math.floor(Date.now() / 1000 - Number(filters.since.value))));
    }
    q.set("limit", filters.limit ? filters.limit.value : "100");
    return q.toString();
  }

  const QUIET = new Set(["request_id", "remote", "actor"]);
  function summary(detail) {
    const parts = [];
    for (const [k, v] of Object.entries(detail || {})) {
      if (QUIET.has(k) || v === null || v === undefined || v === "") continue;
      const text = typeof v === "object" ? JSON.stringify(v) : String(v);
      parts.push(k + "=" + (text.length > 60 ? text.slice(0, 57) + "\u2026" : text));
    }
    const line = parts.join("  ");
    return line.length > 180 ? line.slice(0, 177) + "\u2026" : line;
  }
  const BAD = /fail|error|malformed|mismatch|refused|rejected|full/i;

  function render() {
    const rows = [];
    for (const e of last) {
      const open = expanded.has(e.id);
      const toggle = () => {
        if (expanded.has(e.id)) expanded.delete(e.id); else expanded.add(e.id);
        render();
      };
      rows.push(el("tr", {class: "event" + (open ? " open" : ""), dataset: {id: String(e.id)}},
        el("td", {}, el("button", {class: "link expand", type: "button", "aria-expanded": String(open),
                                   title: open ? "hide details" : "show details",
                                   onclick: toggle}, open ? "\u25BE" : "\u25B8")),
        el("td", {}, timeCell(e.at)),
        el("td", {}, badge(e.kind, e.kind === "audit" ? "info" : "")),
        el("td", {}, e.node_id || el("span", {class: "muted"}, "\u2014")),
        el("td", {}, e.model ? el("a", {href: "/models/" + encodeURIComponent(e.model)}, e.model)
          : el("span", {class: "muted"}, "\u2014")),
        el("td", {class: "actor"}, e.kind === "audit" ? el("strong", {}, e.actor || "\u2014")
          : el("span", {class: "muted"}, e.actor || "\u2014")),
        el("td", {class: "mono" + (BAD.test(e.event) ? " bad-text" : "")}, e.event),
        el("td", {class: "wrap muted small"}, summary(e.detail))));
      if (open) {
        const full = {id: e.id, at: window.ms.when(e.at) + " (" + e.at + ")", kind: e.kind,
                      actor: e.actor, node: e.node_id, model: e.model, event: e.event,
                      detail: e.detail};
        rows.push(el("tr", {class: "detail"}, el("td", {}),
                     el("td", {colspan: 7}, el("pre", {}, JSON.stringify(full, null, 2)))));
      }
    }
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", {class: "empty", colspan: 8}, "No events match.")));
    }
    const head = el("tr", {}, ["", "time", "kind", "node", "model", "by", "event", "details"]
      .map((h) => el("th", {}, h)));
    tableEl.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
    if (countEl) {
      countEl.textContent = last.length + (last.length === 1 ? " event" : " events") + ", newest first";
    }
  }

  let seq = 0;  // a slower, older answer must not replace a newer one
  async function load() {
    const mine = ++seq;
    const doc = await window.ms.get("/v1/events?" + query());
    if (mine !== seq) return;
    last = doc.events || [];
    window.ms.data.events = last;
    render();
  }

  let debounce = null;
  for (const input of Object.values(filters)) {
    if (!input) continue;
    input.addEventListener("change", () => load().catch((e) => window.ms.setPageProblem(e.message)));
    if (input.tagName === "INPUT") {
      input.addEventListener("input", () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => load().catch((e) => window.ms.setPageProblem(e.message)), 400);
      });
    }
  }
  return {load};
};

/** Suggestions for the node (and model) filter boxes, from the registry. */
window.ms.fillNodeList = async function fillNodeList(listId) {
  const list = document.getElementById(listId);
  if (!list) return;
  try {
    const doc = await window.ms.get("/v1/nodes");
    list.replaceChildren(...doc.nodes.map((n) => window.ms.el("option", {value: n.node_id})));
  } catch (exc) {
    window.ms.setPageProblem(exc.message);
  }
};
