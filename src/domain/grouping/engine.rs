//! Grouping as the ITSM the state machine sees. A grouped alert's "incident"
//! is its membership of a group: creating it joins the group (once, whatever
//! the retries), resolving it counts the child out, and the parent incident
//! is the group's own business, created, updated and resolved here and by
//! the scheduled round (`round.rs`). Everything else passes through to the
//! ITSM unchanged, so without a `group` in the routing rules the bridge
//! behaves as before.
//!
//! Documents in the group store: the head `<key>` (which generation is
//! current), each group `<key>#<generation>`, the index
//! `groups-pending-<0-f>` (the groups the round visits), and each child's
//! marker `member-<child key>` (the group it joined, written before it joins
//! there). A child's reference is `group:<key>#<generation>/<child key>`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::group::{ChildResolved, Group, ParentTemplate};
use crate::domain::correlation::{GROUP_CHILD as CHILD, IncidentRef};
use crate::domain::incident::group_key::GroupPlan;
use crate::domain::incident::group_policy::Children;
use crate::domain::incident::mapping::{IncidentDraft, Resolution};
use crate::domain::ports::{
    Clock, GroupDoc, GroupStore, ItsmClient, ItsmError, ResolveOutcome, StoreError,
};
use crate::domain::settings::Settings;

pub struct Grouped {
    pub(super) itsm: Arc<dyn ItsmClient>,
    pub(super) store: Arc<dyn GroupStore>,
    pub(super) clock: Clock,
    /// How long a parent's creator holds it: the claim lease.
    pub(super) lease_secs: i64,
    /// `ITSM_CREATE_SETTLE_SECS` when set: how long a lost create may take
    /// to show in a search, over the ITSM's own figure.
    settle_secs: Option<i64>,
}

/// Read-decide-write rounds before a busy group answers "try again" (the
/// notification then queues, and its retry joins).
const ROUNDS: usize = 24;
/// The round's index of groups with work left, in 16 documents by the
/// group key's first hex digit, so that none outgrows a store item.
pub(super) const INDEX_SHARDS: u32 = 16;

pub(super) fn index_id(shard: u32) -> String {
    format!("groups-pending-{shard:x}")
}

/// The index document that lists `gid` (`grp-<hex>#<n>`).
fn index_of(gid: &str) -> String {
    let digit = gid
        .strip_prefix("grp-")
        .and_then(|h| h.chars().next())
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0);
    index_id(digit % INDEX_SHARDS)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Head {
    generation: u32,
    /// When this generation was named (Unix seconds; 0 before this was
    /// kept). Its opener writes the group right after; a generation whose
    /// group is still missing a lease later was never written (its opener
    /// died) or has expired (30 days after it settled): the next one opens,
    /// so that a group's id, and its parent's key, are never used twice.
    #[serde(default)]
    named_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Index {
    pub groups: Vec<String>,
}

/// Which group a child joined, named before it is written there: a retry
/// whose join's answer was lost, however many groups later, and a Resolved
/// that finds no record of the join (`find`) find the child where it is.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Membership {
    group: String,
}

pub(super) fn member_id(child: &str) -> String {
    format!("member-{child}")
}

/// A marker is kept this long after its child resolved.
const MEMBER_RETAIN_SECS: i64 = 30 * 24 * 3600;

/// What the marker says: the group holding the child (if it is there), and
/// the marker's own group and version.
type Marked = (Option<Group>, Option<(String, u64)>);

pub(super) fn group_id(key: &str, generation: u32) -> String {
    format!("{key}#{generation}")
}

pub(super) fn busy(what: &str) -> ItsmError {
    ItsmError::Busy(format!("{what} is busy (concurrent writes); try again"))
}

/// The group store failing is the bridge's trouble, not the ITSM's: it
/// does not open the ITSM's breaker.
pub(super) fn unavailable(e: StoreError) -> ItsmError {
    ItsmError::Busy(format!("group store: {e}"))
}

impl Grouped {
    /// Claims as the state machine's: `settings`' lease and create settle
    /// time.
    pub fn new(
        itsm: Arc<dyn ItsmClient>,
        store: Arc<dyn GroupStore>,
        clock: Clock,
        settings: &Settings,
    ) -> Grouped {
        Grouped {
            itsm,
            store,
            clock,
            lease_secs: settings.lease_secs,
            settle_secs: settings.create_settle_secs,
        }
    }

    /// How long a create whose answer was lost may take to show in a search.
    pub(super) fn settle_secs(&self) -> i64 {
        self.settle_secs
            .unwrap_or_else(|| self.itsm.create_settle_secs())
    }

