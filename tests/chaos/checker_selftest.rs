//! The checker fed wrong histories: each kind of wrong is reported, exactly,
//! and a right history passes. Without these the chaos runs' zeros would
//! mean nothing.

use crate::checker::{
    Checked, Event, Fault, History, Kv, Read, Received, Selection, check_reads, check_subscriber,
};

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> Kv {
    Kv {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    }
}

/// Revisions 2..=5 after an empty start at 1: put a, put b, delete a, and a
/// transaction putting a and c.
fn history() -> History {
    let mut h = History::new(1, []);
    h.push(2, vec![Event::Put(kv("a", "1", 2, 2, 1))]).unwrap();
    h.push(3, vec![Event::Put(kv("b", "1", 3, 3, 1))]).unwrap();
    h.push(4, vec![Event::Delete { key: "a".into(), mod_revision: 4 }]).unwrap();
    h.push(5, vec![Event::Put(kv("a", "2", 5, 5, 1)), Event::Put(kv("c", "1", 5, 5, 1))]).unwrap();
    h
}

fn change(revision: i64) -> Received {
    Received::Change { revision, events: events(revision) }
}

fn events(revision: i64) -> Vec<Event> {
    match revision {
        2 => vec![Event::Put(kv("a", "1", 2, 2, 1))],
        3 => vec![Event::Put(kv("b", "1", 3, 3, 1))],
        4 => vec![Event::Delete { key: "a".into(), mod_revision: 4 }],
        5 => vec![Event::Put(kv("a", "2", 5, 5, 1)), Event::Put(kv("c", "1", 5, 5, 1))],
        _ => unreachable!(),
    }
}

fn connect(since: i64) -> Received {
    Received::Connect { replica: 0, since: Some(since), snapshot: false }
}

fn faults(checked: &Checked) -> Vec<Fault> {
    checked.violations.iter().map(|v| v.fault).collect()
}

fn check(log: &[Received]) -> Checked {
    check_subscriber(&history(), &Selection::All, log, "t")
}

