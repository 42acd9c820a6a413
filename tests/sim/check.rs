//! The promise, as invariants over what Azure was answered (the ledger)
//! and what the ITSM and Azure hold at the end of a run:
//!
//! 1. every notification answered 2xx went through the state machine, or
//!    is parked with a reason;
//! 2. at most one incident per alert firing;
//! 3. each alert's incident ends as its last notification asks (or as the
//!    person left it): a Fired answered 2xx before Azure even sent the
//!    Resolved has an incident; an answered Resolved leaves none open; an
//!    alert that never resolved is not resolved by the bridge;
//! 4. no Azure alert is closed (or acknowledged) twice, and every incident
//!    a person resolved closes its alert, unless Azure resolved the alert
//!    itself or its id can never be closed (then the round reports it);
//! 5. no change in the feed is skipped: a round's pages hold every
//!    incident that stayed in its window while it read them, and every
//!    incident's last update before the sync's watermark was on some page;
//! 6. nothing waits longer than the bound once the faults stop: the queue
//!    is empty, SQS dead-lettered nothing, the watermark is near now;
//! 7. in order: no notification overtakes one of its alert that an attempt
//!    holds in progress (a live claim) and that Azure is then answered 2xx
//!    for; the worker delivers an alert's queued notifications in the
//!    order of their numbers.
//!
//! With grouped routes (`groups`), for each group (a key and a
//! generation) and each alert a grouping rule takes:
//!
//! 8. at most one parent incident per group, and one once any child's
//!    Fired was answered 2xx; the group records that one;
//! 9. a child whose Fired was answered 2xx (before its Resolved was sent)
//!    is in exactly one group, and none is ever in two; a child whose
//!    Resolved was answered 2xx is counted out; no grouped alert has an
//!    incident of its own;
//! 10. each child is named at most once as joining and once as resolving
//!     across the parent's updates (an update re-sent after a crash
//!     carries its number and the same text; one number, one text), and
//!     only its own group's children;
//! 11. the parent is resolved by policy: at most once in effect; `all`:
//!     never while a child is open (its Resolved not yet sent), and
//!     resolved once every child's Resolved was answered 2xx; `first`:
//!     not before a child's Resolved was sent, and resolved once one was
//!     answered 2xx; `never`: never by the bridge;
//! 12. nothing of a group waits past the bound: its parent recorded, no
//!     update in flight, no change waiting for an update, an ended
//!     group's parent resolved.
//! 13. with ServiceNow child incidents (`children: incidents`): a child
//!     incident's parent is the parent of the group its alert is in; a
//!     child whose Fired was answered 2xx (before its Resolved was sent)
//!     has its incident unless its group ended; once its Resolved was
//!     answered 2xx, its incident is resolved.
//! 14. a person resolving a group's parent (the group's end: not after
//!     the bridge ended it by policy) closes in Azure each alert of
//!     the group that Azure did not resolve itself (its Resolved never
//!     sent), whatever became of the alert's own incident (`incidents`:
//!     made, queued, or never made), unless its id can never be closed
//!     (then a round reports it).

use std::fmt;

use itsm_bridge::adapters::queue::Message;
use itsm_bridge::domain::correlation::{AzureMark, correlation_key};
use itsm_bridge::domain::grouping::group::{End, Group};
use itsm_bridge::domain::grouping::parent_key;
use itsm_bridge::domain::incident::group_policy::{Children, ResolvePolicy};
use itsm_bridge::domain::ports::{AlertState, IncidentStatus};
use itsm_bridge::domain::sync::ActionOutcome;

use crate::itsm::{Backend, Who};
use crate::scenario::START;
use crate::world::World;

/// The sync's watermark may trail now by the settle time, one schedule
/// period and a round's own time; more means it is stuck.
const WATERMARK_LAG: i64 = 600;

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: u8,
    /// The alerts it concerns, by their short names.
    pub alerts: Vec<String>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {}: {}", self.invariant, self.detail)
    }
}

