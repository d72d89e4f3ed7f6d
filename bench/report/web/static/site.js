// sharpbench site: tables (DataTables) and plots (Plotly) from the data the pages carry.
// Every string shown comes from the page's own escaped HTML or from JSON read with textContent; text handed to
// Plotly (which reads a few HTML tags in labels) is entity-escaped first, so a name shows as itself.
(function () {
  "use strict";
  var bundle = window.DataTablesBundle;
  var DataTable = bundle.DataTable;

  function plotText(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function readJSON(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  // numbers from data-order; a missing value sorts last in either direction, ties keep the table's order. An
  // empty data-order may reach us as the cell's text ("—"), so anything that is not a finite number is missing.
  function num(x) {
    var v = typeof x === "number" ? x : parseFloat(x);
    return isFinite(v) ? v : null;
  }
  DataTable.type("num-missing-last", {
    order: {
      asc: function (a, b) {
        a = num(a); b = num(b);
        if (a === null) return b === null ? 0 : 1;
        if (b === null) return -1;
        return a - b;
      },
      desc: function (a, b) {
        a = num(a); b = num(b);
        if (a === null) return b === null ? 0 : 1;
        if (b === null) return -1;
        return b - a;
      }
    }
  });

  function columnDefs(table) {
    var defs = [];
    table.querySelectorAll("thead th").forEach(function (th, i) {
      var kind = th.getAttribute("data-kind");
      defs.push(kind === "num" ? {targets: i, type: "num-missing-last", searchable: false}
                               : {targets: i, type: "string", searchable: true});
    });
    return defs;
  }

  function textColumns(table, names) {
    var out = [];
    table.querySelectorAll("thead th").forEach(function (th, i) {
      if (names.indexOf(th.textContent.trim()) >= 0) out.push(i);
    });
    return out;
  }

  var narrowScreen = window.matchMedia("(max-width: 700px)").matches;

  // a column no model has a value in takes no space; the less-used ones (cost, seed: th[data-more]) start in the
  // column chooser, so the default columns fit a wide screen; on a phone architecture and settings too
  // (th[data-phone-more]), so the numbers are on the first screen
  function hiddenColumns(table) {
    var out = [];
    var rows = table.tBodies[0].rows;
    table.querySelectorAll("thead th").forEach(function (th, i) {
      var empty = rows.length > 0;
      for (var r = 0; r < rows.length && empty; r++) {
        var text = rows[r].cells[i] ? rows[r].cells[i].textContent.trim() : "";
        empty = text === "" || text === "—";
      }
      if (empty || th.hasAttribute("data-more") || (narrowScreen && th.hasAttribute("data-phone-more"))) out.push(i);
    });
    return out;
  }

  function initLeaderboard(table) {
    var panes = textColumns(table, ["Recipe", "Architecture"]);
    var defs = columnDefs(table).concat([{targets: hiddenColumns(table), visible: false}]);
    return new DataTable(table, {
      columnDefs: defs,
      order: [[0, "asc"]],
      paging: table.tBodies[0].rows.length > 50,
      pageLength: 50,
      searchPanes: {columns: panes, threshold: 1, initCollapsed: true, cascadePanes: true,
                    dtOpts: {select: {style: "multi"}}},
      layout: {
        topStart: {buttons: [{extend: "colvis", text: "Columns"}]},
        topEnd: "search",
        top1: panes.length ? "searchPanes" : null
      },
      language: {search: "Search name, architecture, recipe:"}
    });
  }

  function initGroups(table) {
    var dt = new DataTable(table, {columnDefs: columnDefs(table), order: [], paging: false, searching: false,
                                   info: false});
    table.tBodies[0].addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr.group");
      if (!tr) return;
      var row = dt.row(tr);
      var tpl = document.getElementById(tr.getAttribute("data-detail"));
      if (row.child.isShown()) {
        row.child.hide();
        tr.classList.remove("open");
      } else {
        row.child(tpl.content.cloneNode(true).firstElementChild).show();
        tr.classList.add("open");
      }
    });
    return dt;
  }

  // titles start at the left and the toolbar sits at the right, above the plot: it never covers a title; phones
  // get no toolbar (it would take the width the plot needs)
  var narrow = window.matchMedia("(max-width: 700px)").matches;
  var plotConfig = {displaylogo: false, responsive: true, displayModeBar: narrow ? false : "hover"};
  // the legend at the foot of the figure, below the axis title, with room for one line per trace
  function legendBelow() { return {orientation: "h", yref: "container", y: 0, yanchor: "bottom"}; }
  function marginFor(n) { return {t: 60, l: 50, r: 10, b: 70 + (narrow ? 20 * n : 12 * Math.ceil(n / 2))}; }
  function titled(text) { return {text: text, x: 0, xanchor: "left", y: 0.98, yanchor: "top", font: {size: 14}}; }

  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  function initPlots(controls) {
    var id = controls.getAttribute("data-section");
    var data = readJSON(id + "-plotdata");
    if (!data) return;
    var attacks = Object.keys(data.series);
    var attackSel = controls.querySelector("select.attack");
    var epsSel = controls.querySelector("select.eps");
    var choices = controls.querySelector(".choices");
    attacks.forEach(function (a) { attackSel.add(new Option(a, a)); });
    // the attack with the most eps values is the one whose curve says the most
    attackSel.value = attacks.slice().sort(function (a, b) {
      return data.series[b].eps.length - data.series[a].eps.length;
    })[0];
    var models = data.series[attacks[0]].traces.map(function (t) { return {id: t.id, name: t.name}; });
    var chosen = models.slice(0, 5).map(function (m) { return m.id; });  // the five best ranked

    models.forEach(function (m) {
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.value = m.id;
      box.checked = chosen.indexOf(m.id) >= 0;
      box.addEventListener("change", function () {
        if (box.checked) {
          if (chosen.length >= 5) { box.checked = false; return; }
          chosen.push(m.id);
        } else {
          chosen = chosen.filter(function (x) { return x !== m.id; });
        }
        draw();
      });
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + m.name));
      choices.appendChild(label);
    });

    function fillEps() {
      var s = data.series[attackSel.value];
      epsSel.innerHTML = "";
      s.eps_str.forEach(function (e, i) { epsSel.add(new Option(e, String(i))); });
      epsSel.value = String(s.eps_str.length - 1);
    }

    function draw() {
      var s = data.series[attackSel.value];
      var traces = s.traces.filter(function (t) { return chosen.indexOf(t.id) >= 0; });
      // a line joins measured radii only: eps 0 (clean) is joined to the first radius by a dotted line, and a
      // model measured at one radius is a point, so nothing between radii looks measured
      var lines = [];
      traces.forEach(function (t, k) {
        var color = palette[k % palette.length], at0 = t.x.length && t.x[0] === 0 ? 1 : 0;
        var xs = t.x.slice(at0), ys = t.y.slice(at0);
        lines.push({x: xs, y: ys, name: plotText(t.name), legendgroup: t.id, type: "scatter",
                    mode: xs.length > 1 ? "lines+markers" : "markers", line: {color: color}, marker: {color: color},
                    error_y: {type: "data", symmetric: false, visible: true,
                              array: t.hi.slice(at0).map(function (h, i) { return h === null ? 0 : h - ys[i]; }),
                              arrayminus: t.lo.slice(at0).map(function (l, i) { return l === null ? 0 : ys[i] - l; })}});
        if (at0) {
          lines.push({x: [0].concat(xs.slice(0, 1)), y: [t.y[0]].concat(ys.slice(0, 1)), legendgroup: t.id,
                      showlegend: false, type: "scatter", mode: "lines+markers", hoverinfo: "skip",
                      name: plotText(t.name) + " (clean)", line: {color: color, dash: "dot", width: 1},
                      marker: {color: color, symbol: ["circle-open"].concat(xs.length ? ["circle"] : [])}});
        }
      });
      Plotly.react(id + "-eps", lines, {
        title: titled("Robust accuracy against eps (" + plotText(attackSel.value) + ", " + data.norm + ")"),
        xaxis: {title: {text: data.x_label}}, yaxis: {title: {text: "accuracy (%)"}, rangemode: "tozero"},
        margin: marginFor(traces.length), legend: legendBelow()
      }, plotConfig);
      var k = parseInt(epsSel.value, 10);
      var eps = s.eps[k];
      var points = traces.map(function (t, j) {
        var i = t.x.indexOf(eps);
        return {x: i >= 0 ? [t.y[i]] : [], y: [t.clean], name: plotText(t.name), mode: "markers", type: "scatter",
                marker: {size: 11, color: palette[j % palette.length]},
                error_x: i >= 0 && t.lo[i] !== null ? {type: "data", symmetric: false, array: [t.hi[i] - t.y[i]],
                                                       arrayminus: [t.y[i] - t.lo[i]]} : undefined};
      });
      Plotly.react(id + "-tradeoff", points, {
        title: titled("Clean against robust at eps " + plotText(s.eps_str[k])),
        xaxis: {title: {text: "robust accuracy (%)"}}, yaxis: {title: {text: "clean accuracy (%)"}},
        margin: marginFor(points.length), legend: legendBelow()
      }, plotConfig);
    }

    attackSel.addEventListener("change", function () { fillEps(); draw(); });
    epsSel.addEventListener("change", draw);
    fillEps();
    draw();
  }

  function initModelPage() {
    var curves = readJSON("curves-data");
    if (curves) {
      var pct = function (v) { return v === null ? null : 100 * v; };
      Plotly.newPlot("curves", [
        {x: curves.epoch, y: curves.train_loss, name: "training loss", mode: "lines+markers", yaxis: "y2"},
        {x: curves.epoch, y: curves.train_acc.map(pct), name: "training accuracy (%)", mode: "lines+markers"},
        {x: curves.epoch, y: curves.test_acc.map(pct), name: "clean test accuracy (%)", mode: "lines+markers"}
      ], {xaxis: {title: {text: "epoch"}}, yaxis: {title: {text: "accuracy (%)"}},
          yaxis2: {title: {text: "loss"}, overlaying: "y", side: "right"}, margin: {t: 20},
          legend: {orientation: "h", y: -0.25}}, plotConfig);
    }
    var heat = readJSON("heatmap-data");
    if (heat) {
      Plotly.newPlot("heatmap", [{
        type: "heatmap", z: heat.z, x: heat.severities.map(String), y: heat.corruptions, colorscale: "Viridis",
        zmin: 0, zmax: 100, texttemplate: "%{z:.1f}", hovertemplate: "%{y}, severity %{x}: %{z:.2f}%<extra></extra>",
        colorbar: {title: {text: "%"}}
      }], {xaxis: {title: {text: "severity"}}, yaxis: {autorange: "reversed"}, margin: {t: 20, l: 130},
           height: 140 + 30 * heat.corruptions.length}, plotConfig);
    }
    var rows = document.getElementById("rows");
    if (rows) {
      new DataTable(rows, {columnDefs: columnDefs(rows), order: [], paging: rows.tBodies[0].rows.length > 50});
      rows.addEventListener("click", function (ev) {
        if (!ev.target.matches("button.copy")) return;
        var code = ev.target.closest("td").querySelector("code.cmd").textContent;
        if (navigator.clipboard) navigator.clipboard.writeText(code).catch(function () {});
        ev.target.textContent = "copied";
      });
    }
  }

  if (window.matchMedia("(max-width: 700px)").matches) {  // a phone: the tables first, the explanations folded
    document.querySelectorAll("details.explain").forEach(function (d) { d.open = false; });
  }
  document.querySelectorAll("table.leaderboard").forEach(initLeaderboard);
  document.querySelectorAll("table.groups").forEach(initGroups);
  document.querySelectorAll(".plot-controls").forEach(initPlots);
  initModelPage();
  var filter = document.getElementById("dataset-filter");
  if (filter) {
    filter.addEventListener("change", function () {
      document.querySelectorAll("section.board").forEach(function (s) {
        s.hidden = filter.value !== "" && s.getAttribute("data-dataset") !== filter.value;
      });
    });
  }
})();
