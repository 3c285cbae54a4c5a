// The wizard's upload step: a drop zone, per-file progress bars, rejected files with their reasons,
// then the dataset's review (warnings, augmentation preview, thumbnails) loaded from the server.
//
// Files go to the REST API as multipart POSTs (session cookie + CSRF header): the first request creates
// the dataset (POST /api/datasets/), later ones add to it (POST /api/datasets/{id}/images/) in batches.
// Until the dataset exists files go one per request, so a file that is refused gets its own reason.
// The form itself then only sends the dataset id. Without JavaScript the form uploads the files itself.
//
// One class, or a folder per class: the answer above the drop zone goes with the first upload (left
// unanswered, the server takes one class). The review then shows how the dataset is read - its classes and
// counts, or one class, or (unanswered, and the zip has class folders) the question - and its buttons, or
// a changed answer, re-read the stored dataset on the server. Start training stays off until that summary
// is shown and no question is open.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) { return; }

  // Read with getAttribute: form.dataset would be the form's <select name="dataset">, not its data-* map.
  var config = {
    name: form.getAttribute("data-name"),
    createUrl: form.getAttribute("data-create-url"),
    addUrl: form.getAttribute("data-add-url"),
    reviewUrl: form.getAttribute("data-review-url"),
    labellingUrl: form.getAttribute("data-labelling-url")
  };
  var BATCH_FILES = 20;
  var BATCH_BYTES = 8 * 1024 * 1024;
  var list = document.getElementById("upload-list");
  var rejectedList = document.getElementById("rejected-list");
  var rejectedBox = document.getElementById("rejected-box");
  var summary = document.getElementById("upload-summary");
  var select = document.getElementById("id_dataset");
  var datasetField = document.getElementById("dataset-field");
  var review = document.getElementById("dataset-review");
  var startButton = document.getElementById("start-button");
  var hint = document.getElementById("start-hint");
  var dropzone = document.getElementById("dropzone");
  var queue = [];
  var busy = false;
  var datasetId = null;  // the dataset this page uploads into, once the first file is accepted
  var datasetCount = 0;  // its images, as the server last said
  var counts = { added: 0, rejected: 0, failed: 0 };
  var choices = form.querySelectorAll("input[name=labelling]");
  var reviewShown = false;  // the chosen dataset's review, with how it is read, is on the page
  var questionOpen = false;  // "one class, or a folder per class?" waits for an answer
  var relabelling = false;

  startButton.textContent = "Start training";

  function csrfToken() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) { return input.value; }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function formatBytes(n) {
    if (n < 1024) { return n + " B"; }
    if (n < 1024 * 1024) { return Math.round(n / 1024) + " KB"; }
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function makeRow(name, size) {
    var li = document.createElement("li");
    var label = document.createElement("span");
    var bar = document.createElement("progress");
    var status = document.createElement("span");
    label.className = "file-name";
    label.textContent = name + (size ? " (" + formatBytes(size) + ")" : "");
    bar.max = 1; bar.value = 0;
    bar.setAttribute("aria-label", "upload progress of " + name);
    status.className = "file-status";
    li.appendChild(label); li.appendChild(bar); li.appendChild(status);
    list.appendChild(li);
    list.hidden = false;
    var row = { li: li, bar: bar, status: status };
    setRow(row, "waiting", "waiting");
    return row;
  }

  function setRow(row, state, message) {
    row.li.className = "upload-item " + state;
    row.status.textContent = message;
    if (state === "done" || state === "rejected" || state === "failed") { row.bar.value = 1; }
    if (state === "rejected" || state === "failed") {  // shown together, above the (long) list of files
      rejectedList.appendChild(row.li);
      rejectedBox.hidden = false;
    }
  }

  function isZip(file) {
    return /\.zip$/i.test(file.name) || file.type === "application/zip" || file.type === "application/x-zip-compressed";
  }

  function addFiles(files) {
    Array.prototype.forEach.call(files, function (file) {
      queue.push({ file: file, field: isZip(file) ? "archive" : "images", row: makeRow(file.name, file.size) });
    });
    hint.hidden = true;
    showSummary();
    pump();
  }

  function takeBatch() {
    var first = queue.shift();
    var batch = [first];
    if (first.field === "archive" || datasetId === null) { return batch; }
    var bytes = first.file.size;
    while (queue.length && queue[0].field === "images" && batch.length < BATCH_FILES &&
           bytes + queue[0].file.size <= BATCH_BYTES) {
      bytes += queue[0].file.size;
      batch.push(queue.shift());
    }
    return batch;
  }

  function pump() {
    if (busy) { return; }
    if (!queue.length) { finished(); return; }
    if (datasetId === null && queue[0].field === "images" && labellingChoice() === "classes") {
      // Loose files carry no class: only a zip's folders can say which class each image is.
      var item = queue.shift();
      counts.rejected += 1;
      setRow(item.row, "rejected", "not used: loose images have no class. Put them in a zip with a folder per " +
             "class, or choose \u201cOne class\u201d above.");
      pump();
      return;
    }
    busy = true;
    updateButton();
    send(takeBatch());
  }

  function send(batch) {
    var data = new FormData();
    if (datasetId === null) {
      data.append("name", config.name);
      var choice = labellingChoice();
      if (choice) { data.append("labelled", choice === "classes" ? "true" : "false"); }
    }
    batch.forEach(function (item) {
      data.append(item.field, item.file, item.file.name);
      setRow(item.row, "uploading", "uploading…");
    });
    var url = datasetId === null ? config.createUrl : config.addUrl.replace("/0/", "/" + datasetId + "/");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable) { showProgress(batch, event.loaded / event.total); }
    };
    xhr.onload = function () { answered(batch, xhr); };
    xhr.onerror = function () {
      batch.forEach(function (item) {
        counts.failed += 1;
        setRow(item.row, "failed", "not uploaded: the connection failed. Check it, then add this file again.");
      });
      busy = false; pump();
    };
    xhr.send(data);
  }

  // One request carries several files one after the other: spread the bytes sent over them in order.
  function showProgress(batch, fraction) {
    var total = batch.reduce(function (sum, item) { return sum + item.file.size; }, 0);
    var sent = fraction * total;
    var start = 0;
    batch.forEach(function (item) {
      var size = Math.max(item.file.size, 1);
      var value = Math.min(Math.max((sent - start) / size, 0), 1);
      item.row.bar.value = value;
      if (value >= 1) { item.row.status.textContent = "checking…"; }
      start += item.file.size;
    });
  }

  function parse(xhr) {
    try { return JSON.parse(xhr.responseText); } catch (e) { return null; }
  }

  function errorText(body) {
    if (!body) { return ""; }
    if (typeof body.detail === "string") { return body.detail; }
    return Object.keys(body).map(function (key) {
      return [].concat(body[key]).join(" ");
    }).join(" ");
  }

  function answered(batch, xhr) {
    var body = parse(xhr);
    if ((xhr.status === 200 || xhr.status === 201) && body) {
      accepted(batch, body);
    } else if (xhr.status === 429) {
      var wait = parseInt(xhr.getResponseHeader("Retry-After") || "5", 10);
      batch.forEach(function (item) { setRow(item.row, "waiting", "the server is busy; trying again in " + wait + " s"); });
      queue = batch.concat(queue);
      setTimeout(function () { busy = false; pump(); }, wait * 1000);
      return;
    } else if (xhr.status === 400 && body) {
      var message = errorText(body);
      batch.forEach(function (item) {
        var marker = item.file.name + ": ";
        var at = message.indexOf(marker);
        counts.rejected += 1;
        setRow(item.row, "rejected", "not used: " + (at >= 0 ? message.slice(at + marker.length) : message));
      });
    } else if (xhr.status === 503 && body) {
      batch.forEach(function (item) {
        counts.failed += 1;
        setRow(item.row, "failed", "not uploaded: " + errorText(body));
      });
    } else if (xhr.status === 413) {
      batch.forEach(function (item) {
        counts.failed += 1;
        setRow(item.row, "failed", "not uploaded: too large for the server. Export it smaller, or upload it in a zip.");
      });
    } else {
      batch.forEach(function (item) {
        counts.failed += 1;
        setRow(item.row, "failed", "not uploaded: the server answered " + xhr.status + ". Try again in a minute.");
      });
    }
    busy = false;
    pump();
  }

  function accepted(batch, body) {
    var before = datasetId === null ? 0 : datasetCount;
    datasetId = body.id;
    datasetCount = body.image_count;
    chooseDataset(body);
    var rejected = (body.rejected || []).slice();
    batch.forEach(function (item) {
      if (item.field === "archive") {
        var fromZip = rejected.splice(0, rejected.length);
        var added = datasetCount - before;
        counts.added += added;
        setRow(item.row, "done", "zip: " + added + " image" + (added === 1 ? "" : "s") + " added" +
               (fromZip.length ? ", " + fromZip.length + " file" + (fromZip.length === 1 ? "" : "s") +
                " in it not used (listed above)" : ""));
        fromZip.forEach(function (r) { counts.rejected += 1; setRow(makeRow(r.file), "rejected", "not used: " + r.reason); });
        return;
      }
      var index = -1;
      rejected.some(function (r, i) { if (r.file === item.file.name) { index = i; return true; } return false; });
      if (index >= 0) {
        counts.rejected += 1;
        setRow(item.row, "rejected", "not used: " + rejected.splice(index, 1)[0].reason);
      } else {
        counts.added += 1;
        setRow(item.row, "done", "added");
      }
    });
    rejected.forEach(function (r) { counts.rejected += 1; setRow(makeRow(r.file), "rejected", "not used: " + r.reason); });
  }

  function chooseDataset(body) {
    var option = select.querySelector("option[value='" + body.id + "']");
    if (!option) {
      option = document.createElement("option");
      option.value = body.id;
      select.appendChild(option);
    }
    option.textContent = body.name + " (" + body.image_count + " images, uploaded just now)";
    select.value = String(body.id);
  }

  function showSummary() {
    var waiting = queue.length + (busy ? 1 : 0);
    var parts = [counts.added + " image" + (counts.added === 1 ? "" : "s") + " added"];
    if (counts.rejected) { parts.push(counts.rejected + " not used (reasons below)"); }
    if (counts.failed) { parts.push(counts.failed + " not uploaded"); }
    summary.textContent = (busy || queue.length ? "Uploading… " : "Upload finished: ") + parts.join(", ") +
      (waiting && busy ? "; " + queue.length + " waiting." : ".");
    summary.hidden = false;
  }

  function finished() {
    busy = false;
    updateButton();
    if (datasetId !== null) { loadReview(datasetId); }
  }

  function updateButton() {
    if (busy || queue.length || counts.added + counts.rejected + counts.failed) { showSummary(); }
    var why = "";
    if (busy || queue.length) { why = "Wait until the upload has finished, then start training."; }
    else if (!select.value) {
      why = "Add images first: drop them on the box above or choose files" +
        (datasetField.hidden ? "." : ", or pick a dataset you uploaded before.");
    }
    else if (relabelling || !reviewShown) { why = "Checking the dataset…"; }
    else if (questionOpen) { why = "Answer above first: one class, or a folder per class?"; }
    startButton.disabled = why !== "";
    hint.textContent = why;
    hint.hidden = why === "";
  }

  function labellingChoice() {
    var value = "";
    Array.prototype.forEach.call(choices, function (input) { if (input.checked) { value = input.value; } });
    return value;
  }

  function setChoice(value) {
    Array.prototype.forEach.call(choices, function (input) { input.checked = input.value === value; });
  }

  function loadReview(id) {
    reviewShown = false;
    updateButton();
    review.innerHTML = "<p class='help'>Checking the dataset…</p>";
    var url = config.reviewUrl.replace("/0/", "/" + id + "/") + (labellingChoice() ? "" : "&ask=1");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) { if (select.value === String(id)) { showReview(html); } })
      .catch(function () { review.innerHTML = "<p class='error'>Could not load the dataset's preview; reload the page to try again.</p>"; });
  }

  // The review is on the page: the answer above now says how the dataset is read, unless a question is open.
  function showReview(html) {
    review.innerHTML = html;
    var box = review.querySelector(".labelling");
    questionOpen = !!(box && box.getAttribute("data-question"));
    if (box && !questionOpen && !(box.getAttribute("data-labelled") === "false" && labellingChoice() === "one")) {
      setChoice(box.getAttribute("data-labelled") === "true" ? "classes" : "one");
    }
    reviewShown = true;
    relabelling = false;
    updateButton();
  }

  // Read the chosen dataset again as one class or a folder per class; the server answers its review again.
  function relabel(value) {
    var id = select.value;
    if (!id) { return; }
    setChoice(value);
    relabelling = true;
    updateButton();
    var data = new FormData();
    data.append("labelled", value === "classes" ? "true" : "false");
    fetch(config.labellingUrl.replace("/0/", "/" + id + "/"), {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "text/html" }
    })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        setChoice("");  // the review's answer sets it again, to what the dataset now is
        if (select.value === id) { showReview(html); } else { relabelling = false; updateButton(); }
      })
      .catch(function () {
        relabelling = false;
        review.innerHTML = "<p class='error'>Could not change how the dataset is read; reload the page to try again.</p>";
        updateButton();
      });
  }

  // --- wiring ---------------------------------------------------------------------------------
  ["images", "archive"].forEach(function (name) {
    var input = form.querySelector("input[name=" + name + "]");
    input.addEventListener("change", function () {
      addFiles(input.files);
      input.value = "";  // the files go through the API; the form must not send them again
    });
  });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) { event.preventDefault(); dropzone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("dragging"); });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) { addFiles(event.dataTransfer.files); }
  });
  // A file dropped next to the zone must not make the browser leave the page to show it.
  window.addEventListener("dragover", function (event) { event.preventDefault(); });
  window.addEventListener("drop", function (event) { event.preventDefault(); });

  select.addEventListener("change", function () {
    if (select.value) { loadReview(select.value); } else { review.innerHTML = ""; reviewShown = false; updateButton(); }
  });
  Array.prototype.forEach.call(choices, function (input) {
    input.addEventListener("change", function () {
      if (select.value && reviewShown && !busy && !queue.length) { relabel(input.value); }
    });
  });
  review.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.relabel") : null;
    if (button) { relabel(button.getAttribute("data-labelled") === "true" ? "classes" : "one"); }
  });
  if (select.value) { loadReview(select.value); } else { updateButton(); }

  form.addEventListener("submit", function (event) {
    updateButton();
    if (startButton.disabled) {
      event.preventDefault();
    } else {
      startButton.disabled = true;
      startButton.textContent = "Starting…";
    }
  });
})();
