// Small progressive enhancements. Every page works without this script.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  // Print buttons (hidden without JavaScript; the browser's own print works too).
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
  // Move focus to the error summary after a failed submit, so keyboard and screen-reader
  // users land on the list of problems.
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
  // Opening a link to a step or field: open enclosing <details> so the target is visible.
  function reveal() {
    if (!location.hash) return;
    var el = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (!el) return;
    for (var p = el.parentElement; p; p = p.parentElement) {
      if (p.tagName === "DETAILS") p.open = true;
    }
    el.classList.add("target-flash");
    var focusable = el.matches("input,select,textarea") ? el : el.querySelector("input,select,textarea");
    if (focusable) focusable.focus({ preventScroll: false });
  }
  // GIST-only fields: hidden once a histology other than GIST is chosen, unless one of them
  // already holds a value (nothing entered is ever hidden). Without this script all show.
  var histology = document.getElementById("f-histology");
  var gist = document.querySelector(".section-gist");
  function gistOnly() {
    if (!histology || !gist) return;
    var filled = Array.prototype.some.call(gist.querySelectorAll("select,input"), function (c) {
      return c.type === "checkbox" ? c.checked : c.value !== "";
    });
    gist.hidden = histology.value !== "" && histology.value !== "gist" && !filled;
  }
  if (histology) { histology.addEventListener("change", gistOnly); gistOnly(); }
  window.addEventListener("hashchange", reveal);
  reveal();
})();
