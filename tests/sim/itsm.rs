//! The ITSM: one backend holding every incident (what was created,
//! resolved, reopened, noted, and by whom), seen by each process through a
//! client of its own with a fault at every call. ServiceNow and BMC find an
//! incident the moment it is created; Jira's search lags its creates by a
//! seeded few seconds. The change feed is in `feed.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use itsm_bridge::domain::correlation::IncidentRef;
use itsm_bridge::domain::incident::mapping::{IncidentDraft, Resolution};
use itsm_bridge::domain::ports::{IncidentStatus, ItsmClient, ItsmError, ResolveOutcome};

use crate::exec::{Class, Ctx, Plan};
use crate::feed::Reading;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Bridge,
    Person,
}

#[derive(Debug, Clone)]
pub struct Incident {
    pub id: String,
    pub number: String,
    pub key: String,
    pub status: IncidentStatus,
    /// Who closed it first, while it is closed.
    pub closed_by: Option<Who>,
    /// Who closed it first, ever (a reopen does not forget it).
    pub first_closed_by: Option<Who>,
    pub updated_at: i64,
    pub updated_by: String,
    /// When its search shows it: Jira's index lags a create; a
    /// ServiceNow or BMC create its client gave up on commits late.
    pub searchable_at: i64,
    /// When it exists for anyone at all (a late ServiceNow or BMC commit).
    pub committed_at: i64,
    pub notes: u32,
    pub reopens: u32,
    /// The notes' texts, when written (a group's parent: its updates).
    pub journal: Vec<(i64, String)>,
    /// Every change to closed that took effect: when, by whom.
    pub closes: Vec<(i64, Who)>,
    /// A child incident's parent (its id), as ServiceNow's `parent_incident`.
    pub parent: Option<String>,
}

#[derive(Default)]
pub struct Backend {
    pub incidents: Vec<Incident>,
    /// Windows (from, until) in which every call fails (an outage).
    pub down: Vec<(i64, i64)>,
    /// Windows in which creates and resolves are refused (a
    /// misconfiguration someone fixes at the window's end).
    pub refusing: Vec<(i64, i64)>,
    /// Outside those windows, the chance that one call is refused.
    pub refuse_p: f64,
    /// Jira: the longest a create stays out of search.
    pub lag_max: i64,
    /// Every (incident id, updated_at) a feed page returned.
    pub seen: BTreeSet<(String, i64)>,
    /// The reads in progress, by reading task and window: the incidents
    /// in the window when the first page was read, and those seen since.
    pub readings: BTreeMap<(usize, i64, i64), Reading>,
    /// Incidents a round's pages skipped though they stayed in its window.
    pub skipped: Vec<(usize, String, i64)>,
}

impl Backend {
    fn within(windows: &[(i64, i64)], now: i64) -> bool {
        windows.iter().any(|(a, b)| (*a..*b).contains(&now))
    }

    /// A person resolves (or takes into work) incident `i`.
    pub fn person(&mut self, i: usize, resolve: bool, now: i64) {
        let inc = &mut self.incidents[i];
        if resolve {
            if inc.status != IncidentStatus::Closed {
                inc.closes.push((now, Who::Person));
            }
            inc.status = IncidentStatus::Closed;
            inc.closed_by = Some(Who::Person);
            inc.first_closed_by.get_or_insert(Who::Person);
            self.cascade(i, Who::Person, now);
        } else {
            inc.status = IncidentStatus::InProgress;
        }
        let inc = &mut self.incidents[i];
        inc.updated_at = now;
        inc.updated_by = "a.person".into();
    }

    /// ServiceNow's parent-child synchronisation: a parent resolved
    /// resolves its active children, by whoever resolved the parent.
    pub fn cascade(&mut self, parent: usize, who: Who, now: i64) {
        let id = self.incidents[parent].id.clone();
        for c in self.incidents.iter_mut() {
            if c.parent.as_deref() == Some(id.as_str()) && c.status != IncidentStatus::Closed {
                c.status = IncidentStatus::Closed;
                c.closes.push((now, who));
                c.closed_by = Some(who);
                c.first_closed_by.get_or_insert(who);
                c.updated_at = now;
                c.updated_by = match who {
                    Who::Person => "a.person".into(),
                    Who::Bridge => "itsm-bridge".into(),
                };
            }
        }
    }
}

pub struct SimItsm {
    pub kind: &'static str,
    pub(crate) backend: Arc<Mutex<Backend>>,
    pub(crate) ctx: Arc<Ctx>,
}

