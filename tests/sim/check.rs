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

use std::fmt;

use itsm_bridge::adapters::queue::Message;
use itsm_bridge::domain::correlation::AzureMark;
use itsm_bridge::domain::ports::{AlertState, IncidentStatus};
use itsm_bridge::domain::sync::ActionOutcome;

use crate::itsm::Who;
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

    for (i, n) in w.sc.notifications.iter().enumerate() {
        let alert = &w.sc.alerts[n.alert];
        if n.late && !late {
            continue;
        }
        if let Some(ok) = w.ledger.first_ok.get(&i)
            && !w.ledger.delivered.contains_key(&n.digest)
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
        let r_ok = resolved.and_then(|r| w.ledger.first_ok.get(&r).copied());
        if let Some(f) = f_ok
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
        for inc in &incidents {
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
        for inc in incidents
            .iter()
            .filter(|i| i.closed_by == Some(Who::Person) && i.first_closed_by == Some(Who::Person))
        {
            // Azure resolved the alert itself (it sent the Resolved): the
            // bridge may have recorded the person's resolve first.
            if r_start.is_some() {
                continue;
            }
            // Reported: a round said so, or (when that round died before
            // its report) the record remembers what Azure could not be told.
            let reported = w.ledger.reports.iter().flat_map(|r| &r.actions).any(|x| {
                x.alert_id == alert.id
                    && !matches!(x.outcome, ActionOutcome::Deferred | ActionOutcome::Denied)
            }) || w.store.record(&alert.id).is_some_and(|r| {
                matches!(r.azure.sent, Some(AzureMark::Skipped | AzureMark::Gone))
            });
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
    out
}

/// How many facts `check` looks at: every notification (1), alert (2, 3,
/// 4), incident (5), store write and worker delivery (7), and the queue,
/// the dead-letter queue and the watermark (6).
pub fn facts(w: &World) -> usize {
    let incidents = w.backend.lock().expect("itsm lock").incidents.len();
    let writes = w.store.writes.lock().expect("writes").len();
    w.sc.notifications.len()
        + 3 * w.sc.alerts.len()
        + incidents
        + writes
        + w.ledger.worker_delivered.len()
        + 3
}
