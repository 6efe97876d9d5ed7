// One key: its value (JSON pretty-printed, text, hex, base64, download),
// metadata, copy-as-curl/etcdctl, and a diff between two revisions.

import { base64ToBytes } from "/client/gateway-client.js";
import { h, $, hexDump, toBase64, describe, diffLines, shellQuote, flash, printableKey } from "./util.js";

export class KeyView {
  constructor(ui) {
    this.ui = ui;
    this.view = "pretty";
    this.bytes = null;
    this.generation = 0;
    for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
      tab.addEventListener("click", () => this.setView(tab.dataset.view));
    }
    $("copy-curl").addEventListener("click", () => this.copy($("copy-curl")));
    $("copy-etcdctl").addEventListener("click", () => this.copy($("copy-etcdctl")));
    $("diff-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.diff();
    });
  }

  /** The open key as the client takes it: a string, or bytes when not UTF-8. */
  key() {
    const { state } = this.ui;
    return state.keyB64 ? base64ToBytes(state.keyB64) : state.key;
  }

  /** Shows the open key (at `state.revision` when time-travelling). */
  async load(flashValue = false) {
    const { gw, state } = this.ui;
    const pane = $("key");
    if (!state.key && !state.keyB64) {
      pane.hidden = true;
      return;
    }
    pane.hidden = false;
    $("key-title").textContent = state.key ?? `${printableKey(this.key())} (not UTF-8)`;
    $("diff").hidden = true;
    const generation = ++this.generation;
    let got;
    try {
      got = await gw.get(state.ns, this.key(), { encoding: "base64", revision: state.revision || undefined });
    } catch (e) {
      if (generation !== this.generation) return;
      this.bytes = null;
      $("meta").replaceChildren(h("dt", {}, "state"), h("dd", {}, e.code === "key_not_found" ? `absent at revision ${e.problem.revision ?? ""}` : e.message));
      $("value").textContent = "";
      this.commands(null);
      if (e.code !== "key_not_found") this.ui.showError(e);
      return;
    }
    if (generation !== this.generation) return;
    const kv = got.kv;
    this.bytes = base64ToBytes(kv.value);
    this.kind = describe(this.bytes);
    const facts = [
      ["revision", got.revision],
      ["create_revision", kv.create_revision],
      ["mod_revision", kv.mod_revision],
      ["version", kv.version],
      ["lease", kv.lease],
      ["size", `${this.bytes.length} bytes`],
      ["shown as", this.kind.kind],
      ["cache", got.cacheStatus],
    ];
    $("meta").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { field: k } }, String(v ?? ""))]));
    this.commands(got.revision);
    this.render();
    const raw = gw.keyUrl(state.ns, this.key(), { raw: true, revision: state.revision || undefined });
    const link = $("download");
    link.href = raw;
    link.setAttribute("download", (state.key || "").split("/").pop() || "value");
    if (flashValue) flash($("value"));
  }

  setView(view) {
    this.view = view;
    for (const tab of document.querySelectorAll(".tabs [role=tab]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.view === view));
    }
    this.render();
  }

  render() {
    const out = $("value");
    if (!this.bytes) {
      out.textContent = "";
      return;
    }
    if (this.view === "hex") out.textContent = hexDump(this.bytes);
    else if (this.view === "base64") out.textContent = toBase64(this.bytes);
    else if (this.kind.kind === "binary") out.textContent = `(binary, ${this.bytes.length} bytes: see Hex or Base64, or download)`;
    else out.textContent = this.kind.text;
    out.dataset.kind = this.kind.kind;
  }

  /** The copy-as commands of the open key. */
  commands() {
    const { gw, state } = this.ui;
    const url = gw.keyUrl(state.ns, this.key(), { raw: true, revision: state.revision || undefined });
    // Signed in: the command names the token by a variable, never by value.
    const signedIn = document.cookie.split("; ").some((c) => c.startsWith("gateway_token="));
    const auth = signedIn ? ' -H "Authorization: Bearer $GATEWAY_TOKEN"' : "";
    $("copy-curl").dataset.command = `curl${auth} ${shellQuote(url)}`;
    const ns = this.ui.namespaces.get(state.ns);
    const prefix = ns && ns.prefix !== undefined ? ns.prefix : "<namespace prefix>";
    const rev = state.revision ? ` --rev=${state.revision}` : "";
    $("copy-etcdctl").dataset.command = state.key === null
      ? "# a key that is not UTF-8 cannot be typed as an etcdctl argument: use the curl command"
      : `etcdctl get --print-value-only${rev} ${shellQuote(prefix + state.key)}`;
  }

  async copy(button) {
    const text = button.dataset.command || "";
    try {
      await navigator.clipboard.writeText(text);
      this.ui.say(`Copied: ${text}`);
    } catch {
      window.prompt("Copy this command", text);
    }
  }

  /** Text of the key at `revision` (null: current), or a note when absent. */
  async textAt(revision) {
    const { gw, state } = this.ui;
    try {
      const got = await gw.get(state.ns, this.key(), { encoding: "base64", revision: revision || undefined });
      const d = describe(base64ToBytes(got.kv.value));
      return d.kind === "binary" ? hexDump(base64ToBytes(got.kv.value)) : d.text;
    } catch (e) {
      if (e.code === "key_not_found") return "(absent)";
      throw e;
    }
  }

  async diff() {
    const a = Number($("diff-a").value);
    const b = $("diff-b").value ? Number($("diff-b").value) : null;
    const out = $("diff");
    try {
      const [before, after] = await Promise.all([this.textAt(a), this.textAt(b)]);
      const lines = diffLines(before, after);
      out.replaceChildren(...lines.map(({ op, line }) =>
        h("span", { class: op === "+" ? "add" : op === "-" ? "del" : "" }, `${op} ${line}\n`)));
      out.hidden = false;
      out.setAttribute("aria-label", `Diff of ${this.ui.state.key} between revision ${a} and ${b ?? "now"}`);
    } catch (e) {
      this.ui.showError(e);
    }
  }
}
