/* modelsync console: a model's request telemetry as two uPlot charts (latency p50/p99, and
 * requests and errors per second), over 15 min, 1 h, 24 h or 7 d; per version when two serve.
 * Times on the axis are 24-hour, like the rest of the console; the legends name the versions
 * serving now; the charts follow their box's width (a phone, a resized window). */
"use strict";

window.ms.metricsCharts = function metricsCharts(model) {
  const {$, num, pct, msec} = window.ms;
  const COLORS = ["#1f5fd1", "#e8590c", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285"];
  const ERR = "#c92a2a";
  const RANGES = {"15m": "15 min", "1h": "1 h", "24h": "24 h", "7d": "7 d"};
  let since = "15m";
  let charts = {latency: null, rate: null};
  let layout = "";
  let serving = [];  // the versions serving now (the model's view): named in the legends

  function seriesOf(doc) {
    const step = doc.step;
    const pts = doc.series || [];
    const versions = [...new Set(pts.flatMap((p) => Object.keys(p.by_version || {})))]
      .sort((a, b) => Number(a) - Number(b));
    const perVersion = versions.length >= 2;  // one version: the whole is that version
    const byV = (p, v, f) => (p.by_version && p.by_version[v] ? f(p.by_version[v]) : null);
    const now = serving.length ? " (" + serving.map((v) => "v" + v).join(", ") + ")" : "";
    const latency = [
      {label: "p50" + now, color: COLORS[0], data: pts.map((p) => p.p50_ms)},
      {label: "p99" + now, color: COLORS[1], data: pts.map((p) => p.p99_ms)}];
    // per second over the time a point covers: the last one (this minute) is not over yet
    const span = (p) => Math.min(step, (doc.until || p.t + step) - p.t);
    const perS = (p, n) => (span(p) >= 10 ? n / span(p) : null);
    const rate = [
      {label: "requests/s" + now, color: COLORS[0], data: pts.map((p) => perS(p, p.requests))},
      {label: "errors/s" + now, color: ERR, scale: "err", fill: "rgba(201, 42, 42, 0.08)",
       data: pts.map((p) => perS(p, p.errors))}];
    if (perVersion) {
      versions.forEach((v, i) => {
        const color = COLORS[(i + 2) % COLORS.length];
        latency.push({label: "p99 v" + v, color, dash: [5, 3], data: pts.map((p) => byV(p, v, (f) => f.p99_ms))});
        rate.push({label: "req/s v" + v, color, dash: [5, 3],
                   data: pts.map((p) => byV(p, v, (f) => perS(p, f.requests)))});
      });
    }
    return {t: pts.map((p) => p.t), latency, rate,
            key: since + "|" + versions.join(",") + "|" + perVersion + "|" + serving.join(",")};
  }

  const showPoints = (u, si) => u.data[si].filter((v) => v !== null && v !== undefined).length <= 60;
  const axis = {stroke: "#667085", grid: {stroke: "#eef1f4", width: 1}, ticks: {stroke: "#dfe3e8", width: 1}};

  /** The time axis in 24-hour clock: HH:MM (with seconds under a minute's steps, the date
   * where a day starts or for steps of days). */
  function timeTicks(u, splits, axisIdx, space, incr) {
    const pad = (n) => String(n).padStart(2, "0");
    const span = splits.length ? splits[splits.length - 1] - splits[0] : 0;
    return splits.map((t, i) => {
      const d = new Date(t * 1000);
      const day = pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      if (incr >= 86400) return day;
      let hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
      if (incr < 60) hm += ":" + pad(d.getSeconds());
      const dayStarts = d.getHours() === 0 && d.getMinutes() === 0;
      return span > 86400 && (i === 0 || dayStarts) ? day + " " + hm : hm;
    });
  }

  function options(width, series, fmt, errAxis) {
    const axes = [{...axis, values: timeTicks},
                  {...axis, size: 58, values: (u, vals) => vals.map((v) => fmt(v))}];
    const scales = {x: {time: true}, y: {range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1]}};
    if (errAxis) {
      scales.err = {range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1]};
      axes.push({...axis, scale: "err", side: 1, size: 52, grid: {show: false},
                 stroke: ERR, values: (u, vals) => vals.map((v) => num(v, 3))});
    }
    return {
      width, height: 210, scales, axes,
      legend: {live: true},
      cursor: {drag: {x: false, y: false}},
      series: [{value: (u, v) => (v === null ? "\u2014" : window.ms.when(v))},
        ...series.map((s) => ({label: s.label, stroke: s.color, fill: s.fill, width: 1.6, dash: s.dash,
                              scale: s.scale || "y", spanGaps: false,
                              points: {show: showPoints, size: 5, fill: s.color},
                              value: (u, v) => (v === null || v === undefined ? "\u2014" : fmt(v))}))],
    };
  }

  const widthOf = (box) => Math.max(160, box.clientWidth);
  function draw(doc) {
    const s = seriesOf(doc);
    const boxes = {latency: $("#chart-latency"), rate: $("#chart-rate")};
    const data = {latency: [s.t, ...s.latency.map((x) => x.data)], rate: [s.t, ...s.rate.map((x) => x.data)]};
    if (s.key === layout && charts.latency && charts.rate) {
      charts.latency.setData(data.latency);
      charts.rate.setData(data.rate);
      return;
    }
    for (const c of Object.values(charts)) if (c) c.destroy();
    layout = s.key;
    charts = {
      latency: new uPlot(options(widthOf(boxes.latency), s.latency, (v) => num(v, v < 10 ? 2 : 0) + " ms", false),
                         data.latency, boxes.latency),
      rate: new uPlot(options(widthOf(boxes.rate), s.rate, (v) => num(v, v < 10 ? 2 : 0), true),
                      data.rate, boxes.rate),
    };
    window.ms.charts = charts;
  }

  function summary(doc) {
    const t = doc.total || {};
    const parts = [RANGES[since] + ": " + num(t.requests, 0) + " requests", pct(t.error_rate) + " errors",
                   "p50 " + msec(t.p50_ms), "p99 " + msec(t.p99_ms)];
    if (t.errors_by_code && Object.keys(t.errors_by_code).length) {
      parts.push(Object.entries(t.errors_by_code).map(([c, n]) => c + " \u00d7" + n).join(", "));
    }
    $("#metrics-total").textContent = parts.join(" \u00b7 ");
  }

  /** `view`: the model's view (a promise of it), for the versions serving now. */
  async function load(view) {
    const [doc, v] = await Promise.all([
      window.ms.get("/v1/models/" + encodeURIComponent(model) + "/metrics?since=" +
                    encodeURIComponent(since)), view]);
    if (v) serving = v.serving_versions || [];
    window.ms.data.metrics = doc;
    summary(doc);
    draw(doc);
  }

  for (const b of document.querySelectorAll("#range button")) {
    b.addEventListener("click", () => {
      since = b.dataset.since;
      for (const o of document.querySelectorAll("#range button")) o.classList.toggle("on", o === b);
      load().catch((exc) => window.ms.setPageProblem(exc.message));
    });
  }
  // the charts follow their box: a window resized, a phone turned, the layout reflowed
  let resizeFrame = null;
  function fit() {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => {
      for (const [key, id] of [["latency", "#chart-latency"], ["rate", "#chart-rate"]]) {
        const c = charts[key];
        const width = widthOf($(id));
        if (c && Math.abs(c.width - width) > 1) c.setSize({width, height: 210});
      }
    });
  }
  window.addEventListener("resize", fit);
  if (window.ResizeObserver) new ResizeObserver(fit).observe($(".charts"));
  return {load, get since() { return since; }};
};
