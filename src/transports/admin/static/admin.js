// Settings → Webhooks: small enhancements; every page works without them.
"use strict";

function setupCopyButtons() {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (_) {
        field.select();
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

function setupHandshake() {
  const panel = document.getElementById("handshake");
  if (!panel || !panel.dataset.statusUrl) return;
  const field = (name) => panel.querySelector(`[data-field="${name}"]`);
  let delay = 1000;
  async function poll() {
    if (panel.dataset.state !== "verifying") return;
    try {
      const answer = await fetch(panel.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!answer.ok) return;
      const status = await answer.json();
      panel.dataset.state = status.state;
      const badge = field("state");
      badge.textContent = status.state;
      badge.className = `state state-${status.state}`;
      field("title").textContent = status.title;
      field("message").textContent = status.message;
      field("error").textContent = status.error || "";
      field("error-box").hidden = !status.error;
      for (const heading of document.querySelectorAll(".heading [data-state]")) {
        heading.dataset.state = status.state;
        heading.textContent = status.state;
        heading.className = `state state-${status.state}`;
      }
    } catch (_) {
      // The server is unreachable for a moment: keep polling, more slowly.
    }
    delay = Math.min(delay * 1.5, 10000);
    setTimeout(poll, delay);
  }
  setTimeout(poll, delay);
}

function setupEventCheckboxes() {
  for (const shortcut of document.querySelectorAll("input[data-family]")) {
    const members = document.querySelectorAll(`input[data-member="${shortcut.dataset.family}"]`);
    shortcut.addEventListener("change", () => {
      for (const member of members) member.checked = shortcut.checked;
    });
    for (const member of members) {
      member.addEventListener("change", () => {
        if (!member.checked) shortcut.checked = false;
      });
    }
  }
}

function setupTestForm() {
  const form = document.getElementById("test-form");
  if (!form) return;
  const data = form.querySelector("#data");
  const event = form.querySelector("#event");
  const result = document.getElementById("data-check");
  let timer = null;
  async function check() {
    const body = new URLSearchParams({
      csrf: form.querySelector('input[name="csrf"]').value,
      event: event.value,
      data: data.value,
    });
    try {
      const answer = await fetch(form.dataset.checkUrl, { method: "POST", body });
      if (!answer.ok) return;
      const verdict = await answer.json();
      result.textContent = verdict.ok ? `✓ ${verdict.detail}` : verdict.detail;
      result.className = `check-result ${verdict.ok ? "ok" : "bad"}`;
      data.setAttribute("aria-invalid", verdict.ok ? "false" : "true");
    } catch (_) {
      result.textContent = "";
    }
  }
  data.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
  event.addEventListener("change", () => {
    const sample = document.querySelector(`template[data-sample="${CSS.escape(event.value)}"]`);
    if (sample) data.value = sample.content.textContent;
    check();
  });
  // The separate "Load its sample" form is for pages without JavaScript.
  const pick = document.querySelector("form.pick");
  if (pick) pick.hidden = true;
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopyButtons();
  setupHandshake();
  setupEventCheckboxes();
  setupTestForm();
});