fn rel(t: i64) -> String {
    format!("t+{}", t - START)
}

/// Checks every invariant; `late`: the notifications sent after the
/// records' lifetime are part of this check.
pub fn check(w: &World, late: bool) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |invariant, alert: &str, detail: String| {
        out.push(Violation {
            invariant,
            alerts: vec![alert.to_string()],
            detail,
        })
    };
    let backend = w.backend.lock().expect("itsm lock");
    let dead = w.queue.dead();
    let parked: Vec<String> = dead
        .iter()
        .filter(|d| d.reason.is_some())
        .filter_map(|d| Message::decode(&d.body).ok().map(|m| m.digest))
        .collect();
    let now = w.now();

    let delivered = delivered(w);
    for (i, n) in w.sc.notifications.iter().enumerate() {
        let alert = &w.sc.alerts[n.alert];
        if n.late && !late {
            continue;
        }
        if let Some(ok) = w.ledger.first_ok.get(&i)
            && !delivered.contains(&n.digest)
            && !parked.contains(&n.digest)
        {
            let what = if n.fired { "Fired" } else { "Resolved" };
            v(
                1,
                &alert.name,
                format!(
                    "{}'s {what} was answered 2xx at {} but neither reached the ITSM nor is parked",
                    alert.name,
                    rel(*ok)
                ),
            );
        }
    }

    for (a, alert) in w.sc.alerts.iter().enumerate() {
        let incidents: Vec<_> = backend
            .incidents
            .iter()
            .filter(|i| i.key == alert.key)
            .collect();
        if incidents.len() > 1 {
            let numbers: Vec<&str> = incidents.iter().map(|i| i.number.as_str()).collect();
            v(
                2,
                &alert.name,
                format!(
                    "{} has {} incidents: {numbers:?}",
                    alert.name,
                    incidents.len()
                ),
            );
        }
        let notif = |fired: bool| {
            w.sc.notifications
                .iter()
                .position(|n| n.alert == a && n.fired == fired && (late || !n.late))
        };
        let fired = notif(true).expect("every alert fires");
        let resolved = notif(false);
        let f_ok = w.ledger.first_ok.get(&fired).copied();
        let r_start = resolved.and_then(|r| w.ledger.first_start.get(&r).copied());
        // A notification still parked (with its reason) has not taken effect
        // yet, by design: the operator's next redrive delivers it.
        let waiting =
            |n: Option<usize>| n.is_some_and(|n| parked.contains(&w.sc.notifications[n].digest));
        let r_ok = resolved
            .and_then(|r| w.ledger.first_ok.get(&r).copied())
            .filter(|_| !waiting(resolved));
        // A grouped alert's "incident" is its membership of a group: 8-12.
        if let Some(f) = f_ok
            && alert.group.is_none()
            && !waiting(Some(fired))
            && r_start.is_none_or(|r| f < r)
            && incidents.is_empty()
        {
            let after = r_start.map_or(String::new(), |r| {
                format!(" (its Resolved was first sent at {})", rel(r))
            });
            v(
                3,
                &alert.name,
                format!(
                    "{}'s Fired was answered 2xx at {}{after}, yet no incident was ever opened",
                    alert.name,
                    rel(f)
                ),
            );
        }
        // A group's child incident is resolved with its parent: 13.
        for inc in incidents.iter().filter(|i| i.parent.is_none()) {
            if let Some(r) = r_ok
                && inc.status != IncidentStatus::Closed
            {
                v(
                    3,
                    &alert.name,
                    format!(
                        "{}'s Resolved was answered 2xx at {}, yet {} is still open",
                        alert.name,
                        rel(r),
                        inc.number
                    ),
                );
            }
            if r_start.is_none() && inc.closed_by == Some(Who::Bridge) {
                v(
                    3,
                    &alert.name,
                    format!(
                        "{} never resolved, yet the bridge resolved {}",
                        alert.name, inc.number
                    ),
                );
            }
        }

        let azure = w.azure.get(&alert.id);
        if let Some(z) = &azure
            && (z.closes > 1 || z.acks > 1)
        {
            v(
                4,
                &alert.name,
                format!(
                    "{}'s Azure alert was closed {} and acknowledged {} times",
                    alert.name, z.closes, z.acks
                ),
            );
        }
        // A person resolving one child incident closes nothing in Azure
        // (its group's parent speaks for it).
        for inc in incidents.iter().filter(|i| {
            i.parent.is_none()
                && i.closed_by == Some(Who::Person)
                && i.first_closed_by == Some(Who::Person)
        }) {
            // Azure resolved the alert itself (it sent the Resolved): the
            // bridge may have recorded the person's resolve first.
            if r_start.is_some() {
                continue;
            }
            // Reported: a round said so, or (when that round died before
            // its report) the record remembers what Azure could not be told.
            let reported = reported(w, &alert.id);
            let closed = azure
                .as_ref()
                .is_some_and(|z| z.state == AlertState::Closed);
            if !closed && (!reported || alert.manageable) {
                v(
                    4,
                    &alert.name,
                    format!(
                        "a person resolved {} at {}, yet {}'s Azure alert is {}",
                        inc.number,
                        rel(inc.updated_at),
                        alert.name,
                        if alert.manageable {
                            "not closed"
                        } else {
                            "neither closed nor reported as one that cannot be"
                        }
                    ),
                );
            }
        }
    }

    for (task, id, at) in &backend.skipped {
        let inc = backend
            .incidents
            .iter()
            .find(|i| &i.id == id)
            .expect("incident");
        v(
            5,
            &w.ctx.name(&inc.key),
            format!(
                "round #{task} read every page of its window, yet not {} (updated at {}, in the window throughout)",
                inc.number,
                rel(*at)
            ),
        );
    }
    let mark = w.store.mark_since(w.sc.kind);
    if let Some(since) = mark {
        for inc in &backend.incidents {
            if inc.updated_at < since && !backend.seen.contains(&(inc.id.clone(), inc.updated_at)) {
                v(
                    5,
                    &w.ctx.name(&inc.key),
                    format!(
                        "{}'s update at {} was on no page a round read, yet the watermark passed it ({})",
                        inc.number,
                        rel(inc.updated_at),
                        rel(since)
                    ),
                );
            }
        }
    }
    if mark.is_none_or(|since| now - since > WATERMARK_LAG) {
        v(
            6,
            "",
            format!(
                "the sync's watermark is at {} at {}: stuck",
                mark.map_or("none".into(), rel),
                rel(now)
            ),
        );
    }
    for m in &w.queue.state().msgs {
        let seq = Message::decode(&m.body).map_or(0, |x| x.seq);
        v(
            6,
            &w.ctx.name(&m.group),
            format!(
                "{} seq {seq} still waits in the queue at {} ({} receives)",
                w.ctx.name(&m.group),
                rel(now),
                m.receives
            ),
        );
    }
    crate::order::check(w, &mut v);
    for d in dead.iter().filter(|d| d.reason.is_none()) {
        v(
            6,
            &w.ctx.name(&d.group),
            format!(
                "SQS dead-lettered a message of {} after too many receives",
                w.ctx.name(&d.group)
            ),
        );
    }
    if w.sc.grouping.is_some() {
        out.extend(groups(w, late, &backend, &parked));
    }
    out
}

