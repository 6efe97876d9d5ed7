// gateway-client.js: the browser client of etcd-cache-gateway.
//
// An ES module with no build step and no dependencies, served by the gateway
// at /client/gateway-client.js (types beside it: gateway-client.d.ts).
//
//   import { Gateway } from "/client/gateway-client.js";
//   const gw = new Gateway(location.origin);
//   const { kv } = await gw.get("apps", "config/log-level");
//   const mirror = gw.mirror("apps", { prefix: "config/" });
//   await mirror.ready();
//
// What it keeps for you (API.md "Watch"): a watch resumes after every drop
// from the last revision it saw (EventSource's Last-Event-ID for the
// reconnects it makes itself, `since=` when this module has to open a new
// EventSource), a `reset` is surfaced and a mirror replaces its state with
// the snapshot that follows, and a listing's pages are all read at the
// first page's revision. Errors are GatewayError with the problem's `code`.

/** Backoff before this module opens a new EventSource: first delay, in ms. */
const BACKOFF_MIN_MS = 500;
/** Backoff ceiling, in ms (a restarting gateway is back well within it). */
const BACKOFF_MAX_MS = 15000;
/** Problem codes after which reconnecting cannot help: the watch stops. */
const FATAL_CODES = new Set([
  "bad_request", "unauthorized", "forbidden", "namespace_not_found", "future_revision", "compacted",
]);

/** An error answered by the gateway (problem+json), or a transport failure. */
export class GatewayError extends Error {
  constructor(status, problem) {
    const p = problem || {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.name = "GatewayError";
    /** HTTP status (0: the request did not get an answer). */
    this.status = status;
    /** The stable problem code (API.md), e.g. "key_not_found", "compacted". */
    this.code = p.code || (status === 0 ? "network_error" : "http_error");
    /** The whole problem object, with its extra members (compact_revision, ...). */
    this.problem = p;
    /** Seconds from `Retry-After`, when the gateway sent one. */
    this.retryAfter = undefined;
  }
}

/** The GatewayError of a non-2xx fetch response. */
async function errorOf(response) {
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    problem = null;
  }
  const error = new GatewayError(response.status, problem);
  const retryAfter = Number(response.headers.get("Retry-After"));
  if (retryAfter > 0) error.retryAfter = retryAfter;
  return error;
}

/** Percent-encodes a key for a URL path, keeping its `/` separators. */
export function encodeKey(key) {
  return String(key).split("/").map(encodeURIComponent).join("/");
}

/** Appends the defined entries of `params` (arrays repeat) to `url`. */
function withParams(url, params) {
  const u = new URL(url);
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === false) continue;
    for (const v of Array.isArray(value) ? value : [value]) u.searchParams.append(name, String(v));
  }
  return u.toString();
}

/** The query parameters shared by reads: encoding and consistency. */
function readParams(o) {
  return {
    encoding: o.encoding,
    revision: o.revision,
    consistent: o.consistent ? "true" : undefined,
    min_revision: o.minRevision,
  };
}

/** The selection parameters: prefix, start/end, or one key. */
function selectionParams(o) {
  return { prefix: o.prefix, start: o.start, end: o.end, key: o.key };
}

/**
 * The decoded value of a key-value: a string for `utf8`, a Uint8Array for
 * `base64`, the parsed document for `json`; undefined without a value.
 */
export function valueOf(kv) {
  if (!kv || kv.value === undefined) return undefined;
  if (kv.value_encoding === "base64") return base64ToBytes(kv.value);
  return kv.value;
}

/** Bytes of a base64 (standard or url-safe) string. */
export function base64ToBytes(text) {
  const b = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) bytes[i] = b.charCodeAt(i);
  return bytes;
}

/** Unpadded base64url of bytes (the form of `key_b64=`). */
export function bytesToBase64Url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * The identity of a key in a Mirror: the key itself when UTF-8; keys that
 * are not UTF-8 are named "\u0000base64:" + their base64.
 */
export function keyOf(kv) {
  return kv.key_encoding === "base64" ? "\u0000base64:" + kv.key : kv.key;
}

