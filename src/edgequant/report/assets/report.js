/* edgequant report: draws the charts described in the page's JSON block as inline SVG and makes
   tables sortable. No library and no network: the page must open from a file on a laptop with no
   connection, and a chart that cannot be drawn says so in place instead of failing silently. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22"];

  function el(name, attrs, parent, text) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]); }
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function tip(node, text) { if (text) el("title", {}, node, text); }

  // Round tick steps (1, 2, 5 x 10^k) so axes read like a person drew them.
  function ticks(lo, hi, count) {
    if (!(hi > lo)) { return [lo]; }
    var raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = mag;
    [1, 2, 5, 10].forEach(function (m) { if (raw > mag * m * 0.999) { step = mag * m; } });
    if (step < raw) { step *= 2; }
    var out = [], start = Math.ceil(lo / step - 1e-9) * step;
    for (var v = start; v <= hi + step * 1e-9; v += step) { out.push(Math.abs(v) < step * 1e-9 ? 0 : v); }
    return out;
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "-"; }
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) { return v.toExponential(1); }
    return String(Math.round(v * 1000) / 1000);
  }

  function extent(values, padShare) {
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (!(hi > lo)) { var d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    var pad = (hi - lo) * padShare;
    return [lo - pad, hi + pad];
  }

  function linear(d, r) {
    return function (v) { return r[0] + (v - d[0]) / (d[1] - d[0]) * (r[1] - r[0]); };
  }

  function frame(host, width, height) {
    var svg = el("svg", {viewBox: "0 0 " + width + " " + height, width: "100%", role: "img",
                         "aria-label": host.getAttribute("data-title") || "chart"}, host);
    svg.style.maxWidth = width + "px";
    return svg;
  }

  function axes(svg, box, xd, yd, xs, ys, spec) {
    var g = el("g", {"class": "axes"}, svg);
    ticks(yd[0], yd[1], 5).forEach(function (t) {
      var y = ys(t);
      el("line", {x1: box.l, x2: box.r, y1: y, y2: y, "class": "grid"}, g);
      el("text", {x: box.l - 6, y: y + 4, "text-anchor": "end"}, g, fmt(t));
    });
    if (xs) {
      ticks(xd[0], xd[1], 6).forEach(function (t) {
        var x = xs(t);
        el("line", {x1: x, x2: x, y1: box.t, y2: box.b, "class": "grid"}, g);
        el("text", {x: x, y: box.b + 16, "text-anchor": "middle"}, g, fmt(t));
      });
    }
    el("rect", {x: box.l, y: box.t, width: box.r - box.l, height: box.b - box.t, "class": "plot"}, g);
    el("text", {x: (box.l + box.r) / 2, y: box.b + (xs ? 36 : 112), "text-anchor": "middle", "class": "label"}, g,
       spec.x.label);
    el("text", {x: 14, y: (box.t + box.b) / 2, "text-anchor": "middle", "class": "label",
                transform: "rotate(-90 14 " + (box.t + box.b) / 2 + ")"}, g, spec.y.label);
  }

  function legend(host, names) {
    if (!names || names.length < 2) { return; }
    var div = document.createElement("div");
    div.className = "legend";
    names.forEach(function (name, i) {
      var item = document.createElement("span");
      var dot = document.createElement("i");
      dot.style.background = COLORS[i % COLORS.length];
      item.appendChild(dot);
      item.appendChild(document.createTextNode(name));
      div.appendChild(item);
    });
    host.appendChild(div);
  }

  // Metric against size or latency: every variant a point, the float model ringed and labelled, the
  // best (when the source chose one) ringed, and the Pareto front (nothing both smaller/faster and
  // better) joined by a line.
  function scatter(host, spec) {
    var W = 560, H = 340, box = {l: 64, r: W - 16, t: 16, b: H - 48};
    var svg = frame(host, W, H);
    var pts = spec.points;
    var xd = extent(pts.map(function (p) { return p.x; }), 0.06);
    var yd = extent(pts.map(function (p) { return p.y; }), 0.08);
    var xs = linear(xd, [box.l, box.r]), ys = linear(yd, [box.b, box.t]);
    axes(svg, box, xd, yd, xs, ys, spec);
    var front = pts.filter(function (p) { return p.front; }).sort(function (a, b) { return a.x - b.x; });
    if (front.length > 1) {
      var d = front.map(function (p, i) { return (i ? "L" : "M") + xs(p.x).toFixed(1) + "," + ys(p.y).toFixed(1); });
      el("path", {d: d.join(" "), "class": "front"}, svg);
    }
    var marks = 0;
    pts.forEach(function (p) {
      var cls = "mark" + (p.float ? " float" : "") + (p.best ? " best" : "") + (p.front ? " on-front" : "");
      var c = el("circle", {cx: xs(p.x).toFixed(1), cy: ys(p.y).toFixed(1), r: p.float || p.best ? 6 : 4.5,
                            "class": cls, fill: p.float ? "#ffffff" : COLORS[p.group % COLORS.length]}, svg);
      tip(c, p.tip || p.label);
      marks += 1;
    });
    // Labels: float first, then the chosen one, then the front. A label that would overlap one
    // already placed tries a few other heights and is dropped if none is free (the tooltip stays).
    var placed = [];
    function free(x0, y0, w) {
      return placed.every(function (b) { return x0 + w < b[0] || x0 > b[0] + b[2] || y0 < b[1] - 12 || y0 - 12 > b[1]; });
    }
    pts.filter(function (p) { return p.float || p.best || p.tag; })
      .sort(function (a, b) { return (b.float ? 2 : b.best ? 1 : 0) - (a.float ? 2 : a.best ? 1 : 0); })
      .forEach(function (p) {
        var text = p.float ? "float" : (p.best ? "best: " + p.label : p.tag), w = text.length * 6.2;
        var x0 = xs(p.x) + 8;
        if (x0 + w > box.r) { x0 = xs(p.x) - 8 - w; }
        var tries = [-8, 16, -22, 30];
        for (var i = 0; i < tries.length; i++) {
          var y0 = ys(p.y) + tries[i];
          if (free(x0, y0, w)) {
            el("text", {x: x0.toFixed(1), y: y0.toFixed(1), "class": "tag"}, svg, text);
            placed.push([x0, y0, w]);
            return;
          }
        }
      });
    legend(host, spec.groups);
    return marks;
  }

  // One line per series over the layers in graph order (SQNR by layer).
  function layers(host, spec) {
    var n = spec.categories.length, W = Math.max(560, Math.min(1100, 80 + n * 16)), H = 420;
    var box = {l: 64, r: W - 16, t: 16, b: H - 128};
    var svg = frame(host, W, H);
    var all = [];
    spec.series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) { all.push(v); } }); });
    var yd = extent(all, 0.08);
    var ys = linear(yd, [box.b, box.t]);
    var xs = function (i) { return n === 1 ? (box.l + box.r) / 2 : box.l + 10 + i * (box.r - box.l - 20) / (n - 1); };
    axes(svg, box, null, yd, null, ys, spec);
    // Layer names under the axis, slanted; on long graphs every k-th so they stay readable.
    var every = Math.max(1, Math.ceil(n / 60));
    spec.categories.forEach(function (name, i) {
      if (i % every) { return; }
      var x = xs(i), y = box.b + 10;
      el("text", {x: x, y: y, "text-anchor": "end", "class": "cat", transform: "rotate(-45 " + x + " " + y + ")"}, svg,
         name.length > 18 ? name.slice(0, 17) + "\u2026" : name);
    });
    var marks = 0;
    spec.series.forEach(function (s, si) {
      var color = COLORS[si % COLORS.length], d = [], pen = "M";
      s.values.forEach(function (v, i) {
        if (v === null) { pen = "M"; return; }
        d.push(pen + xs(i).toFixed(1) + "," + ys(v).toFixed(1));
        pen = "L";
      });
      if (d.length > 1) { el("path", {d: d.join(" "), "class": "series", stroke: color}, svg); }
      s.values.forEach(function (v, i) {
        if (v === null) { return; }
        var c = el("circle", {cx: xs(i).toFixed(1), cy: ys(v).toFixed(1), r: 3, fill: color, "class": "mark"}, svg);
        tip(c, spec.categories[i] + "\n" + s.name + ": " + fmt(v) + " " + (spec.y.unit || ""));
        marks += 1;
      });
    });
    legend(host, spec.series.map(function (s) { return s.name; }));
    return marks;
  }

  // One row per layer: the float activation range and the range the quantized tensor can hold,
  // as bars on one axis, so a clipped or wasted range shows at a glance.
  function ranges(host, spec) {
    var n = spec.categories.length, rows = spec.series.length, band = 6 + rows * 7;
    var W = 640, H = 24 + 48 + n * band, box = {l: 180, r: W - 16, t: 16, b: H - 48};
    var svg = frame(host, W, H);
    var all = [];
    spec.series.forEach(function (s) { s.spans.forEach(function (sp) { if (sp) { all.push(sp[0], sp[1]); } }); });
    var xd = extent(all, 0.04), xs = linear(xd, [box.l, box.r]);
    var g = el("g", {"class": "axes"}, svg);
    ticks(xd[0], xd[1], 6).forEach(function (t) {
      el("line", {x1: xs(t), x2: xs(t), y1: box.t, y2: box.b, "class": "grid"}, g);
      el("text", {x: xs(t), y: box.b + 16, "text-anchor": "middle"}, g, fmt(t));
    });
    el("text", {x: (box.l + box.r) / 2, y: box.b + 36, "text-anchor": "middle", "class": "label"}, g, spec.x.label);
    var marks = 0;
    spec.categories.forEach(function (name, i) {
      var y0 = box.t + 4 + i * band;
      el("text", {x: box.l - 6, y: y0 + band / 2 + 2, "text-anchor": "end", "class": "cat"}, svg,
         name.length > 26 ? name.slice(0, 25) + "\u2026" : name);
      spec.series.forEach(function (s, si) {
        var sp = s.spans[i];
        if (!sp) { return; }
        var x0 = xs(sp[0]), x1 = xs(sp[1]);
        var r = el("rect", {x: Math.min(x0, x1).toFixed(1), y: y0 + si * 7, height: 5,
                            width: Math.max(1, Math.abs(x1 - x0)).toFixed(1), fill: COLORS[si % COLORS.length],
                            "class": "mark"}, svg);
        tip(r, name + "\n" + s.name + ": " + fmt(sp[0]) + " .. " + fmt(sp[1]));
        marks += 1;
      });
    });
    legend(host, spec.series.map(function (s) { return s.name; }));
    return marks;
  }

  var DRAW = {scatter: scatter, layers: layers, ranges: ranges};

  function drawAll(charts) {
    charts.forEach(function (spec) {
      var host = document.getElementById(spec.id);
      if (!host) { return; }
      var draw = DRAW[spec.kind];
      if (!draw) {
        host.textContent = "unknown chart kind: " + spec.kind;
        host.setAttribute("data-marks", "0");
        return;
      }
      host.setAttribute("data-marks", String(draw(host, spec)));
    });
  }

  function sortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        function key(row) {
          var cell = row.cells[col], v = cell ? cell.getAttribute("data-v") : null;
          if (v === null) { v = cell ? cell.textContent : ""; }
          var num = parseFloat(v);
          return v !== "" && isFinite(num) && String(num) === String(Number(v)) ? num : v.toLowerCase();
        }
        rows.sort(function (a, b) {
          var ka = key(a), kb = key(b);
          // Empty cells (not measured) sort last whichever way.
          if (ka === "" || ka === "-") { return 1; }
          if (kb === "" || kb === "-") { return -1; }
          if (typeof ka === typeof kb) { return (ka < kb ? -1 : ka > kb ? 1 : 0) * (asc ? 1 : -1); }
          return (typeof ka === "number" ? -1 : 1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  var block = document.getElementById("eq-data");
  var data = JSON.parse(block.textContent);
  drawAll(data.charts);
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), sortable);
  document.body.setAttribute("data-ready", "1");
})();
