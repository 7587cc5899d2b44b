/* The live page of klingcost (/ui): reads data.json every few seconds and redraws in place.
 *
 * Everything from the ledger is set as text (textContent), never as HTML: a team or a model
 * named like markup stays inert. Nothing is fetched but data.json, from the same server.
 */
(function () {
  "use strict";
  var body = document.body;
  var source = body.getAttribute("data-src");
  var every = Number(body.getAttribute("data-refresh")) || 5;
  var group = window.KlingcostCharts.groupDigits;
  var last = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs.text;
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) node.appendChild(child);
    });
    return node;
  }

  function money(text) {
    return text === null || text === undefined || text === "" ? "–" : group(String(text));
  }

  function replace(id, nodes) {
    var target = document.getElementById(id);
    while (target.firstChild) target.removeChild(target.firstChild);
    nodes.forEach(function (n) { target.appendChild(n); });
  }

  function forecastText(f) {
    if (!f) return "no forecast";
    if (!f.runs_out_on) return "burn rate " + money(f.rate_per_day) + "/day; does not run out";
    return "burn rate " + money(f.rate_per_day) + "/day; runs out " + f.runs_out_on +
      (f.runs_out_early ? " (before its period ends " + f.period_ends_on + ")" : "");
  }

  function budgetCard(b) {
    var share = b.share ? parseFloat(b.share) : 0;
    var state = share >= 100 ? "over" : share >= Number(b.soft) * 100 ? "warn" : "ok";
    var f = b.forecast;
    return el("article", { class: "budget " + state, "data-team": b.team }, [
      el("h3", {}, [
        el("span", { class: "team", text: b.team }),
        el("span", { class: "period", text: b.period === "none" ? "no period" : b.period + " " + b.period_key }),
      ]),
      b.parent ? el("p", { class: "parent", text: "under " + b.parent }) : null,
      el("div", { class: "bar", role: "presentation" }, [
        el("span", { style: "width:" + Math.min(100, share).toFixed(1) + "%" }),
      ]),
      el("dl", {}, [
        el("dt", { text: "used" }), el("dd", { class: "used", text: money(b.used) + " of " + money(b.limit) + " " + b.unit + (b.share ? " (" + b.share + ")" : "") }),
        el("dt", { text: "held" }), el("dd", { class: "held", text: money(b.held) }),
        el("dt", { text: "available" }), el("dd", { class: "available", text: money(b.available) }),
        el("dt", { text: "forecast" }), el("dd", { class: "forecast" + (f && f.runs_out_early ? " early" : ""), text: forecastText(f), title: f ? f.method : "" }),
      ]),
    ]);
  }

  function chartPanel(spec) {
    var id = "chart-" + spec.team;
    var existing = document.getElementById(id);
    var figure = existing || el("figure", { class: "panel", id: id, "data-team": spec.team }, [
      el("figcaption", { class: "panel-title" }), el("div", { class: "plot" }),
    ]);
    figure.querySelector(".panel-title").textContent = spec.team + ": " + money(spec.used) +
      " of " + money(spec.limit) + " " + spec.unit + " in " +
      (spec.period === "none" ? "all time" : spec.period_key) +
      (spec.forecast && spec.forecast.runs_out_on ? " · runs out " + spec.forecast.runs_out_on : "");
    return figure;
  }

  function row(cells, cls) {
    return el("tr", cls ? { class: cls } : {}, cells.map(function (c) {
      return el("td", { class: c[1] || "", text: c[0] === null || c[0] === undefined ? "–" : String(c[0]) });
    }));
  }

  function emptyRow(columns, text) {
    return el("tr", {}, [el("td", { colspan: String(columns), class: "empty", text: text })]);
  }

  function render(data) {
    replace("budgets", data.budgets.length ? data.budgets.map(budgetCard) :
      [el("p", { class: "empty", text: "No budgets yet: klingcost budget set TEAM --limit N" })]);

    var panels = data.charts.map(chartPanel);
    replace("charts", panels);
    data.charts.forEach(function (spec, i) {
      window.KlingcostCharts.update(panels[i].querySelector(".plot"), spec);
    });

    replace("tasks-body", data.tasks.length ? data.tasks.map(function (t) {
      var what = [t.model, t.mode, t.duration ? t.duration + "s" : null].filter(Boolean).join(" ");
      return row([[t.reserved_at.slice(0, 19).replace("T", " ")], [t.team], [what || t.endpoint],
        [t.state], [money(t.estimated), "num"], [money(t.charged), "num"],
        [t.variance === null ? null : money(t.variance), "num"], [t.currency]], t.state);
    }) : [emptyRow(8, "No tasks yet.")]);

    replace("refusals-body", data.refusals.length ? data.refusals.map(function (r) {
      return row([[r.at.slice(0, 19).replace("T", " ")], [r.team], [r.what]]);
    }) : [emptyRow(3, "No refusals recorded.")]);

    var d = data.drift;
    replace("drift-body", d.classes.length ? d.classes.map(function (c) {
      return row([[c.label], [c.compared, "num"], [c.agreeing, "num"], [c.estimated_units, "num"],
        [c.charged_units, "num"], [c.drift, "num"]], c.beyond_tolerance ? "beyond" : "");
    }) : [emptyRow(6, "No settled task with a trusted charge since " + d.since + ".")]);
    var notes = [];
    if (d.over_limit.length) notes.push("Over their limit: " + d.over_limit.join(", ") + ".");
    var flags = Object.keys(d.flags);
    if (flags.length) notes.push("Charges that look wrong: " + flags.map(function (k) { return k + " " + d.flags[k]; }).join(", ") + ".");
    document.getElementById("drift-notes").textContent = notes.join(" ");
  }

  function status(text, failed) {
    var node = document.getElementById("status");
    node.textContent = text;
    node.className = failed ? "meta failed" : "meta";
  }

  function refresh() {
    fetch(source, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
          return data;
        });
      })
      .then(function (data) {
        render(data);
        last = data.generated_at;
        status("Ledger " + data.ledger + " · updated " + data.generated_at + " · refreshes every " + every + " s", false);
      })
      .catch(function (error) {
        status("Could not refresh (" + error.message + ")" + (last ? "; showing " + last : ""), true);
      })
      .then(function () { setTimeout(refresh, every * 1000); });
  }

  refresh();
})();
