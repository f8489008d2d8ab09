// Sessions list: select-all ticks only the rows that can be terminated (ended rows have no
// box), and the State filter's dropdown closes on Escape or a click elsewhere.
(function () {
  document.addEventListener("change", function (evt) {
    if (evt.target.id !== "select-all") return;
    document.querySelectorAll(".row-select:not(:disabled)").forEach(function (box) {
      box.checked = evt.target.checked;
    });
  });
  // The table re-renders every few seconds: a row that ended loses its box, so the header
  // box follows what is left.
  document.addEventListener("htmx:afterSwap", function () {
    var all = document.getElementById("select-all");
    var boxes = document.querySelectorAll(".row-select:not(:disabled)");
    if (all && all.checked && boxes.length === 0) all.checked = false;
  });
  // The collapsed filter names what is ticked, before Filter applies it.
  document.addEventListener("change", function (evt) {
    var menu = document.getElementById("f-state");
    if (!menu || !menu.contains(evt.target)) return;
    var names = [];
    menu.querySelectorAll("input[name=state]:checked").forEach(function (box) {
      names.push(menu.querySelector("label[for='" + box.id + "']").textContent.trim());
    });
    document.getElementById("f-state-summary").textContent = names.join(", ") || "Any state";
  });
  function closeFilter(focus) {
    var menu = document.getElementById("f-state");
    if (!menu || !menu.open) return;
    menu.open = false;
    if (focus) menu.querySelector("summary").focus();
  }
  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Escape") closeFilter(true);
  });
  document.addEventListener("click", function (evt) {
    var menu = document.getElementById("f-state");
    if (menu && !menu.contains(evt.target)) closeFilter(false);
  });
})();
