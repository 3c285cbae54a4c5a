// Wizard step 1: show the training times of the chosen generator type and image size only.
(function () {
  "use strict";
  var box = document.getElementById("training-times");
  if (!box) return;
  var form = box.closest("form");
  function update() {
    var kind = form.querySelector("input[name=kind]:checked");
    var resolution = form.querySelector("[name=resolution]");
    box.querySelectorAll("table[data-kind]").forEach(function (table) {
      table.hidden = !(kind && resolution && table.dataset.kind === kind.value &&
                       table.dataset.resolution === String(resolution.value));
    });
  }
  form.addEventListener("change", update);
  update();
})();
