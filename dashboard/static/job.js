// Job page: live chart of θ, θ̇, action and reward, a pendulum drawn from θ, and the streaming log.
"use strict";
(function () {
  const root = document.getElementById("job");
  const jobId = root.dataset.job;
  const N = 600; // samples kept (30 s at 20 Hz)
  const series = { t: [], theta: [], theta_dot: [], u_desired: [], u_applied: [], reward: [], ep: [] };
  let lastSeq = null, episode = null, episodeReturn = 0, dirty = false, theta = Math.PI;
  const panels = [
    { key: "theta", label: "θ [rad] (0 = upright, wrapped)", color: "#2563eb", min: -Math.PI, max: Math.PI },
    { key: "theta_dot", label: "θ̇ [rad/s]", color: "#7c3aed", min: -8, max: 8 },
    { key: "u_applied", label: "action u (applied; desired dashed)", color: "#059669", min: -2.2, max: 2.2, extra: "u_desired" },
    { key: "reward", label: "reward", color: "#d97706", min: -1, max: 0 },
  ];

  const wrap = (a) => ((((a + Math.PI) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI)) - Math.PI;
  function push(b) {
    // after a reconnect the server replays its recent batches: skip what we already have
    if (b.episode_id === episode && lastSeq !== null && b.seq.length && b.seq[0] <= lastSeq) return;
    if (b.episode_id !== episode) { episode = b.episode_id; episodeReturn = 0; }
    for (let i = 0; i < b.seq.length; i++) {
      for (const k of ["t", "theta_dot", "u_desired", "u_applied", "reward"]) series[k].push(b[k][i]);
      series.theta.push(wrap(b.theta[i]));
      series.ep.push(b.episode_id);
      episodeReturn += b.reward[i];
      lastSeq = b.seq[i];
      theta = b.theta[i];
    }
    const extra = series.t.length - N;
    if (extra > 0) for (const k in series) series[k].splice(0, extra);
    dirty = true;
    document.getElementById("live-readout").textContent =
      `episode ${episode} · step ${lastSeq} · θ ${wrap(theta).toFixed(2)} rad · return ${episodeReturn.toFixed(2)}`;
  }

  const chart = document.getElementById("chart");
  const pend = document.getElementById("pendulum");
  function drawChart() {
    const c = chart.getContext("2d"), W = chart.width, H = chart.height;
    c.clearRect(0, 0, W, H);
    const ph = (H - 12) / panels.length, n = series.t.length, left = 44;
    c.font = "11px sans-serif";
    panels.forEach((p, i) => {
      const y0 = i * ph + 4, h = ph - 14;
      let lo = p.min, hi = p.max;
      for (const v of series[p.key]) { if (v < lo) lo = v; if (v > hi) hi = v; }
      const y = (v) => y0 + h - ((v - lo) / (hi - lo || 1)) * h;
      const x = (j) => left + (j / Math.max(N - 1, 1)) * (W - left - 6);
      c.strokeStyle = "#e5e7eb"; c.strokeRect(left, y0, W - left - 6, h);
      if (lo < 0 && hi > 0) { c.beginPath(); c.moveTo(left, y(0)); c.lineTo(W - 6, y(0)); c.stroke(); }
      c.fillStyle = "#6b7280";
      c.fillText(hi.toFixed(1), 2, y0 + 10); c.fillText(lo.toFixed(1), 2, y0 + h);
      for (let j = 1; j < n; j++) if (series.ep[j] !== series.ep[j - 1]) {  // episode boundary
        c.strokeStyle = "#9ca3af"; c.beginPath(); c.moveTo(x(j), y0); c.lineTo(x(j), y0 + h); c.stroke();
      }
      const line = (key, dash) => {
        c.setLineDash(dash); c.strokeStyle = p.color; c.lineWidth = 1.5; c.beginPath();
        series[key].forEach((v, j) => (j ? c.lineTo(x(j), y(v)) : c.moveTo(x(j), y(v))));
        c.stroke(); c.setLineDash([]);
      };
      if (p.extra) line(p.extra, [4, 3]);
      line(p.key, []);
      c.fillStyle = "rgba(255,255,255,0.85)"; c.fillRect(left + 2, y0 + 2, c.measureText(p.label).width + 8, 14);
      c.fillStyle = p.color; c.fillText(p.label, left + 6, y0 + 12);
    });
    if (n) {  // time axis: the span shown
      c.fillStyle = "#6b7280";
      c.fillText(`t = ${series.t[0].toFixed(1)} s`, left, H - 1);
      const last = `${series.t[n - 1].toFixed(1)} s`;
      c.fillText(last, Math.min(left + ((n - 1) / (N - 1)) * (W - left - 6), W - 40), H - 1);
    }
  }
  function drawPendulum() {
    const c = pend.getContext("2d"), W = pend.width, H = pend.height, cx = W / 2, cy = H / 2, L = W * 0.4;
    c.clearRect(0, 0, W, H);
    c.strokeStyle = "#e5e7eb"; c.beginPath(); c.arc(cx, cy, L, 0, 2 * Math.PI); c.stroke();
    const ex = cx + L * Math.sin(theta), ey = cy - L * Math.cos(theta); // θ = 0 is upright
    c.strokeStyle = "#111827"; c.lineWidth = 6; c.lineCap = "round";
    c.beginPath(); c.moveTo(cx, cy); c.lineTo(ex, ey); c.stroke();
    c.fillStyle = "#dc2626"; c.beginPath(); c.arc(ex, ey, 9, 0, 2 * Math.PI); c.fill();
    c.fillStyle = "#374151"; c.beginPath(); c.arc(cx, cy, 5, 0, 2 * Math.PI); c.fill();
  }
  function frame() {
    if (dirty) { dirty = false; drawChart(); drawPendulum(); }
    requestAnimationFrame(frame);
  }
  drawChart(); drawPendulum(); requestAnimationFrame(frame);

  const log = document.getElementById("log");
  const MAX_LOG_LINES = 2000;
  const seenLog = new Set();
  function appendLog(chunk) {
    const key = chunk.stream + ":" + chunk.seq;
    if (seenLog.has(key)) return;  // replayed after a reconnect
    seenLog.add(key);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const line of chunk.lines) {
      const span = document.createElement("span");
      span.className = "log-" + chunk.stream;
      span.textContent = line + "\n";
      log.appendChild(span);
    }
    if (chunk.truncated) log.appendChild(document.createTextNode("[output truncated by the node]\n"));
    while (log.childNodes.length > MAX_LOG_LINES) log.removeChild(log.firstChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function setState(d) {
    const badge = document.getElementById("job-state");
    badge.className = "badge s-" + d.state; badge.textContent = d.state;
    if (d.node_id) document.getElementById("job-node").textContent = d.node_id;
    const reason = document.getElementById("job-reason");  // e.g. where a requeued job waits
    reason.textContent = d.reason || ""; reason.hidden = !d.reason;
    if (d.state !== "queued") document.getElementById("job-queue").textContent = "—";
    const terminal = ["succeeded", "failed", "timed_out", "canceled", "error"].includes(d.state);
    if (terminal && root.dataset.terminal !== "1") {
      root.dataset.terminal = "1";
      setTimeout(() => location.reload(), 1500); // show the result bundle
    }
    if (d.state === "running") document.getElementById("live").hidden = false;
  }

  if (root.dataset.terminal !== "1") {
    window.raasLive({ job: jobId }, { telemetry: push, log: appendLog, state: setState });
    const poll = setInterval(() => {  // queue position changes are not events
      if (root.dataset.terminal === "1") return clearInterval(poll);
      fetch("/api/v1/jobs/" + encodeURIComponent(jobId), { credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null)).then((j) => {
          if (!j) return;
          document.getElementById("job-queue").textContent = j.queue_position || "—";
          const shown = document.getElementById("job-reason").textContent;
          if (j.state !== root.dataset.state || (j.reason || "") !== shown) setState(j);
        }).catch(() => {});
    }, 5000);
  }
})();
