//! The group's rules, row by row (the table in `group.rs`), with the clock
//! as plain numbers.

use serde_json::json;

use super::*;

fn policy(extra: serde_json::Value) -> GroupPolicy {
    let mut p = json!({"by": ["alert_rule"], "window_secs": 600, "max_age_secs": 7200,
                       "notes_every_secs": 60, "max_listed": 3});
    p.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let p: GroupPolicy = serde_json::from_value(p).unwrap();
    p.check().unwrap();
    p
}

fn group_with(children: &[&str], now: i64) -> Group {
    let mut g = Group::open(
        "grp-1".into(),
        1,
        "alert_rule=vm-cpu-high".into(),
        policy(json!({})),
        now,
    );
    for c in children {
        assert!(g.join(c, &format!("vm-{c}"), Severity::Sev3, now));
    }
    g
}

#[test]
fn window_and_age_admit_just_inside_and_refuse_just_outside() {
    let p = policy(json!({}));
    // (opened, last join, now, admits)
    let rows = [
        (0, 0, 600, true),      // the window's last second
        (0, 0, 601, false),     // one past it
        (0, 6700, 7200, true),  // the age's last second
        (0, 6700, 7201, false), // one past it, though the window is fresh
        (0, 7000, 6990, true),  // a clock stepped back stays inside
    ];
    for (opened, last, now, admits) in rows {
        let mut g = group_with(&[], opened);
        g.last_join_at = last;
        assert_eq!(
            g.admits(now, &p),
            admits,
            "opened {opened}, last {last}, now {now}"
        );
    }
}

#[test]
fn an_ended_or_full_group_admits_no_one() {
    let p = policy(json!({}));
    let mut g = group_with(&["a"], 0);
    g.ended = Some(End::Person);
    assert!(!g.admits(1, &p));
    let mut full = group_with(&[], 0);
    for i in 0..MOST_MEMBERS {
        full.join(&i.to_string(), "x", Severity::Sev3, 0);
    }
    assert!(!full.admits(1, &p));
}

#[test]
fn a_child_joins_once() {
    let mut g = group_with(&["a"], 0);
    assert!(!g.join("a", "vm-a", Severity::Sev0, 5));
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.pending.len(), 1);
    assert_eq!(g.worst, "Sev3", "a repeat does not raise the priority");
}

#[test]
fn a_more_severe_child_raises_the_parent_once_per_step() {
    let mut g = group_with(&["a"], 0);
    assert!(!g.raise, "the first child sets the priority at creation");
    g.join("b", "vm-b", Severity::Sev3, 1);
    assert!(!g.raise);
    g.join("c", "vm-c", Severity::Sev1, 2);
    assert!(g.raise);
    assert_eq!(g.worst, "Sev1");
    g.take_update(100, &policy(json!({})));
    assert!(!g.raise);
    g.join("d", "vm-d", Severity::Sev2, 101);
    assert!(!g.raise, "a less severe child never lowers or raises it");
    assert_eq!(g.worst, "Sev1");
}

#[test]
fn resolve_policies_row_by_row() {
    // (policy, children, resolved in order, the answer to each)
    use ChildResolved::*;
    type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [ChildResolved]);
    let rows: [Row; 6] = [
        (
            "all",
            &["a", "b", "c"],
            &["a", "b", "c"],
            &[Counted, Counted, ResolveParent],
        ),
        (
            "all",
            &["a", "b"],
            &["a", "a", "b", "b"],
            &[Counted, NoOp, ResolveParent, NoOp],
        ),
        ("first", &["a", "b"], &["b", "a"], &[ResolveParent, Counted]),
        ("never", &["a", "b"], &["a", "b"], &[Counted, Counted]),
        ("all", &["a"], &["z"], &[NoOp]),
        (
            "all",
            &["a", "b"],
            &["b", "z", "a"],
            &[Counted, NoOp, ResolveParent],
        ),
    ];
    for (resolve, children, resolved, answers) in rows {
        let p = policy(json!({ "resolve": resolve }));
        let mut g = group_with(children, 0);
        let got: Vec<ChildResolved> = resolved.iter().map(|c| g.resolve_child(c, &p)).collect();
        assert_eq!(
            got, answers,
            "{resolve} {children:?} resolving {resolved:?}"
        );
    }
}

