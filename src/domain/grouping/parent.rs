//! The group's parent incident: created once (a claim in the group
//! document, a search before any second create, an empty search not trusted
//! while a lost create may still show), resolved once (resolving is
//! idempotent in effect, so a repeat after a crash changes nothing), and
//! updated with the batched joins and resolves.

use super::engine::{Grouped, busy};
use super::group::Group;
use super::person::{ParentOf, pointer_id};
use crate::domain::alert::Severity;
use crate::domain::alert::text::{clean, clean_line};
use crate::domain::correlation::{IncidentRef, correlation_key};
use crate::domain::incident::mapping::{
    DESCRIPTION_MAX, IncidentDraft, Resolution, SHORT_DESCRIPTION_MAX,
};
use crate::domain::ports::{ItsmError, ResolveOutcome};

const ROUNDS: usize = 8;

/// The key the parent carries in the ITSM, where `find` looks for it.
pub fn parent_key(gid: &str) -> String {
    correlation_key(&format!("itsm-bridge/group/{gid}"))
}

fn parent_draft(gid: &str, g: &Group) -> IncidentDraft {
    let t = g
        .parent_work
        .template
        .clone()
        .unwrap_or_else(|| super::group::ParentTemplate {
            rule: "Azure Monitor alerts".into(),
            impact: 3,
            urgency: 3,
            assignment_group: None,
            category: None,
            caller: None,
            fields: Default::default(),
        });
    let mut description = format!(
        "Alerts grouped by itsm-bridge ({}; group {gid}).\nFirst alerts:\n",
        g.label
    );
    let mut first: Vec<_> = g.members.values().collect();
    first.sort_by_key(|m| m.n);
    for m in first.iter().take(g.policy.max_listed as usize) {
        description.push_str(&format!("- {}\n", m.name));
    }
    IncidentDraft {
        correlation_key: parent_key(gid),
        correlation_label: clean_line(format!("itsm-bridge group {}", g.label), 100),
        short_description: clean_line(g.title(&t.rule), SHORT_DESCRIPTION_MAX),
        description: clean(description, DESCRIPTION_MAX),
        severity: Severity::parse(&g.worst),
        impact: t.impact,
        urgency: t.urgency,
        configuration_item: None,
        assignment_group: t.assignment_group,
        category: t.category,
        caller: t.caller,
        fields: t.fields,
        group: None,
        parent: None,
    }
}

impl Grouped {
    /// Makes the parent if it is missing; a failure is the round's to retry.
    pub(super) async fn make_parent(&self, gid: &str) -> Option<IncidentRef> {
        self.ensure_parent(gid).await.unwrap_or_else(|e| {
            tracing::warn!(group = %gid, error = %e, "group parent not created yet; the scheduled round retries");
            None
        })
    }

