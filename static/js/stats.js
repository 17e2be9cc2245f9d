// Live stats: CPU, memory against its limit, processes and block I/O, as uPlot charts pushed a sample a
// second by the node (while the panel is open, and only then). Each element [data-live-stats] is one,
// with data-socket; its charts are its [data-chart] figures.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { LiveSocket, closeMessage } from "./live_socket.js";

const KEEP = 300;
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

function bytes(n) {
  if (n === null || n === undefined) return "–";
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${UNITS[i]}`;
}

// Each chart's series, its axis labels, and the least top of its scale (so that an idle container's
// chart reads 0 to 1 KiB, not 0 to 1 B).
const CHARTS = {
  cpu: { series: [{ label: "CPU %", stroke: "#2f5bd3", fill: "#2f5bd322" }], axis: (v) => `${v}%`, top: 100 },
  mem: { series: [{ label: "used", stroke: "#1f7a3d", fill: "#1f7a3d22" }, { label: "limit", stroke: "#b42318", dash: [6, 4] }], axis: bytes, top: 1 << 20 },
  pids: { series: [{ label: "processes", stroke: "#8a5a00" }, { label: "limit", stroke: "#b42318", dash: [6, 4] }], axis: (v) => String(v), top: 4 },
  io: { series: [{ label: "read/s", stroke: "#2f5bd3" }, { label: "write/s", stroke: "#b42318" }], axis: bytes, top: 1024 },
};

class StatsPanel {
  constructor(root) {
    this.root = root;
    this.status = root.querySelector("[data-status]");
    this.count = 0;
    this.data = { t: [], cpu: [], mem: [], mem_limit: [], pids: [], pids_limit: [], read_rate: [], write_rate: [] };
    this.charts = {};
    for (const figure of root.querySelectorAll("[data-chart]")) {
      const name = figure.dataset.chart;
      const spec = CHARTS[name];
      const box = figure.querySelector("[data-plot]");
      const chart = new uPlot({
        width: Math.max(200, box.clientWidth),
        height: 160,
        series: [{}, ...spec.series.map((s) => ({ ...s, width: 1.5, spanGaps: false }))],
        axes: [{}, { values: (_, ticks) => ticks.map(spec.axis), size: 70 }],
        scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(max || 0, spec.top) * 1.05] } },
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      }, this.series(name), box);
      this.charts[name] = { chart, box, figure };
    }
    new ResizeObserver(() => {
      for (const { chart, box } of Object.values(this.charts)) chart.setSize({ width: Math.max(200, box.clientWidth), height: 160 });
    }).observe(root);
    this.connect();
  }

  series(name) {
    const d = this.data;
    const limit = (values) => values.map((v) => v || null);
    return {
      cpu: [d.t, d.cpu],
      mem: [d.t, d.mem, limit(d.mem_limit)],
      pids: [d.t, d.pids, limit(d.pids_limit)],
      io: [d.t, d.read_rate, d.write_rate],
    }[name];
  }

  connect() {
    this.say("Connecting…");
    for (const values of Object.values(this.data)) values.length = 0; // the node sends what it has again
    this.socket = new LiveSocket(this.root.dataset.socket, {
      onopen: () => this.socket.send({ type: "open" }),
      onjson: (message) => this.message(message),
      onclose: (code, reason) => this.closed(closeMessage(code, reason)),
    });
  }

  message(message) {
    if (message.type === "stats") {
      for (const sample of message.samples) this.add(sample);
      this.draw();
    } else if (message.type === "state" && message.status !== "running") {
      this.say(`The container is ${message.status === "exited" ? "stopped" : message.status}: the charts go on when it runs again.`);
    }
  }

  add(sample) {
    const d = this.data;
    d.t.push(sample.t);
    for (const key of ["cpu", "mem", "mem_limit", "pids", "pids_limit", "read_rate", "write_rate"]) d[key].push(sample.running ? sample[key] ?? null : null);
    if (d.t.length > KEEP) for (const values of Object.values(d)) values.shift();
    this.count++;
    this.last = sample;
  }

  draw() {
    for (const [name, { chart }] of Object.entries(this.charts)) chart.setData(this.series(name));
    const s = this.last;
    this.root.dataset.samples = String(this.count);
    if (!s) return;
    if (!s.running) {
      this.say("The container is not running: the charts go on when it runs again.");
      return;
    }
    this.say(`Updated ${new Date(s.t * 1000).toLocaleTimeString()}`);
    const limit = s.mem_limit ? ` of ${bytes(s.mem_limit)} (${((100 * s.mem) / s.mem_limit).toFixed(0)}%)` : ` (no limit; the host has ${bytes(s.host_mem)})`;
    this.value("cpu", s.cpu === null ? "–" : `${s.cpu.toFixed(1)}% (${s.cpus} CPU${s.cpus === 1 ? "" : "s"})`);
    this.value("mem", `${bytes(s.mem)}${limit}`);
    this.value("pids", `${s.pids}${s.pids_limit ? ` of ${s.pids_limit}` : ""}`);
    this.value("io", `read ${bytes(s.read_rate ?? 0)}/s, write ${bytes(s.write_rate ?? 0)}/s (total ${bytes(s.read)} / ${bytes(s.write)})`);
  }

  value(name, text) {
    const el = this.root.querySelector(`[data-value="${name}"]`);
    if (el) el.textContent = text;
  }

  say(text) {
    this.status.textContent = text;
  }

  closed(text) {
    this.say(text);
    const again = document.createElement("button");
    again.type = "button";
    again.className = "sm";
    again.textContent = "Reconnect";
    again.addEventListener("click", () => this.connect());
    this.status.append(" ", again);
  }
}

for (const root of document.querySelectorAll("[data-live-stats]")) new StatsPanel(root);
