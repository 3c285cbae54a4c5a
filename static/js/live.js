// Live updates for the run and job pages: polls the JSON API (session auth) every 2 seconds and
// updates the page in place (no reload): stage, progress, time left, loss chart, newest samples;
// for a job, the results (download button and gallery) are fetched once it is done.
(function () {
  "use strict";
  var COLORS = ["#0b6bcb", "#b3261e", "#146c2e", "#8a5a00"];
  var SVG = "http://www.w3.org/2000/svg";
  var CHART = { width: 400, height: 170, left: 42, right: 8, top: 22, bottom: 20 };

  function poll(url, render) {
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) { if (render(data)) { setTimeout(tick, 2000); } })
        .catch(function () { setTimeout(tick, 5000); });
    }
    tick();
  }

  function text(id, value) { var el = document.getElementById(id); if (el) { el.textContent = value; } }

  function svgText(svg, x, y, value, color, anchor) {
    var label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x); label.setAttribute("y", y);
    label.setAttribute("fill", color); label.setAttribute("font-size", "11");
    if (anchor) { label.setAttribute("text-anchor", anchor); }
    label.textContent = value;
    svg.appendChild(label);
    return label;
  }

  function shortNumber(x) { return Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3); }

  // losses: [{step: n, d: x, g: y}, ...] or [{step: n, loss: x}, ...]: one line per key.
  function drawLosses(svg, losses) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    if (!losses || losses.length < 2) {
      svgText(svg, CHART.width / 2, CHART.height / 2, "The loss curves appear once training has started.", "#5f6b73", "middle");
      return;
    }
    var keys = Object.keys(losses[losses.length - 1]).filter(function (k) { return k !== "step"; });
    var steps = losses.map(function (p) { return p.step; });
    var xmin = Math.min.apply(null, steps), xmax = Math.max.apply(null, steps);
    var values = [];
    losses.forEach(function (p) { keys.forEach(function (k) { if (isFinite(p[k])) { values.push(p[k]); } }); });
    var ymin = Math.min.apply(null, values), ymax = Math.max.apply(null, values);
    if (ymax === ymin) { ymax = ymin + 1; }
    var plotW = CHART.width - CHART.left - CHART.right, plotH = CHART.height - CHART.top - CHART.bottom;
    function x(step) { return CHART.left + plotW * (step - xmin) / Math.max(xmax - xmin, 1); }
    function y(value) { return CHART.top + plotH * (1 - (value - ymin) / (ymax - ymin)); }

    var axis = document.createElementNS(SVG, "polyline");
    axis.setAttribute("points", [CHART.left, CHART.top, CHART.left, CHART.top + plotH, CHART.left + plotW, CHART.top + plotH].join(" "));
    axis.setAttribute("fill", "none"); axis.setAttribute("stroke", "#b8c0c7");
    svg.appendChild(axis);
    svgText(svg, CHART.left - 4, CHART.top + 4, shortNumber(ymax), "#5f6b73", "end");
    svgText(svg, CHART.left - 4, CHART.top + plotH, shortNumber(ymin), "#5f6b73", "end");
    svgText(svg, CHART.left, CHART.height - 4, "step " + xmin, "#5f6b73");
    svgText(svg, CHART.left + plotW, CHART.height - 4, "step " + xmax, "#5f6b73", "end");

    var legendX = CHART.left + 4;
    keys.forEach(function (key, i) {
      var color = COLORS[i % COLORS.length];
      var pts = losses.filter(function (p) { return isFinite(p[key]); }).map(function (p) {
        return x(p.step).toFixed(1) + "," + y(p[key]).toFixed(1);
      });
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", color);
      line.setAttribute("stroke-width", "1.5");
      line.setAttribute("class", "loss-line");
      svg.appendChild(line);
      // "d" and "g" are a GAN's two losses; a key that already says "loss" (diffusion's) is not said twice.
      var name = key === "d" ? "discriminator loss" : key === "g" ? "generator loss" :
        /loss/i.test(key) ? key : key + " loss";
      svgText(svg, legendX, 13, "— " + name, color);
      legendX += 16 + 7 * (name.length + 2);
    });
  }

  function formatEta(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 1) { return "almost done"; }
    var m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    return "about " + (m > 0 ? m + " min " : "") + s + " s left";
  }

  function setBadge(id, status) {
    var el = document.getElementById(id);
    if (el) { el.textContent = status; el.className = "badge status-" + status; }
  }

  // Mirrors apps/generators/presentation.py stage_label().
  function stageLabel(data, active) {
    var label = stageLabels[data.stage] || data.stage;
    if (data.cancel_requested && active) { return "Cancelling…"; }
    if (data.status === "cancelled") { return "Cancelled"; }
    if (data.status === "failed") {
      return stageLabels[data.stage] ? "Failed while " + label.charAt(0).toLowerCase() + label.slice(1) : "Failed";
    }
    return label;
  }

  var stageLabels = {};
  var run = document.getElementById("run");
  if (run) {
    var labelsElement = document.getElementById("stage-labels");
    stageLabels = labelsElement ? JSON.parse(labelsElement.textContent) : {};
    var lastGrid = null;
    poll(run.dataset.url, function (data) {
      var active = data.status === "queued" || data.status === "running";
      setBadge("run-status", data.status);
      text("run-stage", stageLabel(data, active));
      text("run-device", data.device ? "on " + data.device : "");
      var bar = document.getElementById("run-progress");
      bar.max = data.progress.total || 1; bar.value = data.progress.step;
      text("run-steps", data.progress.total ? "step " + data.progress.step + " of " + data.progress.total : "");
      text("run-eta", active ? formatEta(data.progress.eta_seconds) : "");
      text("run-estimate", data.estimate || "");
      text("run-error", data.error || "");
      var warnings = document.getElementById("run-warnings");
      warnings.textContent = "";
      (data.warnings || []).forEach(function (w) {
        var p = document.createElement("p"); p.className = "message warning"; p.textContent = w; warnings.appendChild(p);
      });
      drawLosses(document.getElementById("loss-chart"), data.losses);
      var gridKey = data.status + ":" + data.progress.step;
      if (gridKey !== lastGrid && (data.stage === "train" || !active)) {
        lastGrid = gridKey;
        var grid = document.getElementById("run-grid");
        var probe = new Image();
        probe.onload = function () {
          grid.src = probe.src; grid.hidden = false;
          text("run-grid-caption", active ? "Newest samples, at step " + data.progress.step + "." : "Samples from the finished generator.");
        };
        probe.src = run.dataset.grid + "?step=" + data.progress.step + "&t=" + Date.now();
      }
      if (!active) {
        var cancel = document.getElementById("cancel-form"); if (cancel) { cancel.hidden = true; }
        document.getElementById("run-done").hidden = data.status !== "done";
        var over = data.status === "cancelled" || data.status === "failed";
        document.getElementById("run-over").hidden = !over;
        if (over) { text("run-over-text", data.status === "cancelled" ? "Training was cancelled." : "Training failed."); }
      }
      return active;
    });
  }

  var job = document.getElementById("job");
  if (job && (job.dataset.status === "queued" || job.dataset.status === "running")) {
    poll(job.dataset.url, function (data) {
      setBadge("job-status", data.status);
      var bar = document.getElementById("job-progress");
      bar.max = data.count; bar.value = data.produced;
      text("job-count", data.produced + " of " + data.count + " images");
      text("job-error", data.error || "");
      if (data.status === "done") {
        fetch(job.dataset.results, { credentials: "same-origin" })
          .then(function (r) { return r.text(); })
          .then(function (html) { document.getElementById("job-results").innerHTML = html; });
      }
      return data.status === "queued" || data.status === "running";
    });
  }
})();
