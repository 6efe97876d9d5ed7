//! A typed async client for etcd-cache-gateway (an HTTP/JSON caching
//! gateway in front of etcd): reads, paged listings,
//! resumable watches and a live mirror of a key range, with the gateway's
//! guarantees made hard to get wrong.
//!
//! - [`Client`]: namespaces, one key ([`Client::get`], raw bytes,
//!   conditional reads with ETags), listings with every option of the API
//!   ([`Range`]), and all pages of a listing at one revision
//!   ([`Client::list_all`]).
//! - [`Watch`] ([`Client::watch`]): a stream of typed events
//!   ([`WatchEvent`]) that reconnects by itself, resumes with
//!   `Last-Event-ID` where it stopped (nothing lost, nothing twice), honours
//!   the gateway's `retry:`, and surfaces every reset.
//! - [`Mirror`] ([`Client::mirror`]): a local copy of a selection kept
//!   exactly equal to etcd's state at its revision, with
//!   [`Mirror::wait_for_revision`] to read your own writes and a change
//!   subscription.
//! - [`Error`]: one variant per problem `code` of the API
//!   ([`Error::Compacted`], [`Error::KeyNotFound`], ...), the problem's
//!   detail and members kept; transport failures apart.
//!
//! Revisions are etcd's own. Keys are bytes, relative to the namespace's
//! prefix; values are bytes ([`Value::Bytes`]) unless asked for as JSON.
//!
//! ```no_run
//! use etcd_cache_gateway_client::{Client, MirrorOptions, Range, Selection};
//!
//! # async fn example() -> etcd_cache_gateway_client::Result<()> {
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let got = client.get("apps", "config/log-level").await?;
//! println!("{:?} at revision {}", got.kv.value_str(), got.revision);
//! let page = client.list("apps", &Range::prefix("services/").keys_only()).await?;
//! println!("{} services", page.count);
//! let mirror = client.mirror("apps", Selection::prefix("config/"), MirrorOptions::new());
//! mirror.wait_ready().await?;
//! println!("{} config keys at revision {}", mirror.len(), mirror.revision());
//! # Ok(())
//! # }
//! ```
//!
//! The watch and the mirror run on tokio; TLS is rustls (aws-lc-rs) with the
//! platform's trust store, or bring your own `reqwest::Client`
//! ([`ClientBuilder::http_client`]).

mod client;
mod error;
mod mirror;
mod options;
mod paging;
mod types;
mod watch;

pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
pub use error::{Error, Problem, Result};
pub use mirror::{
    DEFAULT_CHANGES_CAPACITY, DEFAULT_MIRROR_PROGRESS, Mirror, MirrorChanges, MirrorEvent, MirrorIter,
    MirrorOptions, MirrorSnapshot,
};
pub use options::{Consistency, Encoding, GetOptions, Range, SortBy};
pub use paging::Pages;
pub use types::{
    CacheStatus, CommonPrefix, Conditional, Event, Got, KeyValue, NamespaceInfo, Page, Raw, Value,
};
pub use watch::{
    Backoff, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF, OnGap, ResetReason, Selection,
    Watch, WatchEvent, WatchOptions,
};

/// An etcd revision: etcd's own numbering, increasing with every write.
pub type Revision = i64;

/// The README's example, compiled with the other doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
