/* modelsync console: a model's scoring front door. "Try it" sends one MLflow request through a
 * chosen node's gateway, by way of the master (POST /v1/models/<m>/try; read and admin tokens),
 * with the body prefilled from the version's signature; "Recent requests" lists what the nodes'
 * gateways answered lately (GET /v1/models/<m>/requests), refreshed with the page. */
"use strict";

window.ms.scoringPanels = function scoringPanels(model) {
  const {el, $, badge, dash, ver, timeCell, num, msec, DASH} = window.ms;
  const base = "/v1/models/" + encodeURIComponent(model);
  const signatures = {};  // version -> Promise of its signature document (asked once each)
  let shownFor = null;  // the version whose signature is shown
  let newest = null;  // the newest version serving now ("current" answers with it, normally)

  // --- the form ----------------------------------------------------------------------------------
  function fill(select, options, keepFirst) {
    const want = JSON.stringify(options);
    if (select.dataset.options === want) return;  // keep what the user chose
    const chosen = select.value;
    select.replaceChildren(...options.map(([value, text, title]) => el("option", {value, title}, text)));
    if (options.some(([value]) => value === chosen)) select.value = chosen;
    else if (!keepFirst && options.length) select.value = options[0][0];
    select.dataset.options = want;
  }
  const gatewayOf = (n) => (n.roles.gateway && n.roles.gateway.state === "live" ? n.roles.gateway : null);

  function renderForm(doc, nodes) {
    const gateways = nodes.nodes.filter(gatewayOf).map((n) =>
      [n.node_id, n.node_id, (gatewayOf(n).status || {}).url || ""]);
    fill($("#try-node"), gateways);
    $("#try-no-gateway").hidden = gateways.length > 0;
    $("#try-send").disabled = !gateways.length;
    const serving = (doc.serving_versions || []).slice().sort((a, b) => b - a);
    newest = serving.length ? serving[0] : null;
    fill($("#try-version"), [["", "current" + (newest ? " (v" + newest + " now)" : ""),
                                 "no version in the path: what TF Serving serves as the latest"],
                             ...serving.map((v) => [String(v), "v" + v, null])], true);
    showSignature();
  }

  const shape = (s) => (s === null || s === undefined ? "unknown rank"
    : "[" + s.map((d) => (d < 0 ? "?" : String(d))).join(", ") + "]");
  function tensorRows(what, tensors) {
    return Object.entries(tensors).map(([name, t]) => el("tr", {dataset: {tensor: name, kind: what}},
      el("td", {class: "muted"}, what), el("td", {class: "mono"}, name), el("td", {}, t.dtype),
      el("td", {class: "mono"}, shape(t.shape))));
  }
  async function showSignature() {
    const v = $("#try-version").value ? Number($("#try-version").value) : newest;
    if (v === shownFor) return;
    shownFor = v;
    const box = $("#try-signature");
    if (v === null) {
      box.replaceChildren(el("p", {class: "muted"}, "No version serving now: no signature to show."));
      return;
    }
    if (!signatures[v]) signatures[v] = window.ms.get(base + "/versions/" + v + "/signature");
    let sig;
    try {
      sig = await signatures[v];
    } catch (exc) {
      if (shownFor === v) box.replaceChildren(el("p", {class: "warn-text"}, "No signature for v" + v + ": " + exc.message));
      return;
    }
    if (shownFor !== v) return;  // another version was chosen meanwhile
    if (!sig.signatures) {  // a tarball version: write the body by hand
      delete box.dataset.version;
      return box.replaceChildren(el("p", {class: "muted"}, "No signature shown for v" + v + ": " + sig.reason));
    }
    const names = Object.keys(sig.signatures).sort();
    const name = names.includes("serving_default") ? "serving_default" : names[0];
    if (!name) return box.replaceChildren(el("p", {class: "muted"}, "v" + v + " has no signature."));
    const s = sig.signatures[name];
    box.dataset.version = String(v);
    box.replaceChildren(
      el("p", {class: "muted small"}, "signature ", el("span", {class: "mono"}, name), " of ", ver(v),
         names.length > 1 ? " (also: " + names.filter((n) => n !== name).join(", ") + ")" : ""),
      el("table", {class: "tensors"}, el("thead", {}, el("tr", {},
        ["", "Name", "dtype", "Shape"].map((h) => el("th", {}, h)))),
      el("tbody", {}, tensorRows("input", s.inputs), tensorRows("output", s.outputs))));
    const body = $("#try-body");
    if (!body.dataset.edited) {
      body.value = JSON.stringify({inputs: s.example.inputs}, null, 2);
      body.dataset.prefilledFor = String(v);
    }
  }

  function result(ok, parts, state) {
    const box = $("#try-result");
    box.hidden = false;
    box.className = "try-result " + (ok ? "ok" : "err");
    box.dataset.state = state || (ok ? "ok" : "err");
    box.replaceChildren(...parts);
  }
  async function send(ev) {
    ev.preventDefault();
    const node = $("#try-node").value;
    const text = $("#try-body").value;
    let body;
    try {
      body = JSON.parse(text);
    } catch (exc) {
      return result(false, [el("strong", {}, "The body is not valid JSON"), ": " + exc.message +
                            ". Nothing was sent."], "invalid");
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return result(false, [el("strong", {}, "The body must be a JSON object"),
                            ", such as {\"inputs\": {...}}. Nothing was sent."], "invalid");
    }
    if (!node) return result(false, ["Choose a node with a live gateway."], "invalid");
    const request = {node, body};
    if ($("#try-version").value) request.version = Number($("#try-version").value);
    result(true, ["Sending through " + node + "\u2019s gateway\u2026"], "pending");
    $("#try-send").disabled = true;
    try {
      const doc = await window.ms.request("POST", base + "/try", request);
      window.ms.data.tryit = doc;
      const ok = doc.status >= 200 && doc.status < 300;
      result(ok, [
        el("div", {class: "try-meta"},
           el("span", {id: "try-status", dataset: {status: String(doc.status)}},
              badge("HTTP " + doc.status, ok ? "ok" : "bad")),
           " answered by ", el("span", {id: "try-answered-version", dataset: {version: doc.version || ""}},
                               doc.version ? ver(doc.version) : "an unknown version"),
           " on ", el("strong", {}, doc.node), " in ",
           el("span", {id: "try-latency", dataset: {ms: String(doc.latency_ms)}}, msec(doc.latency_ms))),
        el("pre", {id: "try-answer"}, JSON.stringify(doc.answer, null, 2))]);
    } catch (exc) {
      window.ms.data.tryit = {error: exc.message, status: exc.status};
      result(false, [el("strong", {}, "Not tried"), ": " + exc.message +
                     (exc.status ? " (HTTP " + exc.status + ")" : "")]);
    } finally {
      $("#try-send").disabled = !$("#try-node").options.length;
    }
  }
  $("#try-form").addEventListener("submit", send);
  $("#try-body").addEventListener("input", () => { $("#try-body").dataset.edited = "1"; });
  $("#try-version").addEventListener("change", showSignature);
  $("#try-reset").addEventListener("click", () => {
    delete $("#try-body").dataset.edited;
    shownFor = undefined;
    showSignature();
  });

  // --- recent requests ---------------------------------------------------------------------------
  const columns = [
    {key: "ts", label: "Time", sort: (r) => r.ts, cell: (r) => timeCell(r.ts)},
    {key: "node", label: "Node", sort: (r) => r.node, cell: (r) => r.node},
    {key: "version", label: "Version", sort: (r) => r.version,
     cell: (r) => (r.version ? ver(r.version) : dash())},
    {key: "convention", label: "Convention", sort: (r) => r.convention, cell: (r) => r.convention || DASH},
    {key: "status", label: "Status", num: true, sort: (r) => r.status,
     cell: (r) => badge(String(r.status), r.status < 400 ? "ok" : r.status < 500 ? "warn" : "bad")},
    {key: "latency", label: "Latency", num: true, sort: (r) => r.latency_ms, cell: (r) => msec(r.latency_ms)},
    {key: "error", label: "Error", cls: "wrap", cell: (r) => (r.error ? el("span", {class: "bad-text"}, r.error) : dash())},
  ];
  const table = window.ms.table($("#requests"), columns, {
    sort: {key: "ts", dir: -1}, rowData: (r) => ({node: r.node, status: String(r.status)}),
    empty: "No request through a gateway yet (each gateway reports with its heartbeat)."});

  function renderPerNode(per) {
    const nodes = Object.keys(per).sort();
    $("#requests-nodes").replaceChildren(...(nodes.length ? nodes.map((n) => {
      const s = per[n];
      return el("div", {class: "per-node", dataset: {node: n, count: String(s.count)}}, el("strong", {}, n), ": ",
                num(s.count, 0) + " requests", ", ",
                el("span", {class: s.errors ? "bad-text" : ""}, num(s.errors, 0) + " errors"),
                " since its start \u00b7 p50 " + msec(s.p50_ms) + ", p99 " + msec(s.p99_ms));
    }) : []));
    $("#requests-nodes").hidden = !nodes.length;
  }

  async function load(docP, nodesP) {
    const [requests, doc, nodes] = await Promise.all([window.ms.get(base + "/requests"), docP, nodesP]);
    window.ms.data.requests = requests;
    renderForm(doc, nodes);
    renderPerNode(requests.nodes || {});
    table.rows = requests.recent || [];
  }
  return {load};
};