/** A client of one gateway. */
export class Gateway {
  /**
   * @param {string} baseUrl e.g. "http://127.0.0.1:8080" (or location.origin)
   * @param {{token?: string, credentials?: RequestCredentials, fetch?: typeof fetch}} [options]
   *   `token` is sent as `Authorization: Bearer` (and `access_token=` on
   *   watches, which cannot send headers); `credentials: "include"` sends
   *   the `gateway_token` cookie across origins.
   */
  constructor(baseUrl, options = {}) {
    this.baseUrl = String(baseUrl).replace(/\/+$/, "");
    this.token = options.token;
    this.credentials = options.credentials || "same-origin";
    this.fetchImpl = options.fetch || globalThis.fetch.bind(globalThis);
  }

  /** `baseUrl` + `path`. */
  url(path) {
    return this.baseUrl + path;
  }

  /** GETs `url`; resolves to the Response (2xx or 304), else throws GatewayError. */
  async request(url, { headers = {}, signal } = {}) {
    const h = { Accept: "application/json", ...headers };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await this.fetchImpl(url, { headers: h, signal, credentials: this.credentials });
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      throw new GatewayError(0, { code: "network_error", detail: String(e && e.message ? e.message : e) });
    }
    if (response.ok || response.status === 304) return response;
    throw await errorOf(response);
  }

  /** GETs `url` as JSON. */
  async json(url, options) {
    return (await this.request(url, options)).json();
  }

  /** `GET /v1/namespaces`: the namespaces this caller may read. */
  async namespaces(options = {}) {
    return (await this.json(this.url("/v1/namespaces"), options)).namespaces;
  }

  /** `GET /v1/namespaces/{ns}`: one namespace's status. */
  async namespace(ns, options = {}) {
    return this.json(this.url(`/v1/namespaces/${encodeURIComponent(ns)}`), options);
  }

  /**
   * The URL of one key's read. A key that is not UTF-8 is given as bytes
   * (a Uint8Array) and read with `key_b64=`.
   */
  keyUrl(ns, key, options = {}) {
    const params = { ...readParams(options), raw: options.raw ? "true" : undefined };
    const kv = `/v1/namespaces/${encodeURIComponent(ns)}/kv`;
    if (key instanceof Uint8Array) return withParams(this.url(kv), { key_b64: bytesToBase64Url(key), ...params });
    return withParams(this.url(`${kv}/${encodeKey(key)}`), params);
  }

  /**
   * `GET /v1/namespaces/{ns}/kv/{key}` (or `?key_b64=` for a Uint8Array key)
   * → `{revision, kv, etag, cacheStatus}`;
   * with `ifNoneMatch` equal to the current ETag → `{notModified: true, etag}`.
   * Options: encoding, revision, consistent, minRevision, ifNoneMatch, signal.
   * Throws GatewayError (`key_not_found`, `compacted`, ...).
   */
  async get(ns, key, options = {}) {
    const headers = options.ifNoneMatch ? { "If-None-Match": options.ifNoneMatch } : {};
    const response = await this.request(this.keyUrl(ns, key, options), { headers, signal: options.signal });
    const etag = response.headers.get("ETag");
    if (response.status === 304) return { notModified: true, etag };
    const body = await response.json();
    return { ...body, etag, cacheStatus: response.headers.get("X-Cache-Status") };
  }

  /** The URL of a range read. */
  listUrl(ns, options = {}) {
    return withParams(this.url(`/v1/namespaces/${encodeURIComponent(ns)}/kv`), {
      prefix: options.prefix,
      start: options.start,
      end: options.end,
      limit: options.limit,
      page_token: options.pageToken,
      keys_only: options.keysOnly ? "true" : undefined,
      count_only: options.countOnly ? "true" : undefined,
      filter: options.filter,
      select: Array.isArray(options.select) ? options.select.join(",") : options.select,
      delimiter: options.delimiter,
      sort: options.sort,
      order: options.order,
      ...readParams(options),
    });
  }

  /**
   * `GET /v1/namespaces/{ns}/kv`: one page, `{revision, count, kvs,
   * prefixes?, next_page_token}`. Options: prefix | start,end; limit,
   * pageToken, keysOnly, countOnly, encoding, filter (string or array),
   * select (string or array), delimiter, sort, order, revision, consistent,
   * minRevision, signal.
   */
  async list(ns, options = {}) {
    return this.json(this.listUrl(ns, options), { signal: options.signal });
  }

  /**
   * Every page of a listing, in order, all at the first page's revision
   * (the page token pins it; a page at another revision throws). An async
   * iterator: `for await (const page of gw.listAll(ns, {prefix}))`.
   */
  async *listAll(ns, options = {}) {
    let page = await this.list(ns, options);
    const revision = page.revision;
    yield page;
    while (page.next_page_token) {
      page = await this.list(ns, { ...options, pageToken: page.next_page_token });
      if (page.revision !== revision) {
        throw new GatewayError(0, {
          code: "revision_changed",
          detail: `page at revision ${page.revision}, listing at ${revision}`,
        });
      }
      yield page;
    }
  }

  /** The URL of a watch (selection and stream options; see `watch`). */
  watchUrl(ns, options = {}) {
    return withParams(this.url(`/v1/namespaces/${encodeURIComponent(ns)}/watch`), {
      ...selectionParams(options),
      snapshot: options.snapshot ? "true" : undefined,
      prev_kv: options.prevKv ? "true" : undefined,
      encoding: options.encoding,
      on_gap: options.onGap,
      progress_interval: options.progressInterval,
      access_token: this.token,
    });
  }

  /** A Watch of a namespace's keys: `watch(this.watchUrl(ns, options), options)`. */
  watch(ns, options = {}) {
    return watch(this.watchUrl(ns, options), { withCredentials: this.credentials === "include", ...options });
  }

  /** A Mirror of a namespace's keys (a snapshot, then every change). */
  mirror(ns, options = {}) {
    return mirror(this.watchUrl(ns, { ...options, snapshot: true }), {
      withCredentials: this.credentials === "include",
      ...options,
    });
  }
}

