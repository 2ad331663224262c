// Copy buttons (account page): data-copy="text" copies the text, data-copy-from="id" the text of
// that element. A static file: the pages' CSP allows no inline script.
"use strict";
(function () {
  function fallback(text) {  // no Clipboard API (plain http on a LAN address)
    const area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(() => fallback(text));
    }
    return fallback(text);
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button.copy");
    if (!button) return;
    const from = button.dataset.copyFrom && document.getElementById(button.dataset.copyFrom);
    const text = from ? from.textContent.replace(/\\\n\s*/g, " ") : button.dataset.copy || "";
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    copy(text).then(() => { button.textContent = "Copied"; button.dataset.copied = "1"; },
                    () => { button.textContent = "Select and copy by hand"; })
      .finally(() => setTimeout(() => { button.textContent = label; }, 2000));
  });
})();
