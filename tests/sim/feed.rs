//! The ITSM's change feed, as the sync role reads it, and a person
//! working in the ITSM. The feed pages over (updated_at, id) exactly as
//! ServiceNow's Table API answers the adapter's query, reading the cursor
//! with the adapters' own `wire::cursor` and cutting pages with
//! `wire::change_page`, so the round meets the real cursor logic. It also
//! holds each reading to the port's contract: a change that stays in the
//! window while a round reads is on one of its pages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use itsm_bridge::adapters::wire::{change_page, cursor};
use itsm_bridge::domain::correlation::IncidentRef;
use itsm_bridge::domain::ports::{
    ChangePage, ChangeWindow, IncidentChange, IncidentChanges, IncidentStatus, ItsmError,
};

use crate::exec::{Class, Ctx};
use crate::itsm::{Backend, Incident, SimItsm};

/// One round's reading of one window: the incidents in the window when
/// its first page was read (dropped when they change), and those seen.
#[derive(Default)]
pub struct Reading {
    /// id → updated_at, for incidents in the window that have not changed since.
    stayed: BTreeMap<String, i64>,
    seen: BTreeSet<String>,
}

fn label(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::Open => "New",
        IncidentStatus::InProgress => "In Progress",
        IncidentStatus::Closed => "Resolved",
    }
}

#[async_trait]
impl IncidentChanges for SimItsm {
    fn kind(&self) -> &'static str {
        self.kind
    }

    /// `sys_updated_on >= cursor time ^ sys_updated_on < until ^ ORDERBY
    /// sys_updated_on ^ ORDERBY sys_id`, `sysparm_offset` = the cursor's
    /// count, `sysparm_limit` = the page size: the adapter's query.
    async fn changed(
        &self,
        window: ChangeWindow,
        cursor_text: Option<&str>,
    ) -> Result<ChangePage, ItsmError> {
        let subject = format!(
            "[t+{}, t+{}) at {}",
            window.since - self.ctx.start,
            window.until - self.ctx.start,
            cursor_text.unwrap_or("start")
        );
        self.call(
            ("itsm.changed", &subject),
            false,
            || {
                let from = cursor(cursor_text, window.since);
                let mut b = self.backend();
                let mut rows: Vec<Incident> = b
                    .incidents
                    .iter()
                    .filter(|i| i.updated_at >= from.0 && i.updated_at < window.until)
                    .cloned()
                    .collect();
                rows.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
                let rows: Vec<Incident> = rows
                    .into_iter()
                    .skip(from.1)
                    .take(window.page_size)
                    .collect();
                let page = change_page(
                    &rows,
                    from,
                    window.page_size,
                    |i| Some(i.updated_at),
                    |i| {
                        Some(IncidentChange {
                            correlation_key: i.key.clone(),
                            incident: IncidentRef {
                                id: i.id.clone(),
                                number: i.number.clone(),
                            },
                            status: i.status,
                            status_label: label(i.status).into(),
                            updated_at: i.updated_at,
                            updated_by: Some(i.updated_by.clone()),
                        })
                    },
                );
                for i in &rows {
                    b.seen.insert((i.id.clone(), i.updated_at));
                }
                // The port's contract: a change that stays in the window is on
                // some page of the reading.
                let reading = (self.ctx.current(), window.since, window.until);
                let in_window: BTreeMap<String, i64> = b
                    .incidents
                    .iter()
                    .filter(|i| i.updated_at >= window.since && i.updated_at < window.until)
                    .map(|i| (i.id.clone(), i.updated_at))
                    .collect();
                let r = b.readings.entry(reading).or_default();
                if cursor_text.is_none() {
                    *r = Reading {
                        stayed: in_window.clone(),
                        seen: BTreeSet::new(),
                    };
                }
                r.stayed.retain(|id, at| in_window.get(id) == Some(at));
                r.seen.extend(rows.iter().map(|i| i.id.clone()));
                if page.next.is_none() {
                    let r = b.readings.remove(&reading).unwrap_or_default();
                    for (id, at) in r.stayed {
                        if !r.seen.contains(&id) {
                            b.skipped.push((reading.0, id, at));
                        }
                    }
                }
                page
            },
            |p| {
                let shown: Vec<String> = p
                    .changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {:?} t+{}",
                            c.incident.number,
                            c.status,
                            c.updated_at - self.ctx.start
                        )
                    })
                    .collect();
                format!("[{}] next {:?}", shown.join(", "), p.next)
            },
        )
        .await
    }
}

/// A person working through the ITSM's list: up to `n` open incidents
/// resolved (or taken into work) one after the other, each a scheduling
/// point, so a sync round can read its pages in between.
pub async fn person(ctx: Arc<Ctx>, backend: Arc<Mutex<Backend>>, n: usize) {
    for _ in 0..n {
        let _ = ctx
            .call(
                Class::Person,
                ("person", "works"),
                None,
                || {
                    let now = ctx.now();
                    let open: Vec<usize> = {
                        let b = backend.lock().expect("itsm lock");
                        (0..b.incidents.len())
                            .filter(|&i| b.incidents[i].status != IncidentStatus::Closed)
                            .collect()
                    };
                    if open.is_empty() {
                        return None;
                    }
                    let i = open[ctx.rng(|r| r.below(open.len() as u64)) as usize];
                    let resolve = ctx.rng(|r| r.chance(0.7));
                    let mut b = backend.lock().expect("itsm lock");
                    b.person(i, resolve, now);
                    let inc = &b.incidents[i];
                    Some(format!(
                        "{} {} ({})",
                        if resolve { "resolves" } else { "takes up" },
                        inc.number,
                        ctx.name(&inc.key)
                    ))
                },
                Clone::clone,
            )
            .await;
    }
}