    pub(super) async fn load<T: DeserializeOwned>(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(T, u64)>, ItsmError> {
        let found = self.load_expiring(id, now).await?;
        Ok(found.map(|(value, version, _)| (value, version)))
    }

    /// A document, its version and when it expires.
    pub(super) async fn load_expiring<T: DeserializeOwned>(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<(T, u64, Option<i64>)>, ItsmError> {
        let Some(doc) = self.store.group_doc(id, now).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let value = serde_json::from_str(&doc.body)
            .map_err(|e| ItsmError::Busy(format!("group document {id} is unreadable: {e}")))?;
        Ok(Some((value, doc.version, doc.expires_at)))
    }

    /// Whether `gid` is being opened: its key's head names it (its opener
    /// lists it before it writes it).
    pub(super) async fn opening(&self, gid: &str, now: i64) -> Result<bool, ItsmError> {
        let Some((key, generation)) = gid.rsplit_once('#') else {
            return Ok(false);
        };
        let head: Option<(Head, u64)> = self.load(key, now).await?;
        Ok(head.is_some_and(|(h, _)| h.generation.to_string() == generation))
    }

    /// Writes `value` over version `expected`: `Ok(false)` when someone
    /// else wrote first.
    pub(super) async fn save<T: Serialize>(
        &self,
        id: &str,
        value: &T,
        expected: Option<u64>,
        expires_at: Option<i64>,
    ) -> Result<bool, ItsmError> {
        let doc = GroupDoc {
            id: id.to_string(),
            body: serde_json::to_string(value).expect("group documents serialise"),
            version: expected.map_or(1, |v| v + 1),
            expires_at,
        };
        match self
            .store
            .put_group_doc(&doc, expected, (self.clock)())
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The group the child's marker names, if the child is in it.
    async fn membership(&self, child: &str, now: i64) -> Result<Marked, ItsmError> {
        let Some((m, version)) = self.load::<Membership>(&member_id(child), now).await? else {
            return Ok((None, None));
        };
        let joined = self
            .load::<Group>(&m.group, now)
            .await?
            .map(|(g, _)| g)
            .filter(|g| g.members.contains_key(child));
        Ok((joined, Some((m.group, version))))
    }

    /// Names `gid` as the child's group before the child is written there;
    /// `Ok(false)` when another attempt for the child wrote the marker first
    /// (or is writing the child into the group the marker named).
    ///
    /// Two attempts of one child may run at once (a claim's lease ran out
    /// under the first; containers' clocks disagree on a window). Every mark
    /// is a conditional write, also one naming the group already named, and
    /// moving the marker away from a group first rewrites that group: a
    /// join into it read before then fails and goes round again, finding
    /// the child where the marker now says. One child, one group.
    async fn mark(
        &self,
        child: &str,
        gid: &str,
        marker: Option<&(String, u64)>,
    ) -> Result<bool, ItsmError> {
        if let Some((old, _)) = marker
            && old != gid
            && let Some((g, version, expires_at)) =
                self.load_expiring::<Group>(old, (self.clock)()).await?
        {
            if g.members.contains_key(child) {
                return Ok(false);
            }
            if !self.save(old, &g, Some(version), expires_at).await? {
                return Ok(false);
            }
        }
        let m = Membership {
            group: gid.to_string(),
        };
        self.save(&member_id(child), &m, marker.map(|(_, v)| *v), None)
            .await
    }

    /// Joins the alert's group, once: a retry finds it where it joined (the
    /// group its marker names; for children that joined before markers,
    /// the current generation or the one before). The parent is then made
    /// if it is missing; if that fails the round makes it, since the join
    /// is durable already.
    async fn join(
        &self,
        draft: &IncidentDraft,
        plan: &GroupPlan,
    ) -> Result<(Group, String), ItsmError> {
        // Child incidents need the parent first, and their creation makes
        // it (its failure is theirs to queue); notes need only the join.
        let make = plan.policy.children == Children::Notes;
        let key = plan.key.id();
        let child = draft.correlation_key.as_str();
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let (joined, marker) = self.membership(child, now).await?;
            if let Some(g) = joined {
                return Ok(found(g));
            }
            let head: Option<(Head, u64)> = self.load(&key, now).await?;
            let generation = head.as_ref().map_or(0, |(h, _)| h.generation);
            let just_named = head
                .as_ref()
                .is_some_and(|(h, _)| now < h.named_at.saturating_add(self.lease_secs));
            let gid = group_id(&key, generation);
            let current: Option<(Group, u64)> = match generation {
                0 => None,
                _ => self.load(&gid, now).await?,
            };
            if let Some((g, _)) = &current
                && g.members.contains_key(child)
            {
                return Ok(found(g.clone()));
            }
            if generation > 1
                && let Some((g, _)) = self
                    .load::<Group>(&group_id(&key, generation - 1), now)
                    .await?
                && g.members.contains_key(child)
            {
                return Ok(found(g));
            }
            match current {
                Some((mut g, version)) if g.admits(now, &g.policy.clone()) => {
                    add(&mut g, draft, plan, now);
                    if !self.mark(child, &gid, marker.as_ref()).await? {
                        continue;
                    }
                    if self.save(&gid, &g, Some(version), None).await? {
                        if g.parent.is_none() && make {
                            g.parent = self.make_parent(&gid).await;
                        }
                        return Ok((g, gid));
                    }
                }
                // The head names a generation not written yet (its opener
                // is writing it, or died moments ago): whoever comes
                // writes it. Missing longer, it is gone: the next opens.
                None if generation > 0 && just_named => {
                    self.index_add(&gid).await?;
                    let mut g = Group::open(
                        key.clone(),
                        generation,
                        plan.key.label(),
                        plan.policy.clone(),
                        now,
                    );
                    add(&mut g, draft, plan, now);
                    if !self.mark(child, &gid, marker.as_ref()).await? {
                        continue;
                    }
                    if self.save(&gid, &g, None, None).await? {
                        tracing::info!(group = %gid, label = %g.label, "group opened");
                        if make {
                            g.parent = self.make_parent(&gid).await;
                        }
                        return Ok((g, gid));
                    }
                }
                // None yet, or the current one takes no one: the next
                // generation, one winner; the next round writes it.
                _ => {
                    let next = Head {
                        generation: generation + 1,
                        named_at: now,
                    };
                    self.save(&key, &next, head.map(|(_, v)| v), None).await?;
                }
            }
        }
        Err(busy("the alert's group"))
    }

    /// A child incident (`children: incidents`): created under the group's
    /// parent, once the parent exists, as the alert's own incident: the
    /// state machine's claim, look-before-create and settle rules make it
    /// once. The parent is made here if it is missing; while another
    /// attempt is making it this one waits (`Busy`: retried, then queued,
    /// and the ITSM's breaker stays as it is).
    async fn child_incident(
        &self,
        draft: &IncidentDraft,
        g: &Group,
        gid: &str,
    ) -> Result<IncidentRef, ItsmError> {
        // A group that ended before this child's incident was made (its
        // create waited in the queue): its parent is resolved, and a child
        // under it would stay open. The child is counted, as with notes.
        let now = (self.clock)();
        if let Some((current, _)) = self.load::<Group>(gid, now).await?
            && current.ended.is_some()
        {
            return Ok(child_ref(&current, &draft.correlation_key));
        }
        let parent = match &g.parent {
            Some(p) => p.clone(),
            None => self.ensure_parent(gid).await?.ok_or_else(|| {
                ItsmError::Busy(format!(
                    "group {gid}'s parent incident is being created by another attempt; \
                     this alert's incident follows it"
                ))
            })?,
        };
        let mut child = draft.clone();
        child.group = None;
        child.parent = Some(parent);
        let created = self.itsm.create(&child).await?;
        Ok(child_incident_ref(g, &draft.correlation_key, &created))
    }

    /// A child's Resolved: counted once; the parent resolved when the
    /// policy says so (now if it can be, else by the round).
    async fn leave(&self, gid: &str, child: &str) -> Result<(), ItsmError> {
        for _ in 0..ROUNDS {
            let now = (self.clock)();
            let Some((mut g, version)) = self.load::<Group>(gid, now).await? else {
                // Gone past its retention: nothing left to count.
                return Ok(());
            };
            let policy = g.policy.clone();
            match g.resolve_child(child, &policy) {
                ChildResolved::NoOp => {
                    // A retry after a failure or crash between a change and
                    // its listing (below): the group is listed again.
                    if !g.parked && !g.admits(now, &policy) && !super::round::settled(&g, now) {
                        self.index_add(gid).await?;
                    }
                    return Ok(());
                }
                decided => {
                    // The round drops groups that take no one and have
                    // nothing to write; a late resolve gives it work again.
                    // Listed before the change is written: a caller that
                    // fails or dies after the write leaves the change (and
                    // the last child's parent resolve) to the round, since
                    // its retry finds the child counted and does nothing.
                    if !g.admits(now, &policy) {
                        self.index_add(gid).await?;
                    }
                    // A group the round is dropping (or dropped) is taken
                    // back by this write, and listed again after it: the
                    // round's removal, conditional on the index's version,
                    // then fails and looks again, or comes before.
                    let unpark = std::mem::take(&mut g.parked);
                    if !self.save(gid, &g, Some(version), None).await? {
                        continue;
                    }
                    if unpark {
                        self.index_write(gid, true).await?;
                    }
                    if decided == ChildResolved::ResolveParent {
                        tracing::info!(group = %gid, children = g.members.len(), "group resolved by policy");
                        self.finish_parent(gid).await;
                    }
                    self.retire_marker(gid, child, now).await;
                    return Ok(());
                }
            }
        }
        Err(busy("the alert's group"))
    }

    /// A resolved child's marker expires a while later (best effort: one
    /// left behind is only a small item more).
    async fn retire_marker(&self, gid: &str, child: &str, now: i64) {
        let id = member_id(child);
        if let Ok(Some((m, version))) = self.load::<Membership>(&id, now).await
            && m.group == gid
        {
            let until = Some(now + MEMBER_RETAIN_SECS);
            let _ = self.save(&id, &m, Some(version), until).await;
        }
    }

    /// What a grouped alert would do now (`replay --explain`): join which
    /// group, or open a new one. Reads only.
    pub async fn preview(&self, plan: &GroupPlan, child: &str) -> Result<String, ItsmError> {
        let now = (self.clock)();
        let key = plan.key.id();
        let head: Option<(Head, u64)> = self.load(&key, now).await?;
        let generation = head.map_or(0, |(h, _)| h.generation);
        let gid = group_id(&key, generation);
        let current: Option<(Group, u64)> = match generation {
            0 => None,
            _ => self.load(&gid, now).await?,
        };
        Ok(match current {
            Some((g, _)) if g.members.contains_key(child) => format!("already in group {gid}"),
            Some((g, _)) if g.admits(now, &g.policy) => format!(
                "join group {gid} ({} alert(s), last joined {} s ago, parent {}){}",
                g.members.len(),
                now - g.last_join_at,
                g.parent
                    .as_ref()
                    .map_or("not created yet", |p| p.number.as_str()),
                child_incident_note(&g.policy)
            ),
            _ => format!(
                "open a new group {}{}",
                group_id(&key, generation + 1),
                child_incident_note(&plan.policy)
            ),
        })
    }

    /// Adds `gid` to the round's index, once.
    pub(super) async fn index_add(&self, gid: &str) -> Result<(), ItsmError> {
        self.index_write(gid, false).await
    }

    /// Adds `gid` to the round's index; `always`: writes the index even if
    /// it lists the group already (a removal read before fails).
    async fn index_write(&self, gid: &str, always: bool) -> Result<(), ItsmError> {
        let index = index_of(gid);
        for _ in 0..ROUNDS {
            let found: Option<(Index, u64)> = self.load(&index, (self.clock)()).await?;
            let (mut index, version) =
                found.map_or((Index::default(), None), |(i, v)| (i, Some(v)));
            let listed = index.groups.iter().any(|g| g == gid);
            if listed && !always {
                return Ok(());
            }
            if !listed {
                index.groups.push(gid.to_string());
            }
            if self.save(&index_of(gid), &index, version, None).await? {
                return Ok(());
            }
        }
        Err(busy("the group index"))
    }
}

/// Joins `draft`'s alert to `g`; the parent's incident fields come from its
/// most severe child known before it is created.
fn add(g: &mut Group, draft: &IncidentDraft, plan: &GroupPlan, now: i64) {
    let before = g.worst.clone();
    g.join(
        &draft.correlation_key,
        &plan.child_name,
        draft.severity,
        now,
    );
    let worse = g.worst != before;
    if worse {
        g.worst_levels = Some((draft.impact, draft.urgency));
    }
    let work = &mut g.parent_work;
    if work.template.is_none() || (worse && g.parent.is_none()) {
        work.template = Some(ParentTemplate {
            rule: plan
                .key
                .rule
                .clone()
                .unwrap_or_else(|| "Azure Monitor alerts".into()),
            impact: draft.impact,
            urgency: draft.urgency,
            assignment_group: draft.assignment_group.clone(),
            category: draft.category.clone(),
            caller: draft.caller.clone(),
            fields: draft.fields.clone(),
        });
    }
}

/// What `--explain` adds for `children: incidents`.
fn child_incident_note(
    policy: &crate::domain::incident::group_policy::GroupPolicy,
) -> &'static str {
    match policy.children {
        Children::Incidents => ", with a child incident under the parent",
        Children::Notes => "",
    }
}

/// A join that found the child already in `g`.
fn found(g: Group) -> (Group, String) {
    let gid = group_id(&g.key, g.generation);
    (g, gid)
}

fn child_ref(g: &Group, child: &str) -> IncidentRef {
    IncidentRef {
        id: format!("{CHILD}{}/{child}", group_id(&g.key, g.generation)),
        number: g.parent.as_ref().map_or_else(
            || format!("group {}", group_id(&g.key, g.generation)),
            |p| p.number.clone(),
        ),
    }
}

/// A child incident's reference: its membership and its own id
/// (`group:<group>/<child>/<incident id>`), under its own number.
fn child_incident_ref(g: &Group, child: &str, incident: &IncidentRef) -> IncidentRef {
    IncidentRef {
        id: format!(
            "{CHILD}{}/{child}/{}",
            group_id(&g.key, g.generation),
            incident.id
        ),
        number: incident.number.clone(),
    }
}

/// The group, child and child incident (if any) a child reference names.
fn parse_child(incident: &IncidentRef) -> Option<(&str, &str, Option<&str>)> {
    let (gid, rest) = incident.id.strip_prefix(CHILD)?.split_once('/')?;
    Some(match rest.split_once('/') {
        Some((child, own)) => (gid, child, Some(own)),
        None => (gid, rest, None),
    })
}

#[async_trait]
impl ItsmClient for Grouped {
    fn kind(&self) -> &'static str {
        self.itsm.kind()
    }

