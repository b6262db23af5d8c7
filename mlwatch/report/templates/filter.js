(function () {
  "use strict";
  var box = document.getElementById("feature-filter");
  if (!box) { return; }
  var only = document.getElementById("drifted-only");
  var count = document.getElementById("shown-count");
  var sections = Array.prototype.slice.call(document.querySelectorAll("details.feature"));
  var names = sections.map(function (d) { return d.getAttribute("data-name").toLowerCase(); });
  function apply() {
    var q = box.value.trim().toLowerCase();
    var shown = 0;
    for (var i = 0; i < sections.length; i++) {
      var d = sections[i];
      var hide = (q && names[i].indexOf(q) < 0) ||
        (only.checked && d.getAttribute("data-drifted") !== "true");
      d.hidden = !!hide;
      if (!hide) { shown++; }
    }
    count.textContent = shown + " of " + sections.length + " shown";
  }
  box.addEventListener("input", apply);
  only.addEventListener("change", apply);
  if (box.value || only.checked) { apply(); }
}());
