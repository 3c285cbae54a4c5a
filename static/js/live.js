// Live updates for the run and job pages: polls the JSON API (session auth) every 2 seconds.
(function () {
  "use strict";
  var COLORS = ["#0b6bcb", "#b3261e", "#146c2e", "#8a5a00"];

  function poll(url, render) {
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (data) { if (render(data)) { setTimeout(tick, 2000); } })
        .catch(function () { setTimeout(tick, 5000); });
    }
    tick();
  }

  function text(id, value) { var el = document.getElementById(id); if (el) { el.textContent = value; } }

  function drawLosses(svg, losses) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    if (!losses || losses.length < 2) { return; }
    var keys = Object.keys(losses[losses.length - 1]).filter(function (k) { return k !== "step"; });
    var steps = losses.map(function (p) { return p.step; });
    var xmin = Math.min.apply(null, steps), xmax = Math.max.apply(null, steps) || 1;
    var values = [];
    losses.forEach(function (p) { keys.forEach(function (k) { if (isFinite(p[k])) { values.push(p[k]); } }); });
    var ymin = Math.min.apply(null, values), ymax = Math.max.apply(null, values);
    if (ymax === ymin) { ymax = ymin + 1; }
    keys.forEach(function (key, i) {
      var pts = losses.filter(function (p) { return isFinite(p[key]); }).map(function (p) {
        var x = 5 + 390 * (p.step - xmin) / Math.max(xmax - xmin, 1);
        var y = 140 - 130 * (p[key] - ymin) / (ymax - ymin);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      var line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[i % COLORS.length]);
      line.setAttribute("stroke-width", "1.5");
      svg.appendChild(line);
      var label = document.createElementNS("http://www.w3.org/2000/svg", "text");
      label.setAttribute("x", 10 + 60 * i); label.setAttribute("y", 12);
      label.setAttribute("fill", COLORS[i % COLORS.length]); label.setAttribute("font-size", "11");
      label.textContent = key + " loss";
      svg.appendChild(label);
    });
  }

  function formatEta(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    var m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    return "about " + (m > 0 ? m + " min " : "") + s + " s left";
  }

  var run = document.getElementById("run");
  if (run) {
    var lastGridStep = -1;
    poll(run.dataset.url, function (data) {
      text("run-status", data.status);
      text("run-stage", data.stage);
      text("run-device", data.device ? "on " + data.device : "");
      var bar = document.getElementById("run-progress");
      bar.max = data.progress.total || 1; bar.value = data.progress.step;
      text("run-steps", "step " + data.progress.step + " of " + data.progress.total);
      text("run-eta", formatEta(data.progress.eta_seconds));
      text("run-error", data.error || "");
      text("run-warnings", (data.warnings || []).join(" "));
      drawLosses(document.getElementById("loss-chart"), data.losses);
      var grid = document.getElementById("run-grid");
      if (data.progress.step !== lastGridStep && (data.stage === "train" || data.status === "done")) {
        lastGridStep = data.progress.step;
        var probe = new Image();
        probe.onload = function () { grid.src = probe.src; grid.hidden = false; };
        probe.src = run.dataset.grid + "?step=" + data.progress.step + "&t=" + Date.now();
      }
      var active = data.status === "queued" || data.status === "running";
      if (!active) {
        var cancel = document.getElementById("cancel-form"); if (cancel) { cancel.hidden = true; }
        if (data.status === "done") { document.getElementById("run-done").hidden = false; }
      }
      return active;
    });
  }

  var job = document.getElementById("job");
  if (job && (job.dataset.status === "queued" || job.dataset.status === "running")) {
    poll(job.dataset.url, function (data) {
      text("job-status", data.status);
      var bar = document.getElementById("job-progress");
      bar.max = data.count; bar.value = data.produced;
      text("job-error", data.error || "");
      var active = data.status === "queued" || data.status === "running";
      if (data.status === "done") { window.location.reload(); }
      return active;
    });
  }
})();
