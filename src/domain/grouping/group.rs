//! One group and its rules: who may join, what a join or a child's resolve
//! does to the parent, when an update of the parent is due, when the group
//! ends. Plain data and pure decisions: the caller reads a `Group`, applies
//! one of these, and writes it back conditionally on its version before it
//! makes the ITSM call the decision names. Tested row by row in `tests.rs`.
//!
//! | event \ group           | open, admits      | open, window or age past | ended              |
//! |-------------------------|-------------------|--------------------------|--------------------|
//! | Fired, new child        | join              | next generation          | next generation    |
//! | Fired, member           | no-op             | no-op                    | no-op              |
//! | Resolved, open member   | count; parent by policy (`all`: last open; `first`: any) | same | count, no call |
//! | Resolved, done / not one | no-op            | no-op                    | no-op              |
//! | round: pending, due     | one update        | one update               | closing note only  |
//! | round: idle past limit  | end (idle)        | end (idle)               | —                  |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::alert::Severity;
use crate::domain::correlation::IncidentRef;
use crate::domain::incident::group_policy::{GroupPolicy, ResolvePolicy};

/// The most children one group holds; past it the next alert opens a new
/// generation (the group is one store item, and a parent with thousands of
/// children named says little more).
pub const MOST_MEMBERS: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// `GroupKey::id`.
    pub key: String,
    /// The rules it was opened with (later configuration changes apply to
    /// the next group).
    pub policy: GroupPolicy,
    /// The key's n-th group (from 1): a new one opens when this one ends,
    /// its window lapses or it reaches its age.
    pub generation: u32,
    pub label: String,
    pub opened_at: i64,
    pub last_join_at: i64,
    /// The parent incident, once created.
    pub parent: Option<IncidentRef>,
    /// The most severe child so far (`Sev0` first), as `Severity::as_str`.
    pub worst: String,
    /// A more severe child joined since the last update: the next update
    /// raises the parent's priority, once for the step.
    pub raise: bool,
    /// The impact and urgency of the most severe child (`worst`).
    #[serde(default)]
    pub worst_levels: Option<(u8, u8)>,
    /// Children by correlation key; `true` while open.
    pub members: BTreeMap<String, Member>,
    /// Joins and resolves not yet written to the parent.
    pub pending: Vec<Change>,
    /// Children named in updates so far (at most `max_listed`).
    pub listed: u32,
    pub updates: u32,
    pub last_update_at: i64,
    pub ended: Option<End>,
    /// The parent's creation, resolve and updates in progress.
    #[serde(default)]
    pub parent_work: ParentWork,
    /// Off the round's index: the round found nothing left to do and wrote
    /// so before it dropped the group; a late resolve clears it and lists
    /// the group again.
    #[serde(default)]
    pub parked: bool,
}

/// What the parent incident needs, and who is doing it: the same claim,
/// look-before-create and settle rules as an alert's own incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentWork {
    /// The incident fields of the group's first child: assignment group,
    /// category, caller, extra fields and the ITSM's priority levels.
    pub template: Option<ParentTemplate>,
    /// A creator holds the parent's creation until then (Unix seconds).
    pub lease_until: i64,
    /// An empty search for the parent is not trusted before then: a
    /// create whose answer was lost may still show.
    pub look_until: i64,
    /// Creates begun: after the first, look before creating again.
    pub creates: u32,
    /// The parent was resolved (by policy or idleness), or found closed.
    pub resolved: bool,
    /// An update sent and not yet confirmed: re-sent after its lease if its
    /// sender died (so an update may be written twice, never lost).
    pub note: Option<(String, i64)>,
    /// The impact and urgency the update in flight raises the parent to
    /// (set again with a re-sent update: setting a priority is idempotent).
    #[serde(default)]
    pub raise_to: Option<(u8, u8)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentTemplate {
    pub rule: String,
    pub impact: u8,
    pub urgency: u8,
    pub assignment_group: Option<String>,
    pub category: Option<String>,
    pub caller: Option<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its place in the order children joined (from 0).
    pub n: u32,
    /// What people read: the alert's target, else its id (at most
    /// `NAME_MAX` characters: the document stays within a store item).
    pub name: String,
    pub open: bool,
}

/// A join or resolve not yet written to the parent, by the child's number
/// (a number, not the name: the document stays small through a long outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Joined(u32),
    Resolved(u32),
}

/// The longest child name kept.
pub const NAME_MAX: usize = 64;

/// Why a group ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The resolve policy: the last open child (`all`) or the first (`first`).
    Policy,
    /// A person resolved or closed the parent in the ITSM.
    Person,
    /// No join for `idle_resolve_secs`.
    Idle,
}

/// What a child's Resolved asks of the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildResolved {
    /// Not a member, or already resolved: nothing changes.
    NoOp,
    /// Counted; the parent stays as it is (more children open, policy
    /// `never`, or the group already ended).
    Counted,
    /// Counted, and the policy resolves the parent now.
    ResolveParent,
}

impl Group {
    pub fn open(
        key: String,
        generation: u32,
        label: String,
        policy: GroupPolicy,
        now: i64,
    ) -> Group {
        Group {
            key,
            policy,
            generation,
            label,
            opened_at: now,
            last_join_at: now,
            parent: None,
            worst: Severity::Unknown.as_str().to_string(),
            raise: false,
            worst_levels: None,
            members: BTreeMap::new(),
            pending: Vec::new(),
            listed: 0,
            updates: 0,
            last_update_at: now,
            ended: None,
            parent_work: ParentWork::default(),
            parked: false,
        }
    }

