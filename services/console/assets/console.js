// regsweep console: the live parts of server-rendered pages. Everything
// works without this script; it keeps countdowns current and follows a
// running job's log.
"use strict";

function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function tickCountdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll("time[data-countdown]")) {
    const left = (Date.parse(el.dataset.countdown) - now) / 1000;
    el.textContent = left <= 0 ? "due" : "in " + span(left);
  }
}

function followLog(pre) {
  const source = new EventSource(pre.dataset.follow);
  source.addEventListener("line", (event) => {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    // "HH:MM:SS text", as the server renders lines.
    const cut = event.data.indexOf(" ");
    const line = document.createElement("span");
    line.className = "line";
    const at = document.createElement("span");
    at.className = "at";
    at.textContent = cut < 0 ? "" : event.data.slice(0, cut);
    line.appendChild(at);
    line.appendChild(document.createTextNode(" " + (cut < 0 ? event.data : event.data.slice(cut + 1)) + "\n"));
    pre.appendChild(line);
    if (stick) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    source.close();
    const status = document.getElementById("job-status");
    if (status) {
      status.textContent = "";
      const badge = document.createElement("span");
      badge.className = "badge s-" + event.data;
      badge.textContent = event.data.replace(/_/g, " ");
      status.appendChild(badge);
    }
    pre.dataset.ended = event.data;
    // The job ended: nothing left to cancel.
    for (const button of document.querySelectorAll("form.cancel button")) {
      button.disabled = true;
    }
  });
  source.addEventListener("failed", () => source.close());
}

// Redraws a server-rendered part now and then (the overview's chart).
function refreshEvery(el, ms) {
  setInterval(async () => {
    const response = await fetch(el.dataset.refresh, { credentials: "same-origin" });
    // Signed out meanwhile: the answer is the sign-in page, not the part.
    if (response.ok && !response.redirected) el.innerHTML = await response.text();
  }, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-refresh]")) refreshEvery(el, 60000);
  if (document.querySelector("time[data-countdown]")) {
    tickCountdowns();
    setInterval(tickCountdowns, 1000);
  }
  const log = document.querySelector("pre[data-follow]");
  if (log) followLog(log);
});
