//! Invariant 7, in order: no notification overtakes one of its alert that
//! an attempt holds in progress (a live claim it wrote, the rule the inline
//! path keeps by answering 503) and that then succeeds; and the worker
//! delivers an alert's queued notifications in the order of their numbers.
//! Read from the store's writes (who wrote what, when) and the worker's
//! deliveries.

use std::collections::{BTreeMap, BTreeSet};

use itsm_bridge::domain::correlation::{CorrelationRecord, RecordState};

use crate::scenario::START;
use crate::world::World;

fn rel(t: i64) -> String {
    format!("t+{}", t - START)
}

pub fn check(w: &World, v: &mut impl FnMut(u8, &str, String)) {
    let writes = w.store.writes.lock().expect("writes");
    let notif_of = |task: &usize| {
        w.ledger
            .webhook_tasks
            .get(task)
            .map(|a| &w.ledger.attempts[*a])
    };
    let mut holder: BTreeMap<&str, (usize, i64)> = Default::default();
    let mut last: BTreeMap<&str, &CorrelationRecord> = Default::default();
    // Digests each alert has queued so far: a notification queued is in
    // its place, whoever else holds the alert.
    let mut queued: BTreeSet<(&str, &str)> = Default::default();
    for x in writes.iter() {
        let id = x.record.alert_id.as_str();
        let prev = last.insert(id, &x.record);
        if let Some(&(h, lease)) = holder.get(id)
            && x.t < lease
            && x.task != h
            && let (Some(held), Some(by)) = (notif_of(&h), notif_of(&x.task))
            && held.notif != by.notif
            && w.sc.notifications[held.notif].digest != w.sc.notifications[by.notif].digest
            && held.succeeded
            && !queued.contains(&(id, w.sc.notifications[held.notif].digest.as_str()))
            && w.ledger
                .delivered
                .get(&w.sc.notifications[held.notif].digest)
                .is_none_or(|t| *t > x.t)
            && prev.is_some_and(|p| p.queued_seq < x.record.queued_seq || p.state != x.record.state)
        {
            let name = w.ctx.name(id);
            let what = |n: usize| {
                if w.sc.notifications[n].fired {
                    "Fired"
                } else {
                    "Resolved"
                }
            };
            v(
                7,
                &name,
                format!(
                    "{name}'s {} overtook its {} at {}: that one's attempt (#{h}) held the alert in progress and then succeeded",
                    what(by.notif),
                    what(held.notif),
                    rel(x.t)
                ),
            );
        }
        if let Some(d) = &x.record.queued_digest {
            queued.insert((id, d.as_str()));
        }
        let claimed = x.record.state == RecordState::Claimed && x.record.lease_until > x.t;
        if claimed && prev.is_none_or(|p| p.lease_until != x.record.lease_until) {
            // A new claim: only a webhook attempt's counts (a worker's holds
            // a queued notification whose order the numbers keep).
            if notif_of(&x.task).is_some() {
                holder.insert(id, (x.task, x.record.lease_until));
            } else {
                holder.remove(id);
            }
        } else if !claimed {
            holder.remove(id);
        }
    }
    let mut first: BTreeMap<(&str, &str), (u64, i64)> = Default::default();
    let mut highest: BTreeMap<&str, (u64, i64)> = Default::default();
    for (t, group, seq, digest) in &w.ledger.worker_delivered {
        if first.insert((group, digest), (*seq, *t)).is_some() {
            continue;
        }
        if let Some(&(top, at)) = highest.get(group.as_str())
            && top > *seq
        {
            let name = w.ctx.name(group);
            v(
                7,
                &name,
                format!(
                    "{name}'s queued notification {seq} was delivered at {}, after number {top} (at {})",
                    rel(*t),
                    rel(at)
                ),
            );
        }
        let e = highest.entry(group).or_insert((*seq, *t));
        if *seq > e.0 {
            *e = (*seq, *t);
        }
    }
}
