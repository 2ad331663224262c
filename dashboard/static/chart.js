// The one chart of θ, θ̇, action and reward against time (uPlot, vendored): live on a running
// job's page, from the result bundle on a finished one, one series per run on the compare page.
// Drag to zoom (all panels follow), Shift+drag or ◀ ▶ to pan, double-click or Reset for all.
// The element mirrors what is drawn in data-* attributes (for readers and tests): data-state,
// data-runs, data-points, data-xmin/data-xmax [s], data-band (θ range of the upright band, rad),
// data-band-px (its height on screen), data-misses (deadline-miss markers drawn), data-updates
// (live batches taken), data-synced (1: every panel shows the same time range).
"use strict";
(function () {
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const PANELS = [  // range: what the y axis shows at least (it grows with the data)
    { key: "theta", label: "θ [rad] (wrapped)", color: "#2563eb", range: [-Math.PI, Math.PI], band: true },
    { key: "theta_dot", label: "θ̇ [rad/s]", color: "#7c3aed", range: [-8, 8] },
    { key: "u_applied", label: "action u", color: "#059669", range: [-2.2, 2.2], desired: "u_desired" },
    { key: "reward", label: "reward", color: "#d97706", range: [-1, 0] },
  ];
  const LIVE_POINTS = 600;  // 30 s at 20 Hz
  const PANEL_HEIGHT = 150;  // CSS px
  const MAX_MARKERS_DRAWN = 2000;  // per panel and redraw; beyond that they are a red wash anyway
  const DEFAULT_DT = 0.05;  // s, the control period when a live record has one sample
  const wrap = (a) => ((((a + Math.PI) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI)) - Math.PI;

  function emptyRun(label) {
    return {
      label, x: [], theta: [], theta_dot: [], u_applied: [], u_desired: [], reward: [], misses: [], starts: [],
      episode: null, offset: 0,  // live: the episode being appended and its shift onto the time axis
    };
  }

  // A run from GET /api/v1/jobs/<id>/telemetry (times already on one end-to-end axis).
  function runFromPayload(p, label) {
    const c = p.columns;
    return {
      label, x: c.t, theta: c.theta, theta_dot: c.theta_dot, u_applied: c.u_applied,
      u_desired: c.u_desired || null, reward: c.reward, misses: p.deadline_misses, starts: p.episode_starts,
    };
  }

  function button(text, title, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "chart-btn"; b.textContent = text; b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  // create(el, {upright: rad, live: bool}) → {load(runs), append(batch), zoom(min, max), pan(f), reset()}
  function create(el, options) {
    const upright = options.upright;
    const live = !!options.live;
    let runs = live ? [emptyRun("live")] : [];
    let plots = [];
    let follow = true;  // show all data (live: the latest window) until the user zooms
    let drawPending = false;
    let updates = 0;
    el.classList.add("raas-chart");
    el.dataset.state = "empty";

    const bar = document.createElement("div");
    bar.className = "chart-bar";
    bar.append(button("◀", "pan left", () => pan(-0.25)), button("▶", "pan right", () => pan(0.25)),
      button("Reset", "show everything (also: double-click)", () => reset()));
    const hint = document.createElement("span");
    hint.className = "muted"; hint.textContent = "drag: zoom · shift+drag: pan · double-click: reset";
    bar.append(hint);
    const body = document.createElement("div");
    el.replaceChildren(bar, body);

    function width() { return Math.max(320, body.clientWidth || el.clientWidth || 760); }
    function panelHeight(i) { return PANEL_HEIGHT + (i === PANELS.length - 1 ? 24 : 0); }  // + time axis

    function panelData(panel) {
      if (runs.length === 1) {
        const r = runs[0], cols = [r.x, r[panel.key]];
        if (panel.desired && r[panel.desired]) cols.push(r[panel.desired]);
        return cols;
      }
      return uPlot.join(runs.map((r) => [r.x, r[panel.key]]));
    }

    function panelSeries(panel) {
      const series = [{ label: "t [s]" }];
      if (runs.length === 1) {
        series.push({ label: panel.key === "u_applied" ? "applied" : panel.label, stroke: panel.color, width: 1.5 });
        if (panel.desired && runs[0][panel.desired]) series.push({ label: "desired", stroke: panel.color, width: 1, dash: [4, 3] });
      } else {
        runs.forEach((r, i) => series.push({ label: r.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }));
      }
      return series;
    }

    function drawBand(u) {
      const [lo, hi] = [-upright, upright];
      const { left, top, width: w, height: h } = u.bbox;
      const y0 = Math.max(top, Math.min(top + h, u.valToPos(hi, "y", true)));
      const y1 = Math.max(top, Math.min(top + h, u.valToPos(lo, "y", true)));
      u.ctx.save();
      u.ctx.fillStyle = "rgba(22, 163, 74, 0.14)";
      u.ctx.fillRect(left, y0, w, y1 - y0);
      u.ctx.restore();
      el.dataset.band = `${lo},${hi}`;
      el.dataset.bandPx = String(Math.round(y1 - y0));
    }

    // Vertical lines at times xs within the visible range; returns how many were drawn.
    function vlines(u, xs, style, dash) {
      const { top, height: h } = u.bbox;
      const min = u.scales.x.min, max = u.scales.x.max;
      let n = 0;
      u.ctx.save();
      u.ctx.strokeStyle = style; u.ctx.lineWidth = 1; u.ctx.setLineDash(dash);
      u.ctx.beginPath();
      for (const t of xs || []) {
        if (t < min || t > max) continue;
        if (++n > MAX_MARKERS_DRAWN) break;
        const x = Math.round(u.valToPos(t, "x", true)) + 0.5;
        u.ctx.moveTo(x, top); u.ctx.lineTo(x, top + h);
      }
      u.ctx.stroke();
      u.ctx.restore();
      return Math.min(n, MAX_MARKERS_DRAWN);
    }

    function drawMarkers(u, isFirst) {
      let misses = 0;
      runs.forEach((r) => {
        vlines(u, r.starts.slice(1), "#9ca3af", [2, 3]);  // where a new episode begins
        misses += vlines(u, r.misses, "rgba(220, 38, 38, 0.75)", []);
      });
      if (isFirst) el.dataset.misses = String(misses);
    }

    function build() {
      plots.forEach((p) => p.destroy());
      plots = [];
      body.replaceChildren();
      const sync = uPlot.sync("raas-chart-" + Math.random().toString(36).slice(2));
      PANELS.forEach((panel, i) => {
        const last = i === PANELS.length - 1;
        const opts = {
          width: width(), height: panelHeight(i),
          scales: { x: { time: false }, y: { range: (u, lo, hi) => [Math.min(lo ?? panel.range[0], panel.range[0]), Math.max(hi ?? panel.range[1], panel.range[1])] } },
          axes: [{ show: true, label: last ? "time [s]" : null, size: last ? 44 : 24 }, { label: panel.label, size: 60 }],
          series: panelSeries(panel),
          legend: { show: true },
          cursor: {
            sync: { key: sync.key },
            drag: { x: true, y: false, setScale: false },
            bind: {
              mousedown: (u, targ, handler) => (e) => (e.shiftKey ? startPan(u, e) : handler(e)),
              dblclick: () => () => { reset(); return null; },
            },
          },
          hooks: {
            drawClear: panel.band ? [drawBand] : [],
            draw: [(u) => { drawMarkers(u, i === 0); publish(); }],  // uPlot draws after a microtask
            setSelect: [onSelect],
          },
        };
        const holder = document.createElement("div");
        holder.className = "chart-panel"; holder.dataset.quantity = panel.key;
        body.appendChild(holder);
        plots.push(new uPlot(opts, panelData(panel), holder));
      });
      el.dataset.runs = String(runs.length);
    }

    function dataRange() {
      let lo = Infinity, hi = -Infinity;
      for (const r of runs) if (r.x.length) { lo = Math.min(lo, r.x[0]); hi = Math.max(hi, r.x[r.x.length - 1]); }
      return lo < hi ? [lo, hi] : null;
    }

    function publish() {
      const s = plots.length ? plots[0].scales.x : {};
      el.dataset.points = String(runs.reduce((n, r) => n + r.x.length, 0));
      if (s.min != null) { el.dataset.xmin = s.min.toFixed(3); el.dataset.xmax = s.max.toFixed(3); }
      el.dataset.synced = plots.every((p) => p.scales.x.min === s.min && p.scales.x.max === s.max) ? "1" : "0";
      el.dataset.updates = String(updates);
      el.dataset.state = runs.some((r) => r.x.length) ? "ready" : "empty";
    }

    function zoom(min, max, keepFollow) {
      if (!(max > min)) return;
      follow = !!keepFollow;
      plots.forEach((p) => p.setScale("x", { min, max }));
      publish();
    }

    function reset() {
      const all = dataRange();
      if (all) zoom(all[0], all[1], true);
    }

    function pan(fraction) {
      const s = plots.length && plots[0].scales.x;
      if (!s || s.min == null) return;
      const d = (s.max - s.min) * fraction;
      zoom(s.min + d, s.max + d);
    }

    function onSelect(u) {
      if (u.select.width < 3) return;  // a click, not a drag
      const min = u.posToVal(u.select.left, "x"), max = u.posToVal(u.select.left + u.select.width, "x");
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      zoom(min, max);
    }

    function startPan(u, e) {
      const x0 = e.clientX, min0 = u.scales.x.min, max0 = u.scales.x.max, w = u.over.clientWidth || 1;
      const move = (m) => { const d = ((m.clientX - x0) / w) * (max0 - min0); zoom(min0 - d, max0 - d); };
      const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
      return null;
    }

    function redraw() {
      drawPending = false;
      if (!plots.length) build();
      plots.forEach((p, i) => p.setData(panelData(PANELS[i]), follow));
      publish();
    }

    // Finished job or compare view: runs from the telemetry API, drawn once.
    function load(newRuns) {
      runs = newRuns;
      follow = true;
      build();
      publish();
    }

    // Live: one telemetry batch (the stream's columns, t restarting at each episode).
    function append(b) {
      const r = runs[0];
      const n = r.x.length;
      const lastX = n ? r.x[n - 1] : -Infinity;
      if (b.episode_id !== r.episode && b.t.length) {
        const dt = n > 1 ? r.x[n - 1] - r.x[n - 2] : DEFAULT_DT;
        r.offset = n ? lastX + dt - b.t[0] : 0;  // lay the new episode after the last one
        r.episode = b.episode_id;
        r.starts.push(r.offset + b.t[0]);
      }
      for (let i = 0; i < b.t.length; i++) {
        const x = r.offset + b.t[i];
        if (x <= (r.x.length ? r.x[r.x.length - 1] : -Infinity)) continue;  // replayed
        r.x.push(x); r.theta.push(wrap(b.theta[i])); r.theta_dot.push(b.theta_dot[i]);
        r.u_applied.push(b.u_applied[i]); r.u_desired.push(b.u_desired[i]); r.reward.push(b.reward[i]);
        if (b.deadline_miss && b.deadline_miss[i]) r.misses.push(x);
      }
      const extra = r.x.length - LIVE_POINTS;
      if (extra > 0) {
        for (const k of ["x", "theta", "theta_dot", "u_applied", "u_desired", "reward"]) r[k].splice(0, extra);
        r.misses = r.misses.filter((t) => t >= r.x[0]);
        r.starts = r.starts.filter((t, i) => i === 0 || t >= r.x[0]);
      }
      updates++;
      if (!drawPending) { drawPending = true; requestAnimationFrame(redraw); }
    }

    let shownWidth = 0;
    new ResizeObserver(() => {  // e.g. the live section unhidden, a rotated phone
      const w = width();
      if (w === shownWidth) return;
      shownWidth = w;
      plots.forEach((p, i) => p.setSize({ width: w, height: panelHeight(i) }));
    }).observe(body);
    if (live) build();
    return { load, append, zoom, pan, reset };
  }

  // Fetch one job's chart columns from the telemetry API.
  function fetchRun(jobId, label, maxPoints) {
    const q = new URLSearchParams({ columns: "theta,theta_dot,u_applied,u_desired,reward", max_points: String(maxPoints || 4000) });
    return fetch("/api/v1/jobs/" + encodeURIComponent(jobId) + "/telemetry?" + q, { credentials: "same-origin" })
      .then((r) => r.json().then((d) => (r.ok ? runFromPayload(d, label) : Promise.reject(new Error(d.reason || r.status)))));
  }

  // Every element with data-chart-job (a finished job's page): its chart from the bundle.
  function loadFinished(el) {
    const view = create(el, { upright: parseFloat(el.dataset.upright) });
    fetchRun(el.dataset.chartJob, el.dataset.chartJob)
      .then((run) => view.load([run]))
      .catch((e) => { el.dataset.state = "error"; el.textContent = "The telemetry could not be charted: " + e.message; });
  }

  window.raasChart = { create, fetchRun, emptyRun, wrap, COLORS };
  document.querySelectorAll("[data-chart-job]").forEach(loadFinished);
})();