/// What the adapters declare as their create's settle time
/// (`create_settle_secs`): Jira's index lag; ServiceNow's and BMC's REST
/// transaction quota (a create its client gave up on may still commit
/// within 60 s). The same figures as the real clients.
const JIRA_SETTLE_SECS: i64 = 180;
const SERVICENOW_BMC_SETTLE_SECS: i64 = 65;
/// How long after its client gave up a ServiceNow or BMC create may commit.
const LATE_COMMIT_SECS: i64 = 60;

impl SimItsm {
    pub fn new(kind: &'static str, backend: Arc<Mutex<Backend>>, ctx: Arc<Ctx>) -> SimItsm {
        SimItsm { kind, backend, ctx }
    }

    pub(crate) fn backend(&self) -> std::sync::MutexGuard<'_, Backend> {
        self.backend.lock().expect("itsm lock")
    }

    /// What this call meets beyond the dice: an outage, a refusal.
    fn forced(&self, refusable: bool) -> Option<Plan> {
        if !self.ctx.faults_on() {
            return None;
        }
        let now = self.ctx.now();
        let b = self.backend();
        if Backend::within(&b.down, now) {
            return Some(Plan::Fail);
        }
        let refuse_p = b.refuse_p;
        let refusing = Backend::within(&b.refusing, now);
        drop(b);
        (refusable && (refusing || self.ctx.rng(|r| r.chance(refuse_p)))).then_some(Plan::Refuse)
    }

    pub(crate) async fn call<T>(
        &self,
        (op, subject): (&str, &str),
        refusable: bool,
        effect: impl FnOnce() -> T,
        describe: impl Fn(&T) -> String,
    ) -> Result<T, ItsmError> {
        let forced = self.forced(refusable);
        self.ctx
            .call(Class::Itsm, (op, subject), forced, effect, |t| {
                Some(describe(t))
            })
            .await
            .map_err(|plan| match plan {
                Plan::Refuse => ItsmError::Rejected {
                    status: 400,
                    message: "simulated refusal".into(),
                },
                Plan::Throttle => ItsmError::Throttled {
                    message: "simulated 429".into(),
                    retry_after: Some(Duration::from_secs(30)),
                },
                // The request went out and no answer came: it may have
                // taken effect (as the real clients report a time-out).
                Plan::Lost => ItsmError::Unanswered("simulated time-out".into()),
                other => ItsmError::Unavailable(format!("simulated {other:?}")),
            })
    }

    fn number(&self, n: usize) -> (String, String) {
        match self.kind {
            "jira" => (format!("{}", 10_000 + n), format!("OPS-{n}")),
            "bmc-helix" => (format!("{:015}", n), format!("INC{:012}", n)),
            _ => (format!("{:032x}", n + 0xabc0), format!("INC{:07}", n)),
        }
    }
}

#[async_trait]
impl ItsmClient for SimItsm {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn set_priority(&self, _: &IncidentRef, _: u8, _: u8) -> Result<(), ItsmError> {
        Ok(())
    }

    fn create_settle_secs(&self) -> i64 {
        if self.kind == "jira" {
            JIRA_SETTLE_SECS
        } else {
            SERVICENOW_BMC_SETTLE_SECS
        }
    }

    async fn create(&self, draft: &IncidentDraft) -> Result<IncidentRef, ItsmError> {
        if draft.parent.is_some() && self.kind != "servicenow" {
            return Err(ItsmError::Rejected {
                status: 0,
                message: "no child incidents".into(),
            });
        }
        let key = draft.correlation_key.clone();
        let name = self.ctx.name(&key);
        let created = self
            .call(
                ("itsm.create", &name),
                true,
                || {
                    let now = self.ctx.now();
                    let lag = if self.kind == "jira" {
                        let max = self.backend().lag_max;
                        self.ctx.rng(|r| r.range(0, max))
                    } else {
                        0
                    };
                    let mut b = self.backend();
                    let n = b.incidents.len() + 1;
                    let (id, number) = self.number(n);
                    // By the parent's number, as the real client sends it.
                    let parent = draft.parent.as_ref().map(|p| {
                        let found = b.incidents.iter().find(|i| i.number == p.number);
                        found.map_or_else(String::new, |i| i.id.clone())
                    });
                    b.incidents.push(Incident {
                        id: id.clone(),
                        number: number.clone(),
                        key: key.clone(),
                        status: IncidentStatus::Open,
                        closed_by: None,
                        first_closed_by: None,
                        updated_at: now,
                        updated_by: "itsm-bridge".into(),
                        searchable_at: now + lag,
                        committed_at: now,
                        notes: 0,
                        reopens: 0,
                        journal: Vec::new(),
                        closes: Vec::new(),
                        parent,
                    });
                    IncidentRef { id, number }
                },
                |i| i.number.clone(),
            )
            .await;
        // A ServiceNow or BMC create whose client gave up may commit up to
        // a minute later: until then nothing shows it. (This runs in the
        // same poll as the create's effect: nothing comes between.)
        if matches!(created, Err(ItsmError::Unanswered(_))) && self.kind != "jira" {
            let late = self.ctx.rng(|r| r.range(0, LATE_COMMIT_SECS));
            let now = self.ctx.now();
            if let Some(i) = self
                .backend()
                .incidents
                .iter_mut()
                .rev()
                .find(|i| i.key == key)
            {
                i.searchable_at = now + late;
                i.committed_at = now + late;
                i.updated_at = now + late;
            }
        }
        created
    }