    fn create_settle_secs(&self) -> i64 {
        self.settle_secs()
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        let Some(plan) = &draft.group else {
            return self.itsm.create(draft).await;
        };
        let (g, gid) = self.join(draft, plan).await?;
        match g.policy.children {
            Children::Notes => Ok(child_ref(&g, &draft.correlation_key)),
            Children::Incidents => self.child_incident(draft, &g, &gid).await,
        }
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        // A grouped alert's membership, whose answer may have been lost (a
        // takeover looks before it joins again; a Resolved after it looks
        // for something to resolve): its marker names its group. An
        // alert's key only: the breaker's probe asks the ITSM alone.
        if correlation_key.starts_with("azmon-") {
            let (joined, _) = self.membership(correlation_key, (self.clock)()).await?;
            if let Some(g) = joined {
                if g.policy.children == Children::Incidents {
                    // Joined; its own incident may or may not exist yet.
                    let own = self.itsm.find(correlation_key).await?;
                    return Ok(own.map(|i| child_incident_ref(&g, correlation_key, &i)));
                }
                return Ok(Some(child_ref(&g, correlation_key)));
            }
        }
        self.itsm.find(correlation_key).await
    }

    async fn resolved_without_incident(&self, correlation_key: &str) -> Result<(), ItsmError> {
        // A child that joined and whose incident (`children: incidents`)
        // was not made before its alert resolved: counted out all the same.
        if correlation_key.starts_with("azmon-") {
            let (joined, _) = self.membership(correlation_key, (self.clock)()).await?;
            if let Some(g) = joined {
                let gid = group_id(&g.key, g.generation);
                self.leave(&gid, correlation_key).await?;
            }
        }
        self.itsm.resolved_without_incident(correlation_key).await
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        let Some((gid, child, own)) = parse_child(incident) else {
            return self.itsm.resolve(incident, resolution).await;
        };
        self.leave(gid, child).await?;
        // A child incident resolves with its alert (idempotent in effect:
        // the retry after a failure resolves it again, harmlessly). The
        // cascade from the parent resolves the children still firing; it
        // cannot reach one made after the parent was closed (a person
        // closed it before the bridge learnt of it), which this does.
        if let Some(id) = own {
            let own = IncidentRef {
                id: id.to_string(),
                number: incident.number.clone(),
            };
            self.itsm.resolve(&own, resolution).await?;
        }
        Ok(ResolveOutcome::Resolved)
    }

    async fn reopen(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        match parse_child(incident) {
            // The group's parent is not reopened for one child.
            Some(_) => Ok(()),
            None => self.itsm.reopen(incident, note).await,
        }
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        match parse_child(incident) {
            Some(_) => Ok(()),
            None => self.itsm.note(incident, note).await,
        }
    }

    async fn set_priority(
        &self,
        i: &IncidentRef,
        impact: u8,
        urgency: u8,
    ) -> Result<(), ItsmError> {
        match parse_child(i) {
            // The parent's priority is the group's business (the round).
            Some(_) => Ok(()),
            None => self.itsm.set_priority(i, impact, urgency).await,
        }
    }
}
