/* klingcost burn-down charts, drawn with uPlot (vendor/uPlot.iife.min.js, loaded first).
 *
 * Shared by the live page (/ui) and `klingcost report --format html`. Each chart is drawn from
 * a spec made by klingcost.burndown.chart_spec: amounts arrive as exact decimal strings and
 * are parsed here only to place points; the value axis (its maximum, ticks and labels) is
 * decided by Python, so the labels are exact and grouped by thousands.
 *
 * The used line is a step line: a day's total holds until the next day, so a period's reset
 * is drawn as a drop, not a slope. The limit is a dashed line; the forecast a dashed line from
 * today's total to the limit on the day it runs out.
 */
(function (root) {
  "use strict";
  var COLOURS = { used: "#0072b2", limit: "#d55e00", forecast: "#009e73" };
  var DAY = 86400;

  function seconds(isoDay) {
    return Date.parse(isoDay + "T00:00:00Z") / 1000;
  }

  function groupDigits(text) {
    var sign = text.charAt(0) === "-" ? "-" : "";
    var parts = text.replace(/^-/, "").split(".");
    var whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return sign + whole + (parts.length > 1 ? "." + parts[1] : "");
  }

  function number(text) {
    return text === null || text === undefined ? null : Number(text);
  }

  function label(value, digits) {
    if (value === null || value === undefined) return "–";
    return groupDigits(value.toFixed(digits));
  }

  /* The x values (UTC midnights) and the three series of a spec, on one time axis. */
  function columns(spec) {
    var days = spec.days.slice();
    var used = spec.values.map(number);
    var forecast = days.map(function () { return null; });
    var proj = spec.projection || [];
    if (proj.length === 2) {
      forecast[days.indexOf(proj[0][0])] = number(proj[0][1]);
      days.push(proj[1][0]);
      used.push(null);
      forecast.push(number(proj[1][1]));
    }
    var xs = days.map(seconds);
    var limit = xs.map(function () { return number(spec.limit); });
    return [xs, used, limit, forecast];
  }

  function digitsOf(spec) {
    var all = spec.axis.ticks.concat([spec.limit]).concat(spec.values);
    var most = 0;
    all.forEach(function (t) {
      var dot = t.indexOf(".");
      if (dot >= 0) most = Math.max(most, t.length - dot - 1);
    });
    return most;
  }

  function options(spec, width) {
    var ticks = spec.axis.ticks.map(Number);
    var top = Number(spec.axis.max);
    var digits = digitsOf(spec);
    var widest = Math.max.apply(null, spec.axis.labels.map(function (l) { return l.length; }));
    var show = function (u, v) { return label(v, digits); };
    return {
      width: width,
      height: Math.max(180, Math.min(260, Math.round(width * 0.45))),
      tzDate: function (ts) { return root.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      scales: {
        x: { time: true },
        y: { auto: false, range: function () { return [0, top]; } },
      },
      legend: { live: true },
      series: [
        { label: "day (UTC)", value: "{YYYY}-{MM}-{DD}" },
        {
          label: "used (" + spec.unit + ")",
          stroke: COLOURS.used,
          width: 2,
          fill: "rgba(0,114,178,0.08)",
          paths: root.uPlot.paths.stepped({ align: 1 }),
          value: show,
        },
        { label: "limit", stroke: COLOURS.limit, width: 1.5, dash: [6, 4], points: { show: false }, value: show },
        { label: "forecast", stroke: COLOURS.forecast, width: 2, dash: [3, 3], spanGaps: true, value: show },
      ],
      axes: [
        { space: 70, incrs: [DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY, 91 * DAY] },
        {
          size: 14 + widest * 8,
          splits: function () { return ticks; },
          values: function () { return spec.axis.labels; },
        },
      ],
    };
  }

  function widthOf(element) {
    return Math.max(260, Math.floor(element.getBoundingClientRect().width) || 600);
  }

  /* Draw one chart into `element` (replacing what was there); returns the uPlot object. */
  function draw(element, spec) {
    while (element.firstChild) element.removeChild(element.firstChild);
    var plot = new root.uPlot(options(spec, widthOf(element)), columns(spec), element);
    element.klingcostPlot = plot;
    element.klingcostSpec = JSON.stringify(spec);
    element.setAttribute("data-drawn", "1");
    return plot;
  }

  /* Redraw only when the spec changed (a refresh that changed nothing keeps the chart). */
  function update(element, spec) {
    if (element.klingcostSpec === JSON.stringify(spec)) return element.klingcostPlot;
    if (element.klingcostPlot) element.klingcostPlot.destroy();
    return draw(element, spec);
  }

  function resizeAll() {
    var drawn = document.querySelectorAll("[data-drawn]");
    for (var i = 0; i < drawn.length; i++) {
      var plot = drawn[i].klingcostPlot;
      if (plot) {
        var width = widthOf(drawn[i]);
        plot.setSize({ width: width, height: Math.max(180, Math.min(260, Math.round(width * 0.45))) });
      }
    }
  }

  /* The report's charts: specs in <script type="application/json" id="klingcost-charts">,
   * each drawn into the .plot of the figure whose data-team is the spec's team. */
  function drawEmbedded(doc) {
    var source = doc.getElementById("klingcost-charts");
    if (!source) return;
    var specs = JSON.parse(source.textContent);
    var figures = doc.querySelectorAll("figure.panel");
    for (var i = 0; i < figures.length; i++) {
      var spec = specs[figures[i].getAttribute("data-index")];
      var target = figures[i].querySelector(".plot");
      if (spec && target) draw(target, spec);
    }
  }

  var timer = null;
  root.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(resizeAll, 150);
  });

  root.KlingcostCharts = {
    draw: draw,
    update: update,
    drawEmbedded: drawEmbedded,
    groupDigits: groupDigits,
  };
})(window);
