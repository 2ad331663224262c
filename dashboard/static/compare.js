// Compare page: the runs' telemetry overlaid, one chart per quantity and one series per run (in
// the order and colours of the metrics table); a run without telemetry is named, not drawn.
"use strict";
(function () {
  const el = document.getElementById("compare-chart");
  const ids = JSON.parse(el.dataset.runs), labels = JSON.parse(el.dataset.labels);
  const view = window.raasChart.create(el, { upright: parseFloat(el.dataset.upright) });
  const perRun = Math.max(500, Math.floor(8000 / ids.length));  // points per run from the API
  Promise.allSettled(ids.map((id, i) => window.raasChart.fetchRun(id, labels[i], perRun))).then((results) => {
    const missing = [];
    const runs = results.map((res, i) => {
      if (res.status === "fulfilled") return res.value;
      missing.push(`${labels[i]}: ${res.reason.message}`);
      return window.raasChart.emptyRun(labels[i]);  // keeps the colours in step with the table
    });
    const note = document.getElementById("compare-missing");
    note.textContent = missing.length ? "Not drawn — " + missing.join("; ") : "";
    note.hidden = !missing.length;
    view.load(runs);
  });
})();
