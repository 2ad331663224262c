// Shared page helpers: one EventSource per page (/stream), the live indicator, local times.
"use strict";
(function () {
  function setBus(state) {
    const el = document.getElementById("bus");
    if (!el) return;
    el.hidden = false;
    el.className = "bus " + (state === true ? "on" : state === false ? "off" : "wait");
    el.textContent = state === true ? "live" : state === false ? "live: broker down" : "live: reconnecting…";
    document.body.classList.toggle("stale", state !== true);
  }
  // Open the page's stream; handlers maps SSE event names to fn(data, event). EventSource
  // retries by itself after a dropped connection, but not after an HTTP error (e.g. 503 when
  // the server's stream cap is reached), so that case is retried here with a growing delay.
  let backoffMs = 2000;
  window.raasLive = function (params, handlers) {
    const es = new EventSource("/stream?" + new URLSearchParams(params).toString());
    es.addEventListener("open", () => { backoffMs = 2000; });
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (e) => {
        let data;
        try { data = JSON.parse(e.data); } catch (err) { return; }
        fn(data, e);
      });
    }
    es.addEventListener("bus", (e) => setBus(JSON.parse(e.data).connected));
    es.addEventListener("dropped", (e) => console.warn("live updates dropped:", e.data));
    es.onerror = () => {
      setBus(null);
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(() => window.raasLive(params, handlers), backoffMs);
        backoffMs = Math.min(backoffMs * 2, 60000);
      }
    };
    return es;
  };
  window.raasFmtTime = function (ts) {
    if (!ts) return "—";
    return new Date(ts * 1000).toLocaleString();
  };
  function localTimes(root) {
    for (const el of (root || document).querySelectorAll("[data-ts]")) {
      const ts = parseFloat(el.dataset.ts);
      if (ts) { el.title = el.textContent; el.textContent = window.raasFmtTime(ts); }
    }
  }
  window.raasLocalTimes = localTimes;
  document.addEventListener("DOMContentLoaded", () => localTimes());
  // Submit page: show the fields of the chosen source kind.
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("submit-form");
    if (!form) return;
    const sync = () => {
      const mode = form.querySelector("input[name=mode]:checked").value;
      form.querySelector(".mode-git").hidden = mode !== "git";
      form.querySelector(".mode-archive").hidden = mode !== "archive";
    };
    form.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", sync));
    sync();
  });
})();
