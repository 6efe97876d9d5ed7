// Small helpers of the web UI: DOM building, byte views, a line diff.

/** An element with attributes/properties and children (strings become text). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** `#id`. */
export const $ = (id) => document.getElementById(id);

/** Bytes as hex, 16 per line with offsets. */
export function hexDump(bytes, max = 64 * 1024) {
  const lines = [];
  const n = Math.min(bytes.length, max);
  for (let i = 0; i < n; i += 16) {
    const row = Array.from(bytes.subarray(i, Math.min(i + 16, n)), (b) => b.toString(16).padStart(2, "0"));
    lines.push(i.toString(16).padStart(8, "0") + "  " + row.join(" "));
  }
  if (bytes.length > max) lines.push(`… ${bytes.length - max} more bytes (download to see them)`);
  return lines.join("\n");
}

/** Standard base64 of bytes. */
export function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** How a value reads best: {kind: "json"|"text"|"binary", text}. */
export function describe(bytes) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { kind: "binary", text: null };
  }
  try {
    const doc = JSON.parse(text);
    if (doc !== null && typeof doc === "object") return { kind: "json", text: JSON.stringify(doc, null, 2) };
  } catch {
    // not JSON: text
  }
  return { kind: "text", text };
}

/** Most lines a diff compares (beyond it, the diff says so). */
const DIFF_MAX_LINES = 4000;

/** A line diff: [{op: " "|"-"|"+", line}], by longest common subsequence. */
export function diffLines(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  if (a.length > DIFF_MAX_LINES || b.length > DIFF_MAX_LINES) {
    return [{ op: "!", line: `values longer than ${DIFF_MAX_LINES} lines: download both to compare` }];
  }
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push({ op: " ", line: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: "-", line: a[i++] });
    else out.push({ op: "+", line: b[j++] });
  }
  while (i < a.length) out.push({ op: "-", line: a[i++] });
  while (j < b.length) out.push({ op: "+", line: b[j++] });
  return out;
}

/** Quotes a word for a POSIX shell. */
export function shellQuote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

/** Restarts the flash animation of an element. */
export function flash(el) {
  if (!el) return;
  el.classList.remove("flash");
  void el.offsetWidth; // reflow: the animation starts again
  el.classList.add("flash");
}

/** A key that is not UTF-8, readable: ASCII as is, other bytes as \xNN. */
export function printableKey(bytes) {
  let out = "";
  for (const b of bytes) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : "\\x" + b.toString(16).padStart(2, "0");
  return out;
}
