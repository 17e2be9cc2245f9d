// ANSI colours in log text, as HTML: SGR's 16 colours (classes, so that the theme picks them), the
// 256-colour palette and true colour (inline), bold, dim, italic, underline and inverse. Other escape
// sequences (cursor moves, titles) are dropped; a carriage return keeps what was written after it, as a
// terminal would show a progress line.

// CSI ... final byte, OSC ... BEL or ST, two-byte escapes, and the C0 controls but tab and newline.
const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

const CUBE = [0, 95, 135, 175, 215, 255];

function palette(n) {
  if (n < 16) return null;
  if (n < 232) {
    const i = n - 16;
    return `rgb(${CUBE[Math.floor(i / 36)]},${CUBE[Math.floor(i / 6) % 6]},${CUBE[i % 6]})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey},${grey},${grey})`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

// Apply one SGR sequence's parameters to a style {fg, bg, bold, dim, italic, underline, inverse}.
function apply(style, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => Number(p) || 0);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(style, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false });
    else if (c === 1) style.bold = true;
    else if (c === 2) style.dim = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 7) style.inverse = true;
    else if (c === 22) style.bold = style.dim = false;
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c === 27) style.inverse = false;
    else if (c >= 30 && c <= 37) style.fg = c - 30;
    else if (c >= 90 && c <= 97) style.fg = c - 82;
    else if (c === 39) style.fg = null;
    else if (c >= 40 && c <= 47) style.bg = c - 40;
    else if (c >= 100 && c <= 107) style.bg = c - 92;
    else if (c === 49) style.bg = null;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? "fg" : "bg";
      if (codes[i + 1] === 5) {
        style[key] = codes[i + 2] < 16 ? codes[i + 2] : palette(codes[i + 2]);
        i += 2;
      } else if (codes[i + 1] === 2) {
        style[key] = `rgb(${codes[i + 2]},${codes[i + 3]},${codes[i + 4]})`;
        i += 4;
      }
    }
  }
}

function attributes(style) {
  const classes = [];
  const css = [];
  let { fg, bg } = style;
  if (style.inverse) [fg, bg] = [bg ?? "fg", fg ?? "bg"];
  for (const [key, value] of [["f", fg], ["b", bg]]) {
    if (value === "fg" || value === "bg") classes.push(`a-${key}${value}`);
    else if (typeof value === "number") classes.push(`a-${key}${value}`);
    else if (value) css.push(`${key === "f" ? "color" : "background"}:${value}`);
  }
  if (style.bold) classes.push("a-bold");
  if (style.dim) classes.push("a-dim");
  if (style.italic) classes.push("a-italic");
  if (style.underline) classes.push("a-underline");
  return (classes.length ? ` class="${classes.join(" ")}"` : "") + (css.length ? ` style="${css.join(";")}"` : "");
}

// Parse a line: its plain text, and the styled runs [start, end, attributes] over it.
export function parse(text) {
  const cr = text.lastIndexOf("\r");
  if (cr >= 0 && cr < text.length - 1) text = text.slice(cr + 1);
  if (!text.includes("\x1b") && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) return { plain: text, runs: null };
  const style = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false };
  const runs = [];
  let plain = "";
  let last = 0;
  const add = (chunk) => {
    if (!chunk) return;
    const attrs = attributes(style);
    const start = plain.length;
    plain += chunk;
    if (attrs) runs.push([start, plain.length, attrs]);
  };
  for (const match of text.matchAll(ESCAPES)) {
    add(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[2] === "m") apply(style, match[1]);
  }
  add(text.slice(last));
  return { plain, runs };
}

// The plain text of a line, without its escapes.
export function plainText(text) {
  return parse(text).plain;
}

// Render a parsed line as HTML, with `marks` ([start, end, current]) around what a search found.
export function toHtml(parsed, marks = []) {
  const { plain, runs } = parsed;
  if (!runs && !marks.length) return escapeHtml(plain);
  // Cut the text wherever a run or a mark starts or ends, then wrap each piece.
  const cuts = new Set([0, plain.length]);
  for (const [s, e] of runs || []) cuts.add(s).add(e);
  for (const [s, e] of marks) cuts.add(s).add(e);
  const points = [...cuts].sort((a, b) => a - b);
  let html = "";
  for (let i = 0; i < points.length - 1; i++) {
    const [s, e] = [points[i], points[i + 1]];
    if (s === e) continue;
    let piece = escapeHtml(plain.slice(s, e));
    const run = (runs || []).find((r) => r[0] <= s && e <= r[1]);
    if (run) piece = `<span${run[2]}>${piece}</span>`;
    const mark = marks.find((m) => m[0] <= s && e <= m[1]);
    if (mark) piece = `<mark${mark[2] ? ' class="current"' : ""}>${piece}</mark>`;
    html += piece;
  }
  return html;
}
