// Refresh the live part of the page (#live) every data-refresh seconds, in place:
// the URL (and so the filter) and the scroll position stay as they are. No library.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var seconds = Number(live.getAttribute("data-refresh") || "0");
  if (!(seconds > 0)) return;
  var busy = false;
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(window.location.href, {
      headers: { "X-Queuetopia-Partial": "1" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.removeAttribute("data-stale");
      })
      .catch(function () {
        live.setAttribute("data-stale", "true"); // shown by the CSS; tried again next tick
      })
      .finally(function () {
        busy = false;
      });
  }
  window.setInterval(refresh, seconds * 1000);
})();