    /// The parent, creating it under the group's claim if need be (`None`:
    /// another caller holds the claim, or a lost create may still show).
    ///
    /// The claim works as an alert's: it says at once until when an empty
    /// search proves nothing (its lease's end plus the ITSM's search lag, a
    /// lease at least), so a takeover after a creator died mid-create looks
    /// and waits; a creator that lives to see its create fail puts back the
    /// time the claim found, or a later one when its create's answer was
    /// lost.
    pub(super) async fn ensure_parent(&self, gid: &str) -> Result<Option<IncidentRef>, ItsmError> {
        let settle = self.settle_secs();
        let mut taken = None;
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let Some((mut g, version)) = self.load::<Group>(gid, now).await? else {
                return Ok(None);
            };
            if let Some(p) = &g.parent {
                return Ok(Some(p.clone()));
            }
            if g.members.is_empty() || now < g.parent_work.lease_until {
                return Ok(None);
            }
            let found = g.parent_work.look_until;
            g.parent_work.lease_until = now + self.lease_secs;
            // As an alert's claim: the lag counts as a lease at least (a
            // clock up to a lease ahead waits for a create on its way).
            let lag = settle.max(self.lease_secs);
            g.parent_work.look_until = found.max(g.parent_work.lease_until + lag);
            g.parent_work.creates += 1;
            if self.save(gid, &g, Some(version), None).await? {
                taken = Some((g, found));
                break;
            }
        }
        // A busy group (joins rewriting it): the next join or round claims it.
        let Some((g, look_until)) = taken else {
            return Ok(None);
        };
        let key = parent_key(gid);
        // Before any create: the sync round finds the group from the
        // parent's key (a person resolving it ends the group).
        let pointer = ParentOf {
            group: gid.to_string(),
        };
        if let Err(e) = self.save(&pointer_id(&key), &pointer, None, None).await {
            self.release(gid, g.parent_work.creates, look_until).await?;
            return Err(e);
        }
        // An earlier create may have taken effect: look first.
        if g.parent_work.creates > 1 {
            let found = match self.itsm.find(&key).await {
                Ok(found) => found,
                Err(e) => {
                    self.release(gid, g.parent_work.creates, look_until).await?;
                    return Err(e);
                }
            };
            if let Some(found) = found {
                return self.record_parent(gid, found).await.map(Some);
            }
            if (self.clock)() < look_until {
                self.release(gid, g.parent_work.creates, look_until).await?;
                return Ok(None);
            }
        }
        match self.itsm.create(&parent_draft(gid, &g)).await {
            Ok(created) => {
                tracing::info!(group = %gid, incident = %created.number, "group parent created");
                self.record_parent(gid, created).await.map(Some)
            }
            Err(e) => {
                // A create whose answer was lost may still be on its way:
                // the lag from now, the claim's own look-until at least.
                let lost = match e {
                    ItsmError::Unanswered(_) => {
                        ((self.clock)() + settle).max(g.parent_work.look_until)
                    }
                    _ => 0,
                };
                self.release(gid, g.parent_work.creates, look_until.max(lost))
                    .await?;
                Err(e)
            }
        }
    }

    /// Ends this caller's claim (the `claim`th create begun) on the parent:
    /// the next caller claims at once, and trusts an empty search only from
    /// `look_until`. A claim taken since (this one's lease ran out) is left
    /// alone.
    async fn release(&self, gid: &str, claim: u32, look_until: i64) -> Result<(), ItsmError> {
        self.update(gid, |g, _| {
            if g.parent.is_none() && g.parent_work.creates == claim {
                g.parent_work.lease_until = 0;
                g.parent_work.look_until = look_until;
            }
        })
        .await?;
        Ok(())
    }

    async fn record_parent(
        &self,
        gid: &str,
        parent: IncidentRef,
    ) -> Result<IncidentRef, ItsmError> {
        let p = parent.clone();
        self.update(gid, move |g, _| {
            g.parent = Some(p.clone());
            g.parent_work.lease_until = 0;
        })
        .await?;
        Ok(parent)
    }

    /// Applies `change` to the stored group and writes it back, again on a
    /// conflict. A change that changes nothing writes nothing, and a write
    /// keeps the document's expiry: a settled group's countdown (the
    /// round's `retire`) survives a repeated or late change.
    pub(super) async fn update(
        &self,
        gid: &str,
        change: impl Fn(&mut Group, i64),
    ) -> Result<Option<Group>, ItsmError> {
        for _ in 0..ROUNDS * 3 {
            let now = (self.clock)();
            let Some((mut g, version, expires_at)) = self.load_expiring::<Group>(gid, now).await?
            else {
                return Ok(None);
            };
            let before = g.clone();
            change(&mut g, now);
            if g == before || self.save(gid, &g, Some(version), expires_at).await? {
                return Ok(Some(g));
            }
        }
        Err(busy("the group"))
    }

    /// Resolves an ended group's parent, once; a failure is the round's to
    /// retry.
    pub(super) async fn finish_parent(&self, gid: &str) {
        if let Err(e) = self.try_finish(gid).await {
            tracing::warn!(group = %gid, error = %e, "group parent not resolved yet; the scheduled round retries");
        }
    }

    /// `Ok(true)` once the ended group's parent is resolved (or gone).
    pub(super) async fn try_finish(&self, gid: &str) -> Result<bool, ItsmError> {
        let Some(parent) = self.ensure_parent(gid).await? else {
            return Ok(false);
        };
        let now = (self.clock)();
        let Some((g, _)) = self.load::<Group>(gid, now).await? else {
            return Ok(false);
        };
        let Some(why) = g.ended else { return Ok(false) };
        if g.parent_work.resolved {
            return Ok(true);
        }
        let reason = match why {
            super::group::End::Policy => "its alerts resolved (resolve policy)",
            super::group::End::Idle => "no alert joined for idle_resolve_secs",
            super::group::End::Person => "a person resolved it",
        };
        let notes = format!(
            "Resolved by itsm-bridge: {reason}. {} alert(s) in the group, {} still open ({}).",
            g.members.len(),
            g.open_children(),
            g.label
        );
        let outcome = self.itsm.resolve(&parent, &Resolution { notes }).await?;
        if outcome == ResolveOutcome::NotFound {
            tracing::warn!(group = %gid, incident = %parent.number, "group parent no longer exists");
        }
        self.update(gid, |g, _| {
            g.parent_work.resolved = true;
            // The closing note carries the counts; nothing else is sent.
            g.pending.clear();
            g.parent_work.note = None;
        })
        .await?;
        Ok(true)
    }
}
