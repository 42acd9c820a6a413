//! The ITSM's change feed, as the sync role reads it, and a person
//! working in the ITSM. The feed answers the adapter's query exactly as
//! ServiceNow's Table API does, and reads and writes the cursor with the
//! adapters' own `wire::FeedCursor` and `wire::change_page`, so the round
//! meets the real paging logic. It also
//! holds each reading to the port's contract: a change that stays in the
//! window while a round reads is on one of its pages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use itsm_bridge::adapters::wire::{FeedCursor, change_page};
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

    /// The ServiceNow adapter's query: from a second, `sys_updated_on >=
    /// t ^ sys_updated_on < until ^ ORDERBY sys_updated_on ^ ORDERBY
    /// sys_id`; within one second, `sys_id > after ^ ORDERBY sys_id`;
    /// `sysparm_limit` the page size; the cursor read and written by the
    /// adapters' own `FeedCursor`.
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
                let from = FeedCursor::read(cursor_text, window)?;
                let mut b = self.backend();
                // The adapter's encoded query: from a second by
                // (sys_updated_on, sys_id), or within one second by sys_id.
                let mut rows: Vec<Incident> = b
                    .incidents
                    .iter()
                    .filter(|i| match &from {
                        FeedCursor::From(t) => i.updated_at >= *t && i.updated_at < window.until,
                        FeedCursor::Within { second, after } => {
                            i.updated_at == *second
                                && after.as_ref().is_none_or(|a| i.id.as_str() > a.as_str())
                        }
                    })
                    .cloned()
                    .collect();
                match &from {
                    FeedCursor::From(_) => {
                        rows.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)))
                    }
                    FeedCursor::Within { .. } => rows.sort_by(|a, b| a.id.cmp(&b.id)),
                }
                rows.truncate(window.page_size);
                let more = rows.len() >= window.page_size;
                let page = change_page(
                    &rows,
                    &from,
                    more,
                    window,
                    |i| Some((i.updated_at, i.id.clone())),
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
                )?;
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
                Ok(page)
            },
            |p: &Result<ChangePage, ItsmError>| {
                let Ok(p) = p else {
                    return "refused".into();
                };
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
        .await?
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
