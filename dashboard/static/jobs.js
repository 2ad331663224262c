// Runs table: re-render this page of the table (same sort, filters and page, from the API) when a
// job's state changes (SSE) and every 10 s (queue positions, figures of jobs that just ended).
"use strict";
(function () {
  const body = document.getElementById("jobs-body");
  const live = document.getElementById("jobs-live");
  const admin = live.dataset.admin === "1";
  const query = new URLSearchParams(live.dataset.query || "");
  const FIGURES = [["return", 2], ["seconds_upright", 2], ["steps", 0], ["episodes", 0],
                   ["duration_s", 1], ["deadline_misses", 0]];
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function cell(tr, content, cls) {
    const td = el("td", null, cls);
    for (const c of [].concat(content)) {
      if (c instanceof Node) td.appendChild(c); else if (c != null) td.append(String(c));
    }
    tr.appendChild(td);
    return td;
  }
  function filtered(changes) {
    const q = new URLSearchParams(query);
    for (const [k, v] of Object.entries(changes)) q.set(k, v);
    return "/jobs?" + q.toString();
  }
  function row(j) {
    const tr = el("tr");
    tr.dataset.job = j.id;
    const a = el("a");
    a.href = "/jobs/" + encodeURIComponent(j.id);
    if (j.name) { a.appendChild(el("strong", j.name)); a.appendChild(el("br")); }
    a.appendChild(el("code", j.id));
    cell(tr, a, "key");
    const state = [el("span", j.state, "badge s-" + j.state)];
    if (j.queue_position) state.push(" ", el("span", "#" + j.queue_position, "muted"));
    if (j.reason) state.push(el("div", j.reason, "reason muted"));
    cell(tr, state);
    for (const [key, digits] of FIGURES) {
      const v = j[key];
      cell(tr, typeof v === "number" ? v.toFixed(digits) : "", "n");
    }
    cell(tr, j.node_id || "");
    const tags = [];
    for (const t of j.tags || []) {
      const link = el("a", t, "tag");
      link.href = filtered({ tag: t, page: "1" });
      tags.push(link, " ");
    }
    cell(tr, tags, "tags");
    if (admin) cell(tr, j.owner);
    const sub = cell(tr, window.raasFmtTime(j.submitted_at));
    sub.dataset.ts = j.submitted_at;
    return tr;
  }
  function render(d) {
    if (d.jobs.length) body.replaceChildren(...d.jobs.map(row));
    const count = document.getElementById("runs-count");
    if (count) {
      count.textContent = `page ${d.page} of ${d.pages} · ${d.total} job${d.total === 1 ? "" : "s"}`;
    }
  }
  let pending = null;
  function refresh() {
    pending = null;
    fetch("/api/v1/jobs?" + query.toString(), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then(render)
      .catch(() => {});
  }
  function soon() { if (!pending) pending = setTimeout(refresh, 300); }
  window.raasLive({ jobs: "1" }, {
    state: (d) => {
      const badge = body.querySelector(`tr[data-job="${CSS.escape(d.job_id)}"] .badge`);
      if (badge) { badge.className = "badge s-" + d.state; badge.textContent = d.state; }
      soon();
    },
  });
  setInterval(refresh, 10000);
})();
