// The web UI of etcd-cache-gateway: namespaces, a key tree, a key's value,
// live changes and time travel. Every request goes to this gateway, through
// its browser client (/client/gateway-client.js).

import { Gateway } from "/client/gateway-client.js";
import { $, h } from "./util.js";
import { Tree } from "./tree.js";
import { KeyView } from "./keyview.js";
import { EventLog } from "./log.js";

/** How often the namespace list (revisions, key counts, freshness) refreshes, in ms. */
const NAMESPACE_REFRESH_MS = 2000;
/** The cookie the gateway reads a token from (API.md "Authentication"). */
const TOKEN_COOKIE = "gateway_token";

class App {
  constructor() {
    this.gw = new Gateway(location.origin);
    this.state = { ns: null, prefix: "", key: null, keyB64: null, revision: null, flat: false, filter: "", select: "" };
    this.namespaces = new Map();
    this.tree = new Tree(this);
    this.keyView = new KeyView(this);
    this.log = new EventLog(this);
    this.wire();
    this.refreshNamespaces();
    setInterval(() => this.refreshNamespaces(), NAMESPACE_REFRESH_MS);
    window.addEventListener("hashchange", () => this.route());
    this.route();
  }

  wire() {
    $("query").addEventListener("submit", (e) => {
      e.preventDefault();
      const revision = $("revision").value ? Number($("revision").value) : null;
      this.navigate({
        prefix: $("prefix").value,
        filter: $("filter").value.trim(),
        select: $("select").value.trim(),
        flat: $("flat").checked,
        revision,
      });
    });
    $("live").addEventListener("click", () => this.navigate({ revision: null }));
    // The slider spans the revisions etcd still has; its right end is live.
    const slider = $("revision-slider");
    slider.addEventListener("input", () => {
      $("revision").value = slider.value === slider.max ? "" : slider.value;
    });
    slider.addEventListener("change", () => {
      this.navigate({ revision: slider.value === slider.max ? null : Number(slider.value) });
    });
    $("signin").addEventListener("submit", (e) => {
      e.preventDefault();
      this.signIn($("token").value);
    });
    $("signout").addEventListener("click", () => this.signOut());
  }

