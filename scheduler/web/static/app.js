// jobrun web UI: streams a running job's log, highlights linked lines and
// refreshes the pages that change. Every page reads without it.
"use strict";
(function () {
  // Highlight the line #L<n> names (and a range #L3-L9).
  function highlight() {
    document.querySelectorAll(".log .l.hl").forEach(function (e) { e.classList.remove("hl"); });
    var m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
    if (!m) return;
    var from = +m[1], to = m[2] ? +m[2] : from;
    for (var i = from; i <= to; i++) {
      var e = document.getElementById("L" + i);
      if (e) e.classList.add("hl");
    }
    var first = document.getElementById("L" + from);
    if (first) first.scrollIntoView({ block: "center" });
  }
  window.addEventListener("hashchange", highlight);

  // At the bottom of the page, new lines keep it at the bottom.
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
  }

  function follow(log) {
    var src = log.getAttribute("data-follow");
    var live = document.getElementById("live");
    var es = new EventSource(src);
    es.addEventListener("lines", function (ev) {
      var stick = atBottom() && !location.hash;
      log.insertAdjacentHTML("beforeend", ev.data);
      if (live) live.textContent = "Streaming live…";
      if (stick) window.scrollTo(0, document.body.scrollHeight);
    });
    es.addEventListener("status", function (ev) {
      document.querySelectorAll("[data-status]").forEach(function (e) {
        e.textContent = ev.data;
        e.className = "status st-" + ev.data;
      });
    });
    es.addEventListener("steps", function (ev) {
      var steps = document.getElementById("steps");
      if (steps) steps.innerHTML = ev.data;
    });
    function reload() { es.close(); location.reload(); }
    es.addEventListener("end", reload);
    es.addEventListener("reload", reload);
    return es;
  }

  // A running job's duration counts up.
  function tick() {
    document.querySelectorAll("[data-since]").forEach(function (e) {
      var s = Math.max(0, Math.floor((Date.now() - Date.parse(e.getAttribute("data-since"))) / 1000));
      var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
      e.textContent = (h ? h + "h" : "") + (h || m ? m + "m" : "") + (s % 60) + "s";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    highlight();
    if (document.querySelector("[data-since]")) setInterval(tick, 1000);
    var log = document.getElementById("log");
    if (log && log.hasAttribute("data-follow")) {
      follow(log);
      return; // the stream keeps the page current
    }
    var every = +document.body.getAttribute("data-refresh");
    if (every > 0) {
      setTimeout(function () { if (!document.hidden) location.reload(); else document.addEventListener("visibilitychange", function () { location.reload(); }, { once: true }); }, every * 1000);
    }
  });
})();
