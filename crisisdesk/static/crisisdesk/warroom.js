// Ticks the war room's countdowns every second. The server renders each one
// (text and colour) so the page reads right without this script; the words come
// translated from the page (#countdown-words), formatted like warroom_tags.span_text.
(function () {
  "use strict";
  var words = JSON.parse(document.getElementById("countdown-words").textContent);
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function fill(template, values) {
    return template.replace(/%\((\w+)\)(02d|s)/g, function (_m, key, fmt) {
      return fmt === "02d" ? pad(values[key]) : String(values[key]);
    });
  }
  function span(seconds) {
    seconds = Math.abs(Math.trunc(seconds));
    if (seconds < 60) return fill(words.s, { s: seconds });
    if (seconds < 3600) return fill(words.ms, { m: Math.floor(seconds / 60), s: seconds % 60 });
    if (seconds < 86400) return fill(words.hm, { h: Math.floor(seconds / 3600), m: Math.floor(seconds % 3600 / 60) });
    return fill(words.dh, { d: Math.floor(seconds / 86400), h: Math.floor(seconds % 86400 / 3600) });
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown[data-deadline]").forEach(function (el) {
      var seconds = (Date.parse(el.dataset.deadline) - now) / 1000;
      var overdue = seconds < 0;
      el.textContent = fill(overdue ? words.overdue : words.in, { t: span(seconds) });
      el.classList.toggle("overdue", overdue);
    });
  }
  // An exercise's clock (warroom_tags.clock) counts up from data-from while it runs.
  function clock() {
    document.querySelectorAll("time.clock[data-from]").forEach(function (el) {
      var s = Math.max(0, Math.trunc((Date.now() - Date.parse(el.dataset.from)) / 1000));
      el.textContent = Math.floor(s / 3600) + ":" + pad(Math.floor(s % 3600 / 60)) + ":" + pad(s % 60);
    });
  }
  setInterval(tick, 1000);
  setInterval(clock, 1000);
})();
// A form that asks before it goes (data-confirm holds the question, translated on the
// server); without JavaScript it simply goes.
document.addEventListener("submit", function (event) {
  var question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
