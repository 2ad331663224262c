// Fleet page: the scaling panel (gym-scaling's picture) drawn as SVG from /api/v1/fleet/samples.
"use strict";
(function () {
  const panel = document.getElementById("scaling");
  const svg = document.getElementById("scaling-chart");
  if (!panel || !svg) return;
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 240, PAD = 30, GAP = 16;
  const windowS = parseInt(panel.dataset.windowS, 10) || 3600;

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    parent.appendChild(e);
    return e;
  }
  function field(name, text) {
    const f = panel.querySelector(`[data-field="${name}"]`);
    if (f) f.textContent = text;
  }
  // One band of the chart: series as step lines (bars for arrivals) against time.
  function band(samples, t0, t1, y0, h, series) {
    const top = Math.max(1, ...samples.flatMap((s) => series.map((k) => s[k])));
    const x = (t) => PAD + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 2 * PAD);
    const y = (v) => y0 + h - (v / top) * h;
    el("line", { x1: PAD, x2: W - PAD, y1: y0 + h, y2: y0 + h, class: "axis" }, svg);
    el("text", { x: 2, y: y0 + 10, class: "tick" }, svg).textContent = String(top);
    for (const k of series) {
      if (k === "arrivals") {
        const bw = Math.max(1, (W - 2 * PAD) / Math.max(samples.length, 1) - 1);
        for (const s of samples) {
          if (s.arrivals > 0) {
            el("rect", { x: x(s.t) - bw, y: y(s.arrivals), width: bw, height: y0 + h - y(s.arrivals),
                         class: "s-arrivals" }, svg);
          }
        }
        continue;
      }
      let d = "";
      samples.forEach((s, i) => {
        d += i === 0 ? `M${x(s.t)},${y(s[k])}` : `H${x(s.t)}V${y(s[k])}`;
      });
      if (d) el("path", { d, class: `s-${k}` }, svg);
    }
  }
  function draw(data) {
    const samples = data.samples || [];
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const t1 = data.now, t0 = t1 - data.window_s;
    const h = (H - 2 * GAP) / 2;
    band(samples, t0, t1, GAP, h - GAP, ["arrivals", "queued"]);
    band(samples, t0, t1, GAP + h, h - GAP, ["online", "standby"]);
    panel.dataset.samples = String(samples.length);
    const last = samples[samples.length - 1];
    if (last) {
      field("scaling-now", `${last.queued} queued · ${last.idle} idle · ${last.busy} busy · ` +
            `${last.booting} booting · ${last.standby} standby`);
    }
    const d = data.last_decision;
    if (d) {
      field("scaling-policy", d.policy);
      const did = [d.woke.length ? `woke ${d.woke.join(", ")}` : "",
                   d.slept.length ? `standby ${d.slept.join(", ")}` : ""].filter(Boolean);
      field("scaling-decision", `${window.raasFmtTime(d.t)}: action ${d.action}, online ` +
            `${d.online} → target ${d.target}` + (did.length ? ` (${did.join("; ")})` : "") +
            (d.reason ? ` — ${d.reason}` : ""));
      panel.dataset.decision = String(d.target);
    }
  }
  function refresh() {
    fetch(`/api/v1/fleet/samples?window_s=${windowS}`, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => { if (data) draw(data); })
      .catch(() => {});
  }
  refresh();
  setInterval(refresh, 5000);
})();
