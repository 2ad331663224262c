// Jobs page: tick runs and press Compare to open /compare?jobs=ID1,ID2,... The ticks live in
// sessionStorage, so they survive the table's live re-renders (jobs.js replaces its rows) and
// moving between pages of the table. The checkbox goes first into the first cell of every row
// that carries data-job, whoever rendered it (that cell stays in view on a phone).
"use strict";
(function () {
  const table = document.getElementById("jobs-table");
  const body = document.getElementById("jobs-body");
  if (!table || !body) return;
  const MAX = 8;  // the compare page's limit (dashboard.charts.MAX_COMPARE)
  const KEY = "raas-compare";
  let picked;
  try { picked = JSON.parse(sessionStorage.getItem(KEY) || "[]"); } catch (e) { picked = []; }
  if (!Array.isArray(picked)) picked = [];

  const bar = document.createElement("div");
  bar.className = "compare-bar";
  bar.id = "compare-bar";
  const go = document.createElement("button");
  go.type = "button"; go.id = "compare-button";
  const clear = document.createElement("button");
  clear.type = "button"; clear.className = "plain"; clear.textContent = "clear";
  bar.append(go, " ", clear);
  (table.closest(".runs-scroll") || table).before(bar);

  function save() {
    sessionStorage.setItem(KEY, JSON.stringify(picked));
    go.textContent = `Compare (${picked.length})`;
    go.disabled = picked.length < 2;
    clear.hidden = !picked.length;
    for (const box of body.querySelectorAll("input.pick")) {
      box.checked = picked.includes(box.value);
      box.disabled = !box.checked && picked.length >= MAX;
    }
  }

  function decorate() {
    for (const tr of body.querySelectorAll("tr[data-job]")) {
      const td = tr.querySelector("td");
      if (!td || td.querySelector("input.pick")) continue;
      const box = document.createElement("input");
      box.type = "checkbox"; box.className = "pick"; box.value = tr.dataset.job;
      box.setAttribute("aria-label", "compare " + tr.dataset.job);
      box.addEventListener("change", () => {
        picked = picked.filter((id) => id !== box.value);
        if (box.checked) picked.push(box.value);
        save();
      });
      td.prepend(box);
    }
    save();
  }

  go.addEventListener("click", () => {
    if (picked.length >= 2) location.href = "/compare?jobs=" + picked.map(encodeURIComponent).join(",");
  });
  clear.addEventListener("click", () => { picked = []; save(); });
  new MutationObserver(decorate).observe(body, { childList: true });
  decorate();
})();
