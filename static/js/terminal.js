// The terminal: xterm.js bridged over a websocket to a shell in the container (an exec on a PTY) or to
// its main process (attach). Each element [data-live-terminal] is one, with data-terminal-socket and
// data-attach-socket, and data-autoconnect to connect at once.
//
// - Its size follows the window (and the full-screen mode), and the PTY's size follows it.
// - Copy: Ctrl+Shift+C or Ctrl+Insert. Paste: Ctrl+Shift+V or Shift+Insert (or the browser's menu).
// - When the session ends (the shell exited, the container stopped, the connection went) the panel says
//   why, and offers to reconnect.

import { Terminal } from "../vendor/xterm/lib/xterm.mjs";
import { FitAddon } from "../vendor/xterm-addon-fit/addon-fit.mjs";
import { LiveSocket, closeMessage } from "./live_socket.js";

const encoder = new TextEncoder();

class TerminalPanel {
  constructor(root) {
    this.root = root;
    this.form = root.querySelector("[data-terminal-form]");
    this.status = root.querySelector("[data-status]");
    this.overlay = root.querySelector("[data-overlay]");
    this.socket = null;
    this.term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "SF Mono", "JetBrains Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 10000,
      theme: { background: "#0e1116", foreground: "#e4e8ee" },
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(root.querySelector("[data-term]"));
    this.term.attachCustomKeyEventHandler((event) => this.key(event));
    this.term.onData((data) => this.socket?.sendBytes(encoder.encode(data)));
    this.term.onBinary((data) => this.socket?.sendBytes(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    this.term.onResize(({ rows, cols }) => this.socket?.send({ type: "resize", rows, cols }));
    new ResizeObserver(() => this.resize()).observe(root.querySelector("[data-term]"));
    this.resize();
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.connect();
    });
    this.form.elements.command.addEventListener("change", () => this.choices());
    this.form.elements.mode.addEventListener("change", () => this.choices());
    this.choices();
    root.querySelector("[data-fullscreen]").addEventListener("click", () => this.fullscreen());
    root.querySelector("[data-reconnect]").addEventListener("click", () => this.connect());
    if (root.dataset.autoconnect) this.connect();
    else this.ended(root.dataset.idle || "Not connected.");
  }

  choices() {
    const exec = this.form.elements.mode.value === "exec";
    for (const el of this.form.querySelectorAll("[data-exec-only]")) el.hidden = !exec;
    this.form.elements.custom.hidden = !exec || this.form.elements.command.value !== "custom";
  }

  resize() {
    // The size follows the element; fit() measures, and onResize tells the PTY when it changed.
    cancelAnimationFrame(this.fitting);
    this.fitting = requestAnimationFrame(() => {
      this.fit.fit();
      this.root.dataset.size = `${this.term.rows}x${this.term.cols}`;
    });
  }

  connect() {
    this.socket?.close();
    const elements = this.form.elements;
    const exec = elements.mode.value === "exec";
    const command = elements.command.value === "custom" ? elements.custom.value.trim() : elements.command.value;
    if (exec && !command) {
      elements.custom.focus();
      return;
    }
    this.fit.fit();
    this.term.reset();
    this.overlay.hidden = true;
    this.say(exec ? `Connecting: ${command === "auto" ? "bash or sh" : command}…` : "Attaching…");
    const open = exec
      ? { type: "open", command, user: elements.user.value.trim(), rows: this.term.rows, cols: this.term.cols }
      : { type: "open", rows: this.term.rows, cols: this.term.cols };
    this.term.options.convertEol = false;
    const socket = new LiveSocket(exec ? this.root.dataset.terminalSocket : this.root.dataset.attachSocket, {
      onopen: () => socket.send(open),
      onjson: (message) => this.message(message),
      onbinary: (data) => this.term.write(new Uint8Array(data)),
      onclose: (code, reason) => {
        if (this.socket === socket) this.ended(closeMessage(code, reason));
      },
    });
    this.socket = socket;
  }

  message(message) {
    if (message.type !== "opened") return;
    if (message.tty === false) this.term.options.convertEol = true; // a main process without a terminal writes bare \n
    const who = message.command === undefined ? "the main process" : message.command === "auto" ? "a shell" : message.command;
    this.say(`Connected: ${who}${message.user ? ` as ${message.user}` : ""}${message.pid ? ` (pid ${message.pid})` : ""}`);
    this.root.dataset.connected = "1";
    this.connectedOnce = true;
    this.term.focus();
  }

  ended(text) {
    this.socket = null;
    delete this.root.dataset.connected;
    this.say(text);
    this.root.querySelector("[data-overlay-text]").textContent = text;
    this.root.querySelector("[data-reconnect]").textContent = this.connectedOnce ? "Reconnect" : "Connect";
    this.overlay.hidden = false;
  }

  say(text) {
    this.status.textContent = text;
  }

  key(event) {
    if (event.type !== "keydown") return true;
    const copy = (event.ctrlKey && event.shiftKey && event.code === "KeyC") || (event.ctrlKey && event.key === "Insert");
    const paste = (event.ctrlKey && event.shiftKey && event.code === "KeyV") || (event.shiftKey && event.key === "Insert");
    if (copy) {
      if (this.term.hasSelection()) navigator.clipboard.writeText(this.term.getSelection());
    } else if (paste) {
      navigator.clipboard.readText().then((text) => this.term.paste(text), () => this.say("The browser did not allow reading the clipboard: use its Paste menu."));
    } else {
      return true;
    }
    event.preventDefault();
    return false;
  }

  fullscreen() {
    const on = this.root.classList.toggle("live-fullscreen");
    this.root.querySelector("[data-fullscreen]").textContent = on ? "Leave full screen" : "Full screen";
    document.body.classList.toggle("live-fullscreen-open", on);
    this.resize();
    this.term.focus();
  }
}

for (const root of document.querySelectorAll("[data-live-terminal]")) new TerminalPanel(root);
