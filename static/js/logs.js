// Live logs: the last lines of one or more containers, then every line as it is written (pushed over a
// websocket, never polled). Each element [data-live-logs] holds one [data-log-source] per container
// (data-name, data-socket, data-download); the panel builds its toolbar itself.
//
// - Rendering is virtual: only the rows in view are in the page, so 100,000 lines scroll smoothly.
//   Past MAX_LINES the oldest lines go, and the view stays on what it showed.
// - Scroll lock: the view follows new lines only while it is at the bottom. Scrolled up, it stays put
//   however fast lines arrive, and a button says how many came.
// - stderr lines are marked, timestamps and line numbers can be shown, ANSI colours are rendered, and a
//   search counts its matches and steps through them.

import { parse, toHtml } from "./ansi.js";
import { LiveSocket, closeMessage } from "./live_socket.js";

const MAX_LINES = 200000;
const DROP = 20000;
const OVERSCAN = 20;
const TAILS = [["100", "100"], ["1000", "1,000"], ["10000", "10,000"], ["100000", "100,000"], ["all", "all"]];
const STDERR = 2;

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

class LogView {
  constructor(root) {
    this.root = root;
    this.sources = [...root.querySelectorAll("[data-log-source]")].map((el, index) => ({
      index,
      name: el.dataset.name,
      socket: el.dataset.socket,
      download: el.dataset.download,
      ws: null,
      history: [],
      open: {},
      status: "",
      last: null,
    }));
    this.many = this.sources.length > 1;
    this.lines = [];
    this.dropped = 0;
    this.following = true;
    this.unseen = 0;
    this.query = "";
    this.matches = [];
    this.current = -1;
    // Bumped whenever lines already shown may have changed: the rows are redrawn only then, or when
    // the range in view changes, so that a reader's selection survives lines arriving below it.
    this.version = 0;
    this.tail = root.dataset.tail || "1000";
    this.build();
    this.measure();
    this.connectAll();
  }

  //
  // the panel
  //

