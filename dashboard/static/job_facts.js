// Job page: live facts (started, attempt, node, progress, elapsed / limit) and the event timeline,
// polled from GET /api/v1/jobs/<id>/events until the job has ended.
"use strict";
(function () {
  const root = document.getElementById("job");
  const list = document.getElementById("timeline-list");
  if (!root || !list) return;
  const url = `/api/v1/jobs/${encodeURIComponent(root.dataset.job)}/events`;
  const POLL_MS = 2000;
  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "canceled", "error"]);
  const fmt = (ts) => window.raasFmtTime(ts);
  let elapsedAt = null;  // [elapsed_s, local ms when it was read] while running

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
  }
  function showElapsed() {
    const el = document.getElementById("job-elapsed");
    if (!el) return;
    const limit = parseFloat(el.dataset.limit);
    if (!elapsedAt) return;
    const s = elapsedAt[0] + (elapsedAt[2] ? (Date.now() - elapsedAt[1]) / 1000 : 0);
    el.textContent = `${Math.min(s, limit + 60).toFixed(0)} / ${limit.toFixed(0)} s`;
  }
  function item(e) {
    const li = document.createElement("li");
    li.className = "ev-" + e.kind;
    const when = document.createElement("span");
    when.className = "when"; when.textContent = fmt(e.at);
    const what = document.createElement("strong");
    what.textContent = e.kind.replace("_", " ");
    li.append(when, " ", what);
    if (e.execution) {
      const n = document.createElement("span");
      n.className = "muted"; n.textContent = `(attempt ${e.execution})`;
      li.append(" ", n);
    }
    if (e.kind === "finished") {
      const b = document.createElement("span");
      b.className = "badge s-" + e.state; b.textContent = e.state;
      li.append(" ", b);
    }
    if (e.reason) {
      const why = document.createElement("span");
      why.className = "why"; why.textContent = e.reason;
      li.append(" — ", why);
    }
    return li;
  }
  function render(data) {
    const f = data.facts;
    const running = !TERMINAL.has(data.state);
    if (f.started_at) {
      const el = document.getElementById("job-started");
      if (el && el.dataset.ts !== String(f.started_at)) {
        el.dataset.ts = f.started_at; el.textContent = fmt(f.started_at);
      }
    }
    setText("job-attempts", String(f.attempt));
    if (f.node_id) setText("job-node", f.node_id);
    if (f.step !== null && f.step !== undefined) setText("job-progress", `episode ${f.episode_id} · step ${f.step}`);
    elapsedAt = f.elapsed_s === null ? null : [f.elapsed_s, Date.now(), running];
    showElapsed();
    if (list.children.length !== data.events.length) list.replaceChildren(...data.events.map(item));
    return running;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((data) => { if (render(data)) setTimeout(poll, POLL_MS); })
      .catch((err) => { console.warn("job facts:", err); setTimeout(poll, POLL_MS * 3); });
  }
  setInterval(showElapsed, 1000);
  if (root.dataset.terminal !== "1") poll();
})();
