/* modelsync console: what every page shares (API calls, DOM building, formats, the banner,
 * auto-refresh, sortable tables). Every API string reaches the page through textContent or
 * attributes set one by one, never through innerHTML. */
"use strict";

window.ms = (function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  const kind = document.body.dataset.kind || "";
  const DASH = "\u2014";
  const $ = (sel, root) => (root || document).querySelector(sel);

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** One API call with the session cookie; writes carry the CSRF token. */
  async function request(method, path, body) {
    const opts = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (exc) {
      throw new ApiError(0, "the master cannot be reached (" + exc.message + ")");
    }
    let doc = null;
    try { doc = await resp.json(); } catch (exc) { doc = null; }
    if (resp.status === 401 && method === "GET") {  // the session ended: sign in again
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    if (!resp.ok) {
      throw new ApiError(resp.status, (doc && doc.error) || resp.status + " " + resp.statusText);
    }
    return doc;
  }
  const get = (path) => request("GET", path);

  /** el("td", {class: "num", title: t}, "text", node, ...): children are text or nodes. */
  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : String(kid));
    }
    return node;
  }
  const badge = (text, cls, title) => el("span", {class: "badge " + (cls || ""), title}, text);
  const dash = () => el("span", {class: "muted"}, DASH);
  const ver = (v) => el("span", {class: "v"}, "v" + v);
  const join = (nodes, sep) => nodes.flatMap((n, i) => (i ? [sep === undefined ? " " : sep, n] : [n]));

  // --- formats ---------------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  function hms(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function when(t) {
    if (t === null || t === undefined) return DASH;
    const d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms(d);
  }
  function ago(t) {
    if (t === null || t === undefined) return DASH;
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
    return (s / 86400).toFixed(1) + " d ago";
  }
  /** A time as "HH:MM:SS" today or a date otherwise, with the full time in a tooltip. */
  function timeCell(t, withAgo) {
    if (t === null || t === undefined) return el("span", {class: "muted"}, DASH);
    const d = new Date(t * 1000);
    const today = new Date().toDateString() === d.toDateString();
    const text = today ? hms(d) : when(t);
    return el("span", {title: when(t), dataset: {t: String(t)}}, text,
              withAgo ? el("span", {class: "muted"}, " (" + ago(t) + ")") : null);
  }
  function bytes(n) {
    if (n === null || n === undefined) return DASH;
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    let x = Number(n);
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i === 0 ? String(x) : x.toFixed(x < 10 ? 2 : 1)) + " " + units[i];
  }
  function num(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return DASH;
    return Number(x).toLocaleString("en-US", {maximumFractionDigits: digits === undefined ? 2 : digits});
  }
  const pct = (x) => (x === null || x === undefined ? DASH : (x * 100).toFixed(x < 0.001 && x > 0 ? 3 : 2) + " %");
  const msec = (x) => (x === null || x === undefined ? DASH : num(x, x < 10 ? 2 : 1) + " ms");

  // --- the banner: the cluster's problems (and a page's failed reads) -----------------------------
  const problems = {cluster: [], page: []};
  function renderBanner() {
    const box = $("#banner");
    if (!box) return;
    const all = [...problems.cluster, ...problems.page];
    box.hidden = all.length === 0;
    box.replaceChildren(el("strong", {}, all.length === 1 ? "Problem" : all.length + " problems"),
                        el("ul", {}, all.map((p) => el("li", {}, p))));
  }
  function setPageProblem(msg) {
    problems.page = msg ? [msg] : [];
    renderBanner();
  }
  async function refreshBanner() {
    try {
      const doc = await get("/v1/cluster");
      const found = (doc.problems || []).map((p) => "Policy: " + p);
      if (doc.catalog && doc.catalog.error) found.push("Catalog: " + doc.catalog.error);
      problems.cluster = found;
      renderBanner();
      return doc;
    } catch (exc) {
      problems.cluster = ["Cluster view: " + exc.message];
      renderBanner();
      return null;
    }
  }

  /** Every `everyMs`: the banner, then `load(cluster)`; "updated at" and pause/resume. */
  function autoRefresh(load, everyMs) {
    const label = $("#updated");
    const button = $("#pause");
    let paused = false;
    let busy = false;
    let timer = null;
    async function tick() {
      if (busy) return;
      busy = true;
      try {
        const cluster = await refreshBanner();
        await load(cluster);
        setPageProblem(null);
        const now = new Date();
        label.textContent = "updated at " + hms(now);
        label.dataset.at = String(now.getTime());
        label.className = "muted";
      } catch (exc) {
        setPageProblem(exc.message);
        label.textContent = "update failed at " + hms(new Date());
        label.className = "bad-text";
      } finally {
        busy = false;
      }
    }
    function schedule() {
      clearInterval(timer);
      timer = paused ? null : setInterval(tick, everyMs || 5000);
    }
    button.addEventListener("click", () => {
      paused = !paused;
      button.textContent = paused ? "Resume" : "Pause";
      button.setAttribute("aria-pressed", String(paused));
      label.classList.toggle("warn-text", paused);
      if (!paused) tick();
      schedule();
    });
    tick();
    schedule();
    return {now: tick, get paused() { return paused; }};
  }

  /** An admin's actions with one result box (`boxSel`): `act(what, question, method, path, body,
   * done)` asks first, sends, shows `done(answer)` (and the policy generation written) or why it
   * failed, then `after()` (the page's refresh). */
  function actions(boxSel, after) {
    function result(ok, text, pending) {
      const box = $(boxSel);
      box.hidden = false;
      box.className = "result " + (ok ? "ok" : "err");
      box.dataset.state = pending ? "pending" : ok ? "ok" : "err";
      box.textContent = text;
    }
    async function act(what, question, method, path, body, done) {
      if (!window.confirm(question)) return;
      result(true, what + "\u2026", true);
      try {
        const doc = await request(method, path, body);
        result(true, done(doc) + (doc && doc.generation ? " (policy generation " + doc.generation +
          (doc.changed === false ? ", unchanged" : "") + ")" : ""));
      } catch (exc) {
        result(false, what + " failed: " + exc.message + (exc.status ? " (HTTP " + exc.status + ")" : ""));
      }
      await after();
    }
    return {result, act};
  }

  /** A table whose columns sort on a header click; `hidden` columns keep their cells hidden.
   * columns: [{key, label, num, sort(row), cell(row) -> text|Node|[...]}] */
  function table(tableEl, columns, opts) {
    const state = {sort: opts.sort || {key: columns[0].key, dir: 1}, rows: [], hidden: new Set(),
                   filter: ""};
    function render() {
      const col = columns.find((c) => c.key === state.sort.key);
      const rows = [...state.rows];
      if (col && col.sort) {
        rows.sort((a, b) => {
          const x = col.sort(a);
          const y = col.sort(b);
          const c = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined
            ? -1 : x < y ? -1 : 1;
          return c * state.sort.dir;
        });
      }
      const head = el("tr", {}, columns.map((c) => {
        const sorted = c.key === state.sort.key ? (state.sort.dir > 0 ? " sorted-asc" : " sorted-desc") : "";
        return el("th", {class: (c.num ? "num " : "") + (c.sort ? "sortable" : "") + sorted,
                         dataset: {col: c.key}, hidden: state.hidden.has(c.key),
                         title: c.sort ? "sort by " + c.label : null,
                         onclick: c.sort ? () => sortBy(c.key) : null}, c.label);
      }));
      const q = state.filter.trim().toLowerCase();
      const body = rows.map((row) => {
        const tr = el("tr", {class: opts.rowClass ? opts.rowClass(row) : null,
                             dataset: opts.rowData ? opts.rowData(row) : {}},
                      columns.map((c) => el("td", {class: (c.num ? "num " : "") + (c.cls || ""),
                                                   dataset: {col: c.key},
                                                   hidden: state.hidden.has(c.key)}, c.cell(row))));
        if (q && !tr.textContent.toLowerCase().includes(q)) tr.hidden = true;
        return tr;
      });
      const shown = body.filter((tr) => !tr.hidden).length;
      if (!shown) {
        body.push(el("tr", {class: "empty-row"}, el("td", {class: "empty", colspan: columns.length},
          state.rows.length ? "No row matches \u201c" + state.filter + "\u201d." : opts.empty || "Nothing yet.")));
      }
      tableEl.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
    }
    function sortBy(key) {
      state.sort = {key, dir: state.sort.key === key ? -state.sort.dir : 1};
      render();
    }
    return {
      set rows(rows) { state.rows = rows; render(); },
      set filter(text) { state.filter = text; render(); },
      set hidden(keys) { state.hidden = new Set(keys); render(); },
      render,
    };
  }

  /** "key=value, key=value" (a version's tags, as typed) as [[key, value], ...]; an Error
   * naming the first item without "=". */
  function parseTags(text) {
    return text.split(",").map((t) => t.trim()).filter(Boolean).map((item) => {
      const at = item.indexOf("=");
      if (at < 1) throw new Error("a tag is key=value: " + item);
      return [item.slice(0, at).trim(), item.slice(at + 1).trim()];
    });
  }

  /** A tiny SVG line of values (requests per minute); no library needed for a sparkline. */
  function sparkline(values, width, height) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const max = Math.max(1, ...values);
    const n = values.length;
    const pts = values.map((v, i) => {
      const x = n > 1 ? (i * (width - 2)) / (n - 1) + 1 : width / 2;
      const y = height - 2 - (v / max) * (height - 4);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    if (n) {
      const area = document.createElementNS(NS, "polygon");
      area.setAttribute("points", "1," + (height - 1) + " " + pts.join(" ") + " " + (width - 1) + "," + (height - 1));
      const line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", pts.join(" "));
      svg.append(area, line);
    }
    return svg;
  }

  return {csrf, kind, admin: kind === "admin", DASH, $, ApiError, request, get, el, badge, dash,
          ver, join, hms, when, ago, timeCell, bytes, num, pct, msec, refreshBanner, setPageProblem,
          autoRefresh, actions, table, sparkline, parseTags, data: {}};
})();