#[test]
fn a_complete_ordered_stream_passes() {
    let c = check(&[connect(1), change(2), change(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![]);
    assert_eq!((c.changes, c.events), (4, 5));
}

#[test]
fn a_gap_is_reported_as_lost() {
    let c = check(&[connect(1), change(2), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::Lost]);
    assert!(c.violations[0].detail.contains("revision 3 missing"), "{}", c.violations[0]);
}

#[test]
fn a_stream_that_stops_early_has_lost_the_rest() {
    let c = check(&[connect(1), change(2), change(3), change(4)]);
    assert_eq!(faults(&c), vec![Fault::Lost]);
    assert!(c.violations[0].detail.contains("revision 5 never delivered"), "{}", c.violations[0]);
}

#[test]
fn a_revision_sent_twice_is_a_duplicate() {
    let c = check(&[connect(1), change(2), change(3), change(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::Duplicated]);
}

#[test]
fn a_resume_that_repeats_revisions_is_a_duplicate() {
    let c = check(&[connect(1), change(2), change(3), connect(3), change(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::Duplicated]);
}

#[test]
fn revisions_out_of_order_are_reported() {
    let c = check(&[connect(1), change(2), change(4), change(3), change(5)]);
    // 3 was skipped when 4 came, then came late.
    assert_eq!(faults(&c), vec![Fault::Lost, Fault::Reordered]);
}

#[test]
fn one_revision_split_in_two_messages_is_reported() {
    let [first, second] = events(5).try_into().unwrap();
    let c = check(&[
        connect(1),
        change(2),
        change(3),
        change(4),
        Received::Change { revision: 5, events: vec![first] },
        Received::Change { revision: 5, events: vec![second] },
    ]);
    assert_eq!(faults(&c), vec![Fault::WrongEvents, Fault::Duplicated]);
}

#[test]
fn a_wrong_value_is_reported() {
    let wrong = Received::Change { revision: 3, events: vec![Event::Put(kv("b", "2", 3, 3, 1))] };
    let c = check(&[connect(1), change(2), wrong, change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::WrongEvents]);
}

#[test]
fn a_selection_gets_only_its_keys_and_progress_covers_the_rest() {
    let h = history();
    let only_b = Selection::Key("b".into());
    let right = [connect(1), change(3), Received::Progress(5)];
    assert_eq!(faults(&check_subscriber(&h, &only_b, &right, "t")), vec![]);
    let with_a = [connect(1), change(2), change(3), Received::Progress(5)];
    assert_eq!(faults(&check_subscriber(&h, &only_b, &with_a, "t")), vec![Fault::WrongEvents]);
    let progress_skips_b = [connect(1), Received::Progress(4), Received::Progress(5)];
    assert_eq!(faults(&check_subscriber(&h, &only_b, &progress_skips_b, "t")), vec![Fault::Lost]);
}

#[test]
fn an_id_that_goes_back_is_reported() {
    let c = check(&[connect(1), change(2), change(3), Received::Progress(2), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::Protocol]);
}

#[test]
fn a_reset_with_the_right_snapshot_passes_and_a_wrong_one_is_reported() {
    let reset = Received::Reset { code: "compacted".into(), revision: 4 };
    let right = Received::Snapshot { revision: 4, kvs: vec![kv("b", "1", 3, 3, 1)] };
    let c = check(&[connect(1), change(2), reset.clone(), right, Received::Synced(4), change(5)]);
    assert_eq!(faults(&c), vec![]);
    assert_eq!(c.resets.get("compacted"), Some(&1));
    assert_eq!(c.snapshots, 1);

    let stale = Received::Snapshot { revision: 4, kvs: vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)] };
    let c = check(&[connect(1), change(2), reset.clone(), stale, Received::Synced(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::WrongSnapshot]);

    let change_inside = [connect(1), reset, change(2), Received::Synced(4), change(5)];
    assert_eq!(faults(&check(&change_inside)), vec![Fault::Protocol, Fault::WrongSnapshot]);
}

#[test]
fn a_snapshot_asked_for_is_checked_like_one_after_a_reset() {
    let asked = Received::Connect { replica: 0, since: None, snapshot: true };
    let right = Received::Snapshot { revision: 3, kvs: vec![kv("b", "1", 3, 3, 1), kv("a", "1", 2, 2, 1)] };
    let c = check(&[asked.clone(), right, Received::Synced(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![]);
    let missing = Received::Snapshot { revision: 3, kvs: vec![kv("b", "1", 3, 3, 1)] };
    let c = check(&[asked, missing, Received::Synced(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::WrongSnapshot]);
}

#[test]
fn reads_must_equal_etcds_state_at_their_revision() {
    let h = history();
    let read = |selection: Selection, revision: i64, kvs: Vec<Kv>, at_least: i64| Read {
        selection,
        revision,
        kvs,
        at_least,
        request: String::new(),
    };
    let right = [
        read(Selection::All, 3, vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)], 0),
        read(Selection::Key("a".into()), 4, vec![], 0),
        read(Selection::Prefix("c".into()), 5, vec![kv("c", "1", 5, 5, 1)], 5),
        read(
            Selection::Range("a".into(), "c".into()),
            5,
            vec![kv("a", "2", 5, 5, 1), kv("b", "1", 3, 3, 1)],
            0,
        ),
    ];
    let c = check_reads(&h, &right);
    assert_eq!((faults(&c), c.reads), (vec![], 4));

    let wrong = [
        // Claims 4 but still holds a (deleted at 4).
        read(Selection::All, 4, vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)], 0),
        // A consistent read older than a write acknowledged before it.
        read(Selection::Key("b".into()), 3, vec![kv("b", "1", 3, 3, 1)], 5),
        // A revision the history does not have.
        read(Selection::All, 9, vec![], 0),
    ];
    assert_eq!(faults(&check_reads(&h, &wrong)), vec![Fault::WrongRead; 3]);
}

#[test]
fn a_snapshot_may_follow_its_reset_at_a_later_revision_never_an_earlier_one() {
    let reset = Received::Reset { code: "lagged".into(), revision: 3 };
    let later = Received::Snapshot { revision: 4, kvs: vec![kv("b", "1", 3, 3, 1)] };
    let c = check(&[connect(1), change(2), reset, later, Received::Synced(4), change(5)]);
    assert_eq!(faults(&c), vec![]);

    let reset = Received::Reset { code: "lagged".into(), revision: 4 };
    let earlier = Received::Snapshot { revision: 3, kvs: vec![kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)] };
    let c = check(&[connect(1), change(2), reset, earlier, Received::Synced(3), change(4), change(5)]);
    assert_eq!(faults(&c), vec![Fault::Protocol, Fault::Protocol]);
}
