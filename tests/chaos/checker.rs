//! The history checker: etcd's own history (recorded by a direct etcd
//! watch, see `oracle`) against what each SSE subscriber received and what
//! each REST read answered. It knows nothing of the gateway's code: only the
//! wire format of API.md and etcd's events.
//!
//! A subscriber's log is checked as a client sees it: its position is the
//! last revision it was told it is complete up to (`change`, `synced`,
//! `progress`). Every `change` must be the next revision touching its
//! selection after that position, carry exactly etcd's events of that
//! revision on the selection, and come once. A `reset` must be followed by a
//! snapshot equal to etcd's state at the `synced` revision that ends it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use imbl::OrdMap;

/// A key-value as etcd holds it (key relative to the namespace prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// Key, relative.
    pub key: String,
    /// Value (the workload writes UTF-8 only).
    pub value: String,
    /// etcd's `create_revision`.
    pub create_revision: i64,
    /// etcd's `mod_revision`.
    pub mod_revision: i64,
    /// etcd's `version`.
    pub version: i64,
    /// Lease id (0 for none).
    pub lease: i64,
}

/// One event of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A put: the key-value after it.
    Put(Kv),
    /// A delete of `key` at `mod_revision`.
    Delete {
        /// Key, relative.
        key: String,
        /// The revision of the delete.
        mod_revision: i64,
    },
}

impl Event {
    fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// What a subscriber watches or a read asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The whole namespace.
    All,
    /// Keys starting with this.
    Prefix(String),
    /// One key.
    Key(String),
    /// Keys in [start, end).
    Range(String, String),
}

impl Selection {
    /// Whether `key` is selected.
    pub fn contains(&self, key: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Prefix(p) => key.starts_with(p.as_str()),
            Selection::Key(k) => key == k,
            Selection::Range(start, end) => key >= start.as_str() && key < end.as_str(),
        }
    }
}

/// etcd's history of the namespace from a start revision on.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Events of each revision that touched the namespace.
    events: BTreeMap<i64, Vec<Event>>,
    /// The state after each such revision, and at the start revision.
    states: BTreeMap<i64, OrdMap<String, Kv>>,
    start: i64,
    /// Known complete up to here.
    head: i64,
}

impl History {
    /// A history starting at `start` with the state then.
    pub fn new(start: i64, initial: impl IntoIterator<Item = Kv>) -> Self {
        let state: OrdMap<String, Kv> = initial.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        Self { events: BTreeMap::new(), states: BTreeMap::from([(start, state)]), start, head: start }
    }

    /// Appends revision `revision`'s events; revisions must increase.
    pub fn push(&mut self, revision: i64, events: Vec<Event>) -> Result<(), String> {
        if revision <= self.head {
            return Err(format!("etcd history went back: {revision} after {}", self.head));
        }
        let mut state = self.states.values().next_back().cloned().unwrap_or_default();
        for e in &events {
            match e {
                Event::Put(kv) => {
                    state.insert(kv.key.clone(), kv.clone());
                }
                Event::Delete { key, .. } => {
                    state.remove(key);
                }
            }
        }
        self.states.insert(revision, state);
        self.events.insert(revision, events);
        self.head = revision;
        Ok(())
    }

    /// Forgets revisions after `upto` (the run's fence).
    pub fn truncate(&mut self, upto: i64) {
        self.events.retain(|r, _| *r <= upto);
        self.states.retain(|r, _| *r <= upto);
        self.head = self.head.min(upto);
    }

    /// Complete up to here.
    pub fn head(&self) -> i64 {
        self.head
    }

    /// The first revision recorded.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Revisions in the history.
    pub fn revisions(&self) -> usize {
        self.events.len()
    }

    /// The selected keys at `revision`, by key (`None` outside the history).
    pub fn state_at(&self, revision: i64, selection: &Selection) -> Option<Vec<Kv>> {
        if revision < self.start || revision > self.head {
            return None;
        }
        let (_, state) = self.states.range(..=revision).next_back()?;
        Some(state.values().filter(|kv| selection.contains(&kv.key)).cloned().collect())
    }

    /// The selected events of `revision` (empty when none).
    fn selected(&self, revision: i64, selection: &Selection) -> Vec<Event> {
        self.events
            .get(&revision)
            .map(|es| es.iter().filter(|e| selection.contains(e.key())).cloned().collect())
            .unwrap_or_default()
    }

    /// Revisions in (after, upto] with an event on the selection.
    fn selected_between(&self, after: i64, upto: i64, selection: &Selection) -> Vec<i64> {
        if upto <= after {
            return Vec::new();
        }
        self.events
            .range(after + 1..=upto)
            .filter(|(_, es)| es.iter().any(|e| selection.contains(e.key())))
            .map(|(r, _)| *r)
            .collect()
    }
}

