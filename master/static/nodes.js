/* modelsync console: the Nodes page. One row per node id, every daemon it reports as a role
 * (puller, config manager, gateway, and any other): liveness, what is on disk and AVAILABLE,
 * disk, TF Serving, last sync. */
"use strict";

(function () {
  const {el, $, badge, dash, ver, join, timeCell, bytes, DASH} = window.ms;
  const ROLES = {puller: "puller", config_manager: "config manager", gateway: "gateway"};
  const EXPECTED = ["puller", "config_manager"];  // every serving node runs these two
  const roleName = (role) => ROLES[role] || role.replace(/_/g, " ");
  const status = (n, role) => (n.roles[role] && n.roles[role].status) || {};

  function stateBadge(state) {
    return badge(state, "state-" + state, state === "live" ? "every daemon sends heartbeats"
      : state === "degraded" ? "one of its daemons sends no heartbeats" : "no heartbeats");
  }
  function roleLine(n, role) {
    const r = n.roles[role];
    const name = el("span", {class: "role-name"}, roleName(role));
    if (!r) {
      return el("div", {class: "role-line", dataset: {role}}, name, " ",
                badge("missing", "bad", "no " + roleName(role) + " ever reported from this node"));
    }
    const url = role === "gateway" && r.status && r.status.url ? r.status.url : null;
    return el("div", {class: "role-line", dataset: {role}}, name, " ", stateBadge(r.state), " ",
              el("span", {class: "muted small"}, "seen "), timeCell(r.last_seen),
              el("span", {class: "muted small"}, " \u00b7 v" + (r.version || "?")),
              url ? el("span", {class: "muted small"}, " \u00b7 " + url) : null);
  }
  function rolesOf(n) {
    const order = (r) => (r in ROLES ? Object.keys(ROLES).indexOf(r) : 99);
    return [...new Set([...EXPECTED, ...Object.keys(n.roles)])]
      .sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  }
  const rolesCell = (n) => rolesOf(n).map((role) => roleLine(n, role));
  function versionsCell(per) {
    const models = Object.keys(per || {}).sort();
    if (!models.length) return dash();
    return models.map((m) => el("div", {},
      el("a", {href: "/models/" + encodeURIComponent(m)}, m), " ",
      join((per[m] || []).slice().sort((a, b) => a - b).map(ver), ", ")));
  }
  function tfservingCell(n) {
    const s = status(n, "config_manager");
    if (!n.roles.config_manager || s.tfserving_up === undefined) return dash();
    return s.tfserving_up ? badge("up", "ok") : badge("down", "bad", "the config manager cannot reach TF Serving");
  }
  function syncCell(n) {
    const s = status(n, "puller");
    if (!n.roles.puller || s.last_poll_ok === undefined) return dash();
    const failures = Array.isArray(s.failures) ? s.failures : [];
    return [s.last_poll_ok ? badge("ok", "ok") : badge("failed", "bad"), " ",
            el("span", {class: "muted small"}, "last ok "), timeCell(s.last_ok_at, true),
            failures.length ? [" ", badge(failures.length + " failing", "bad",
                                            failures.map((f) => JSON.stringify(f)).join("\n"))] : null];
  }
  function reloadCell(n) {
    const r = status(n, "config_manager").last_reload;
    if (!r) return dash();
    if (r.error || r.code) {
      return el("span", {class: "bad-text", title: String(r.error || "")},
                "failed (" + (r.code || "error") + ") ", timeCell(r.at));
    }
    return [badge("ok", "ok"), " ", timeCell(r.at), el("span", {class: "muted small"},
            r.seconds !== undefined ? " \u00b7 " + r.seconds + " s" : "")];
  }

  const columns = [
    {key: "node", label: "Node", sort: (n) => n.node_id, cell: (n) => [
      el("strong", {}, n.node_id),
      n.hostname && n.hostname !== n.node_id ? el("div", {class: "muted small"}, n.hostname) : null]},
    {key: "state", label: "State", sort: (n) => ["live", "degraded", "stale"].indexOf(n.state),
     cell: (n) => stateBadge(n.state)},
    {key: "roles", label: "Daemons", sort: (n) => Object.keys(n.roles).length, cell: rolesCell},
    {key: "installed", label: "On disk", cell: (n) => versionsCell(status(n, "puller").installed)},
    {key: "available", label: "AVAILABLE", cell: (n) => versionsCell(status(n, "config_manager").available)},
    {key: "disk", label: "Disk free", num: true, sort: (n) => status(n, "puller").disk_free_bytes,
     cell: (n) => (status(n, "puller").disk_free_bytes === undefined ? dash()
       : bytes(status(n, "puller").disk_free_bytes))},
    {key: "tfserving", label: "TF Serving", sort: (n) => status(n, "config_manager").tfserving_up,
     cell: tfservingCell},
    {key: "sync", label: "Last sync", sort: (n) => status(n, "puller").last_ok_at, cell: syncCell},
    {key: "reload", label: "Last reload", cell: reloadCell},
  ];
  const table = window.ms.table($("#nodes"), columns, {
    sort: {key: "node", dir: 1},
    empty: "No node has sent a heartbeat yet.",
    rowData: (n) => ({node: n.node_id, state: n.state}),
    rowClass: (n) => "node " + n.state,
  });
  $("#filter").addEventListener("input", (ev) => { table.filter = ev.target.value; });

  function renderSwarm(swarm) {
    const box = $("#swarm");
    box.hidden = !swarm;
    if (!swarm) return;
    const body = $("#swarm-body");
    if (swarm.error) return body.replaceChildren(el("p", {class: "bad-text"}, swarm.error));
    if (!swarm.swarm) return body.replaceChildren(el("p", {class: "muted"}, "This Docker Engine is not in a Swarm."));
    const problems = (swarm.problems || []).map((p) => el("li", {class: "bad-text"}, p.node + ": " + p.problem));
    const rows = (swarm.nodes || []).map((n) => el("tr", {}, el("td", {}, n.hostname),
      el("td", {}, n.state), el("td", {}, n.availability || DASH),
      el("td", {class: "wrap"}, Object.entries(n.tasks || {}).map(([r, s]) => r + ": " + s.join(", ")).join(" \u00b7 ") || DASH)));
    body.replaceChildren(problems.length ? el("ul", {}, problems) : el("p", {class: "ok-text"}, "No problem seen."),
      el("div", {class: "table-wrap"}, el("table", {}, el("thead", {}, el("tr", {},
        ["host", "state", "availability", "tasks"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))));
  }

  async function load(cluster) {
    const doc = await window.ms.get("/v1/nodes");
    window.ms.data.nodes = doc;
    const counts = {live: 0, degraded: 0, stale: 0};
    for (const n of doc.nodes) counts[n.state] = (counts[n.state] || 0) + 1;
    $("#nodes-count").textContent = doc.nodes.length + (doc.nodes.length === 1 ? " node" : " nodes") +
      ": " + counts.live + " live, " + counts.degraded + " degraded, " + counts.stale + " stale";
    table.rows = doc.nodes;
    renderSwarm(doc.swarm);
    return cluster;
  }
  window.ms.autoRefresh(load, 5000);
})();
