// A build's output while it runs: what it printed so far, then each piece as the builder prints it
// (pushed over a websocket), then how it ended with a link to the image. Each element [data-live-build]
// is one, with data-socket and data-image-url (its HEX is replaced by the image's ID).
//
// Step lines stand out, ANSI colours are rendered, and the view follows the output only while it is
// at the bottom (scroll up to read; the follow box brings it back).

import { parse, toHtml } from "./ansi.js";
import { LiveSocket, closeMessage } from "./live_socket.js";

const STEP = /^(Step \d+\/\d+ :|#\d+ \[|#\d+ (DONE|CACHED|ERROR))/;

class BuildOutput {
  constructor(root) {
    this.root = root;
    this.log = root.querySelector("[data-log]");
    this.state = root.querySelector("[data-build-status]");
    this.result = root.querySelector("[data-build-result]");
    this.followBox = root.querySelector("[data-follow]");
    this.partial = "";
    this.log.addEventListener("scroll", () => {
      this.followBox.checked = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
    }, { passive: true });
    this.log.addEventListener("wheel", (event) => {
      if (event.deltaY < 0) this.followBox.checked = false;
    }, { passive: true });
    this.followBox.addEventListener("change", () => this.followBox.checked && this.scroll());
    this.connect();
  }

  connect() {
    this.socket = new LiveSocket(this.root.dataset.socket, {
      onjson: (message) => this.message(message),
      onclose: (code, reason) => code !== 1000 && this.closed(closeMessage(code, reason)),
    });
  }

  message(message) {
    if (message.type === "log") {
      this.replace(message.text);
      this.status(message.status);
    } else if (message.type === "output") {
      this.append(message.text);
    } else if (message.type === "finished") {
      // The row's log is the record: it replaces what came piece by piece.
      this.replace(message.log);
      this.status(message.status);
      this.finished(message);
    }
  }

  replace(text) {
    this.log.textContent = "";
    this.partial = "";
    this.append(text);
  }

  append(text) {
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop();
    this.log.querySelector("[data-partial]")?.remove();
    const html = lines.map((line) => this.line(line)).join("");
    this.log.insertAdjacentHTML("beforeend", html + (this.partial ? this.line(this.partial, true) : ""));
    this.root.dataset.lines = String(this.log.childElementCount);
    this.scroll();
  }

  line(text, partial = false) {
    const parsed = parse(text);
    const step = STEP.test(parsed.plain) ? " step" : "";
    return `<div class="live-build-line${step}"${partial ? " data-partial" : ""}>${toHtml(parsed) || " "}</div>`;
  }

  scroll() {
    if (this.followBox.checked) this.log.scrollTop = this.log.scrollHeight;
  }

  status(status) {
    this.state.textContent = status;
    this.state.className = `pill ${status}`;
    this.root.dataset.status = status;
  }

  finished(message) {
    this.result.textContent = "";
    if (message.status === "succeeded" && message.image_id) {
      const link = document.createElement("a");
      link.href = this.root.dataset.imageUrl.replace("HEX", message.image_id.replace(/^sha256:/, ""));
      link.textContent = `Image ${message.image_id.slice(7, 19)}`;
      link.dataset.image = message.image_id;
      this.result.append("Built: ", link);
    } else if (message.error) {
      this.result.textContent = message.error;
      this.result.classList.add("error");
    }
  }

  closed(text) {
    const again = document.createElement("button");
    again.type = "button";
    again.className = "sm";
    again.textContent = "Reconnect";
    again.addEventListener("click", () => {
      this.result.textContent = "";
      this.connect();
    });
    this.result.textContent = `${text} `;
    this.result.append(again);
  }
}

for (const root of document.querySelectorAll("[data-live-build]")) new BuildOutput(root);
