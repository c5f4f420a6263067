/* modelsync console: a model's staged rollout (GET /v1/models/<m>/rollout): the stages as a
 * progress bar, how many live serving nodes are on the new version, the status and why, the
 * bake countdown (ticking every second), what the stage is judged on (the controller's last
 * judgement: its source, window, requests per side, "waiting for traffic" when it is, the new
 * version against the baseline by status class and latency, each check), the history, the
 * rejected versions, and (admin only: the controls exist only then) pause / resume / promote /
 * abort, clearing a rejection and the spec form, each confirmed first. */
"use strict";

window.ms.rolloutPanel = function rolloutPanel(model, refreshPage) {
  const {el, $, badge, dash, ver, timeCell, num, pct, msec, DASH} = window.ms;
  const base = "/v1/models/" + encodeURIComponent(model);
  const STATUS = {idle: "", validating: "info", baking: "info", paused: "warn", complete: "ok",
                  rolled_back: "bad"};
  const WHAT = {
    idle: "no rollout yet",
    validating: "the stage's nodes are loading the new version",
    baking: "the stage's nodes serve the new version; its figures are watched",
    paused: "paused by an operator: nothing moves until it is resumed",
    complete: "every node serves the new version",
    rolled_back: "rolled back: every node is back on the previous version"};
  const VERDICT = {healthy: "ok", breach: "bad", waiting: "warn", "warming up": "info"};
  const CHECK = {pass: "ok", breach: "bad", unjudged: ""};
  const SOURCE = {  // what each source is (master/rollout_judge.py)
    versions: "per-version figures of the nodes' servers",
    gateway: "per-version figures of the nodes' gateways",
    "node groups": "the stage's nodes against the other nodes (model-level figures)",
    "no figures": "the stage's nodes have reported no request yet"};
  let doc = null;
  let bakeEnd = null;  // Date.now() / 1000 when the bake ends (from bake_remaining_s)

  // --- formats -----------------------------------------------------------------------------------
  function clock(s) {
    const t = Math.max(0, Math.round(s));
    const h = Math.floor(t / 3600);
    const m = Math.floor((t % 3600) / 60);
    const sec = String(t % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + sec : m + ":" + sec;
  }
  const rate = (f) => (f && f.requests ? f.errors / f.requests : null);
  function stageSize(spec, stage, live) {  // as modelsync.rollout.stage_size
    if (!spec || live <= 0) return null;
    const canary = Math.min(spec.canary_nodes, live);
    if (stage <= 0) return canary;
    const wave = spec.waves[Math.min(stage, spec.waves.length) - 1];
    return Math.max(canary, Math.min(live, Math.ceil(wave * live - 1e-9)));
  }
  const stageName = (spec, i) => (i === 0 ? "canary"
    : "wave " + i + (spec ? " \u00b7 " + Math.round(spec.waves[i - 1] * 100) + " %" : ""));

  // --- the panel ---------------------------------------------------------------------------------
  function renderStages(r, liveIds) {
    const live = liveIds.length;
    const bar = $("#rollout-stages");
    const n = r.stages || (r.spec ? 1 + r.spec.waves.length : 0);
    const active = ["validating", "baking", "paused"].includes(r.status);
    bar.dataset.stage = r.status === "idle" ? "" : String(r.stage);
    bar.dataset.stages = String(n);
    bar.replaceChildren(...Array.from({length: n}, (_, i) => {
      const state = r.status === "complete" || i < r.stage ? "done"
        : i === r.stage && active ? "current" : i === r.stage && r.status === "rolled_back" ? "failed"
        : "todo";
      const size = stageSize(r.spec, i, live);
      return el("div", {class: "stage " + state, dataset: {stage: String(i), state},
                        title: state === "current" ? "the rollout is here" : null},
                el("span", {class: "name"}, stageName(r.spec, i)),
                el("span", {class: "size"}, size === null ? "" : size + (size === 1 ? " node" : " nodes")));
    }));
    const members = active ? r.nodes_on_version || [] : [];
    const gone = members.filter((n) => !liveIds.includes(n));  // kept in the stage, not live now
    const on = r.status === "complete" ? live : members.length - gone.length;
    const fill = live ? Math.min(100, (100 * on) / live) : 0;
    const fillBar = el("div", {class: "fill"});
    fillBar.style.width = fill.toFixed(1) + "%";  // CSSOM: the CSP allows no style attribute
    $("#rollout-nodes").replaceChildren(el("div", {class: "nodes-line"},
      el("div", {class: "nodebar"}, fillBar),
      el("span", {id: "rollout-nodes-text", dataset: {on: String(on), live: String(live)}},
         r.version ? on + " of " + live + " live serving node" + (live === 1 ? "" : "s") + " on v" + r.version
           : live + " live serving node" + (live === 1 ? "" : "s")),
      on && members.length ? el("span", {class: "muted small"}, " (" + members.filter((n) => !gone.includes(n))
        .join(", ") + ")") : null,
      gone.length ? el("span", {class: "warn-text small"}, " and " + gone.join(", ") + " not live") : null));
  }

  function renderJudgement(r) {
    const box = $("#rollout-figures");
    const j = r.judgement;
    const active = ["validating", "baking", "paused"].includes(r.status);
    box.hidden = !active;
    if (!active) return box.replaceChildren();
    if (!j) {
      box.dataset.verdict = "";
      return box.replaceChildren(el("p", {id: "rollout-judged", class: "muted"}, r.status === "validating"
        ? "Not judged yet: the stage's nodes are loading the new version."
        : "Not judged yet: the controller judges the stage at its next round."));
    }
    box.dataset.verdict = j.verdict;
    const limits = r.spec_effective || {};
    const seconds = j.window ? j.window.seconds : 0;
    const head = el("p", {id: "rollout-judged", dataset: {verdict: j.verdict, source: j.source || ""}},
      badge(j.verdict, VERDICT[j.verdict] || ""), " Stage " + j.stage + " judged on ",
      j.source ? el("strong", {id: "rollout-source", title: SOURCE[j.source] || ""}, j.source) : "nothing yet",
      j.source ? el("span", {class: "muted"}, " (" + SOURCE[j.source] + ")") : null,
      " · window ", el("span", {id: "rollout-window"}, num(seconds, 0) + " s"),
      " since ", timeCell(j.window.start, true), " · ",
      el("span", {id: "rollout-counts", dataset: {new: String(j.requests.new), needed: String(j.requests.needed),
                                                   baseline: String(j.requests.baseline)}},
         "v" + j.version + ": " + num(j.requests.new, 0) + " requests (" + num(j.requests.needed, 0) +
         " needed) against " + num(j.requests.baseline, 0) + " of the baseline"));
    const waiting = j.verdict === "waiting" || j.verdict === "warming up";
    const hold = waiting ? el("p", {id: "rollout-waiting", class: "waiting", dataset: {verdict: j.verdict}},
      j.reason, r.waiting && limits.max_wait_s !== undefined
        ? el("span", {class: "small"}, " · the stage holds; " + (limits.on_insufficient === "promote"
          ? "promoted" : "paused") + " " + num(limits.max_wait_s, 0) + " s after it began baking unless judged")
        : null) : null;
    const share = j.source === "node groups" ? el("p", {id: "rollout-dilution", class: "small"},
      "Share of the stage's requests that were for other versions: ",
      el("strong", {}, j.other_share === null ? "unknown" : pct(j.other_share)),
      j.other_share === null ? " (nothing tells versions apart on these nodes: the comparison is diluted by " +
        "whatever else they serve)" : "") : null;
    const sides = [["new", "new", j.version, j.nodes.new], ["baseline", "baseline", j.previous, j.nodes.baseline]];
    const cell = (side, value, bad) => el("td", {class: "num" + (bad ? " bad-text" : ""), dataset: {side}}, value);
    const checkOf = (name) => (j.checks || []).find((c) => c.name === name);
    const breach = (name) => { const c = checkOf(name); return !!c && c.verdict === "breach"; };
    const row = (label, key, value, check) => el("tr", {dataset: {row: key}}, el("th", {}, label),
      sides.map(([k]) => cell(k, j[k] ? value(j[k]) : DASH, k === "new" && check && breach(check))));
    const rate = (n, r2) => num(n, 0) + " · " + pct(r2);
    const table = j.new ? el("table", {class: "compare"}, el("thead", {}, el("tr", {},
      el("th", {}, "over the window"), sides.map(([k, label, v, nodes]) => el("th", {class: "num", dataset: {side: k},
        title: nodes && nodes.length ? "nodes: " + nodes.join(", ") : null}, label, v ? [" ", ver(v)] : null,
        el("span", {class: "muted small"}, " · " + (nodes ? nodes.length : 0) + " node" +
          (nodes && nodes.length === 1 ? "" : "s")))))),
      el("tbody", {},
        row("Requests", "requests", (x) => num(x.requests, 0)),
        row("Server errors", "server_errors", (x) => rate(x.server_errors, x.server_error_rate), "server_errors"),
        row("Client errors", "client_errors", (x) => rate(x.client_errors, x.client_error_rate), "client_errors"),
        row("p50", "p50", (x) => msec(x.p50_ms), "latency"),
        row("p99", "p99", (x) => msec(x.p99_ms), "latency"))) : null;
    const checks = (j.checks || []).length ? el("ul", {id: "rollout-checks", class: "checks"}, j.checks.map((c) =>
      el("li", {dataset: {check: c.name, verdict: c.verdict}}, badge(c.verdict, CHECK[c.verdict] || ""), " ",
         el("strong", {}, c.name.replace("_", " ")), " ", el("span", {class: "muted"}, c.detail)))) : null;
    const tolerances = el("p", {id: "rollout-limits", class: "muted small"},
      "against the baseline, by status class: server errors may rise " + pct(limits.max_error_rate) +
      ", client errors " + pct(limits.max_client_error_increase) + " (Newcombe's bound at " +
      pct(limits.confidence) + "); latency may be " + num(limits.max_p99_ratio) + "× at the tail quantile " +
      "the samples support (and Mann–Whitney significant); judged from " + num(limits.min_requests, 0) +
      " requests a side, " + num(limits.warmup_s, 1) + " s after the stage's nodes all served it");
    box.replaceChildren(...[head, hold, share, table, checks, tolerances].filter(Boolean));
  }

  function renderHistory(r) {
    const rows = (r.history || []).slice().reverse();
    $("#rollout-history").replaceChildren(
      el("thead", {}, el("tr", {}, ["At", "Status", "Stage", "Nodes", "Why"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows.map((h) => el("tr", {dataset: {status: h.status}},
        el("td", {}, timeCell(h.at)), el("td", {}, badge(h.status, STATUS[h.status] || "")),
        el("td", {class: "num"}, String(h.stage)), el("td", {class: "num"}, String(h.nodes)),
        el("td", {class: "wrap"}, h.reason || "")))
        : el("tr", {}, el("td", {class: "empty", colspan: 5}, "No rollout step yet."))));
  }

  function renderRejected(r) {
    const rejected = r.rejected || [];
    $("#rollout-rejected").replaceChildren(...(rejected.length ? rejected.map((v) =>
      el("span", {class: "rejected", dataset: {version: String(v)}}, badge("v" + v, "bad",
        "never served until an operator clears it"),
      window.ms.admin ? el("button", {type: "button", class: "link act-unreject", dataset: {version: String(v)},
                                      onclick: () => unreject(v)}, "clear") : null)) : [dash()]));
  }

  function specText(spec, from) {
    if (!spec) return "none: a new version goes to every node at once";
    const derived = (v, what) => (v === null || v === undefined ? what : num(v, 1) + " s");
    return (from === "defaults" ? "from the defaults: " : "") + "canary " + spec.canary_nodes +
      (spec.canary_nodes === 1 ? " node" : " nodes") + ", waves " +
      spec.waves.map((w) => Math.round(w * 100) + " %").join(", ") + ", bake " + num(spec.bake_s, 1) + " s" +
      ", warmup " + derived(spec.warmup_s, "bake/10 ≤ 30 s") +
      ", server errors +" + pct(spec.max_error_rate) +
      (spec.max_client_error_increase !== undefined ? ", client errors +" + pct(spec.max_client_error_increase) : "") +
      ", latency ×" + num(spec.max_p99_ratio) + ", min requests " + num(spec.min_requests, 0) +
      ", max wait " + derived(spec.max_wait_s, "4 × bake") +
      (spec.on_insufficient ? " then " + spec.on_insufficient : "");
  }

  function tick() {
    const box = $("#rollout-countdown");
    if (!doc || !["baking", "paused"].includes(doc.status) || (doc.status === "baking" && bakeEnd === null)) {
      box.hidden = true;
      delete box.dataset.remaining;
      return;
    }
    box.hidden = false;
    if (doc.status === "paused") {
      box.dataset.remaining = "";
      box.textContent = "paused" + (doc.paused_status ? " while " + doc.paused_status : "") +
        ": the bake starts over when resumed";
      return;
    }
    const left = Math.max(0, bakeEnd - Date.now() / 1000);
    box.dataset.remaining = String(Math.round(left));
    box.textContent = left > 0 ? "baking: " + clock(left) + " left of " + clock(doc.spec ? doc.spec.bake_s : 0)
      : "bake over: the next stage starts at the controller's next round";
  }
  setInterval(tick, 1000);

  function render(r, live) {
    doc = r;
    bakeEnd = r.bake_remaining_s === null || r.bake_remaining_s === undefined ? null
      : Date.now() / 1000 + r.bake_remaining_s;
    const status = $("#rollout-status");
    status.replaceChildren(badge(r.status.replace("_", " "), STATUS[r.status] || ""));
    status.dataset.status = r.status;
    $("#rollout-versions").replaceChildren(...(r.version ? [ver(r.version),
      r.previous ? el("span", {class: "muted"}, " after ", ver(r.previous)) : ""] : []));
    $("#rollout-spec").textContent = specText(r.spec_effective || r.spec, r.spec_from);
    const orphan = r.status !== "idle" && !r.spec;  // a state left behind (a hand-edited policy)
    $("#rollout-what").textContent = orphan ? "no rollout spec: this state (" +
      r.status.replace("_", " ") + ") steers no node, every node serves the target at once; " +
      "set a spec to stage the next version" : WHAT[r.status] || "";
    $("#rollout-what").classList.toggle("warn-text", orphan);
    $("#rollout-reason").textContent = r.reason || "";
    $("#rollout-started").replaceChildren(...(r.started_at ? [el("span", {}, "started ", timeCell(r.started_at, true),
      r.stage_started_at ? [" \u00b7 this stage since ", timeCell(r.stage_started_at, true)] : null)] : []));
    $("#rollout").classList.toggle("idle", r.status === "idle");
    renderStages(r, live);
    renderJudgement(r);
    renderHistory(r);
    renderRejected(r);
    tick();
    if (window.ms.admin) renderControls(r);
  }

  async function load(nodesP) {
    const [r, nodes] = await Promise.all([window.ms.get(base + "/rollout"), nodesP]);
    const live = nodes.nodes.filter((n) => n.roles.config_manager && n.roles.config_manager.state === "live")
      .map((n) => n.node_id);
    window.ms.data.rollout = r;
    render(r, live);
  }

  // --- admin: the operator's hands ---------------------------------------------------------------
  const {result, act} = window.ms.actions("#rollout-result", refreshPage);
  function unreject(v) {
    act("Clearing v" + v, "Clear the rejection of " + model + " v" + v + "? It may be served again " +
        "(a staged rollout of it starts over).", "DELETE", base + "/rejected/" + v, undefined,
        () => "v" + v + " is no longer rejected");
  }
  const ACTIONS = {
    pause: (r) => "Pause the rollout of " + model + " v" + r.version + "? It stays where it is until resumed.",
    resume: (r) => "Resume the rollout of " + model + " v" + r.version + "? The bake of this stage starts over.",
    promote: (r) => (r.stage >= (r.stages || 1) - 1 ? "Complete the rollout of " + model + " v" + r.version +
      " now?" : "Promote " + model + " v" + r.version + " to stage " + (r.stage + 1) +
      " now, skipping the rest of this stage's bake?"),
    abort: (r) => "Abort the rollout of " + model + " v" + r.version + "? Every node goes back to " +
      (r.previous ? "v" + r.previous : "the previous version") + ", and v" + r.version +
      " is rejected until an operator clears it."};
  const DONE = {pause: "paused", resume: "resumed", promote: "promoted", abort: "aborted"};
  function renderControls(r) {
    // without a spec the API refuses every action (409): no button then
    const active = ["validating", "baking", "paused"].includes(r.status) && !!r.spec;
    $("#ro-pause").disabled = !active || r.status === "paused";
    $("#ro-resume").disabled = !active || r.status !== "paused";
    $("#ro-promote").disabled = !active;
    $("#ro-abort").disabled = !active;
    $("#ro-spec-remove").disabled = r.spec_from !== "model";
    const form = $("#rollout-spec-form");
    if (form.dataset.edited || form.contains(document.activeElement)) return;
    const spec = r.spec || {};
    const defaults = r.spec_defaults || {};
    const put = (id, v) => { $(id).value = v === undefined || v === null ? "" : String(v); };
    const DERIVED = {warmup_s: "bake/10", max_wait_s: "4×bake"};  // None in spec_defaults
    for (const [id, key] of FORM) {  // an empty field means the API's default: shown as such
      const d = defaults[key];
      $(id).placeholder = d === undefined ? "" : d === null ? DERIVED[key] || "" : Array.isArray(d) ? d.join(", ")
        : String(d);
    }
    put("#ro-canary", spec.canary_nodes);
    put("#ro-waves", spec.waves ? spec.waves.join(", ") : "");
    put("#ro-bake", spec.bake_s);
    put("#ro-max-error", spec.max_error_rate);
    put("#ro-max-p99", spec.max_p99_ratio);
    put("#ro-min-requests", spec.min_requests);
    put("#ro-max-client", spec.max_client_error_increase);
    put("#ro-warmup", spec.warmup_s);
    put("#ro-max-wait", spec.max_wait_s);
    put("#ro-on-insufficient", spec.on_insufficient);
  }
  const FORM = [["#ro-canary", "canary_nodes"], ["#ro-waves", "waves"], ["#ro-bake", "bake_s"],
                ["#ro-max-error", "max_error_rate"], ["#ro-max-p99", "max_p99_ratio"],
                ["#ro-min-requests", "min_requests"], ["#ro-max-client", "max_client_error_increase"],
                ["#ro-warmup", "warmup_s"], ["#ro-max-wait", "max_wait_s"]];
  function specFromForm() {
    const spec = {};
    const fields = [["canary_nodes", "#ro-canary", true], ["bake_s", "#ro-bake", false],
                    ["max_error_rate", "#ro-max-error", false], ["max_p99_ratio", "#ro-max-p99", false],
                    ["min_requests", "#ro-min-requests", true],
                    ["max_client_error_increase", "#ro-max-client", false], ["warmup_s", "#ro-warmup", false],
                    ["max_wait_s", "#ro-max-wait", false]];
    for (const [key, id, integer] of fields) {
      const text = $(id).value.trim();
      if (text === "") continue;  // the API's default
      const x = Number(text);
      if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) {
        throw new Error(key + ": expected " + (integer ? "an integer" : "a number") + ", got \u201c" + text + "\u201d");
      }
      spec[key] = x;
    }
    const insufficient = $("#ro-on-insufficient").value;
    if (insufficient !== "") spec.on_insufficient = insufficient;
    const waves = $("#ro-waves").value.trim();
    if (waves !== "") {
      spec.waves = waves.split(",").map((w) => w.trim()).filter(Boolean).map((w) => {
        const x = Number(w);
        if (!Number.isFinite(x)) throw new Error("waves: \u201c" + w + "\u201d is not a number");
        return x;
      });
    }
    return spec;
  }
  if (window.ms.admin) {
    for (const action of Object.keys(ACTIONS)) {
      $("#ro-" + action).addEventListener("click", () => {
        if (!doc) return;
        const v = doc.version;
        act(action[0].toUpperCase() + action.slice(1) + " of v" + v, ACTIONS[action](doc), "POST",
            base + "/rollout/" + action, undefined, () => "Rollout of " + model + " v" + v + " " + DONE[action]);
      });
    }
    const form = $("#rollout-spec-form");
    form.addEventListener("input", () => { form.dataset.edited = "1"; });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      let spec;
      try {
        spec = specFromForm();
      } catch (exc) {
        return result(false, "Not sent: " + exc.message);
      }
      act("Setting the rollout spec", "Set the staged rollout spec of " + model + "?\n" +
          specText({...(doc ? doc.spec_defaults : {}), ...spec}, "model"), "PUT", base + "/rollout", spec,
      () => { delete form.dataset.edited; return "Rollout spec of " + model + " set"; });
    });
    $("#ro-spec-remove").addEventListener("click", () => act("Removing the rollout spec",
      "Remove the staged rollout spec of " + model + "? New versions then go by the defaults' spec, " +
      "or to every node at once.", "DELETE", base + "/rollout", undefined,
      () => { delete form.dataset.edited; return "Rollout spec of " + model + " removed"; }));
  }
  return {load, get doc() { return doc; }};
};