/** A tiny listener registry: `on(type, fn)` returns the function that removes it. */
class Emitter {
  constructor() {
    this.listeners = new Map();
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, detail) {
    for (const fn of [...(this.listeners.get(type) || [])]) {
      try {
        fn(detail);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }
}

/**
 * A watch over EventSource that resumes without loss and surfaces resets.
 *
 * Events (`watch.on(type, fn)`):
 * - `snapshot` {revision, kvs}: a chunk of the state (after `reset`, or first with `snapshot=true`)
 * - `synced` {revision}: the snapshot or replay is complete; the stream is live
 * - `change` {revision, events}: every event of one revision
 * - `progress` {revision}: complete up to revision
 * - `reset` {code, revision}: history was lost; a full snapshot + synced follow: replace your state
 * - `gap` (GatewayError code "compacted"): with `onGap: "error"`, history is gone; the watch stopped
 * - `error` (GatewayError): a problem from the gateway; `fatal` tells whether the watch stopped
 * - `state` {state, lastEventId}: "connecting" | "open" | "closed"
 * - `open` {}: a connection is open (a snapshot may follow)
 */
export class Watch extends Emitter {
  /**
   * @param {string} url the watch URL (`Gateway.watchUrl`)
   * @param {{since?: number, withCredentials?: boolean}} [options]
   */
  constructor(url, options = {}) {
    super();
    this.baseUrl = url;
    this.withCredentials = Boolean(options.withCredentials);
    /** The last revision this watch is complete up to (Last-Event-ID), or null. */
    this.lastEventId = options.since ?? sinceOf(url);
    /** "connecting" | "open" | "closed". */
    this.state = "connecting";
    /** How many EventSource connections opened. */
    this.opens = 0;
    /** How many EventSources this module created (1 + its own reconnects). */
    this.sources = 0;
    this.failures = 0;
    this.source = null;
    this.timer = null;
    this.closed = false;
    queueMicrotask(() => this.connect());
  }

  /** The URL of the next EventSource: resumes after `lastEventId`. */
  currentUrl() {
    if (this.lastEventId === null || this.lastEventId === undefined) return this.baseUrl;
    const u = new URL(this.baseUrl);
    u.searchParams.set("since", String(this.lastEventId));
    return u.toString();
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state, lastEventId: this.lastEventId });
  }

