// A websocket to one of the live views (containers/consumers.py), with what every panel needs: JSON and
// binary messages, a ping every 20 s that finds a dead connection (a proxy that dropped it, a server
// that went), and a plain sentence for every way it can end. No framework.

const PING_EVERY_MS = 20000;
// No pong for this long: the connection is dead even if the browser has not noticed.
const DEAD_AFTER_MS = 45000;
// The code a page gives a connection it found dead by itself.
export const NO_ANSWER = 4999;

export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

function sentence(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : "";
}

// What the page says when a live view ends with `code` (see the close codes in containers/consumers.py).
export function closeMessage(code, reason) {
  if (code >= 4000 && code <= 4255) return `The session ended (exit code ${code - 4000}).`;
  switch (code) {
    case 4409:
      return sentence(reason) || "The container is not running.";
    case 4401:
      return "You are not logged in any more. Log in again, then reconnect.";
    case 4403:
      return `You may not do this: ${reason || "your role is too low"}.`;
    case 4404:
      return "This container is not there (any more), or it is not yours to see.";
    case 4400:
      return `The server did not accept the request: ${reason}.`;
    case 4503:
      return sentence(reason) || "The node agent does not answer.";
    case NO_ANSWER:
      return "The server stopped answering: the connection is dead.";
    case 1000:
      return sentence(reason) || "Closed.";
    case 1006:
      return "The connection was lost: the server stopped, or something between (a proxy) dropped it.";
    case 1011:
      return sentence(reason) || "The server failed.";
    default:
      return sentence(reason) || `The connection closed (code ${code}).`;
  }
}

// One connection: `onopen()`, `onjson(message)`, `onbinary(ArrayBuffer)`, and `onclose(code, reason)` once.
export class LiveSocket {
  constructor(path, { onopen = () => {}, onjson = () => {}, onbinary = () => {}, onclose = () => {} } = {}) {
    this.handlers = { onopen, onjson, onbinary, onclose };
    this.reason = "";
    this.closed = false;
    this.ws = new WebSocket(socketUrl(path));
    this.ws.binaryType = "arraybuffer";
    this.heard = Date.now();
    this.ws.addEventListener("open", () => {
      this.heard = Date.now();
      this.timer = setInterval(() => this.keepalive(), PING_EVERY_MS);
      this.handlers.onopen();
    });
    this.ws.addEventListener("message", (event) => this.received(event.data));
    this.ws.addEventListener("close", (event) => this.finish(event.code, event.reason));
  }

  received(data) {
    this.heard = Date.now();
    if (typeof data !== "string") {
      this.handlers.onbinary(data);
      return;
    }
    const message = JSON.parse(data);
    if (message.type === "pong") return;
    if (message.type === "ended") this.reason = message.reason;
    this.handlers.onjson(message);
  }

  keepalive() {
    if (Date.now() - this.heard > DEAD_AFTER_MS) {
      this.ws.close();
      this.finish(NO_ANSWER, "");
      return;
    }
    this.send({ type: "ping" });
  }

  send(message) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  sendBytes(bytes) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  close() {
    this.closed = true;
    clearInterval(this.timer);
    this.ws.close(1000);
  }

  finish(code, reason) {
    clearInterval(this.timer);
    if (this.closed) return;
    this.closed = true;
    // The server's `ended` message carries the whole reason; a close frame has room for 123 bytes.
    this.handlers.onclose(code, this.reason || reason);
  }
}
