// Keep a page in step with its containers' states, without a reload: the events of ws/events/ (every
// container the user can see) update each element marked [data-container-id], and are dispatched as
// the DOM event `webengine:container` (detail: {id, name, status, exit_code, action}) for pages that
// want more. Inside a marked element, [data-container-status] shows the status (its class becomes
// `pill <status>`). A container that is not on the page yet is announced by [data-live-list-notice],
// if the page has one.

import { LiveSocket } from "./live_socket.js";

const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

function update(event) {
  for (const row of document.querySelectorAll(`[data-container-id="${CSS.escape(event.id)}"]`)) {
    row.dataset.status = event.status;
    row.classList.toggle("removed", event.status === "removed");
    for (const status of row.querySelectorAll("[data-container-status]")) {
      status.textContent = event.status;
      status.className = `pill ${event.status}`;
    }
  }
  const notice = document.querySelector("[data-live-list-notice]");
  if (notice && event.action === "create" && !document.querySelector(`[data-container-id="${CSS.escape(event.id)}"]`)) {
    notice.hidden = false;
    notice.textContent = `New container ${event.name}: reload to see it.`;
  }
  document.dispatchEvent(new CustomEvent("webengine:container", { detail: event }));
}

function listen(attempt = 0) {
  new LiveSocket("/ws/events/", {
    onopen: () => {
      attempt = 0;
    },
    onjson: (message) => message.type === "container" && update(message),
    onclose: (code) => {
      if (code === 4401) return; // logged out: the next page asks to log in
      setTimeout(() => listen(attempt + 1), RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
    },
  });
}

if (document.querySelector("[data-container-id]")) listen();
