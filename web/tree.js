// The key tree of a namespace: one level at a time (delimiter=/) or flat,
// paged, with changes flashing on the rows they touch.

import { base64ToBytes } from "/client/gateway-client.js";
import { h, $, flash, printableKey } from "./util.js";

/** Keys and folders per page: small enough to render at once, whatever the namespace's size. */
export const TREE_PAGE = 500;

export class Tree {
  static rowIds = 0;

  /**
   * @param {object} ui the app: `gw`, `state`, `navigate(patch)`, `showError(e)`
   */
  constructor(ui) {
    this.ui = ui;
    this.list = $("tree");
    this.more = $("more");
    this.rows = new Map(); // row id (full relative key or folder prefix) → li
    this.nextToken = null;
    this.generation = 0;
    this.more.addEventListener("click", () => this.loadPage());
    this.list.addEventListener("keydown", (e) => this.onKey(e));
  }

  /** Lists the current prefix from the first page. */
  async load() {
    const { state } = this.ui;
    this.generation += 1;
    this.rows.clear();
    this.list.replaceChildren();
    this.nextToken = null;
    this.count = 0;
    this.renderCrumbs();
    $("tree-count").textContent = "Loading…";
    await this.loadPage(true);
  }

  async loadPage(first = false) {
    const { gw, state } = this.ui;
    const generation = this.generation;
    const started = performance.now();
    const options = {
      prefix: state.prefix || undefined,
      // The gateway filters flat listings only: a filter lists flat.
      delimiter: this.isFlat() ? undefined : "/",
      limit: TREE_PAGE,
      keysOnly: !state.select,
      filter: state.filter || undefined,
      select: state.select || undefined,
      revision: state.revision || undefined,
      pageToken: first ? undefined : this.nextToken,
    };
    let page;
    try {
      page = await gw.list(state.ns, options);
    } catch (e) {
      if (generation !== this.generation) return;
      $("tree-count").textContent = "";
      this.ui.showError(e);
      return;
    }
    if (generation !== this.generation) return;
    this.ui.clearError();
    const items = [];
    for (const p of page.prefixes || []) items.push(this.folderRow(p.prefix, p.count));
    for (const kv of page.kvs) items.push(this.keyRow(kv));
    this.list.append(...items);
    this.nextToken = page.next_page_token;
    this.more.hidden = !this.nextToken;
    this.listedRevision = page.revision;
    this.count += items.length;
    this.folders = (first ? 0 : this.folders) + (page.prefixes || []).length;
    const keys = `${page.count} ${page.count === 1 ? "key" : "keys"}`;
    const folders = this.folders ? `, ${this.folders}${this.nextToken ? "+" : ""} ${this.folders === 1 ? "folder" : "folders"}` : "";
    const where = this.isFlat() ? (state.filter ? " matching the filter (a flat list)" : "") : ` here${folders}`;
    $("tree-count").textContent = `${keys}${where} at revision ${page.revision}` +
      (this.nextToken ? ` · showing ${this.count} (Load more for the rest)` : "");
    if (first) {
      // Measured for the 100k-key test: request + render, and until the
      // next frame is painted; the first paint since navigation start.
      const m = (window.uiMetrics = window.uiMetrics || {});
      const load = (m.treeLoads = (m.treeLoads || 0) + 1);
      m.treeRenderMs = performance.now() - started;
      m.treeRows = this.list.children.length;
      requestAnimationFrame(() => {
        m.treePaintMs = performance.now() - started;
        m.treePaintedLoad = load;
        if (m.treeFirstPaintMs === undefined) m.treeFirstPaintMs = performance.now();
      });
      if (this.list.children.length && !this.list.querySelector('[aria-selected="true"]')) {
        this.select(this.list.children[0], false);
      }
    }
  }

  /** Whether the listing is flat (asked for, or filtered). */
  isFlat() {
    return this.ui.state.flat || Boolean(this.ui.state.filter);
  }

  /** The name of `full` shown under the current prefix. */
  label(full) {
    const prefix = this.ui.state.prefix || "";
    return full.startsWith(prefix) && full !== prefix ? full.slice(prefix.length) : full;
  }

