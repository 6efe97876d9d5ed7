//! The client against a real etcd and the real gateway (in process, through
//! the server's own test support): every public method, and the mirror
//! staying equal to etcd across an etcd restart, a compaction-forced reset
//! and a gateway restart. Run one test with
//! `cargo test -p etcd-cache-gateway-client --test it -- name`.

// The server's own test support, shared as it is; this binary uses only
// part of what it re-exports.
#[path = "../../../../tests/it/support/mod.rs"]
#[allow(unused_imports)]
mod support;

mod example;
mod harness;
mod mirror;
mod mirror_faults;
mod readme;
mod reads;
mod watch;
