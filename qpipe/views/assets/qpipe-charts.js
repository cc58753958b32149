/* qpipe charts: turns the JSON chart specs of a qpipe page into uPlot charts.
 * Hover shows the values in each chart's legend; drag across a time chart to zoom (all time
 * charts follow), double-click to zoom back out. Writes data-charts="<drawn>/<total>" and
 * data-chart-errors on <html> so tests can check that everything drew. */
(function () {
  "use strict";
  var root = document.documentElement;
  var payload = JSON.parse(document.getElementById("qpipe-chart-data").textContent);
  // Date axes travel as day numbers (shorter); uPlot wants unix seconds.
  (payload.days || []).forEach(function (name) {
    payload.x[name] = payload.x[name].map(function (d) { return d * 86400; });
  });
  var plots = [];
  var errors = [];
  var syncing = false;

  function pct(v) { return v == null ? "—" : (v * 100).toFixed(2) + "%"; }
  function num(v) {
    if (v == null) return "—";
    var a = Math.abs(v);
    if (a >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    return String(+v.toPrecision(4));
  }
  function day(s) { return s == null ? "—" : new Date(s * 1000).toISOString().slice(0, 10); }
  var FMT = { pct: pct, num: num, ratio: function (v) { return v == null ? "—" : v.toFixed(2); } };

  function axisValues(kind, spec) {
    if (kind === "pct") return function (u, vals) { return vals.map(function (v) { return +(v * 100).toFixed(6) + "%"; }); };
    if (kind === "cat") return function (u, vals) { return vals.map(function (v) { return spec.categories[v] == null ? "" : spec.categories[v]; }); };
    if (kind === "x") return function (u, vals) { return vals.map(function (v) { return String(+(+v).toPrecision(6)); }); };
    return undefined;
  }

  function seriesOpts(s, spec) {
    var o = { label: s.label, stroke: s.color, width: s.width || 1.5, value: function (u, v) { return FMT[spec.y](v); } };
    if (s.dash) o.dash = [6, 4];
    if (s.span) o.spanGaps = true;
    if (s.fill) o.fill = s.fill;
    if (s.kind === "step") o.paths = uPlot.paths.stepped({ align: 1 });
    if (s.kind === "bars") {
      o.paths = uPlot.paths.bars({ size: [s.size || 0.8, 60], align: s.align || 0 });
      o.fill = s.color; o.points = { show: false };
    }
    if (s.kind === "points") { o.paths = function () { return null; }; o.points = { show: true, size: 7, fill: s.color }; }
    return o;
  }

  function options(spec, width) {
    var xv = spec.xkind === "date" ? day : spec.xkind === "cat"
      ? function (u, v) { return spec.categories[v] == null ? "—" : spec.categories[v]; }
      : function (u, v) { return spec.xpct ? pct(v) : num(v); };
    var series = [{ label: spec.xlabel || (spec.xkind === "date" ? "date" : "x"),
                    value: spec.xkind === "date" ? function (u, v) { return day(v); } : xv }];
    spec.series.forEach(function (s) { series.push(seriesOpts(s, spec)); });
    var opts = {
      width: width, height: spec.height, series: series,
      scales: { x: { time: spec.xkind === "date" }, y: spec.log ? { distr: 3 } : {} },
      axes: [
        { values: spec.xkind === "cat" ? axisValues("cat", spec) : spec.xkind === "num" ? axisValues(spec.xpct ? "pct" : "x", spec) : undefined },
        { values: spec.y === "pct" ? axisValues("pct", spec) : undefined, size: 64 }
      ],
      cursor: { drag: { x: spec.zoom, y: false } },
      legend: { live: true }
    };
    var bars = spec.series.some(function (s) { return s.kind === "bars"; });
    if (bars && !spec.log) {  // bars grow from zero: keep 0 on the y axis
      opts.scales.y.range = function (u, min, max) {
        return uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true);
      };
    }
    if (spec.xkind !== "date") opts.scales.x.range = spec.xrange ? function () { return spec.xrange; } : undefined;
    if (spec.sync) {
      opts.cursor.sync = { key: "qpipe-time" };
      opts.hooks = { setScale: [function (u, key) { if (key === "x") follow(u); }] };
    }
    return opts;
  }

  function follow(src) {
    if (syncing) return;
    syncing = true;
    var x = src.scales.x;
    plots.forEach(function (p) {
      if (p.plot !== src && p.spec.sync) p.plot.setScale("x", { min: x.min, max: x.max });
    });
    syncing = false;
  }

  function data(spec) {
    var xs = payload.x[spec.x];
    return [xs].concat(spec.series.map(function (s) { return s.values; }));
  }

  // Read every width first: one layout for the page, not one per chart drawn.
  var els = payload.charts.map(function (spec) { return document.getElementById(spec.id); });
  var widths = els.map(function (el) { return Math.max(el.clientWidth, 320); });
  payload.charts.forEach(function (spec, i) {
    var el = els[i];
    try {
      var plot = new uPlot(options(spec, widths[i]), data(spec), el);
      plots.push({ plot: plot, spec: spec, el: el });
    } catch (e) {
      errors.push(spec.id + ": " + e);
      el.textContent = "chart failed to draw: " + e;
      console.error("qpipe chart " + spec.id + " failed", e);
    }
  });
  window.addEventListener("resize", function () {
    plots.forEach(function (p) { p.plot.setSize({ width: Math.max(p.el.clientWidth, 320), height: p.spec.height }); });
  });
  window.qpipeCharts = plots;  // for a console user (and the browser tests)
  root.setAttribute("data-charts", plots.length + "/" + payload.charts.length);
  root.setAttribute("data-chart-errors", errors.join("; "));
})();
