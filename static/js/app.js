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
// Timers on live pages count on between polls. An element with data-tick-seconds shows that
// many seconds as the server rendered it, plus the time since it arrived; each poll replaces
// it with the server's figure again. The format is the duration filter's
// (sessions/templatetags/sessions_extras.py), so a poll never changes how it reads.
function renseiDuration(total) {
  total = Math.max(0, Math.floor(total));
  var hours = Math.floor(total / 3600);
  var minutes = Math.floor((total % 3600) / 60);
  var secs = total % 60;
  var pad = function (n) { return (n < 10 ? "0" : "") + n; };
  if (hours >= 24) return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  if (hours) return hours + " h " + pad(minutes) + " min";
  if (minutes) return minutes + " min " + pad(secs) + " s";
  return secs + " s";
}
function renseiMarkTimers(root) {
  var now = Date.now();
  root.querySelectorAll("[data-tick-seconds]").forEach(function (el) {
    if (!el.renseiTickFrom) el.renseiTickFrom = now;
  });
}
document.addEventListener("htmx:load", function () { renseiMarkTimers(document); });
document.addEventListener("DOMContentLoaded", function () { renseiMarkTimers(document); });
setInterval(function () {
  var now = Date.now();
  document.querySelectorAll("[data-tick-seconds]").forEach(function (el) {
    if (!el.renseiTickFrom) el.renseiTickFrom = now;
    var seconds = Number(el.getAttribute("data-tick-seconds")) + (now - el.renseiTickFrom) / 1000;
    el.textContent = renseiDuration(seconds) + (el.getAttribute("data-tick-suffix") || "");
  });
}, 1000);
