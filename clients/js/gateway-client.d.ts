// Types of gateway-client.js (etcd-cache-gateway's browser client).

/** A revision of etcd's keyspace. */
export type Revision = number;

/** A key-value as the gateway sends it (API.md "Key-value object"). */
export interface KeyValue {
  key: string;
  /** Present when the key is not UTF-8 (`key` is then base64). */
  key_encoding?: "base64";
  /** Absent with keys_only and in delete events. */
  value?: unknown;
  value_encoding?: "utf8" | "base64" | "json";
  create_revision?: Revision;
  mod_revision: Revision;
  version?: number;
  /** Lease id as a decimal string ("0": none). */
  lease?: string;
}

/** A namespace's status (`GET /v1/namespaces`). */
export interface NamespaceInfo {
  name: string;
  prefix?: string;
  revision: Revision;
  compacted_revision: Revision;
  oldest_revision: Revision;
  etcd_revision: Revision;
  keys: number;
  ready: boolean;
  status: "fresh" | "stale";
  /** A re-list is under way (answers are the previous state meanwhile). */
  relisting: boolean;
  /** Why the namespace cannot load or lost its watch, while it lasts. */
  last_error?: string;
  [extra: string]: unknown;
}

/** A problem+json answer (RFC 9457) or a transport failure. */
export class GatewayError extends Error {
  constructor(status: number, problem?: Record<string, unknown> | null);
  /** HTTP status; 0 when no answer came. */
  status: number;
  /** API.md code ("key_not_found", "compacted", ...), "network_error", or "http_error". */
  code: string;
  problem: Record<string, unknown>;
  /** Seconds of the answer's Retry-After. */
  retryAfter?: number;
  /** On watch errors: whether the watch stopped. */
  fatal?: boolean;
}

export interface ReadOptions {
  encoding?: "auto" | "base64" | "json";
  revision?: Revision;
  consistent?: boolean;
  minRevision?: Revision;
  signal?: AbortSignal;
}

export interface GetOptions extends ReadOptions {
  ifNoneMatch?: string;
  raw?: boolean;
}

export interface GetResult {
  revision: Revision;
  kv: KeyValue;
  etag: string | null;
  cacheStatus: string | null;
  notModified?: undefined;
}

export interface ListOptions extends ReadOptions {
  prefix?: string;
  start?: string;
  end?: string;
  limit?: number;
  pageToken?: string;
  keysOnly?: boolean;
  countOnly?: boolean;
  filter?: string | string[];
  select?: string | string[];
  delimiter?: string;
  sort?: "key" | "create_revision" | "mod_revision" | "version";
  order?: "asc" | "desc";
}

export interface Page {
  revision: Revision;
  count: number;
  kvs: KeyValue[];
  prefixes?: { prefix: string; count: number }[];
  next_page_token: string | null;
}

export interface WatchUrlOptions {
  prefix?: string;
  start?: string;
  end?: string;
  key?: string;
  snapshot?: boolean;
  prevKv?: boolean;
  encoding?: "auto" | "base64" | "json";
  onGap?: "reset" | "error";
  progressInterval?: string;
}

export interface WatchOptions {
  /** Resume after this revision. */
  since?: Revision;
  withCredentials?: boolean;
}

export interface Event {
  type: "put" | "delete";
  kv: KeyValue;
  prev_kv?: KeyValue;
}

export interface Change {
  revision: Revision;
  events: Event[];
}

export type ConnectionState = "connecting" | "open" | "closed";

export interface WatchEvents {
  snapshot: { revision: Revision; kvs: KeyValue[] };
  synced: { revision: Revision };
  change: Change;
  progress: { revision: Revision };
  reset: { code: "compacted" | "lagged" | "relisted" | string; revision: Revision };
  gap: GatewayError;
  error: GatewayError;
  state: { state: ConnectionState; lastEventId: Revision | null };
  open: Record<string, never>;
}

export class Watch {
  constructor(url: string, options?: WatchOptions);
  /** The revision the watch is complete up to, or null before the first. */
  readonly lastEventId: Revision | null;
  readonly state: ConnectionState;
  /** Connections opened so far. */
  readonly opens: number;
  /** EventSources this module created (1 + its own reconnects). */
  readonly sources: number;
  readonly closed: boolean;
  on<K extends keyof WatchEvents>(type: K, listener: (detail: WatchEvents[K]) => void): () => void;
  close(): void;
}

export interface MirrorEvents {
  change: Change;
  replaced: { revision: Revision; reason: "initial" | "compacted" | "lagged" | "relisted" | string };
  state: WatchEvents["state"];
  error: GatewayError;
}

export class Mirror {
  constructor(url: string, options?: WatchOptions);
  readonly watch: Watch;
  /** key (see keyOf) → key-value. */
  readonly kvs: Map<string, KeyValue>;
  readonly revision: Revision;
  readonly isReady: boolean;
  readonly size: number;
  readonly state: ConnectionState;
  on<K extends keyof MirrorEvents>(type: K, listener: (detail: MirrorEvents[K]) => void): () => void;
  ready(): Promise<Revision>;
  waitForRevision(revision: Revision): Promise<Revision>;
  get(key: string): KeyValue | undefined;
  entries(): [string, KeyValue][];
  close(): void;
}

export interface GatewayOptions {
  token?: string;
  credentials?: RequestCredentials;
  fetch?: typeof fetch;
}

export class Gateway {
  constructor(baseUrl: string, options?: GatewayOptions);
  readonly baseUrl: string;
  url(path: string): string;
  namespaces(options?: { signal?: AbortSignal }): Promise<NamespaceInfo[]>;
  namespace(ns: string, options?: { signal?: AbortSignal }): Promise<NamespaceInfo>;
  /** A Uint8Array key (not UTF-8) is read with `key_b64=`. */
  keyUrl(ns: string, key: string | Uint8Array, options?: GetOptions): string;
  get(ns: string, key: string | Uint8Array, options?: GetOptions): Promise<GetResult | { notModified: true; etag: string | null }>;
  listUrl(ns: string, options?: ListOptions): string;
  list(ns: string, options?: ListOptions): Promise<Page>;
  listAll(ns: string, options?: ListOptions): AsyncGenerator<Page, void, void>;
  watchUrl(ns: string, options?: WatchUrlOptions): string;
  watch(ns: string, options?: WatchUrlOptions & WatchOptions): Watch;
  mirror(ns: string, options?: WatchUrlOptions & WatchOptions): Mirror;
}

export function watch(url: string, options?: WatchOptions): Watch;
export function mirror(url: string, options?: WatchOptions): Mirror;
export function encodeKey(key: string): string;
export function keyOf(kv: KeyValue): string;
export function valueOf(kv: KeyValue): string | Uint8Array | unknown;
export function base64ToBytes(text: string): Uint8Array;
export function bytesToBase64Url(bytes: Uint8Array): string;
