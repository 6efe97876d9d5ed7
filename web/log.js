// The live event log: one watch of the namespace, resumed without loss by
// the browser client; pause (events are kept, not dropped), filter, clear.

import { $, h } from "./util.js";

/** Rows kept in the log (older ones are dropped from the page). */
export const LOG_ROWS = 500;

export class EventLog {
  constructor(ui) {
    this.ui = ui;
    this.paused = false;
    this.held = [];
    this.entries = [];
    this.watch = null;
    $("pause").addEventListener("click", () => this.togglePause());
    $("clear").addEventListener("click", () => {
      this.entries = [];
      this.held = [];
      this.render();
    });
    $("log-filter").addEventListener("input", () => this.render());
  }

  /** Watches `ns` from now on (a new namespace replaces the old watch). */
  start(ns) {
    if (this.watch) this.watch.close();
    this.entries = [];
    this.held = [];
    this.render();
    const w = this.ui.gw.watch(ns, { progressInterval: "5s" });
    this.watch = w;
    w.on("state", ({ state }) => this.ui.setConnection(state, w.lastEventId));
    w.on("synced", ({ revision }) => this.ui.setConnection(w.state, revision));
    w.on("progress", ({ revision }) => this.ui.setConnection(w.state, revision));
    w.on("reset", (r) => this.add([{ revision: r.revision, type: `reset (${r.code})`, key: "" }]));
    w.on("error", (e) => this.ui.showError(e));
    w.on("change", (change) => {
      this.ui.setConnection(w.state, change.revision);
      this.ui.onChange(change);
      this.add(change.events.map((e) => ({ revision: change.revision, type: e.type, key: e.kv.key })));
    });
  }

  add(rows) {
    if (this.paused) {
      this.held.push(...rows);
      $("log-count").textContent = `paused · ${this.held.length} held`;
      return;
    }
    this.entries.push(...rows);
    if (this.entries.length > LOG_ROWS) this.entries.splice(0, this.entries.length - LOG_ROWS);
    this.render();
  }

  togglePause() {
    this.paused = !this.paused;
    $("pause").setAttribute("aria-pressed", String(this.paused));
    $("pause").textContent = this.paused ? "Resume" : "Pause";
    if (!this.paused) {
      const held = this.held;
      this.held = [];
      this.add(held);
    }
  }

  render() {
    const only = $("log-filter").value;
    const shown = this.entries.filter((e) => !only || e.key.startsWith(only));
    const rows = shown.slice().reverse().map((e) =>
      h("tr", { class: e.type }, h("td", {}, e.revision), h("td", {}, e.type), h("td", {}, e.key)));
    $("log").replaceChildren(...rows);
    if (!this.paused) $("log-count").textContent = `${shown.length} shown`;
  }
}
