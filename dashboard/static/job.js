// Job page: the chart of θ, θ̇, action and reward (live, or from the bundle once finished), a
// pendulum drawn from θ, and the streaming log.
"use strict";
(function () {
  const root = document.getElementById("job");
  const jobId = root.dataset.job;
  // the live chart is the chart component (chart.js draws the finished job's from the bundle)
  const chartEl = document.getElementById("chart");
  const chart = root.dataset.terminal === "1" ? null
    : window.raasChart.create(chartEl, { upright: parseFloat(chartEl.dataset.upright), live: true });
  const wrap = window.raasChart.wrap;
  let lastSeq = null, episode = null, episodeReturn = 0, dirty = false, theta = Math.PI;

  function push(b) {
    // after a reconnect the server replays its recent batches: skip what we already have
    if (b.episode_id === episode && lastSeq !== null && b.seq.length && b.seq[0] <= lastSeq) return;
    if (b.episode_id !== episode) { episode = b.episode_id; episodeReturn = 0; }
    for (let i = 0; i < b.seq.length; i++) {
      episodeReturn += b.reward[i];
      lastSeq = b.seq[i];
      theta = b.theta[i];
    }
    chart.append(b);
    dirty = true;
    document.getElementById("live-readout").textContent =
      `episode ${episode} · step ${lastSeq} · θ ${wrap(theta).toFixed(2)} rad · return ${episodeReturn.toFixed(2)}`;
  }

  const pend = document.getElementById("pendulum");
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
    if (dirty) { dirty = false; drawPendulum(); }
    requestAnimationFrame(frame);
  }
  drawPendulum(); requestAnimationFrame(frame);

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