  connect() {
    if (this.closed) return;
    this.setState("connecting");
    const source = new EventSource(this.currentUrl(), { withCredentials: this.withCredentials });
    this.source = source;
    this.sources += 1;
    const data = (e) => JSON.parse(e.data);
    const track = (e) => {
      if (e.lastEventId !== "") this.lastEventId = Number(e.lastEventId);
    };
    source.onopen = () => {
      this.opens += 1;
      this.failures = 0;
      this.setState("open");
      this.emit("open", {});
    };
    source.addEventListener("snapshot", (e) => this.emit("snapshot", data(e)));
    source.addEventListener("synced", (e) => {
      track(e);
      this.emit("synced", data(e));
    });
    source.addEventListener("change", (e) => {
      const change = data(e);
      // Never twice: a resume delivers only revisions after Last-Event-ID.
      if (this.lastEventId !== null && change.revision <= this.lastEventId) return;
      track(e);
      this.emit("change", change);
    });
    source.addEventListener("progress", (e) => {
      track(e);
      this.emit("progress", data(e));
    });
    source.addEventListener("reset", (e) => this.emit("reset", data(e)));
    source.addEventListener("error", (e) => {
      if (source !== this.source) return;
      if (typeof e.data === "string") {
        // The gateway's in-stream `error` event: a problem, then the end.
        const problem = JSON.parse(e.data);
        const error = new GatewayError(problem.status || 0, problem);
        if (problem.code === "compacted") {
          this.stop();
          this.emit("gap", error);
        } else {
          this.emit("error", Object.assign(error, { fatal: false }));
        }
        return;
      }
      if (source.readyState === EventSource.CONNECTING) {
        // EventSource reconnects by itself, sending Last-Event-ID.
        this.setState("connecting");
        return;
      }
      // EventSource gave up (an answer that was not 200): find out why.
      source.close();
      this.recover();
    });
  }

  /** After EventSource gave up: ask the gateway why, then stop or retry. */
  async recover() {
    if (this.closed) return;
    this.setState("connecting");
    let error = null;
    try {
      const controller = new AbortController();
      const response = await fetch(this.currentUrl(), {
        headers: { Accept: "text/event-stream" },
        credentials: this.withCredentials ? "include" : "same-origin",
        signal: controller.signal,
      });
      if (response.ok) controller.abort();
      else error = await errorOf(response);
    } catch {
      error = null; // unreachable: retry
    }
    if (this.closed) return;
    if (error && FATAL_CODES.has(error.code)) {
      this.stop();
      if (error.code === "compacted") this.emit("gap", error);
      else this.emit("error", Object.assign(error, { fatal: true }));
      return;
    }
    if (error) this.emit("error", Object.assign(error, { fatal: false }));
    const retryAfter = error && error.retryAfter;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(this.failures, 10));
    this.failures += 1;
    const delay = retryAfter ? retryAfter * 1000 : ceiling / 2 + Math.random() * (ceiling / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  stop() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.setState("closed");
  }

  /** Ends the watch for good. */
  close() {
    this.stop();
  }
}

/** `since=` of a URL, as a number, or null. */
function sinceOf(url) {
  const since = new URL(url).searchParams.get("since");
  return since === null ? null : Number(since);
}

/** Opens a Watch on a watch URL (see `Gateway.watchUrl`). */
export function watch(url, options = {}) {
  return new Watch(url, options);
}

/**
 * A local copy of a selection kept exactly equal to the gateway's: a
 * snapshot, then every change; after a `reset`, the snapshot that follows
 * replaces the whole state.
 *
 * Events (`mirror.on(type, fn)`): `change` {revision, events} after they
 * are applied, `replaced` {revision, reason} after a snapshot replaced the
 * state (the first one too), `state` and `error` as the Watch's.
 */