    async fn find(&self, correlation_key: &str) -> Result<Option<IncidentRef>, ItsmError> {
        let name = self.ctx.name(correlation_key);
        self.call(
            ("itsm.find", &name),
            false,
            || {
                let now = self.ctx.now();
                self.backend()
                    .incidents
                    .iter()
                    .find(|i| i.key == correlation_key && i.searchable_at <= now)
                    .map(|i| IncidentRef {
                        id: i.id.clone(),
                        number: i.number.clone(),
                    })
            },
            |f| f.as_ref().map_or("none".into(), |i| i.number.clone()),
        )
        .await
    }

    async fn resolve(
        &self,
        incident: &IncidentRef,
        _resolution: &Resolution,
    ) -> Result<ResolveOutcome, ItsmError> {
        self.call(
            ("itsm.resolve", &incident.number),
            true,
            || {
                let now = self.ctx.now();
                let mut b = self.backend();
                let Some(i) = b.incidents.iter().position(|i| i.id == incident.id) else {
                    return ResolveOutcome::NotFound;
                };
                let inc = &mut b.incidents[i];
                if inc.status == IncidentStatus::Closed {
                    return ResolveOutcome::AlreadyClosed;
                }
                inc.status = IncidentStatus::Closed;
                inc.closes.push((now, Who::Bridge));
                inc.closed_by = Some(Who::Bridge);
                inc.first_closed_by.get_or_insert(Who::Bridge);
                inc.updated_at = now;
                inc.updated_by = "itsm-bridge".into();
                b.cascade(i, Who::Bridge, now);
                ResolveOutcome::Resolved
            },
            |o| format!("{o:?}"),
        )
        .await
    }

    async fn reopen(&self, incident: &IncidentRef, _note: &str) -> Result<(), ItsmError> {
        self.call(
            ("itsm.reopen", &incident.number),
            true,
            || {
                let now = self.ctx.now();
                let mut b = self.backend();
                let Some(inc) = b.incidents.iter_mut().find(|i| i.id == incident.id) else {
                    return Err(ItsmError::Rejected {
                        status: 404,
                        message: "no such incident".into(),
                    });
                };
                inc.status = IncidentStatus::InProgress;
                inc.closed_by = None;
                inc.reopens += 1;
                inc.notes += 1;
                inc.updated_at = now;
                inc.updated_by = "itsm-bridge".into();
                Ok(())
            },
            |r| format!("{r:?}"),
        )
        .await?
    }

    async fn note(&self, incident: &IncidentRef, note: &str) -> Result<(), ItsmError> {
        // A group's update names itself by its number.
        let update = note
            .strip_prefix("itsm-bridge group ")
            .and_then(|s| s.split(':').next())
            .unwrap_or("");
        self.call(
            ("itsm.note", &format!("{} {update}", incident.number)),
            true,
            || {
                let now = self.ctx.now();
                let mut b = self.backend();
                let Some(inc) = b.incidents.iter_mut().find(|i| i.id == incident.id) else {
                    return Err(ItsmError::Rejected {
                        status: 404,
                        message: "no such incident".into(),
                    });
                };
                inc.notes += 1;
                inc.journal.push((now, note.to_string()));
                inc.updated_at = now;
                Ok(())
            },
            |r| format!("{r:?}"),
        )
        .await?
    }
}
