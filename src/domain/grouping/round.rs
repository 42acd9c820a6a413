//! The scheduled round's part for groups: for every group with work left,
//! make its parent if a join could not, write the batched update when one
//! is due, end it when idle, resolve the parent of an ended group, and drop
//! from the index the groups nothing more can happen to.

use super::engine::{Grouped, INDEX_SHARDS, Index, index_id};
use super::group::{End, Group};
use super::parent_key;
use super::person::{ParentOf, pointer_id};
use crate::domain::ports::ItsmError;

/// Groups' documents are kept this long once nothing more can happen to
/// them (a late duplicate still finds its group and changes nothing).
const RETAIN_SECS: i64 = 30 * 24 * 3600;

/// What one round did, for its log line and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupRound {
    pub groups: usize,
    pub parents_created: usize,
    pub updates_written: usize,
    /// Parents whose priority a more severe child raised.
    pub priorities_raised: usize,
    pub parents_resolved: usize,
    pub ended_idle: usize,
    pub done: usize,
    /// Joins and resolves waiting for their group's next update.
    pub batched: usize,
    pub errors: usize,
}

impl Grouped {
    pub async fn round(&self) -> GroupRound {
        let mut out = GroupRound::default();
        for shard in 0..INDEX_SHARDS {
            let id = index_id(shard);
            let index = match self.load::<Index>(&id, (self.clock)()).await {
                Ok(found) => found.map(|(i, _)| i).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, index = %id, "group round: index unreadable");
                    out.errors += 1;
                    continue;
                }
            };
            out.groups += index.groups.len();
            let mut finished = Vec::new();
            for gid in &index.groups {
                match self.visit(gid, &mut out).await {
                    Ok(true) => finished.push(gid.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        out.errors += 1;
                        tracing::warn!(group = %gid, error = %e, "group round: left for the next round");
                    }
                }
            }
            if let Err(e) = self.retire(&id, &finished).await {
                out.errors += 1;
                tracing::warn!(error = %e, "group round: index not updated");
            }
            out.done += finished.len();
        }
        out
    }

    /// One group's work; `Ok(true)` when nothing more can happen to it.
    async fn visit(&self, gid: &str, out: &mut GroupRound) -> Result<bool, ItsmError> {
        let now = (self.clock)();
        let Some((g, _)) = self.load::<Group>(gid, now).await? else {
            // Gone; or listed by its opener, who has yet to write it.
            return Ok(!self.opening(gid, now).await?);
        };
        if g.parent.is_none() && !g.members.is_empty() {
            if self.ensure_parent(gid).await?.is_some() {
                out.parents_created += 1;
            } else {
                return Ok(false);
            }
        }
        if g.idle(now, &g.policy) {
            self.update(gid, |g, now| {
                if g.idle(now, &g.policy.clone()) {
                    g.ended = Some(End::Idle);
                }
            })
            .await?;
            out.ended_idle += 1;
        }
        let Some((g, _)) = self.load::<Group>(gid, (self.clock)()).await? else {
            return Ok(true);
        };
        if g.ended.is_some() {
            let was = g.parent_work.resolved;
            let done = self.try_finish(gid).await?;
            if done && !was {
                out.parents_resolved += 1;
            }
            return Ok(done && g.parent_work.note.is_none());
        }
        self.write_update(gid, out).await?;
        let Some((g, _)) = self.load::<Group>(gid, (self.clock)()).await? else {
            return Ok(true);
        };
        out.batched += g.pending.len();
        // Takes no one and has nothing to write: off the index until a late
        // resolve puts it back (`leave`); a group that may end idle stays.
        let now = (self.clock)();
        Ok(!g.admits(now, &g.policy)
            && g.pending.is_empty()
            && g.parent_work.note.is_none()
            && (g.open_children() == 0 || g.policy.idle_resolve_secs.is_none()))
    }

    /// Sends the group's due update, once per interval: taken from the
    /// pending changes and recorded as in flight before the call, so that
    /// a sender that dies is followed by a re-send of the same text after
    /// its lease (an update may then appear twice; none is lost).
    async fn write_update(&self, gid: &str, out: &mut GroupRound) -> Result<(), ItsmError> {
        let lease = self.lease_secs;
        let mine = std::cell::Cell::new(false);
        let Some(g) = self
            .update(gid, |g, now| {
                mine.set(false);
                let policy = g.policy.clone();
                let take = match &g.parent_work.note {
                    Some((_, until)) => now >= *until,
                    None => g.parent.is_some() && g.update_due(now, &policy),
                };
                if take {
                    let text = match g.parent_work.note.take() {
                        Some((text, _)) => text,
                        None => {
                            // A more severe child joined: this update raises
                            // the parent, once for the step (never lowers it).
                            let created_at = g
                                .parent_work
                                .template
                                .as_ref()
                                .map(|t| (t.impact, t.urgency));
                            if g.raise && g.worst_levels != created_at {
                                g.parent_work.raise_to = g.worst_levels;
                            }
                            g.take_update(now, &policy)
                        }
                    };
                    g.parent_work.note = Some((text, now + lease));
                    mine.set(true);
                }
            })
            .await?
        else {
            return Ok(());
        };
        let (true, Some((text, _)), Some(parent)) =
            (mine.get(), g.parent_work.note.clone(), g.parent.clone())
        else {
            return Ok(());
        };
        if let Some((impact, urgency)) = g.parent_work.raise_to {
            self.itsm.set_priority(&parent, impact, urgency).await?;
            out.priorities_raised += 1;
        }
        self.itsm.note(&parent, &text).await?;
        out.updates_written += 1;
        self.update(gid, |g, _| {
            if g.parent_work.note.as_ref().is_some_and(|(t, _)| *t == text) {
                g.parent_work.note = None;
                g.parent_work.raise_to = None;
            }
        })
        .await?;
        Ok(())
    }

    /// Keeps the finished groups' documents a while (a late duplicate still
    /// finds its group and changes nothing), then drops them from the index.
    /// Each is parked first, on the version that had nothing left to do (a
    /// change since keeps it listed), and dropped only if still parked once
    /// the index is read: a resolve that takes it back writes the index
    /// after the group, so that this removal fails and looks again.
    async fn retire(&self, index_doc: &str, finished: &[String]) -> Result<(), ItsmError> {
        if finished.is_empty() {
            return Ok(());
        }
        let mut parked = Vec::new();
        for gid in finished {
            let now = (self.clock)();
            let Some((mut g, version)) = self.load::<Group>(gid, now).await? else {
                parked.push(gid.clone());
                continue;
            };
            if !settled(&g, now) {
                continue;
            }
            g.parked = true;
            // Kept while children may still resolve to some effect, then a
            // while, then gone. An ended group's children are only counted
            // (an idle group's may never resolve): it expires too.
            let until = (g.open_children() == 0 || g.ended.is_some()).then_some(now + RETAIN_SECS);
            if self.save(gid, &g, Some(version), until).await? {
                parked.push(gid.clone());
                // The parent's pointer goes with it.
                let pointer = pointer_id(&parent_key(gid));
                if until.is_some()
                    && let Some((p, v)) = self.load::<ParentOf>(&pointer, now).await?
                {
                    self.save(&pointer, &p, Some(v), until).await?;
                }
            }
        }
        for _ in 0..8 {
            let Some((mut index, version)) = self.load::<Index>(index_doc, (self.clock)()).await?
            else {
                return Ok(());
            };
            let mut gone = Vec::new();
            for gid in &parked {
                let now = (self.clock)();
                match self.load::<Group>(gid, now).await? {
                    Some((g, _)) if !g.parked => {}
                    None if self.opening(gid, now).await? => {}
                    _ => gone.push(gid.clone()),
                }
            }
            index.groups.retain(|g| !gone.contains(g));
            if self.save(index_doc, &index, Some(version), None).await? {
                return Ok(());
            }
        }
        Err(super::engine::busy("the group index"))
    }
}

/// Whether nothing more can happen to `g` unless a child resolves late: it
/// ended and its parent is resolved, or it takes no one and has nothing to
/// write (and cannot end idle).
pub(super) fn settled(g: &Group, now: i64) -> bool {
    if g.parent_work.note.is_some() {
        return false;
    }
    match g.ended {
        Some(_) => g.parent_work.resolved,
        None => {
            g.parent.is_some()
                && !g.admits(now, &g.policy)
                && g.pending.is_empty()
                && (g.open_children() == 0 || g.policy.idle_resolve_secs.is_none())
        }
    }
}