  build() {
    const tail = element("select", { "data-tail-choice": "", "aria-label": "Lines to start with" },
      ...TAILS.map(([value, label]) => element("option", { value, text: `last ${label}` })));
    tail.value = this.tail;
    tail.addEventListener("change", () => {
      this.tail = tail.value;
      this.connectAll();
    });
    const times = element("input", { type: "checkbox", "data-timestamps": "" });
    times.addEventListener("change", () => this.root.classList.toggle("show-ts", times.checked));
    const numbers = element("input", { type: "checkbox", "data-line-numbers": "", checked: "" });
    this.root.classList.add("show-ln");
    numbers.addEventListener("change", () => this.root.classList.toggle("show-ln", numbers.checked));
    this.searchInput = element("input", { type: "search", placeholder: "Search", "data-search": "", "aria-label": "Search the log" });
    this.count = element("span", { class: "live-count", "data-match-count": "", "aria-live": "polite" });
    const previous = element("button", { type: "button", "data-previous": "", title: "Previous match (Shift+Enter)", text: "↑" });
    const next = element("button", { type: "button", "data-next": "", title: "Next match (Enter)", text: "↓" });
    let typing;
    this.searchInput.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.find(this.searchInput.value), 120);
    });
    this.searchInput.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.find(this.searchInput.value);
      this.step(event.shiftKey ? -1 : 1);
    });
    previous.addEventListener("click", () => this.step(-1));
    next.addEventListener("click", () => this.step(1));
    const downloads = this.sources.map((source) =>
      element("a", { href: source.download, download: "", class: "btn sm", text: this.many ? `Download ${source.name}` : "Download the whole log" }));
    this.state = element("span", { class: "live-status", "data-status": "", role: "status" });
    const bar = element("div", { class: "live-bar" },
      element("label", {}, tail), element("label", {}, times, " Timestamps"), element("label", {}, numbers, " Line numbers"),
      element("span", { class: "live-search" }, this.searchInput, this.count, previous, next), ...downloads, this.state);
    this.scroller = element("div", { class: "live-log-scroll", tabindex: "0", "data-log-scroll": "" });
    this.spacer = element("div", { class: "live-log-spacer" });
    this.rows = element("div", { class: "live-log-rows", "data-log-rows": "" });
    this.scroller.append(this.spacer, this.rows);
    this.more = element("button", { type: "button", class: "live-more", "data-new-lines": "", hidden: "" });
    this.more.addEventListener("click", () => this.follow());
    this.root.append(bar, element("div", { class: "live-log-view" }, this.scroller, this.more));
    this.scroller.addEventListener("scroll", () => this.scrolled(), { passive: true });
    // A reader's intent stops the following at once: a scroll event comes a frame later, and a batch
    // of lines arriving in between must not pull the view back down.
    this.scroller.addEventListener("wheel", (event) => event.deltaY < 0 && this.unfollow(), { passive: true });
    this.scroller.addEventListener("keydown", (event) => ["ArrowUp", "PageUp", "Home"].includes(event.key) && this.unfollow());
    this.scroller.addEventListener("mousedown", () => this.unfollow());
  }

  unfollow() {
    this.following = false;
    this.schedule();
  }

  measure() {
    const probe = element("div", { class: "live-log-row" }, "Xg");
    this.rows.append(probe);
    this.lineHeight = probe.getBoundingClientRect().height || 18;
    probe.remove();
  }

  //
  // the sockets
  //

  connectAll() {
    this.version++;
    this.lines = [];
    this.dropped = 0;
    this.matches = [];
    this.current = -1;
    this.following = true;
    this.unseen = 0;
    for (const source of this.sources) this.connect(source, this.tail === "all" ? null : Number(this.tail));
    this.changed();
  }

  connect(source, tail) {
    if (source.ws) source.ws.close();
    source.history = [];
    source.open = {};
    source.skip = null;
    source.ws = new LiveSocket(source.socket, {
      onopen: () => source.ws.send({ type: "open", tail }),
      onjson: (message) => this.received(source, message),
      onclose: (code, reason) => this.lost(source, code, reason),
    });
    this.status(source, "connecting…");
  }

  reconnect(source) {
    // Again from where it stopped: the history is asked for, and what we have already is skipped.
    source.skip = source.last;
    this.version++;
    this.connect(source, 10000);
  }

  received(source, message) {
    if (message.type === "lines") {
      const records = source.skip ? this.skipSeen(source, message.lines) : message.lines;
      if (message.history) {
        source.history.push(...records);
        if (message.done) {
          this.add(source, source.history, this.many && this.lines.length > 0);
          source.history = [];
          source.skip = null;
          this.status(source, "following");
        }
      } else {
        this.add(source, records, false);
      }
    } else if (message.type === "state") {
      if (message.status !== source.status) this.notice(source, this.describe(message), message.status !== "running");
      source.status = message.status;
    } else if (message.type === "gap") {
      this.notice(source, "some lines were lost on the way: this page fell behind", true);
    }
  }

  skipSeen(source, records) {
    // Lines up to the last one we have (its time; lines of one write share it) are dropped.
    const [time, count] = source.skip;
    let same = 0;
    return records.filter(([, when]) => {
      if (when < time) return false;
      if (when === time) return ++same > count;
      return true;
    });
  }

  describe(state) {
    if (state.status === "running") return "the container started";
    if (state.status === "removed") return "the container was removed";
    const code = state.exit_code === null || state.exit_code === undefined ? "" : ` (exit code ${state.exit_code})`;
    return `the container ${state.status === "exited" ? "exited" : `is ${state.status}`}${code}${state.oom_killed ? ", out of memory" : ""}`;
  }

  lost(source, code, reason) {
    source.ws = null;
    this.version++;
    const message = closeMessage(code, reason);
    this.notice(source, `${message} `, true, source);
    this.status(source, "disconnected");
  }

  status(source, text) {
    source.state = text;
    this.state.textContent = this.sources.map((s) => (this.many ? `${s.name}: ${s.state}` : s.state)).join(" · ");
  }

  //
  // lines
  //

  add(source, records, merge) {
    const added = [];
    for (const [stream, time, text] of records) {
      const key = stream;
      const open = source.open[key];
      const complete = text.endsWith("\n");
      const body = complete ? text.slice(0, -1).replace(/\r$/, "") : text;
      if (open && !merge) {
        // The rest of a line longer than a log record (16 KiB), or written in pieces.
        open.text += body;
        open.parsed = null;
        open.lower = null;
        this.version++;
        if (complete) delete source.open[key];
        continue;
      }
      const line = { source: source.index, stream, time, text: body, parsed: null, lower: null };
      if (!complete) source.open[key] = line;
      added.push(line);
    }
    if (records.length) {
      const [, time] = records[records.length - 1];
      const count = records.filter(([, when]) => when === time).length;
      source.last = source.last && source.last[0] === time ? [time, source.last[1] + count] : [time, count];
    }
    if (!added.length) {
      this.changed();
      return;
    }
    if (merge) {
      // A second container's history joins the first's in time order.
      this.version++;
      this.lines = mergeByTime(this.lines, added);
      this.find(this.query, true);
    } else {
      const start = this.lines.length;
      this.lines.push(...added);
      if (this.query) this.scan(start);
    }
    if (!this.following) this.unseen += added.length;
    this.trim();
    this.changed();
  }

  notice(source, text, bad, reconnectable = null) {
    const line = { source: source.index, stream: 0, time: "", text: `— ${text}`, notice: bad ? "bad" : "info", reconnect: reconnectable, parsed: null, lower: null };
    this.lines.push(line);
    if (!this.following) this.unseen += 1;
    this.changed();
  }

  trim() {
    if (this.lines.length <= MAX_LINES) return;
    const gone = this.lines.length - MAX_LINES + DROP;
    this.lines.splice(0, gone);
    this.dropped += gone;
    this.version++;
    this.matches = this.matches.map(([i, s, e]) => [i - gone, s, e]).filter(([i]) => i >= 0);
    this.current = Math.min(this.current, this.matches.length - 1);
    if (!this.following) this.scroller.scrollTop -= gone * this.lineHeight;
  }

  //
  // search
  //

  lower(line) {
    if (line.lower === null) line.lower = this.parsed(line).plain.toLowerCase();
    return line.lower;
  }

  parsed(line) {
    if (!line.parsed) line.parsed = parse(line.text);
    return line.parsed;
  }

  find(query, keep = false) {
    query = query.trim().toLowerCase();
    if (query === this.query && !keep) return;
    this.query = query;
    this.matches = [];
    this.current = -1;
    this.version++;
    if (query) this.scan(0);
    this.changed();
  }

  scan(from) {
    const q = this.query;
    for (let i = from; i < this.lines.length; i++) {
      const text = this.lower(this.lines[i]);
      for (let at = text.indexOf(q); at >= 0; at = text.indexOf(q, at + q.length)) this.matches.push([i, at, at + q.length]);
    }
  }

  step(direction) {
    if (!this.matches.length) return;
    this.current = (this.current + direction + this.matches.length) % this.matches.length;
    const [index] = this.matches[this.current];
    this.following = false;
    this.version++;
    const top = index * this.lineHeight - this.scroller.clientHeight / 2;
    this.scroller.scrollTop = Math.max(0, top);
    this.changed();
  }

  //
  // the view
  //

  follow() {
    this.following = true;
    this.unseen = 0;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.changed();
  }

  scrolled() {
    const bottom = this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - this.lineHeight / 2;
    if (bottom !== this.following) {
      this.following = bottom;
      if (bottom) this.unseen = 0;
    }
    this.schedule();
  }

  changed() {
    this.spacer.style.height = `${this.lines.length * this.lineHeight}px`;
    if (this.following) this.scroller.scrollTop = this.scroller.scrollHeight;
    const count = this.matches.length;
    this.count.textContent = this.query ? `${count ? this.current + 1 : 0}/${count}` : "";
    this.root.dataset.lines = String(this.lines.length);
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render();
    });
  }

  render() {
    const height = this.lineHeight;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / height) - OVERSCAN);
    const last = Math.min(this.lines.length, Math.ceil((this.scroller.scrollTop + this.scroller.clientHeight) / height) + OVERSCAN);
    this.more.hidden = this.following || !this.unseen;
    this.more.textContent = `↓ ${this.unseen.toLocaleString()} new line${this.unseen === 1 ? "" : "s"}`;
    this.root.classList.toggle("following", this.following);
    const key = `${first}:${last}:${this.version}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const marks = new Map();
    for (let m = 0; m < this.matches.length; m++) {
      const [i, s, e] = this.matches[m];
      if (i < first || i >= last) continue;
      if (!marks.has(i)) marks.set(i, []);
      marks.get(i).push([s, e, m === this.current]);
    }
    let html = "";
    for (let i = first; i < last; i++) {
      const line = this.lines[i];
      const classes = ["live-log-row"];
      if (line.stream === STDERR) classes.push("err");
      if (line.notice) classes.push(`notice ${line.notice}`);
      const number = `<span class="ln">${this.dropped + i + 1}</span>`;
      const time = `<span class="ts" title="${line.time}">${line.time ? `${line.time.slice(0, 10)} ${line.time.slice(11, 23)}` : ""}</span>`;
      const prefix = this.many ? `<span class="src c${line.source % 8}">${escapeHtml(this.sources[line.source].name)}</span>` : "";
      const stream = line.stream === STDERR ? '<span class="stream" title="stderr">err</span>' : "";
      const text = toHtml(this.parsed(line), marks.get(i) || []);
      const again = line.reconnect && !line.reconnect.ws ? ` <button type="button" class="sm" data-reconnect="${line.source}">Reconnect</button>` : "";
      html += `<div class="${classes.join(" ")}">${number}${time}${prefix}${stream}<span class="tx">${text}</span>${again}</div>`;
    }
    this.rows.style.transform = `translateY(${first * height}px)`;
    this.rows.innerHTML = html;
    for (const button of this.rows.querySelectorAll("[data-reconnect]")) {
      button.addEventListener("click", () => this.reconnect(this.sources[Number(button.dataset.reconnect)]));
    }
  }
}

function mergeByTime(a, b) {
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) out.push(b[j].time < a[i].time && b[j].time ? b[j++] : a[i++]);
  return out.concat(a.slice(i), b.slice(j));
}

for (const root of document.querySelectorAll("[data-live-logs]")) new LogView(root);