export class Mirror extends Emitter {
  /** @param {string} url a watch URL with `snapshot=true` */
  constructor(url, options = {}) {
    super();
    /** key (see keyOf) → kv object as the gateway sent it. */
    this.kvs = new Map();
    /** The revision the state is complete up to (0 before the first sync). */
    this.revision = 0;
    /** Whether the first snapshot has been applied. */
    this.isReady = false;
    this.staging = null;
    this.resetReason = null;
    this.waiters = [];
    const u = new URL(url);
    u.searchParams.delete("since");
    u.searchParams.set("snapshot", "true");
    this.watch = new Watch(u.toString(), { ...options, since: undefined });
    const w = this.watch;
    // A snapshot cut short is sent again whole on the next connection.
    w.on("open", () => {
      this.staging = null;
    });
    w.on("reset", (r) => {
      this.staging = { revision: r.revision, kvs: new Map() };
      this.resetReason = r.code;
    });
    w.on("snapshot", (chunk) => {
      if (!this.staging || this.staging.revision !== chunk.revision) {
        this.staging = { revision: chunk.revision, kvs: new Map() };
      }
      for (const kv of chunk.kvs) this.staging.kvs.set(keyOf(kv), kv);
    });
    w.on("synced", ({ revision }) => {
      if (this.staging || !this.isReady) {
        this.kvs = this.staging ? this.staging.kvs : new Map();
        this.staging = null;
        const reason = this.resetReason || "initial";
        this.resetReason = null;
        this.advance(revision);
        this.isReady = true;
        this.emit("replaced", { revision, reason });
      } else {
        this.advance(revision);
      }
      this.wake();
    });
    w.on("change", (change) => {
      for (const event of change.events) {
        if (event.type === "put") this.kvs.set(keyOf(event.kv), event.kv);
        else this.kvs.delete(keyOf(event.kv));
      }
      this.advance(change.revision);
      this.emit("change", change);
      this.wake();
    });
    w.on("progress", ({ revision }) => {
      this.advance(revision);
      this.wake();
    });
    w.on("state", (s) => this.emit("state", s));
    w.on("error", (e) => {
      this.emit("error", e);
      if (e.fatal) this.fail(e);
    });
    w.on("gap", (e) => {
      this.emit("error", Object.assign(e, { fatal: true }));
      this.fail(e);
    });
  }

  advance(revision) {
    if (revision > this.revision) this.revision = revision;
  }

  wake() {
    if (!this.isReady) return;
    this.waiters = this.waiters.filter((w) => {
      if (this.revision < w.revision) return true;
      w.resolve(this.revision);
      return false;
    });
  }

  fail(error) {
    for (const w of this.waiters) w.reject(error);
    this.waiters = [];
  }

  /** Resolves (to the revision) once the first snapshot is applied. */
  ready() {
    return this.waitForRevision(0);
  }

  /**
   * Resolves once the mirror is complete up to `revision` (read-your-writes
   * after a write to etcd that returned that revision); rejects when the
   * watch stops for good.
   */
  waitForRevision(revision) {
    if (this.isReady && this.revision >= revision) return Promise.resolve(this.revision);
    if (this.watch.closed) return Promise.reject(new GatewayError(0, { code: "closed", detail: "the mirror is closed" }));
    return new Promise((resolve, reject) => this.waiters.push({ revision, resolve, reject }));
  }

  /** The kv object of `key` (see keyOf), or undefined. */
  get(key) {
    return this.kvs.get(key);
  }

  /** The number of keys. */
  get size() {
    return this.kvs.size;
  }

  /** [key, kv] pairs, sorted by key. */
  entries() {
    return [...this.kvs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The connection state: "connecting" | "open" | "closed". */
  get state() {
    return this.watch.state;
  }

  /** Stops the mirror for good. */
  close() {
    this.watch.close();
    this.fail(new GatewayError(0, { code: "closed", detail: "the mirror is closed" }));
  }
}

/** Opens a Mirror on a watch URL (see `Gateway.watchUrl`). */
export function mirror(url, options = {}) {
  return new Mirror(url, options);
}