  /** The route in the URL's hash: #/ns/NAME?prefix=..&key=..&rev=..&flat=1&filter=..&select=.. */
  route() {
    const match = location.hash.match(/^#\/ns\/([^?]+)(?:\?(.*))?$/);
    const previous = { ...this.state };
    if (!match) {
      this.state = { ns: null, prefix: "", key: null, keyB64: null, revision: null, flat: false, filter: "", select: "" };
    } else {
      const q = new URLSearchParams(match[2] || "");
      this.state = {
        ns: decodeURIComponent(match[1]),
        prefix: q.get("prefix") || "",
        key: q.get("key"),
        keyB64: q.get("keyb64"),
        revision: q.get("rev") ? Number(q.get("rev")) : null,
        flat: q.get("flat") === "1",
        filter: q.get("filter") || "",
        select: q.get("select") || "",
      };
    }
    this.render(previous);
  }

  /** Changes the route (and so the view) by `patch`. */
  navigate(patch) {
    const s = { ...this.state, ...patch };
    if ("key" in patch && !("keyB64" in patch)) s.keyB64 = null;
    const q = new URLSearchParams();
    if (s.prefix) q.set("prefix", s.prefix);
    if (s.key) q.set("key", s.key);
    if (s.keyB64) q.set("keyb64", s.keyB64);
    if (s.revision) q.set("rev", String(s.revision));
    if (s.flat) q.set("flat", "1");
    if (s.filter) q.set("filter", s.filter);
    if (s.select) q.set("select", s.select);
    const query = q.toString();
    location.hash = `#/ns/${encodeURIComponent(s.ns)}${query ? "?" + query : ""}`;
  }

  render(previous) {
    const s = this.state;
    this.clearError();
    this.renderNamespaceList();
    $("welcome").hidden = Boolean(s.ns);
    $("browser").hidden = !s.ns;
    if (!s.ns) return;
    $("prefix").value = s.prefix;
    $("filter").value = s.filter;
    $("select").value = s.select;
    $("flat").checked = s.flat;
    $("revision").value = s.revision || "";
    this.renderTravel();
    this.renderSlider();
    const listing = ["ns", "prefix", "revision", "flat", "filter", "select"].some((k) => previous[k] !== s[k]);
    if (listing) this.tree.load();
    if (listing || previous.key !== s.key || previous.keyB64 !== s.keyB64) this.keyView.load();
    if (previous.ns !== s.ns) this.log.start(s.ns);
    document.title = `${s.ns}${s.prefix ? ": " + s.prefix : ""} · etcd-cache-gateway`;
  }

  /** The slider's range: etcd's compaction revision (as last learnt) to now. */
  renderSlider() {
    const ns = this.namespaces.get(this.state.ns);
    if (!ns) return;
    const slider = $("revision-slider");
    slider.min = String(Math.max(1, ns.compacted_revision));
    slider.max = String(Math.max(ns.revision, this.state.revision || 0));
    slider.value = String(this.state.revision || ns.revision);
    slider.setAttribute("aria-valuetext", this.state.revision ? `revision ${this.state.revision}` : "live");
  }

  renderTravel() {
    const banner = $("travel");
    const r = this.state.revision;
    banner.hidden = !r;
    if (!r) return;
    const ns = this.namespaces.get(this.state.ns);
    const oldest = ns ? ns.compacted_revision : null;
    banner.textContent = `Time travel: showing the namespace as it was at revision ${r}` +
      (ns ? ` (now ${ns.revision}; etcd keeps history from revision ${oldest || 1} on).` : ".") +
      " Changes are logged below but not applied. Press Live to return.";
  }

  /** A change from the live watch: flash the tree and the open value. */
  onChange(change) {
    if (this.state.revision) return;
    this.tree.applyChange(change);
    if (this.state.key && change.events.some((e) => e.kv.key === this.state.key)) this.keyView.load(true);
  }

  setConnection(state, revision) {
    const badge = $("connection");
    badge.textContent = state === "open" ? "live" : state;
    badge.className = `badge ${state}`;
    if (revision !== null && revision !== undefined) $("last-revision").textContent = `revision ${revision}`;
  }

  async refreshNamespaces() {
    try {
      const list = await this.gw.namespaces();
      this.namespaces = new Map(list.map((n) => [n.name, n]));
      $("signin").hidden = true;
      $("signout").hidden = !document.cookie.split("; ").some((c) => c.startsWith(TOKEN_COOKIE + "="));
      this.renderNamespaceList();
      if (this.state.ns && document.activeElement !== $("revision-slider")) this.renderSlider();
      if (this.state.revision) this.renderTravel();
    } catch (e) {
      if (e.code === "unauthorized") {
        this.namespaces = new Map();
        $("signin").hidden = false;
        $("signout").hidden = true;
        this.renderNamespaceList();
      }
    }
    try {
      const ready = await fetch("/readyz", { headers: { Accept: "application/json" } });
      $("health").textContent = ready.ok ? "ready" : "not ready";
      $("health").className = `badge ${ready.ok ? "ok" : "bad"}`;
    } catch {
      $("health").textContent = "unreachable";
      $("health").className = "badge bad";
    }
  }

  renderNamespaceList() {
    const items = [...this.namespaces.values()].map((n) => {
      const status = !n.ready ? "loading" : n.relisting ? "re-listing" : n.status;
      const link = h("a", { href: `#/ns/${encodeURIComponent(n.name)}`, "aria-current": n.name === this.state.ns ? "page" : false, dataset: { ns: n.name }, title: n.last_error },
        h("span", { class: "ns-name" }, n.name), " ",
        h("span", { class: `badge ${status}` }, status),
        h("span", { class: "ns-facts" }, `revision ${n.revision} · ${n.keys} ${n.keys === 1 ? "key" : "keys"}`));
      return h("li", {}, link);
    });
    if (!items.length) items.push(h("li", { class: "muted" }, $("signin").hidden ? "No namespaces." : "Sign in to see namespaces."));
    $("namespace-list").replaceChildren(...items);
  }

  async signIn(token) {
    document.cookie = `${TOKEN_COOKIE}=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
    $("token").value = "";
    try {
      await this.gw.namespaces();
    } catch (e) {
      document.cookie = `${TOKEN_COOKIE}=; path=/; max-age=0; SameSite=Strict`;
      this.showError(e);
      return;
    }
    await this.refreshNamespaces();
    if (this.state.ns) this.log.start(this.state.ns);
  }

  signOut() {
    document.cookie = `${TOKEN_COOKIE}=; path=/; max-age=0; SameSite=Strict`;
    if (this.log.watch) this.log.watch.close();
    location.hash = "#/";
    this.refreshNamespaces();
  }

  showError(e) {
    const el = $("message");
    let text = e.message || String(e);
    if (e.code === "compacted") {
      const oldest = e.problem && e.problem.compact_revision;
      text = `Revision ${this.state.revision ?? ""} is older than etcd keeps: history before revision ${oldest} was compacted. Pick revision ${oldest} or later.`;
    } else if (e.code === "future_revision") {
      text = `Revision ${this.state.revision ?? ""} has not happened yet. ${e.message}`;
    }
    el.textContent = text;
    el.dataset.code = e.code || "";
    el.hidden = false;
  }

  clearError() {
    $("message").hidden = true;
  }

  say(text) {
    const el = $("message");
    el.textContent = text;
    el.dataset.code = "info";
    el.hidden = false;
  }
}

/** The longest main-thread task (ms): how long the page was ever unresponsive. */
function observeLongTasks() {
  const metrics = (window.uiMetrics = window.uiMetrics || {});
  metrics.longestTaskMs = 0;
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) metrics.longestTaskMs = Math.max(metrics.longestTaskMs, entry.duration);
    }).observe({ type: "longtask", buffered: true });
  } catch {
    // no Long Tasks API: nothing to report
  }
}

observeLongTasks();
window.app = new App();
