/* modelsync console: a model's page. Every version (like a registry), the graphs, the
 * policy, the events and audit log, and (admin only) the actions, each confirmed first. */
"use strict";

(function () {
  const {el, $, badge, dash, ver, join, timeCell, bytes, num, pct, msec} = window.ms;
  const model = document.body.dataset.model;
  const base = "/v1/models/" + encodeURIComponent(model);
  const charts = window.ms.metricsCharts(model);
  const events = window.ms.eventLog({model});
  window.ms.fillNodeList("ev-nodes");
  const rollout = window.ms.rolloutPanel(model, () => refresh.now());
  const scoring = window.ms.scoringPanels(model);
  let view = null;

  const figure = (k, ...val) => el("div", {class: "figure"}, el("div", {class: "k"}, k),
                                   el("div", {class: "val"}, ...val));
  function renderHead(v) {
    const p = v.policy;
    $("#model-badges").replaceChildren(...[
      p.disabled ? badge("disabled", "bad") : badge("enabled", "ok"),
      v.kind === "container" ? badge("container", "info") : null,
      p.pin ? badge("pinned v" + p.pin, "info") : null,
      p.disabled ? null : v.converged ? badge("converged", "ok") : badge("converging", "warn")]
      .filter(Boolean));
    const avail = v.target_versions.map((t) => (v.summary[String(t)] || {}).available || 0);
    const lm = v.last_minute || {};
    $("#figures").replaceChildren(
      figure("Target versions", v.target_versions.length ? join(v.target_versions.map(ver), ", ") : dash()),
      figure("Serving now", (v.serving_versions || []).length ? join(v.serving_versions.map(ver), ", ") : dash()),
      figure("AVAILABLE on", v.target_versions.length
        ? (avail.length ? Math.min(...avail) : 0) + " / " + v.serving_nodes + " nodes" : dash()),
      figure("Converged since", v.converged && v.converged_since ? timeCell(v.converged_since, true)
        : v.converged ? "yes" : dash()),
      figure("Requests/s (last min)", num(lm.rps, 2)),
      figure("Error rate", pct(lm.error_rate)),
      figure("p99", msec(lm.p99_ms)),
      figure("Versions in bucket", String((v.versions_in_bucket || []).length)));
  }

  function renderPolicy(v) {
    const p = v.policy;
    const labels = Object.entries(p.labels || {});
    const labelList = labels.length ? labels.map(([name, target]) => el("div", {class: "label-row"},
      badge(name + " \u2192 v" + target, name in v.labels ? "info" : "warn",
            name in v.labels ? null : "its version is not complete in the bucket"),
      window.ms.admin ? el("button", {type: "button", class: "link act-label-remove", dataset: {label: name},
                                      onclick: () => removeLabel(name)}, "remove") : null)) : dash();
    $("#policy").replaceChildren(
      el("dt", {}, "pin"), el("dd", {}, p.pin ? ver(p.pin) : dash()),
      el("dt", {}, "keep_versions"), el("dd", {}, String(p.keep_versions)),
      el("dt", {}, "disabled"), el("dd", {}, p.disabled ? badge("yes", "bad") : "no"),
      el("dt", {}, "labels"), el("dd", {}, labelList));
  }

  function nodeList(nodes, cls) {
    return nodes.length ? join(nodes.map((n) => el("span", {class: "badge " + cls}, n))) : dash();
  }
  const MANIFEST = {verified: "ok", mismatch: "bad", none: ""};

  // --- who published a version, its description and tags (editable by an admin) ---------------
  let editing = null;  // {v, description, tags}: the version whose notes are being edited
  function publisherCell(r) {
    const p = r.publisher;
    if (!p) return dash();
    return el("span", {class: "publisher", title: p.tool ? "with " + p.tool : null},
              p.user || "?", p.host ? el("span", {class: "muted"}, "@" + p.host) : null);
  }
  const tagsText = (tags) => Object.entries(tags || {}).map(([k, v]) => k + "=" + v).join(", ");
  function notesCell(r) {
    if (editing && editing.v === r.v) return editor(r);
    const tags = Object.entries(r.tags || {});
    const parts = [
      r.description ? el("span", {class: "desc"}, r.description) : null,
      tags.length ? el("span", {class: "tags"}, tags.map(([k, v]) => badge(k + "=" + v, "tag"))) : null,
      r.edited_by ? el("span", {class: "muted small"}, "edited by " + r.edited_by + " ",
                       timeCell(r.edited_at)) : null,
    ].filter(Boolean);
    const edit = window.ms.admin && r.in_bucket
      ? el("button", {type: "button", class: "link edit-notes", dataset: {version: r.v},
                      onclick: () => { editing = {v: r.v, description: r.description || "",
                                                  tags: tagsText(r.tags)}; renderVersions(); }},
           "edit") : null;
    return el("div", {class: "notes"}, parts.length ? parts : dash(), edit ? [" ", edit] : null);
  }
  function editor(r) {
    const desc = el("textarea", {rows: 2, class: "note-description", "aria-label": "description",
                                 placeholder: "what this version is"}, editing.description);
    desc.addEventListener("input", () => { editing.description = desc.value; });
    const tags = el("input", {type: "text", class: "note-tags", value: editing.tags,
                              "aria-label": "tags", placeholder: "key=value, key=value"});
    tags.addEventListener("input", () => { editing.tags = tags.value; });
    const save = el("button", {type: "button", class: "primary save-notes"}, "Save");
    save.addEventListener("click", async () => {
      let body;
      try {
        body = {description: editing.description.trim(),
                tags: Object.fromEntries(window.ms.parseTags(editing.tags))};
      } catch (exc) {
        return result(false, exc.message);
      }
      editing = null;
      await act("Saving the notes of v" + r.v, "Save the description and tags of " + model +
                " v" + r.v + "? They are kept in the bucket's annotations.", "PATCH",
                base + "/versions/" + r.v, body, (d) => "v" + d.version + " notes saved by " +
                d.edited_by);
    });
    const cancel = el("button", {type: "button"}, "Cancel");
    cancel.addEventListener("click", () => { editing = null; renderVersions(); });
    return el("div", {class: "note-editor"}, desc, tags, el("div", {class: "toolbar"}, cancel, save));
  }
  const columns = [
    {key: "version", label: "Version", sort: (r) => Number(r.v), cell: (r) => [ver(r.v),
      Object.entries(view.policy.labels).filter(([, t]) => String(t) === r.v)
        .map(([name]) => [" ", badge(name, "info")]),
      view.policy.pin && String(view.policy.pin) === r.v ? [" ", badge("pinned", "info")] : null,
      r.kind === "container" ? [" ", badge("container", "")] : null]},
    {key: "target", label: "Target", sort: (r) => (r.target ? 1 : 0),
     cell: (r) => (r.target ? badge("target", "ok") : dash())},
    {key: "in_bucket", label: "In bucket", cell: (r) => (r.in_bucket ? "yes" : badge("no", "warn"))},
    {key: "complete", label: "Complete", cell: (r) => (r.complete ? "yes" : badge("no", "warn"))},
    {key: "manifest", label: "Manifest", cell: (r) => (r.manifest
      ? badge(r.manifest, MANIFEST[r.manifest] || "") : dash())},
    {key: "bytes", label: "Size", num: true, sort: (r) => r.bytes,
     cell: (r) => (r.bytes === null || r.bytes === undefined ? dash() : bytes(r.bytes))},
    {key: "published", label: "Published", sort: (r) => r.published_at,
     cell: (r) => (r.published_at ? timeCell(r.published_at) : dash())},
    {key: "publisher", label: "By", sort: (r) => (r.publisher ? r.publisher.user : null),
     cell: publisherCell},
    {key: "notes", label: "Description, tags", cls: "wrap", cell: notesCell},
    {key: "on_disk", label: "On disk", cell: (r) => nodeList(r.on_disk, "")},
    {key: "available", label: "AVAILABLE", cell: (r) => nodeList(r.available, "ok")},
    {key: "failed", label: "Failed", cls: "wrap", cell: (r) => {
      const f = Object.entries(r.failed || {});
      return f.length ? f.map(([n, why]) => el("div", {class: "bad-text"}, el("strong", {}, n), ": ", why)) : dash();
    }},
  ];
  const table = window.ms.table($("#versions"), columns, {
    sort: {key: "version", dir: -1}, empty: "No version anywhere yet.",
    rowData: (r) => ({version: r.v}), rowClass: (r) => (r.target ? "target" : null)});

  function fillSelect(select, versions) {
    if (!select) return;
    const want = versions.map(String).join(",");
    if (select.dataset.versions === want) return;  // keep what the user chose
    const chosen = select.value;
    select.replaceChildren(...versions.map((v) => el("option", {value: String(v)}, "v" + v)));
    if (versions.map(String).includes(chosen)) select.value = chosen;
    select.dataset.versions = want;
  }
  function renderActions(v) {
    if (!window.ms.admin) return;
    const complete = Object.entries(v.versions).filter(([, r]) => r.complete)
      .map(([k]) => Number(k)).sort((a, b) => b - a);
    fillSelect($("#pin-version"), complete);
    fillSelect($("#label-version"), complete);
    $("#act-unpin").disabled = !v.policy.pin;
    $("#act-disable").hidden = v.policy.disabled;
    $("#act-enable").hidden = !v.policy.disabled;
    const keep = $("#keep-versions");
    if (document.activeElement !== keep && !keep.dataset.edited) keep.value = String(v.policy.keep_versions);
  }

  async function load(cluster) {
    const docP = window.ms.get(base);
    const nodesP = window.ms.get("/v1/nodes");
    const [doc] = await Promise.all([docP, charts.load(docP), events.load(), rollout.load(nodesP),
                                     scoring.load(docP, nodesP)]);
    const summary = (cluster && cluster.models && cluster.models[model]) || {};
    view = doc;
    window.ms.data.model = view;
    renderHead(view);
    renderPolicy(view);
    renderActions(view);
    // the model's own (the cluster view's and this view's, which adds its containers'), less
    // the cluster's problems, which the banner shows
    const probs = [...new Set([...(summary.problems || []), ...(doc.problems || [])])]
      .filter((p) => !(cluster && cluster.problems || []).includes(p));
    $("#model-problems").hidden = !probs.length;
    $("#model-problems").replaceChildren(...probs.map((p) => el("li", {}, p)));
    versionRows = Object.entries(doc.versions).map(([v, r]) => ({v, ...r}));
    if (!editing) renderVersions();  // an open editor keeps what is typed over refreshes
  }
  let versionRows = [];
  function renderVersions() { table.rows = versionRows; }
  const refresh = window.ms.autoRefresh(load, 5000);

  // --- actions (admin only: the buttons exist only then) -----------------------------------------
  const {result, act} = window.ms.actions("#action-result", () => refresh.now());
  function removeLabel(name) {
    act("Removing label " + name, "Remove the label \u201c" + name + "\u201d of " + model + "?", "DELETE",
        base + "/labels/" + encodeURIComponent(name), undefined, () => "Label " + name + " removed");
  }
  if (window.ms.admin) {
    const on = (id, fn) => $(id).addEventListener("click", fn);
    on("#act-pin", () => {
      const v = Number($("#pin-version").value);
      if (!v) return result(false, "Choose a complete version to pin.");
      // labels keep their versions serving beside a pin: say so rather than "only v" + v
      const kept = Object.entries(view.policy.labels || {}).filter(([, t]) => t !== v)
        .map(([name, t]) => "v" + t + " (label " + name + ")");
      act("Pinning v" + v, "Pin " + model + " to v" + v + "? Every node will serve v" + v +
          (kept.length ? " and, for its labels, " + kept.join(", ") : " only") + ".",
          "POST", base + "/pin", {version: v}, (d) => "Pinned " + model + " to v" + d.policy.pin +
          "; every node serves " + d.target_versions.map((t) => "v" + t).join(", "));
    });
    on("#act-unpin", () => act("Unpinning", "Unpin " + model + "? The newest versions are served again.",
                               "DELETE", base + "/pin", undefined, () => "Unpinned " + model));
    on("#act-rollback", () => act("Rolling back", "Roll " + model + " back: pin the newest complete version " +
                                  "older than the one served?", "POST", base + "/rollback", undefined,
                                  (d) => "Rolled back: " + model + " pinned to v" + d.policy.pin));
    // a container model's stop scales its Swarm services to 0 (POST …/stop|start); the policy
    // is the same either way
    const toggle = (disabled) => (view && view.kind === "container"
      ? act(disabled ? "Stopping" : "Starting",
        disabled ? "Stop " + model + "? Its containers scale to 0 on every node."
                 : "Start " + model + "? Its containers scale back up.",
        "POST", base + (disabled ? "/stop" : "/start"), undefined,
        (d) => model + (d.policy.disabled ? " stopped" : " started"))
      : act(disabled ? "Disabling" : "Enabling",
        disabled ? "Disable " + model + "? Every node stops serving it." : "Enable " + model + "? Nodes serve it again.",
        "PUT", base + "/policy", {disabled}, (d) => model + (d.policy.disabled ? " disabled" : " enabled")));
    on("#act-disable", () => toggle(true));
    on("#act-enable", () => toggle(false));
    on("#act-label", () => {
      const name = $("#label-name").value.trim();
      const v = Number($("#label-version").value);
      if (!name || !v) return result(false, "Give a label name and choose a version.");
      act("Moving label " + name, "Point the label \u201c" + name + "\u201d of " + model + " at v" + v + "?", "PUT",
          base + "/labels/" + encodeURIComponent(name), {version: v}, () => "Label " + name + " \u2192 v" + v);
    });
    const keep = $("#keep-versions");
    keep.addEventListener("input", () => { keep.dataset.edited = "1"; });
    on("#act-keep", () => {
      const text = keep.value.trim();
      const n = text === "" ? null : Number(text);
      act("Setting keep_versions", n === null ? "Reset keep_versions of " + model + " to the default?"
        : "Keep the newest " + n + " versions of " + model + "?", "PUT", base + "/policy", {keep_versions: n},
      (d) => { delete keep.dataset.edited; return "keep_versions = " + d.policy.keep_versions; });
    });
    on("#act-sync", () => act("Requesting a sync", "Ask every node to sync at its next heartbeat?", "POST",
                              "/v1/sync", undefined, (d) => "Sync requested at " + window.ms.when(d.sync_requested_at) +
                              "; every node syncs at its next heartbeat"));
  }
})();
