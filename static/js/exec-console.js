// Keyboard and scrolling for the exec console; loaded on every page, acts only on marked
// elements, and listens on the document so content swapped in by htmx is covered too.

// Ctrl+Enter (Cmd+Enter on a Mac) in a textarea marked data-submit-shortcut submits its
// form as the submit button would: requestSubmit runs validation and fires the submit
// event htmx listens for.
document.addEventListener("keydown", function (evt) {
  if (evt.key !== "Enter" || !(evt.ctrlKey || evt.metaKey) || evt.isComposing) return;
  var field = evt.target;
  if (!(field instanceof HTMLTextAreaElement) || !field.hasAttribute("data-submit-shortcut")) return;
  if (!field.form) return;
  evt.preventDefault();
  field.form.requestSubmit();
});

// Output panels re-render every second while a command runs. A <pre data-follow-output>
// that was scrolled to its end (or not scrolled at all) stays at its end, so new lines
// come into view; one the reader scrolled up in keeps its place.
var followed = {};
document.addEventListener("htmx:beforeSwap", function () {
  followed = {};
  document.querySelectorAll("pre[data-follow-output]").forEach(function (pre) {
    var atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    followed[pre.id] = { atEnd: atEnd, top: pre.scrollTop };
  });
});
document.addEventListener("htmx:afterSettle", function () {
  document.querySelectorAll("pre[data-follow-output]").forEach(function (pre) {
    var before = followed[pre.id];
    if (!before || before.atEnd) pre.scrollTop = pre.scrollHeight;
    else pre.scrollTop = before.top;
  });
});