/// What a subscriber received, in order, including its own reconnects.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// The client opened a stream, resuming from `since` (`Last-Event-ID`)
    /// or, without it, asking for a snapshot or starting now.
    Connect {
        /// Which replica.
        replica: usize,
        /// The resume revision sent.
        since: Option<i64>,
        /// `snapshot=true` was asked.
        snapshot: bool,
    },
    /// `change`.
    Change {
        /// Its revision.
        revision: i64,
        /// Its events.
        events: Vec<Event>,
    },
    /// `synced`.
    Synced(i64),
    /// `progress`.
    Progress(i64),
    /// `reset` with its code and revision.
    Reset {
        /// `compacted`, `lagged`, `relisted`.
        code: String,
        /// Its revision.
        revision: i64,
    },
    /// One `snapshot` chunk.
    Snapshot {
        /// Its revision.
        revision: i64,
        /// Its kvs.
        kvs: Vec<Kv>,
    },
    /// `error` with its code; the stream ends.
    Error(String),
}

/// What kind of wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A revision on the selection was never delivered.
    Lost,
    /// A revision was delivered twice.
    Duplicated,
    /// A revision came after a later one.
    Reordered,
    /// A revision's events differ from etcd's (on the selection).
    WrongEvents,
    /// A snapshot differs from etcd's state at its revision.
    WrongSnapshot,
    /// A read differs from etcd's state at the revision it claims.
    WrongRead,
    /// The stream broke the protocol (a change inside a snapshot, a snapshot
    /// without reset, an id that goes back).
    Protocol,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What kind.
    pub fault: Fault,
    /// Where and what, for a person.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.fault, self.detail)
    }
}

/// Totals of one check.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// `change` messages checked.
    pub changes: u64,
    /// Events inside them.
    pub events: u64,
    /// Snapshots (after a reset or asked for) checked.
    pub snapshots: u64,
    /// Resets by code.
    pub resets: BTreeMap<String, u64>,
    /// In-stream errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Reads checked against etcd's state.
    pub reads: u64,
    /// Findings.
    pub violations: Vec<Violation>,
}

impl Checked {
    fn flag(&mut self, fault: Fault, detail: String) {
        self.violations.push(Violation { fault, detail });
    }

    /// Findings of one kind.
    pub fn count(&self, fault: Fault) -> usize {
        self.violations.iter().filter(|v| v.fault == fault).count()
    }

