// Small behaviours shared by every page. htmx does the rest.
document.addEventListener("htmx:confirm", function (evt) {
  // Native confirm dialogs for elements with hx-confirm are handled by htmx itself;
  // this hook only exists so a later custom dialog has a single place to live.
});
// Pause polling while the tab is hidden: elements with `data-poll-when-visible` poll only
// when the document is visible (htmx's `every Ns [cond]` filter reads this flag).
window.renseiVisible = function () { return document.visibilityState === "visible"; };
// Toasts sent by the server with the HX-Trigger header: {"toast": {"level": "...", "message": "..."}}
document.body && document.body.addEventListener("toast", function (evt) {
  var d = evt.detail || {};
  var area = document.getElementById("toasts");
  if (!area) return;
  var el = document.createElement("div");
  el.className = "alert alert-" + (d.level || "info");
  el.setAttribute("role", "status");
  el.textContent = d.message || "";
  area.appendChild(el);
  setTimeout(function () { el.remove(); }, 6000);
});
