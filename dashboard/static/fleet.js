// Fleet page: apply live node state/meta (retained messages) and heartbeats to the cards.
"use strict";
(function () {
  let reload = null;
  function card(id) {
    const el = document.querySelector(`.node[data-node="${CSS.escape(id)}"]`);
    if (!el && !reload) reload = setTimeout(() => location.reload(), 1000); // a new node
    return el;
  }
  function set(el, field, value) {
    const f = el.querySelector(`[data-field="${field}"]`);
    if (f) f.textContent = value == null || value === "" ? "—" : value;
    return f;
  }
  // "last seen" only moves forward (a late retained state must not turn it back)
  function seen(el, ts) {
    const f = el.querySelector('[data-field="last_seen"]');
    if (!f || !ts || ts <= (parseFloat(f.dataset.ts) || 0)) return;
    f.dataset.ts = ts;
    f.textContent = window.raasFmtTime(ts);
  }
  window.raasLive({ fleet: "1" }, {
    node: (d) => {
      const el = card(d.node_id);
      if (!el) return;
      const badge = set(el, "state", d.state);
      badge.className = "badge n-" + d.state;
      set(el, "current_job", d.job_id);
      set(el, "reason", d.reason);
      seen(el, d.ts);
    },
    heartbeat: (d) => {
      const el = card(d.node_id);
      if (el) seen(el, d.ts);
    },
    meta: (d) => {
      const el = card(d.node_id);
      if (!el) return;
      set(el, "backend", d.backend);
      set(el, "calibration_id", d.calibration_id);
      set(el, "software_version", d.software_version);
    },
  });
})();