    /// Adds another check's totals.
    pub fn merge(&mut self, other: Checked) {
        self.changes += other.changes;
        self.events += other.events;
        self.snapshots += other.snapshots;
        self.reads += other.reads;
        for (k, v) in other.resets {
            *self.resets.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.violations.extend(other.violations);
    }
}

/// A snapshot being received: after a reset or a `snapshot=true` connect.
/// The reset names the head when it was decided; the snapshot may be taken
/// at a later head (API.md promises no more), never an earlier one.
struct Pending {
    reset: Option<i64>,
    chunks: Option<i64>,
    kvs: Vec<Kv>,
}

/// Checks one subscriber's log against `history`; `name` prefixes findings.
/// Every revision on the selection up to `history.head()` must have been
/// delivered by the end of the log.
pub fn check_subscriber(history: &History, selection: &Selection, log: &[Received], name: &str) -> Checked {
    let mut out = Checked::default();
    let mut pos: Option<i64> = None;
    let mut delivered = BTreeSet::new();
    let mut pending: Option<Pending> = None;
    let mut stream = String::new();
    for (i, item) in log.iter().enumerate() {
        if let Received::Connect { replica, since, .. } = item {
            stream = format!("stream #{i} on replica {replica} from {since:?}");
        }
        let at = |what: &str| format!("{name} #{i} ({stream}) {what}");
        match item {
            Received::Connect { since, snapshot, .. } => {
                pending = snapshot.then_some(Pending { reset: None, chunks: None, kvs: Vec::new() });
                // A resume below the position follows an id that went back
                // (flagged there); what it repeats is flagged as duplicated.
                match (since, pos) {
                    (Some(since), Some(p)) if *since > p => {
                        out.flag(Fault::Protocol, at(&format!("resumed from {since}, position {p}")));
                    }
                    (Some(since), None) => pos = Some(*since),
                    _ => {}
                }
            }
            Received::Change { revision, events } => {
                if pending.is_some() {
                    out.flag(Fault::Protocol, at(&format!("change {revision} inside a snapshot")));
                    continue;
                }
                out.changes += 1;
                out.events += events.len() as u64;
                if let Some(p) = pos {
                    if *revision <= p {
                        let fault =
                            if delivered.contains(revision) { Fault::Duplicated } else { Fault::Reordered };
                        out.flag(fault, at(&format!("change {revision} at position {p}")));
                        continue;
                    }
                    for lost in history.selected_between(p, revision - 1, selection) {
                        out.flag(
                            Fault::Lost,
                            at(&format!("revision {lost} missing before change {revision}")),
                        );
                    }
                }
                let expected = history.selected(*revision, selection);
                if *revision <= history.head() && &expected != events {
                    out.flag(
                        Fault::WrongEvents,
                        at(&format!("change {revision}: got {events:?}, etcd has {expected:?}")),
                    );
                }
                delivered.insert(*revision);
                pos = Some(*revision);
            }
            Received::Synced(h) | Received::Progress(h) => {
                if let Some(snap) = pending.take() {
                    out.snapshots += 1;
                    if snap.chunks.is_some_and(|r| r != *h) || snap.reset.is_some_and(|r| r > *h) {
                        let what = format!(
                            "reset at {:?}, snapshot at {:?}, synced at {h}",
                            snap.reset, snap.chunks
                        );
                        out.flag(Fault::Protocol, at(&what));
                    }
                    check_snapshot(history, selection, *h, &snap.kvs, &mut out, &at("snapshot"));
                    delivered.clear();
                    pos = Some(*h);
                    continue;
                }
                match pos {
                    Some(p) if *h < p => {
                        // A client's Last-Event-ID would go back, and its
                        // next resume would repeat what it already has.
                        out.flag(Fault::Protocol, at(&format!("id {h} after position {p}")));
                    }
                    Some(p) => {
                        for lost in history.selected_between(p, *h, selection) {
                            out.flag(Fault::Lost, at(&format!("revision {lost} missing before id {h}")));
                        }
                        pos = Some(*h);
                    }
                    None => pos = Some(*h),
                }
            }
            Received::Reset { code, revision } => {
                *out.resets.entry(code.clone()).or_default() += 1;
                pending = Some(Pending { reset: Some(*revision), chunks: None, kvs: Vec::new() });
            }
            Received::Snapshot { revision, kvs } => match &mut pending {
                Some(snap) => {
                    if snap.chunks.is_some_and(|r| r != *revision)
                        || snap.reset.is_some_and(|r| r > *revision)
                    {
                        let what = format!(
                            "snapshot chunk at {revision} after reset {:?}, chunks {:?}",
                            snap.reset, snap.chunks
                        );
                        out.flag(Fault::Protocol, at(&what));
                    }
                    snap.chunks = Some(*revision);
                    snap.kvs.extend(kvs.iter().cloned());
                }
                None => out.flag(Fault::Protocol, at(&format!("snapshot at {revision} without reset"))),
            },
            Received::Error(code) => {
                *out.errors.entry(code.clone()).or_default() += 1;
            }
        }
    }
    let end = pos.unwrap_or(history.start());
    for lost in history.selected_between(end, history.head(), selection) {
        out.flag(Fault::Lost, format!("{name}: revision {lost} never delivered (position {end})"));
    }
    out
}

fn check_snapshot(
    history: &History,
    selection: &Selection,
    revision: i64,
    kvs: &[Kv],
    out: &mut Checked,
    at: &str,
) {
    let mut got = kvs.to_vec();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    match history.state_at(revision, selection) {
        Some(expected) if expected == got => {}
        Some(expected) => out.flag(
            Fault::WrongSnapshot,
            format!(
                "{at} at {revision}: got {} keys {got:?}, etcd has {} keys {expected:?}",
                got.len(),
                expected.len()
            ),
        ),
        None => out.flag(Fault::Protocol, format!("{at} at {revision}, outside etcd's recorded history")),
    }
}

/// One REST answer: what was asked, the revision it claims, what it held.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// What was asked.
    pub selection: Selection,
    /// `X-Etcd-Revision`.
    pub revision: i64,
    /// The kvs of the body (none for a 404 `key_not_found`).
    pub kvs: Vec<Kv>,
    /// The request and its answer's cache status, for a person.
    pub request: String,
    /// The answer must reflect at least this revision (`consistent=true`:
    /// etcd's revision before the request), else 0.
    pub at_least: i64,
}

/// Checks reads: each body equals etcd's state at its claimed revision.
pub fn check_reads(history: &History, reads: &[Read]) -> Checked {
    let mut out = Checked::default();
    for (i, read) in reads.iter().enumerate() {
        out.reads += 1;
        let at = format!("read #{i} {:?} ({})", read.selection, read.request);
        if read.revision < read.at_least {
            out.flag(
                Fault::WrongRead,
                format!("{at}: consistent read at {} before {}", read.revision, read.at_least),
            );
        }
        match history.state_at(read.revision, &read.selection) {
            Some(expected) if expected == read.kvs => {}
            Some(expected) => out.flag(
                Fault::WrongRead,
                format!("{at} at {}: got {:?}, etcd has {expected:?}", read.revision, read.kvs),
            ),
            None => out.flag(
                Fault::WrongRead,
                format!(
                    "{at}: revision {} outside etcd's history [{}, {}]",
                    read.revision,
                    history.start(),
                    history.head()
                ),
            ),
        }
    }
    out
}
