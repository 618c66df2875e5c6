// deliver's web view: a name filter on the page of all apps, and live
// updates: on an event about an app shown, the page's content is fetched
// again and swapped in (no framework, nothing loaded from elsewhere).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var q = document.getElementById("q");
  function filterRows() {
    if (!q) return;
    var text = q.value.toLowerCase(), shown = 0;
    document.querySelectorAll("#apps tr.app").forEach(function (tr) {
      var ok = tr.dataset.name.toLowerCase().indexOf(text) >= 0;
      tr.hidden = !ok;
      if (ok) shown++;
    });
    var n = document.getElementById("shown");
    if (n) n.textContent = shown;
  }
  if (q) q.addEventListener("input", filterRows);

  // An event that lands while a refresh is in flight asks for one more
  // after it: the page in flight may predate that event (a run's end
  // right after its start).
  var pending = false, again = false;
  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("content"), cur = document.getElementById("content");
        if (!fresh || !cur) return;
        var open = {};
        cur.querySelectorAll("details[open] > summary").forEach(function (s) { open[s.textContent] = true; });
        // What the user typed (the name filter, a pin's reason) and where
        // the cursor is survive the swap: an event may land between typing
        // a reason and pressing "pin".
        var focused = document.activeElement && document.activeElement.id, typed = {};
        cur.querySelectorAll("input[id]:not([type=hidden]), textarea[id]").forEach(function (el) { typed[el.id] = el.value; });
        cur.innerHTML = fresh.innerHTML;
        cur.querySelectorAll("details > summary").forEach(function (s) { if (open[s.textContent]) s.parentNode.open = true; });
        Object.keys(typed).forEach(function (id) { var el = document.getElementById(id); if (el) el.value = typed[id]; });
        if (focused) { var f = document.getElementById(focused); if (f && f.focus) f.focus(); }
        q = document.getElementById("q");
        if (q) { q.addEventListener("input", filterRows); filterRows(); }
      })
      .catch(function () {})
      .then(function () {
        pending = false;
        if (again) { again = false; refresh(); }
      });
  }

  if (!window.EventSource) { if (live) live.textContent = "no live updates"; return; }
  // The page's cursor: the events sent after it began to read its data
  // come first, so none sent before the stream opened is lost. On a
  // reconnect the browser sends the last event's id instead.
  var after = document.body.dataset.events;
  var es = new EventSource("/events" + (after ? "?after=" + encodeURIComponent(after) : ""));
  es.onopen = function () { if (live) { live.textContent = "● live"; live.className = "live on"; } };
  es.onerror = function () { if (live) { live.textContent = "○ reconnecting"; live.className = "live"; } };
  // The server could not tell what the page missed (it restarted, or the
  // page is older than the events it keeps): read the page again.
  es.addEventListener("stale", function () { refresh(); });
  es.addEventListener("app", function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (x) { return; }
    if (live) live.title = "last update: " + e.kind + " " + e.app + (e.result ? " (" + e.result + ")" : "");
    var summary = document.getElementById("summary");
    if (summary && summary.dataset.app !== e.app) return; // another app's page
    document.body.dataset.lastEvent = e.kind + ":" + e.app;
    refresh();
  });
})();
