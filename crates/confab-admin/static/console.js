// Confab admin console: the dashboard's live charts (polls /stats.json, draws SVG lines).
// Everything else in the console works without this script.
(function () {
  "use strict";
  var charts = document.querySelectorAll("svg[data-series]");
  if (!charts.length) return;
  function draw(svg, values) {
    var ns = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!values.length) return;
    var max = Math.max.apply(null, values.concat([1]));
    var step = values.length > 1 ? 300 / (values.length - 1) : 300;
    var points = values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (58 - (v / max) * 54).toFixed(1);
    }).join(" ");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points);
    svg.appendChild(line);
    var title = document.createElementNS(ns, "title");
    title.textContent = "max " + max;
    svg.appendChild(title);
  }
  function poll() {
    fetch("/stats.json", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        charts.forEach(function (svg) { draw(svg, data[svg.dataset.series] || []); });
        var s = data.sessions;
        var el = document.getElementById("stat-sessions");
        if (el && s.length) el.textContent = s[s.length - 1];
      })
      .catch(function () {});
  }
  poll();
  setInterval(poll, 2000);
})();