#[test]
fn resolve_all_waits_for_the_last_of_a_thousand() {
    let p = policy(json!({}));
    let names: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
    let mut g = group_with(&[], 0);
    for n in &names {
        g.join(n, n, Severity::Sev3, 1);
    }
    for n in &names[..999] {
        assert_eq!(g.resolve_child(n, &p), ChildResolved::Counted);
    }
    assert_eq!(g.ended, None);
    assert_eq!(
        g.resolve_child(&names[999], &p),
        ChildResolved::ResolveParent
    );
    assert_eq!(g.ended, Some(End::Policy));
    for n in &names {
        assert_eq!(
            g.resolve_child(n, &p),
            ChildResolved::NoOp,
            "repeats after it"
        );
    }
}

#[test]
fn after_a_person_resolved_the_parent_children_are_counted_without_calls() {
    let p = policy(json!({}));
    let mut g = group_with(&["a", "b"], 0);
    g.ended = Some(End::Person);
    assert_eq!(g.resolve_child("a", &p), ChildResolved::Counted);
    assert_eq!(g.resolve_child("b", &p), ChildResolved::Counted);
    assert_eq!(g.open_children(), 0);
    assert!(!g.update_due(1000, &p), "an ended group is not updated");
}

#[test]
fn updates_are_due_once_per_interval_and_only_with_news() {
    let p = policy(json!({}));
    let mut g = group_with(&["a"], 0);
    g.last_update_at = 0;
    // (now, something pending, due)
    assert!(!g.update_due(59, &p));
    assert!(g.update_due(60, &p));
    g.take_update(60, &p);
    assert!(!g.update_due(500, &p), "nothing pending");
    g.join("b", "vm-b", Severity::Sev3, 70);
    assert!(!g.update_due(119, &p));
    assert!(g.update_due(120, &p));
}

#[test]
fn updates_name_each_child_once_then_count_the_rest() {
    let p = policy(json!({}));
    let mut g = group_with(&["a", "b"], 0);
    let first = g.take_update(60, &p);
    assert!(first.contains("- joined: vm-a") && first.contains("- joined: vm-b"));
    g.join("c", "vm-c", Severity::Sev3, 61);
    g.join("d", "vm-same", Severity::Sev3, 61);
    g.join("e", "vm-same", Severity::Sev3, 61);
    g.resolve_child("a", &p);
    let second = g.take_update(120, &p);
    assert!(second.contains("- joined: vm-c"), "{second}");
    assert!(
        !second.contains("- joined: vm-same"),
        "past max_listed (3): counted"
    );
    assert!(
        second.contains("+2 more joined, +1 more resolved; most frequent resources: vm-same, vm-a"),
        "{second}"
    );
    assert!(second.starts_with("itsm-bridge group update 2: 5 alert(s), 4 open"));
    assert!(g.pending.is_empty());
}

#[test]
fn idle_groups_end_only_when_configured() {
    let p = policy(json!({"idle_resolve_secs": 3600}));
    let g = group_with(&["a"], 0);
    assert!(!g.idle(3599, &p));
    assert!(g.idle(3600, &p));
    assert!(!g.idle(1_000_000, &policy(json!({}))));
}

#[test]
fn the_title_names_the_rule_the_count_and_the_values() {
    let mut g = group_with(&["a", "b"], 0);
    g.label = "alert_rule=vm-cpu-high, resource_group=rg-prod".into();
    assert_eq!(
        g.title("vm-cpu-high"),
        "vm-cpu-high: 2 alerts in vm-cpu-high / rg-prod"
    );
}

#[test]
fn a_full_group_with_everything_pending_fits_a_store_item() {
    let p = policy(json!({}));
    let mut g = group_with(&[], 0);
    let long = "x".repeat(300);
    for i in 0..MOST_MEMBERS {
        g.join(
            &format!("azmon-{i:032x}"),
            &format!("{i}{long}"),
            Severity::Sev3,
            0,
        );
    }
    for i in 0..MOST_MEMBERS {
        g.resolve_child(&format!("azmon-{i:032x}"), &p);
    }
    let size = serde_json::to_string(&g).unwrap().len();
    assert!(size < 350_000, "{size} bytes: past what GroupDoc promises");
    assert!(
        g.members
            .values()
            .all(|m| m.name.chars().count() <= NAME_MAX)
    );
}