/// How many facts `check` looks at: every notification (1), alert (2, 3,
/// 4), incident (5), store write and worker delivery (7), and the queue,
/// the dead-letter queue and the watermark (6).
pub fn facts(w: &World) -> usize {
    let incidents = w.backend.lock().expect("itsm lock").incidents.len();
    let writes = w.store.writes.lock().expect("writes").len();
    let groups: usize = w
        .store
        .groups()
        .iter()
        .map(|(_, g)| 1 + g.members.len())
        .sum();
    let updates: usize = w
        .backend
        .lock()
        .expect("itsm lock")
        .incidents
        .iter()
        .map(|i| i.journal.len())
        .sum();
    w.sc.notifications.len()
        + 3 * w.sc.alerts.len()
        + incidents
        + writes
        + w.ledger.worker_delivered.len()
        + 3
        + groups
        + updates
}

/// The digests that went through the state machine: processed inline,
/// delivered by the worker, or deleted as "delivered before" where a
/// delivery of that very number is what moved the record's
/// `delivered_seq` to it (a batch that died before it could say so). A
/// number the record skipped over was not delivered.
fn delivered(w: &World) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = w.ledger.delivered.keys().cloned().collect();
    let mut reached: std::collections::BTreeSet<(String, u64)> = Default::default();
    let mut last: std::collections::BTreeMap<&str, u64> = Default::default();
    for x in w.store.writes.lock().expect("writes").iter() {
        let before = last.insert(&x.record.alert_id, x.record.delivered_seq);
        if x.record.delivered_seq > before.unwrap_or(0) {
            reached.insert((correlation_key(&x.record.alert_id), x.record.delivered_seq));
        }
    }
    for (group, seq, digest) in &w.ledger.already {
        if reached.contains(&(group.clone(), *seq)) {
            out.insert(digest.clone());
        }
    }
    out
}

