//! The API surfaces, side by side: each reads through the cache and the
//! fan-out, and shares the plumbing in `crate::http`; none imports another.

pub mod etcd_v3;
pub mod kubernetes;
pub mod v1;
