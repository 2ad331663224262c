// Jobs list: re-render the table when a job's state changes (SSE) and every 10 s (queue positions).
"use strict";
(function () {
  const body = document.getElementById("jobs-body");
  const admin = document.getElementById("jobs-live").dataset.admin === "1";
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "" : text;
    tr.appendChild(td);
    return td;
  }
  function render(jobs) {
    const rows = [];
    for (const j of jobs) {
      const tr = document.createElement("tr");
      tr.dataset.job = j.id;
      const a = document.createElement("a");
      a.href = "/jobs/" + encodeURIComponent(j.id);
      const code = document.createElement("code"); code.textContent = j.id; a.appendChild(code);
      cell(tr, a);
      if (admin) cell(tr, j.owner);
      const badge = document.createElement("span");
      badge.className = "badge s-" + j.state; badge.textContent = j.state;
      cell(tr, badge);
      cell(tr, j.queue_position || "");
      cell(tr, j.node_id || "");
      cell(tr, window.raasFmtTime(j.submitted_at));
      cell(tr, j.started_at ? window.raasFmtTime(j.started_at) : "—");
      cell(tr, j.finished_at ? window.raasFmtTime(j.finished_at) : "—");
      cell(tr, (j.source.url || "archive") + (j.source.ref ? " @ " + j.source.ref : ""), "src");
      rows.push(tr);
    }
    if (rows.length) body.replaceChildren(...rows);
  }
  let pending = null;
  function refresh() {
    pending = null;
    fetch("/api/v1/jobs?limit=100", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((d) => render(d.jobs))
      .catch(() => {});
  }
  function soon() { if (!pending) pending = setTimeout(refresh, 300); }
  window.raasLive({ jobs: "1" }, {
    state: (d) => {
      const row = body.querySelector(`tr[data-job="${CSS.escape(d.job_id)}"] .badge`);
      if (row) { row.className = "badge s-" + d.state; row.textContent = d.state; }
      soon();
    },
  });
  setInterval(refresh, 10000);
})();
