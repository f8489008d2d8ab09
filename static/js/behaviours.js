// Behaviours that templates ask for with data attributes instead of inline handlers, so the
// Content-Security-Policy can refuse every inline script (see CONTENT_SECURITY_POLICY).
//   data-submit-on-change       a control that submits its form when changed (org switcher)
//   data-dismiss="parent"        a button that removes its parent (dismissable alerts)
//   data-copy-from="#id"         a button that copies the named field's value
//   data-copy-next               a button that copies the text of the element after it
//   data-select-on-focus         a field that selects its text when focused
//   data-poll-when-visible       an hx-trigger="every …" poll that skips while the tab is hidden
(function () {
  function copied(button, text) {
    if (navigator.clipboard) navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  }
  document.addEventListener("change", function (evt) {
    var el = evt.target.closest && evt.target.closest("[data-submit-on-change]");
    if (el && el.form) el.form.submit();
  });
  document.addEventListener("click", function (evt) {
    var el = evt.target.closest && evt.target.closest("[data-dismiss], [data-copy-from], [data-copy-next]");
    if (!el) return;
    if (el.getAttribute("data-dismiss") === "parent" && el.parentElement) {
      el.parentElement.remove();
    } else if (el.hasAttribute("data-copy-from")) {
      var field = document.querySelector(el.getAttribute("data-copy-from"));
      if (field) copied(el, field.value);
    } else if (el.hasAttribute("data-copy-next") && el.nextElementSibling) {
      copied(el, el.nextElementSibling.innerText);
    }
  });
  document.addEventListener("focusin", function (evt) {
    if (evt.target.hasAttribute && evt.target.hasAttribute("data-select-on-focus")) evt.target.select();
  });
  // A poll's request is dropped while the tab is hidden; the next tick after it shows again
  // brings the page up to date. (htmx's `[condition]` trigger filters would need eval.)
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var el = evt.detail && evt.detail.elt;
    if (el && el.hasAttribute("data-poll-when-visible") && document.visibilityState !== "visible") {
      evt.preventDefault();
    }
  });
})();
