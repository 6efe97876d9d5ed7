//! Turning an etcd watch stream into the cache's feed: responses into
//! per-revision batches of the cache's own types, and the rules for how far
//! a progress notification may move head. Pure logic, tested without etcd.

use bytes::Bytes;
use etcd_client::{EventType, WatchResponse};

use super::keys::Prefix;
use crate::cache::{Event, EventKind, KeyValue, Revision, RevisionBatch};

/// Splits a response's events into per-revision batches. One response can
/// carry many revisions; a revision is never split across responses
/// (fragmentation is off).
///
/// # Errors
/// A description of what makes the feed inconsistent (an event without a
/// key-value, outside the prefix, or revisions going backwards).
pub fn batches(prefix: &Prefix, response: &WatchResponse) -> Result<Vec<RevisionBatch>, String> {
    let mut batches: Vec<RevisionBatch> = Vec::new();
    for event in response.events() {
        let kv = event.kv().ok_or("event without kv")?;
        let revision = kv.mod_revision();
        let outside = || format!("event for key outside the prefix: {:?}", kv.key());
        let (kind, kv) = match event.event_type() {
            EventType::Put => (EventKind::Put, prefix.key_value(kv).ok_or_else(outside)?),
            EventType::Delete => {
                let key = Bytes::copy_from_slice(prefix.strip(kv.key()).ok_or_else(outside)?);
                (EventKind::Delete, KeyValue::tombstone(key, revision))
            }
        };
        let prev_kv = event.prev_kv().and_then(|p| prefix.key_value(p));
        let event = Event { kind, kv, prev_kv };
        match batches.last_mut() {
            Some(batch) if batch.revision == revision => batch.events.push(event),
            Some(batch) if batch.revision > revision => {
                return Err(format!("revision {revision} after {}", batch.revision));
            }
            _ => batches.push(RevisionBatch { revision, events: vec![event] }),
        }
    }
    Ok(batches)
}

/// The revision to open a watch at when every revision up to `known` is
/// already applied and etcd was last seen at `etcd_revision`.
///
/// Caught up (`known >= etcd_revision`): `known + 1`. etcd then delivers
/// events as they are written and never reads them back from storage, which
/// is the path its watch bugs below live on.
///
/// Behind: `known` itself (never 0, "from now" to etcd), and the caller
/// drops the events of `known` again. etcd replays from storage, where it
/// removes a delete's tombstone when it compacts at exactly the delete's
/// revision yet lets a watch start at the compaction revision (etcd #18089,
/// fixed later by etcd #18274; Debian's 3.4.23 has it): a watch from
/// `known + 1` just after a compaction at `known + 1` would silently miss that
/// revision's deletes. From `known`, etcd answers `compacted` instead and
/// the caller re-lists or resets as for any compaction.
pub fn watch_from(known: Revision, etcd_revision: Revision) -> Revision {
    if known >= etcd_revision { known + 1 } else { known.max(1) }
}

/// Whether etcd `version` sends progress notifications in order with
/// events. Before 3.4.25 and 3.5.8 a requested progress notification could
/// overtake events of its own revision (etcd #15220, fixed by etcd #15237).
pub fn progress_is_ordered(version: &str) -> bool {
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().unwrap_or(0));
    let (major, minor, patch) =
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (major, minor) {
        (3, 4) => patch >= 25,
        (3, 5) => patch >= 8,
        (3, m) => m > 5,
        (m, _) => m > 3,
    }
}

/// What a progress notification allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Move head to this revision (ignored unless it is ahead).
    Advance(Revision),
    /// Head may move to this revision only if etcd confirms no change of
    /// the namespace happened between head and it (a watch still catching
    /// up, or an etcd whose progress may overtake events).
    CheckQuietUntil(Revision),
}

/// How far progress notifications may move head on one watch stream.
///
/// Two hazards: a watch still catching up may be sent progress ahead of the
/// events it has yet to deliver (so progress counts only once head reached
/// the revision the watch was created at), and on etcd before 3.4.25/3.5.8 a
/// progress notification may overtake events (etcd #15220). Kubernetes'
/// watch cache trusts `revision − 1` there, which assumes the notification
/// overtakes one revision at most; it can overtake several (seen on 3.4.23
/// and 3.5.1: a read at head missed writes made just before it, and the
/// late events then failed to apply). So on those versions every
/// notification is checked with etcd (`CheckQuietUntil`) before head moves:
/// one count-only read per notification, only on old etcd.
#[derive(Debug, Clone)]
pub struct ProgressGate {
    created_revision: Revision,
    synced: bool,
    ordered: bool,
}

impl ProgressGate {
    /// The gate of a watch created when etcd was at `created_revision`, with
    /// the cache at `head`; `ordered` from [`progress_is_ordered`].
    pub fn new(created_revision: Revision, head: Revision, ordered: bool) -> Self {
        Self { created_revision, synced: head >= created_revision, ordered }
    }

    /// Events were applied; head is now `head`.
    pub fn events_applied(&mut self, head: Revision) {
        if head >= self.created_revision {
            self.synced = true;
        }
    }

    /// etcd confirmed the namespace was quiet up to the creation revision.
    pub fn confirmed_quiet(&mut self) {
        self.synced = true;
    }

    /// What a progress notification at `revision` allows.
    pub fn on_progress(&mut self, revision: Revision) -> Verdict {
        if !self.synced {
            return Verdict::CheckQuietUntil(self.created_revision);
        }
        if self.ordered {
            return Verdict::Advance(revision);
        }
        Verdict::CheckQuietUntil(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_behind_etcd_open_one_revision_early_never_at_now() {
        assert_eq!(watch_from(41, 50), 41, "one early: a compaction at 42 answers compacted");
        assert_eq!(watch_from(41, 41), 42, "caught up: from the next revision, as it is written");
        assert_eq!(watch_from(0, 3), 1, "0 would mean from now");
    }

    #[test]
    fn versions_with_ordered_progress() {
        for (version, ordered) in [
            ("3.4.23", false),
            ("3.4.25", true),
            ("3.5.1", false),
            ("3.5.7", false),
            ("3.5.8", true),
            ("3.5.17", true),
            ("3.6.0", true),
            ("3.6.0-rc.1", true),
            ("3.3.27", false),
            ("garbage", false),
        ] {
            assert_eq!(progress_is_ordered(version), ordered, "{version}");
        }
    }

    #[test]
    fn a_catching_up_watch_needs_a_quiet_check() {
        let mut gate = ProgressGate::new(10, 7, true);
        assert_eq!(gate.on_progress(12), Verdict::CheckQuietUntil(10));
        gate.events_applied(9);
        assert_eq!(gate.on_progress(12), Verdict::CheckQuietUntil(10));
        gate.events_applied(10);
        assert_eq!(gate.on_progress(12), Verdict::Advance(12));
        let mut quiet = ProgressGate::new(10, 7, true);
        quiet.confirmed_quiet();
        assert_eq!(quiet.on_progress(11), Verdict::Advance(11));
    }

    #[test]
    fn unordered_etcd_progress_is_checked_with_etcd_every_time() {
        let mut gate = ProgressGate::new(10, 10, false);
        assert_eq!(gate.on_progress(15), Verdict::CheckQuietUntil(15));
        assert_eq!(gate.on_progress(15), Verdict::CheckQuietUntil(15), "a repeat proves nothing");
        gate.events_applied(16);
        assert_eq!(gate.on_progress(17), Verdict::CheckQuietUntil(17));
        let mut ordered = ProgressGate::new(10, 10, true);
        assert_eq!(ordered.on_progress(15), Verdict::Advance(15));
    }
}