/// The number of a group update (`itsm-bridge group update N: …`).
fn update_number(text: &str) -> Option<u32> {
    text.strip_prefix("itsm-bridge group update ")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// Whether Azure's refusal to close `alert_id` was reported: a round said
/// so, or (when that round died before its report) the record remembers
/// what Azure could not be told.
fn reported(w: &World, alert_id: &str) -> bool {
    w.ledger.reports.iter().flat_map(|r| &r.actions).any(|x| {
        x.alert_id == alert_id
            && !matches!(x.outcome, ActionOutcome::Deferred | ActionOutcome::Denied)
    }) || w
        .store
        .record(alert_id)
        .is_some_and(|r| matches!(r.azure.sent, Some(AzureMark::Skipped | AzureMark::Gone)))
}

/// Invariants 8-14, for a grouped seed.
fn groups(w: &World, late: bool, backend: &Backend, parked: &[String]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |invariant, names: Vec<String>, detail: String| {
        out.push(Violation {
            invariant,
            alerts: names,
            detail,
        })
    };
    if w.sc.grouping.is_none() {
        return out;
    }
    let groups: Vec<(String, String, Group)> = w
        .store
        .groups()
        .into_iter()
        .map(|(gid, g)| (w.store.doc_name(&gid), gid, g))
        .collect();
    let notif = |a: usize, fired: bool| {
        w.sc.notifications
            .iter()
            .position(|n| n.alert == a && n.fired == fired && (late || !n.late))
    };
    let waiting = |n: usize| parked.contains(&w.sc.notifications[n].digest);
    // First answered 2xx, unless still parked (not taken effect yet).
    let ok = |n: Option<usize>| {
        n.filter(|&n| !waiting(n))
            .and_then(|n| w.ledger.first_ok.get(&n).copied())
    };
    let sent = |n: Option<usize>| n.and_then(|n| w.ledger.first_start.get(&n).copied());
    let alert_of = |key: &str| w.sc.alerts.iter().position(|a| a.key == key);
    let name_of =
        |key: &str| alert_of(key).map_or_else(|| w.ctx.name(key), |a| w.sc.alerts[a].name.clone());

    for (a, alert) in w.sc.alerts.iter().enumerate() {
        if alert.group.is_none() {
            continue;
        }
        let name = alert.name.clone();
        let within: Vec<&(String, String, Group)> = groups
            .iter()
            .filter(|(_, _, g)| g.members.contains_key(&alert.key))
            .collect();
        let in_names: Vec<&str> = within.iter().map(|(n, _, _)| n.as_str()).collect();
        if within.len() > 1 {
            v(
                9,
                vec![name.clone()],
                format!("{name} is a child of {} groups: {in_names:?}", within.len()),
            );
        }
        let (fired, resolved) = (notif(a, true), notif(a, false));
        if let Some(f) = ok(fired)
            && sent(resolved).is_none_or(|r| f < r)
            && within.is_empty()
        {
            v(
                9,
                vec![name.clone()],
                format!(
                    "{name}'s Fired was answered 2xx at {}, yet it is a child of no group",
                    rel(f)
                ),
            );
        }
        if let Some(r) = ok(resolved) {
            for (gname, gid, g) in &within {
                // An ended group is kept a while, then expires: a child's
                // Resolved after that has nothing left to count (and no
                // ITSM call to make).
                let expired = w.store.group_expiry(gid).is_some_and(|e| e <= r);
                if g.members[&alert.key].open && !(g.ended.is_some() && expired) {
                    v(
                        9,
                        vec![name.clone(), gname.clone()],
                        format!(
                            "{name}'s Resolved was answered 2xx at {}, yet {gname} still counts it open",
                            rel(r)
                        ),
                    );
                }
            }
        }
        let own: Vec<&str> = backend
            .incidents
            .iter()
            .filter(|i| i.key == alert.key)
            .map(|i| i.number.as_str())
            .collect();
        let incidents_mode = alert.group.is_some_and(|r| {
            w.sc.grouping.as_ref().expect("a grouped seed").rules[r]
                .policy
                .children
                == Children::Incidents
        });
        if incidents_mode {
            out_13(
                &mut v,
                &name,
                alert,
                &within,
                backend,
                ok(fired).filter(|&f| sent(resolved).is_none_or(|r| f < r)),
                ok(resolved),
            );
        } else if !own.is_empty() {
            v(
                9,
                vec![name.clone()],
                format!("{name} is grouped, yet has incidents of its own: {own:?}"),
            );
        }
    }

    for (gname, gid, g) in &groups {
        let pkey = parent_key(gid);
        let parents: Vec<&crate::itsm::Incident> =
            backend.incidents.iter().filter(|i| i.key == pkey).collect();
        let children: Vec<String> = g.members.keys().map(|k| name_of(k)).collect();
        let mut names = vec![gname.split('#').next().unwrap_or("").to_string()];
        names.extend(children.iter().cloned());
        let numbers: Vec<&str> = parents.iter().map(|i| i.number.as_str()).collect();
        if parents.len() > 1 {
            v(
                8,
                names.clone(),
                format!(
                    "{gname} has {} parent incidents: {numbers:?}",
                    parents.len()
                ),
            );
        }
        let answered = g.members.keys().find_map(|k| {
            alert_of(k).and_then(|a| ok(notif(a, true)).map(|t| (w.sc.alerts[a].name.clone(), t)))
        });
        if parents.is_empty()
            && let Some((child, t)) = &answered
        {
            v(
                8,
                names.clone(),
                format!(
                    "{gname} has no parent incident, yet its child {child}'s Fired was answered 2xx at {}",
                    rel(*t)
                ),
            );
        }
        // A person's resolve the round reads after the bridge ended the
        // group by policy or idleness is not the group's end: the policy
        // spoke first, and its resolve closes nothing in Azure.
        if g.ended == Some(End::Person)
            && parents
                .iter()
                .any(|i| i.first_closed_by == Some(Who::Person))
        {
            for a in g.members.keys().filter_map(|k| alert_of(k)) {
                let alert = &w.sc.alerts[a];
                if sent(notif(a, false)).is_some() {
                    continue;
                }
                let reported = reported(w, &alert.id);
                let closed = w
                    .azure
                    .get(&alert.id)
                    .is_some_and(|z| z.state == AlertState::Closed);
                if !closed && (!reported || alert.manageable) {
                    v(
                        14,
                        names.clone(),
                        format!(
                            "a person resolved {gname}'s parent {numbers:?}, yet its child {}'s Azure alert is not closed",
                            alert.name
                        ),
                    );
                }
            }
        }
        if let Some(p) = &g.parent
            && !parents.iter().any(|i| i.id == p.id)
        {
            v(
                8,
                names.clone(),
                format!(
                    "{gname} records {} as its parent, which is not its parent in the ITSM ({numbers:?})",
                    p.number
                ),
            );
        }

        let member_names: std::collections::BTreeSet<&str> =
            g.members.values().map(|m| m.name.as_str()).collect();
        for inc in &parents {
            let mut texts: std::collections::BTreeMap<u32, &str> = Default::default();
            for (at, text) in &inc.journal {
                let Some(n) = update_number(text) else {
                    continue;
                };
                match texts.get(&n) {
                    Some(before) if before != text => v(
                        10,
                        names.clone(),
                        format!(
                            "{gname}'s parent {} got two different updates numbered {n} (the second at {})",
                            inc.number,
                            rel(*at)
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        texts.insert(n, text);
                    }
                }
            }
            let mut said: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
            for (n, text) in &texts {
                for line in text.lines().filter(|l| l.starts_with("- ")) {
                    said.entry(line).or_default().push(*n);
                }
            }
            for (line, ns) in said {
                if ns.len() > 1 {
                    v(
                        10,
                        names.clone(),
                        format!(
                            "{gname}'s parent {}: updates {ns:?} each say \"{line}\"",
                            inc.number
                        ),
                    );
                }
                let child = line.split_once(": ").map_or("", |(_, c)| c);
                if !member_names.contains(child) {
                    v(
                        10,
                        names.clone(),
                        format!(
                            "{gname}'s parent {}: update {ns:?} says \"{line}\", not a child of {gname}",
                            inc.number
                        ),
                    );
                }
            }

            let by_bridge: Vec<i64> = inc
                .closes
                .iter()
                .filter(|(_, who)| *who == Who::Bridge)
                .map(|(t, _)| *t)
                .collect();
            if by_bridge.len() > 1 {
                v(
                    11,
                    names.clone(),
                    format!(
                        "{gname}'s parent {} was resolved {} times by the bridge",
                        inc.number,
                        by_bridge.len()
                    ),
                );
            }
            // When each child's Resolved was first sent, and answered 2xx.
            let resolves: Vec<(String, Option<i64>, Option<i64>)> = g
                .members
                .keys()
                .map(|k| match alert_of(k) {
                    Some(a) => (
                        w.sc.alerts[a].name.clone(),
                        sent(notif(a, false)),
                        ok(notif(a, false)),
                    ),
                    None => (w.ctx.name(k), None, None),
                })
                .collect();
            let closed = inc.status == IncidentStatus::Closed;
            match g.policy.resolve {
                ResolvePolicy::Never => {
                    for t in &by_bridge {
                        v(
                            11,
                            names.clone(),
                            format!(
                                "{gname} resolves \"never\", yet the bridge resolved its parent {} at {}",
                                inc.number,
                                rel(*t)
                            ),
                        );
                    }
                }
                ResolvePolicy::All => {
                    for t in &by_bridge {
                        for (child, at, _) in &resolves {
                            if at.is_none_or(|at| at > *t) {
                                v(
                                    11,
                                    names.clone(),
                                    format!(
                                        "the bridge resolved {gname}'s parent {} at {} while its child {child} was open (its Resolved {})",
                                        inc.number,
                                        rel(*t),
                                        at.map_or("never sent".into(), |at| format!(
                                            "first sent at {}",
                                            rel(at)
                                        ))
                                    ),
                                );
                            }
                        }
                    }
                    if !closed
                        && !resolves.is_empty()
                        && resolves.iter().all(|(_, _, ok)| ok.is_some())
                    {
                        v(
                            11,
                            names.clone(),
                            format!(
                                "every child of {gname} had its Resolved answered 2xx (the last at {}), yet its parent {} is open",
                                rel(resolves.iter().filter_map(|r| r.2).max().unwrap_or(0)),
                                inc.number
                            ),
                        );
                    }
                }
                ResolvePolicy::First => {
                    for t in &by_bridge {
                        if !resolves
                            .iter()
                            .any(|(_, at, _)| at.is_some_and(|at| at <= *t))
                        {
                            v(
                                11,
                                names.clone(),
                                format!(
                                    "the bridge resolved {gname}'s parent {} at {} before any child's Resolved was sent",
                                    inc.number,
                                    rel(*t)
                                ),
                            );
                        }
                    }
                    if let Some((child, _, Some(t))) = resolves.iter().find(|r| r.2.is_some())
                        && !closed
                    {
                        v(
                            11,
                            names.clone(),
                            format!(
                                "{child}'s Resolved was answered 2xx at {} and {gname} resolves \"first\", yet its parent {} is open",
                                rel(*t),
                                inc.number
                            ),
                        );
                    }
                }
            }
        }

        let mut stuck = Vec::new();
        if !g.members.is_empty() && g.parent.is_none() {
            stuck.push("no parent recorded".to_string());
        }
        if let Some((text, _)) = &g.parent_work.note {
            stuck.push(format!(
                "update {} still in flight",
                update_number(text).unwrap_or(0)
            ));
        }
        if g.ended.is_none() && g.parent.is_some() && !g.pending.is_empty() {
            stuck.push(format!("{} changes wait for an update", g.pending.len()));
        }
        if g.ended.is_some() && !g.parent_work.resolved {
            stuck.push("ended, its parent not resolved".into());
        }
        if !stuck.is_empty() {
            v(
                12,
                names.clone(),
                format!("{gname} at {}: {}", rel(w.now()), stuck.join("; ")),
            );
        }
    }
    out
}

/// Invariant 13 for one alert of a `children: incidents` group: `within`
/// the groups holding it (invariant 9 wants one), `fired` and `resolved`
/// when its notifications were first answered 2xx (the Fired only if
/// before its Resolved was sent).
#[allow(clippy::too_many_arguments)]
fn out_13(
    v: &mut impl FnMut(u8, Vec<String>, String),
    name: &str,
    alert: &crate::scenario::AlertPlan,
    within: &[&(String, String, Group)],
    backend: &Backend,
    fired: Option<i64>,
    resolved: Option<i64>,
) {
    let own: Vec<&crate::itsm::Incident> = backend
        .incidents
        .iter()
        .filter(|i| i.key == alert.key)
        .collect();
    let Some((gname, _, g)) = within.first() else {
        if let Some(i) = own.first() {
            v(
                13,
                vec![name.to_string()],
                format!("{name} is in no group, yet has child incident {}", i.number),
            );
        }
        return;
    };
    let parent = g.parent.as_ref().map(|p| p.id.as_str());
    for i in &own {
        if i.parent.as_deref() != parent || parent.is_none() {
            v(
                13,
                vec![name.to_string(), gname.clone()],
                format!(
                    "{name}'s incident {} is under {:?}, not {gname}'s parent {:?}",
                    i.number, i.parent, g.parent
                ),
            );
        }
    }
    if let Some(f) = fired
        && own.is_empty()
        && g.ended.is_none()
    {
        v(
            13,
            vec![name.to_string(), gname.clone()],
            format!(
                "{name}'s Fired was answered 2xx at {}, {gname} is open, yet {name} has no child incident",
                rel(f)
            ),
        );
    }
    if let Some(r) = resolved {
        for i in own.iter().filter(|i| i.status != IncidentStatus::Closed) {
            v(
                13,
                vec![name.to_string(), gname.clone()],
                format!(
                    "{name}'s Resolved was answered 2xx at {}, yet its incident {} is open",
                    rel(r),
                    i.number
                ),
            );
        }
    }
}
