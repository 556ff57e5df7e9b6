/* The review queue by keyboard. Attached by data- attributes; no globals. */
(function () {
  "use strict";

  var shownAt = performance.now();
  var leaseTimer = null;

  function queue() { return document.querySelector("[data-review-queue]"); }
  function dialog() { return document.querySelector("[data-shortcuts]"); }
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function isTyping(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && el.type !== "checkbox" && el.type !== "radio";
  }

  function press(key) {
    var target = document.querySelector('#item [data-key="' + key + '"]');
    if (!target || target.disabled) return false;
    // htmx wires a swapped-in form when it settles; a key pressed before that would submit
    // the form natively (a full page load). process() is idempotent, so wire it now.
    if (window.htmx && target.form) window.htmx.process(target.form);
    target.click();
    return true;
  }

  function toggleShortcuts(open) {
    var d = dialog();
    if (!d) return;
    if (open && !d.open) d.showModal();
    else if (!open && d.open) d.close();
  }

  function onKey(event) {
    if (!queue() || event.altKey || event.metaKey) return;
    var el = event.target;
    if (event.ctrlKey) {
      if (event.key === "Enter" && el.matches && el.matches("[data-edit-text]")) {
        event.preventDefault();
        press("edit-save");
      }
      return;
    }
    if (isTyping(el)) {
      if (event.key === "Escape") el.blur();
      else if (event.key === "Enter" && el.matches("[data-typeahead]")) {
        event.preventDefault();
        press("typeahead");
      }
      return;
    }
    if (event.key === "?") { event.preventDefault(); toggleShortcuts(!(dialog() && dialog().open)); return; }
    if (dialog() && dialog().open) return;
    var focusTarget = { "/": "[data-typeahead]", e: "[data-edit-text]" }[event.key];
    if (focusTarget) {
      var field = document.querySelector("#item " + focusTarget);
      if (field) { event.preventDefault(); field.focus(); }
      return;
    }
    var key = event.key === "Enter" ? "enter" : event.key.toLowerCase();
    if (press(key)) event.preventDefault();
  }

  function renewLease(item) {
    var url = item.getAttribute("data-lease-url");
    return fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() } })
      .then(function (response) {
        if (response.status === 409) {
          var warning = document.createElement("p");
          warning.className = "error";
          warning.setAttribute("role", "alert");
          warning.textContent = "Your hold on this item ran out; another reviewer may take it. Decide or skip to go on.";
          item.prepend(warning);
          stopLease();
        }
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }

  function stopLease() { if (leaseTimer) { clearInterval(leaseTimer); leaseTimer = null; } }

  function startItem(item) {
    stopLease();
    shownAt = performance.now();
    var heading = item.querySelector("[data-item-heading]");
    if (heading) heading.focus({ preventScroll: false });
    var seconds = parseInt(item.getAttribute("data-lease-seconds") || "0", 10);
    if (item.getAttribute("data-lease-url") && seconds > 0) {
      leaseTimer = setInterval(function () { renewLease(item); }, Math.max(5, seconds / 3) * 1000);
    }
  }

  function onLoad(root) {
    var item = root.matches && root.matches("[data-review-item]") ? root : root.querySelector && root.querySelector("[data-review-item]");
    if (item && queue()) startItem(item);
    var opener = root.querySelector && root.querySelector("[data-shortcuts-open]");
    if (opener) opener.addEventListener("click", function () { toggleShortcuts(true); });
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.elt.closest && event.detail.elt.closest("[data-decide-form]")) {
      event.detail.parameters["duration_ms"] = Math.round(performance.now() - shownAt);
    }
  });
  if (window.htmx) window.htmx.onLoad(onLoad);
  else document.addEventListener("DOMContentLoaded", function () { onLoad(document.body); });
})();