    /// Whether a new child may join: the group has not ended, its last join
    /// is within the window and its opening within the maximum age (both
    /// inclusive), and it has room.
    pub fn admits(&self, now: i64, policy: &GroupPolicy) -> bool {
        self.ended.is_none()
            && now.saturating_sub(self.last_join_at) <= secs(policy.window_secs)
            && now.saturating_sub(self.opened_at) <= secs(policy.max_age_secs)
            && self.members.len() < MOST_MEMBERS
    }

    /// Adds a child (once: a member joining again changes nothing).
    /// Returns whether it joined.
    pub fn join(&mut self, child: &str, name: &str, severity: Severity, now: i64) -> bool {
        if self.members.contains_key(child) {
            return false;
        }
        let n = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        let member = Member {
            n,
            name: name.chars().take(NAME_MAX).collect(),
            open: true,
        };
        self.members.insert(child.to_string(), member);
        self.last_join_at = self.last_join_at.max(now);
        self.pending.push(Change::Joined(n));
        if severity < Severity::parse(&self.worst) {
            // The first child sets the parent's priority at its creation.
            self.raise = self.members.len() > 1;
            self.worst = severity.as_str().to_string();
        }
        true
    }

    /// A child's Resolved: counted once; the parent by the policy.
    pub fn resolve_child(&mut self, child: &str, policy: &GroupPolicy) -> ChildResolved {
        let Some(member) = self.members.get_mut(child).filter(|m| m.open) else {
            return ChildResolved::NoOp;
        };
        member.open = false;
        let n = member.n;
        if self.ended.is_some() {
            return ChildResolved::Counted;
        }
        self.pending.push(Change::Resolved(n));
        let resolve = match policy.resolve {
            ResolvePolicy::All => self.open_children() == 0,
            ResolvePolicy::First => true,
            ResolvePolicy::Never => false,
        };
        if resolve {
            self.ended = Some(End::Policy);
            ChildResolved::ResolveParent
        } else {
            ChildResolved::Counted
        }
    }

    pub fn open_children(&self) -> usize {
        self.members.values().filter(|m| m.open).count()
    }

    /// Whether the parent's next update is due: something is pending and
    /// the last update is at least `notes_every_secs` old.
    pub fn update_due(&self, now: i64, policy: &GroupPolicy) -> bool {
        !self.pending.is_empty()
            && self.ended.is_none()
            && now.saturating_sub(self.last_update_at) >= secs(policy.notes_every_secs)
    }

    /// Whether the group ends for idleness now.
    pub fn idle(&self, now: i64, policy: &GroupPolicy) -> bool {
        self.ended.is_none()
            && policy
                .idle_resolve_secs
                .is_some_and(|idle| now.saturating_sub(self.last_join_at) >= secs(idle))
    }

    /// Takes the pending changes as the text of one update (the caller
    /// writes the group back before it sends it). Children are named up to
    /// `max_listed` over the group's life, then counted, with the most
    /// frequent names among the rest.
    pub fn take_update(&mut self, now: i64, policy: &GroupPolicy) -> String {
        let pending = std::mem::take(&mut self.pending);
        self.updates += 1;
        self.last_update_at = now;
        let mut lines = vec![format!(
            "itsm-bridge group update {}: {} alert(s), {} open ({}).",
            self.updates,
            self.members.len(),
            self.open_children(),
            self.label
        )];
        if std::mem::take(&mut self.raise) {
            lines.push(format!("Most severe alert now: {}.", self.worst));
        }
        let names: BTreeMap<u32, &str> = self
            .members
            .values()
            .map(|m| (m.n, m.name.as_str()))
            .collect();
        let mut unlisted: BTreeMap<&str, usize> = BTreeMap::new();
        let (mut joined_more, mut resolved_more) = (0, 0);
        for change in &pending {
            let (verb, n, more) = match change {
                Change::Joined(n) => ("joined", n, &mut joined_more),
                Change::Resolved(n) => ("resolved", n, &mut resolved_more),
            };
            let name = names.get(n).copied().unwrap_or("?");
            if self.listed < policy.max_listed {
                self.listed += 1;
                lines.push(format!("- {verb}: {name}"));
            } else {
                *more += 1;
                *unlisted.entry(name).or_default() += 1;
            }
        }
        if joined_more + resolved_more > 0 {
            let mut top: Vec<(&str, usize)> = unlisted.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let names: Vec<&str> = top.iter().take(5).map(|(n, _)| *n).collect();
            lines.push(format!(
                "+{joined_more} more joined, +{resolved_more} more resolved; most frequent \
                 resources: {}",
                names.join(", ")
            ));
        }
        lines.join("\n")
    }

    /// The parent's short description: "vm-cpu-high: 37 alerts in rg-prod".
    pub fn title(&self, rule: &str) -> String {
        let values: Vec<&str> = self
            .label
            .split(", ")
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
            .collect();
        format!(
            "{rule}: {} alerts in {}",
            self.members.len(),
            values.join(" / ")
        )
    }
}

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
