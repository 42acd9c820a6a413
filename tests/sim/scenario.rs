//! One seed's world before it runs: which ITSM, which alerts fire and
//! resolve when, which notifications Azure sends twice, how often each port
//! fails, when the ITSM is down or refusing. Everything follows from the
//! seed.

use itsm_bridge::domain::alert::text::rfc3339;
use itsm_bridge::domain::correlation::{body_digest, correlation_key};
use itsm_bridge::domain::incident::group_policy::GroupPolicy;
use serde_json::json;

use crate::exec::{Class, Rates, Rng};

/// The resource every ungrouped seed's alerts are about.
const TARGET: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/sim/providers/microsoft.compute/virtualmachines/";

/// Where the simulated clock starts (Unix seconds, 2027).
pub const START: i64 = 1_800_000_000;
/// Faults are injected from the start until this long after.
pub const FAULT_PHASE: i64 = 3600;
/// After the last fault, everything must have settled within this long
/// (the bound: the worker's longest backoff, 30 min, plus the queue's
/// visibility timeout, 18 min, plus a few sync rounds).
pub const QUIET: i64 = 3600;
/// Records live this long unless kept (RECORD_TTL_DAYS' default).
pub const TTL_SECS: i64 = 90 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct AlertPlan {
    pub id: String,
    pub name: String,
    pub key: String,
    /// Alerts Management takes its id (not an activity log or budget alert).
    pub manageable: bool,
    /// The grouping rule that takes it (`Grouping::rules`), if any.
    pub group: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Notification {
    pub alert: usize,
    pub fired: bool,
    pub body: Vec<u8>,
    pub digest: String,
    /// When Azure first sends it (seconds since the start).
    pub send_at: i64,
    /// How many times Azure sends it (several action groups).
    pub copies: u8,
    /// Sent after the records' lifetime (an alert open for months).
    pub late: bool,
}

pub struct Scenario {
    pub kind: &'static str,
    pub alerts: Vec<AlertPlan>,
    pub notifications: Vec<Notification>,
    pub rates: Vec<(Class, Rates)>,
    pub down: Vec<(i64, i64)>,
    pub refusing: Vec<(i64, i64)>,
    pub refuse_p: f64,
    pub lag_max: i64,
    pub acknowledge: bool,
    pub page_size: usize,
    pub person: bool,
    /// Grouped routes: the rules and which alerts they group (`None`: this
    /// seed's routing groups nothing).
    pub grouping: Option<Grouping>,
}

/// One routing rule with a `group` object.
#[derive(Debug, Clone)]
pub struct GroupRule {
    /// Its short name in the trace (`G0`).
    pub name: String,
    /// The `alertRule` its alerts carry, which the rule matches.
    pub alert_rule: String,
    pub policy: GroupPolicy,
}

/// A grouped seed's routing: one or two rules grouping alerts by their
/// alert rule, each with its own window, age, resolve policy, update
/// interval and listing cap; other alerts match no rule.
#[derive(Debug, Clone)]
pub struct Grouping {
    pub rules: Vec<GroupRule>,
    /// The routing document, as `ROUTING_RULES` would hold it.
    pub json: String,
}

/// Whether seed `seed` runs with grouped routes: every third seed, or
/// every seed (`SIM_GROUPS=all`), or none (`SIM_GROUPS=none`,
/// `SIM_WITHOUT=groups`).
pub fn grouped(seed: u64, parts: &Without) -> bool {
    match std::env::var("SIM_GROUPS").as_deref() {
        Ok("all") => true,
        Ok("none") => false,
        _ => parts.has("groups") && seed.is_multiple_of(3),
    }
}

impl Grouping {
    /// The rules, drawn from `g` (the grouping's own generator, so that
    /// the rest of the seed's world is what it would be without them).
    fn new(g: &mut Rng, kind: &str) -> Grouping {
        let rules: Vec<GroupRule> = (0..g.range(1, 2))
            .map(|i| {
                let window = g.range(60, 900);
                let resolve = match g.below(4) {
                    0 | 1 => "all",
                    2 => "first",
                    _ => "never",
                };
                let listed = if g.chance(0.3) { g.range(2, 6) } else { 200 };
                // ServiceNow child incidents for half of ServiceNow's groups,
                // chosen from what was drawn (not a draw of its own: every
                // seed's world stays what it was, earlier findings' seeds too).
                let children = if kind == "servicenow" && window % 2 == 1 {
                    "incidents"
                } else {
                    "notes"
                };
                let policy = json!({
                    "children": children,
                    "by": ["alert_rule", "resource_group"],
                    "window_secs": window,
                    "max_age_secs": g.range(window, 3600),
                    "resolve": resolve,
                    "notes_every_secs": g.range(20, 300),
                    "max_listed": listed,
                });
                GroupRule {
                    name: format!("G{i}"),
                    alert_rule: format!("sim-storm-{i}"),
                    policy: serde_json::from_value(policy).expect("a group policy"),
                }
            })
            .collect();
        let json = json!({
            "rules": rules.iter().map(|r| json!({
                "name": r.name,
                "match": {"alert_rule": r.alert_rule},
                "set": {"assignment_group": "Compute"},
                "group": r.policy,
            })).collect::<Vec<_>>(),
            "default": {"assignment_group": "Cloud Operations"},
        })
        .to_string();
        Grouping { rules, json }
    }

    /// The rule that takes one of the seed's own alerts, if any.
    fn pick(&self, g: &mut Rng) -> Option<usize> {
        match g.below(10) {
            0..=4 => Some(0),
            5..=7 if self.rules.len() > 1 => Some(1),
            _ => None,
        }
    }
}

fn body(
    alert_id: &str,
    (rule, target): (&str, &str),
    fired: bool,
    fired_at: i64,
    resolved_at: i64,
) -> Vec<u8> {
    let mut essentials = json!({
        "alertId": alert_id,
        "alertRule": rule,
        "severity": "Sev2",
        "signalType": "Metric",
        "monitorCondition": if fired { "Fired" } else { "Resolved" },
        "monitoringService": "Platform",
        "alertTargetIDs": [format!("{TARGET}{target}")],
        "firedDateTime": rfc3339(fired_at),
        "description": "simulated",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0"
    });
    if !fired {
        essentials["resolvedDateTime"] = json!(rfc3339(resolved_at));
    }
    serde_json::to_vec(&json!({
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": {}}
    }))
    .expect("json")
}

/// Parts of the world a run can leave out (`SIM_WITHOUT=a,b`), to tell
/// which part a failure needs: `activity` (alerts Azure cannot close),
/// `late` (alerts resolving after the records' lifetime), `refusal` (the
/// ITSM refusing), `jira`, `crash`, `lost` (lost answers), `paging` (pages
/// large enough to hold every change), `person`, `copies` (Azure's
/// duplicate deliveries), `groups` (grouped routes).
#[derive(Debug, Clone, Default)]
pub struct Without(pub Vec<String>);

impl Without {
    pub fn from_env() -> Without {
        Without(
            std::env::var("SIM_WITHOUT")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    pub fn has(&self, part: &str) -> bool {
        !self.0.iter().any(|p| p == part)
    }
}

/// When an alert fires and whether Azure sends its Fired twice.
struct Fired {
    at: i64,
    copies: bool,
}

fn alert_id(rng: &mut Rng, i: usize, manageable: bool) -> String {
    if manageable {
        format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement/alerts/00000000-0000-0000-0000-{:012}",
            rng.below(1 << 40)
        )
    } else {
        format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sim/providers/microsoft.insights/activityLogAlerts/sim-{i}-{}",
            rng.below(1 << 30)
        )
    }
}

/// Adds an alert and its notifications: its Fired, and its Resolved
/// (when, whether sent twice, whether past the records' lifetime) if it
/// resolves. A grouped alert carries its rule's `alertRule` and a target
/// of its own (the name the parent's updates give it).
fn add(
    alerts: &mut Vec<AlertPlan>,
    notifications: &mut Vec<Notification>,
    plan: AlertPlan,
    g: &Option<(Grouping, &mut Rng)>,
    fired: Fired,
    resolved: Option<(i64, bool, bool)>,
) {
    let alert = alerts.len();
    let rule = match (plan.group, g) {
        (Some(r), Some((grouping, _))) => grouping.rules[r].alert_rule.clone(),
        _ => "sim-rule".into(),
    };
    let target = match g {
        Some(_) => format!("vm-{}", plan.name),
        None => "vm1".into(),
    };
    let tag = (rule.as_str(), target.as_str());
    let start = START + fired.at;
    notifications.push(Notification {
        alert,
        fired: true,
        body: body(&plan.id, tag, true, start, 0),
        digest: String::new(),
        send_at: fired.at,
        copies: 1 + u8::from(fired.copies),
        late: false,
    });
    if let Some((at, copies, late)) = resolved {
        notifications.push(Notification {
            alert,
            fired: false,
            body: body(&plan.id, tag, false, start, START + at),
            digest: String::new(),
            send_at: at,
            copies: 1 + u8::from(copies),
            late,
        });
    }
    alerts.push(plan);
}

impl Scenario {
    /// `grouping`: the grouping's own generator, in a grouped seed.
    pub fn new(
        rng: &mut Rng,
        lag_max: i64,
        parts: &Without,
        grouping: Option<&mut Rng>,
    ) -> Scenario {
        let kind = ["servicenow", "bmc-helix", "jira"][rng.below(3) as usize];
        let kind = if kind == "jira" && !parts.has("jira") {
            "servicenow"
        } else {
            kind
        };
        let n = rng.range(3, 10) as usize;
        // Alerts come in bursts (one cause, many alerts) and alone.
        let bursts: Vec<i64> = (0..rng.range(1, 3))
            .map(|_| rng.range(30, FAULT_PHASE - 400))
            .collect();
        let mut g = grouping.map(|g| (Grouping::new(g, kind), g));
        let mut alerts = Vec::new();
        let mut notifications = Vec::new();
        for i in 0..n {
            let manageable = !rng.chance(0.15) || !parts.has("activity");
            let id = alert_id(rng, i, manageable);
            let fired_at = if rng.chance(0.6) {
                bursts[rng.below(bursts.len() as u64) as usize] + rng.range(0, 60)
            } else {
                rng.range(30, FAULT_PHASE - 300)
            };
            let copies = rng.chance(0.2) && parts.has("copies");
            let fired = Fired {
                at: fired_at,
                copies,
            };
            // Activity log and budget alerts never resolve.
            let resolved = (manageable && rng.chance(0.6)).then(|| {
                let late = rng.chance(0.1) && parts.has("late");
                let at = if late {
                    FAULT_PHASE + QUIET + TTL_SECS + 24 * 3600
                } else if rng.chance(0.45) {
                    // Resolved moments after Fired (a flapping metric): the
                    // two race.
                    fired_at + rng.range(1, 30)
                } else {
                    fired_at + rng.range(90, 2400)
                };
                let copies = rng.chance(0.2) && parts.has("copies");
                (at, copies, late)
            });
            let group = g.as_mut().and_then(|(grouping, g)| grouping.pick(g));
            let plan = AlertPlan {
                key: correlation_key(&id),
                name: format!("A{i}"),
                id,
                manageable,
                group,
            };
            add(&mut alerts, &mut notifications, plan, &g, fired, resolved);
        }
        // A grouped seed's storm: several alerts of the first grouped rule
        // within a minute (concurrent first alerts on different processes,
        // Azure's duplicates), most resolving together a while later, some
        // within seconds, one now and then only months later.
        let mut storm = Vec::new();
        if let Some((_, gr)) = g.as_mut() {
            let at = gr.range(30, FAULT_PHASE - 900);
            let settles = at + gr.range(300, 1500);
            for j in 0..gr.range(3, 8) as usize {
                let i = n + j;
                let manageable = !gr.chance(0.1) || !parts.has("activity");
                let id = alert_id(gr, i, manageable);
                let fired_at = at + gr.range(0, 40);
                let fired = Fired {
                    at: fired_at,
                    copies: gr.chance(0.25) && parts.has("copies"),
                };
                let resolved = (manageable && gr.chance(0.75)).then(|| {
                    let late = gr.chance(0.05) && parts.has("late");
                    let when = if late {
                        FAULT_PHASE + QUIET + TTL_SECS + 24 * 3600
                    } else if gr.chance(0.3) {
                        fired_at + gr.range(1, 30)
                    } else {
                        settles + gr.range(0, 120)
                    };
                    (when, gr.chance(0.25) && parts.has("copies"), late)
                });
                let plan = AlertPlan {
                    key: correlation_key(&id),
                    name: format!("A{i}"),
                    id,
                    manageable,
                    group: Some(0),
                };
                storm.push((plan, fired, resolved));
            }
        }
        for (plan, fired, resolved) in storm {
            add(&mut alerts, &mut notifications, plan, &g, fired, resolved);
        }
        let grouping = g.map(|(grouping, _)| grouping);
        for n in &mut notifications {
            n.digest = body_digest(&n.body);
        }
        let s = 0.3 + rng.below(13) as f64 / 10.0;
        let crash = if parts.has("crash") { 0.01 * s } else { 0.0 };
        let lost = |p: f64| if parts.has("lost") { p * s } else { 0.0 };
        let rates = vec![
            (
                Class::Store,
                Rates {
                    fail: 0.03 * s,
                    lost: lost(0.01),
                    crash,
                    slow: 0.02 * s,
                    throttle: 0.0,
                },
            ),
            (
                Class::Itsm,
                Rates {
                    fail: 0.05 * s,
                    lost: lost(0.03),
                    crash,
                    slow: 0.05 * s,
                    throttle: 0.01 * s,
                },
            ),
            (
                Class::Queue,
                Rates {
                    fail: 0.03 * s,
                    lost: lost(0.01),
                    crash,
                    slow: 0.06 * s,
                    throttle: 0.0,
                },
            ),
            (
                Class::Azure,
                Rates {
                    fail: 0.05 * s,
                    lost: lost(0.03),
                    crash,
                    slow: 0.02 * s,
                    throttle: 0.02 * s,
                },
            ),
        ];
        let window = |rng: &mut Rng, lo, hi| {
            let from = rng.range(0, FAULT_PHASE - 60);
            (from, (from + rng.range(lo, hi)).min(FAULT_PHASE))
        };
        let down = (0..rng.below(3)).map(|_| window(rng, 120, 1200)).collect();
        let refusals = parts.has("refusal");
        let refusing = (0..u64::from(rng.chance(0.3) && refusals))
            .map(|_| window(rng, 60, 600))
            .collect();
        Scenario {
            kind,
            alerts,
            notifications,
            rates,
            down,
            refusing,
            refuse_p: if rng.chance(0.5) && refusals {
                0.01
            } else {
                0.0
            },
            page_size: if parts.has("paging") { 3 } else { 1000 },
            person: parts.has("person"),
            grouping,
            lag_max,
            acknowledge: rng.chance(0.3),
        }
    }
}