  folderRow(prefix, count) {
    const li = h("li", { class: "folder", role: "option", "aria-selected": "false", dataset: { prefix } },
      h("span", { class: "name" }, this.label(prefix)),
      h("span", { class: "count", title: "keys below" }, `${count} ${count === 1 ? "key" : "keys"}`));
    li.addEventListener("click", () => this.ui.navigate({ prefix, key: null }));
    this.rows.set(prefix, li);
    return li;
  }

  keyRow(kv) {
    const key = kv.key_encoding === "base64" ? null : kv.key;
    const name = key === null ? printableKey(base64ToBytes(kv.key)) : this.label(key);
    const extra = kv.value !== undefined ? h("span", { class: "rev" }, JSON.stringify(kv.value)) : h("span", { class: "rev", title: "mod revision" }, `@${kv.mod_revision}`);
    const li = h("li", { class: "key", role: "option", "aria-selected": "false", dataset: { key: kv.key } },
      h("span", { class: "name" }, name), extra);
    li.addEventListener("click", () => {
      this.select(li, false);
      this.ui.navigate(key !== null ? { key } : { key: null, keyB64: kv.key });
    });
    if (key !== null) this.rows.set(key, li);
    return li;
  }

  renderCrumbs() {
    const prefix = this.ui.state.prefix || "";
    const parts = prefix.split("/");
    const crumbs = [h("button", { type: "button", onclick: () => this.ui.navigate({ prefix: "", key: null }) }, this.ui.state.ns + ":")];
    let acc = "";
    for (const part of parts.slice(0, -1)) {
      acc += part + "/";
      const target = acc;
      crumbs.push(h("button", { type: "button", onclick: () => this.ui.navigate({ prefix: target, key: null }) }, part + "/"));
    }
    if (parts[parts.length - 1]) crumbs.push(h("span", {}, parts[parts.length - 1] + "…"));
    $("crumbs").replaceChildren(...crumbs);
  }

  /** Marks `li` as the active row; focus stays on the list (aria-activedescendant). */
  select(li, scroll = true) {
    for (const el of this.list.querySelectorAll('[aria-selected="true"]')) el.setAttribute("aria-selected", "false");
    li.setAttribute("aria-selected", "true");
    if (!li.id) li.id = `row-${++Tree.rowIds}`;
    this.list.setAttribute("aria-activedescendant", li.id);
    if (scroll) li.scrollIntoView({ block: "nearest" });
  }

  onKey(e) {
    const current = this.list.querySelector('[aria-selected="true"]') || this.list.firstElementChild;
    if (!current) return;
    let next = null;
    if (e.key === "ArrowDown") next = current.nextElementSibling;
    else if (e.key === "ArrowUp") next = current.previousElementSibling;
    else if (e.key === "Home") next = this.list.firstElementChild;
    else if (e.key === "End") next = this.list.lastElementChild;
    else if (e.key === "Enter" || e.key === "ArrowRight") {
      current.click();
      e.preventDefault();
      return;
    } else if (e.key === "ArrowLeft" || e.key === "Backspace") {
      const prefix = this.ui.state.prefix || "";
      const up = prefix.replace(/[^/]*\/?$/, "");
      if (prefix) this.ui.navigate({ prefix: up, key: null });
      e.preventDefault();
      return;
    }
    if (next) {
      this.select(next);
      e.preventDefault();
    }
  }

  /** A change arrived (live mode): flash the rows it touches, add new keys of this level. */
  applyChange(change) {
    const { state } = this.ui;
    const prefix = state.prefix || "";
    for (const event of change.events) {
      if (event.kv.key_encoding === "base64") continue;
      const key = event.kv.key;
      if (!key.startsWith(prefix)) continue;
      const rest = key.slice(prefix.length);
      const slash = this.isFlat() ? -1 : rest.indexOf("/");
      const id = slash >= 0 ? prefix + rest.slice(0, slash + 1) : key;
      let row = this.rows.get(id);
      if (!row && event.type === "put" && !state.filter) {
        row = slash >= 0 ? this.folderRow(id, 1) : this.keyRow({ key, mod_revision: change.revision });
        this.list.append(row);
      }
      if (!row) continue;
      if (row.classList.contains("key")) {
        row.classList.toggle("deleted", event.type === "delete");
        const rev = row.querySelector(".rev");
        if (rev && event.type === "put" && !state.select) rev.textContent = `@${change.revision}`;
      }
      flash(row);
    }
  }
}
