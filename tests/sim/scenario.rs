//! One seed's world before it runs: which ITSM, which alerts fire and
//! resolve when, which notifications Azure sends twice, how often each port
//! fails, when the ITSM is down or refusing. Everything follows from the
//! seed.

use itsm_bridge::domain::alert::text::rfc3339;
use itsm_bridge::domain::correlation::{body_digest, correlation_key};
use serde_json::json;

use crate::exec::{Class, Rates, Rng};

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
}

fn body(alert_id: &str, fired: bool, fired_at: i64, resolved_at: i64) -> Vec<u8> {
    let mut essentials = json!({
        "alertId": alert_id,
        "alertRule": "sim-rule",
        "severity": "Sev2",
        "signalType": "Metric",
        "monitorCondition": if fired { "Fired" } else { "Resolved" },
        "monitoringService": "Platform",
        "alertTargetIDs": ["/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/sim/providers/microsoft.compute/virtualmachines/vm1"],
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
/// duplicate deliveries).
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

impl Scenario {
    pub fn new(rng: &mut Rng, lag_max: i64, parts: &Without) -> Scenario {
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
        let mut alerts = Vec::new();
        let mut notifications = Vec::new();
        for i in 0..n {
            let manageable = !rng.chance(0.15) || !parts.has("activity");
            let id = if manageable {
                format!(
                    "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.AlertsManagement/alerts/00000000-0000-0000-0000-{:012}",
                    rng.below(1 << 40)
                )
            } else {
                format!(
                    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sim/providers/microsoft.insights/activityLogAlerts/sim-{i}-{}",
                    rng.below(1 << 30)
                )
            };
            let name = format!("A{i}");
            let fired_at = if rng.chance(0.6) {
                bursts[rng.below(bursts.len() as u64) as usize] + rng.range(0, 60)
            } else {
                rng.range(30, FAULT_PHASE - 300)
            };
            let copies = |rng: &mut Rng| {
                if rng.chance(0.2) && parts.has("copies") {
                    2
                } else {
                    1
                }
            };
            notifications.push(Notification {
                alert: i,
                fired: true,
                body: body(&id, true, START + fired_at, 0),
                digest: String::new(),
                send_at: fired_at,
                copies: copies(rng),
                late: false,
            });
            // Activity log and budget alerts never resolve.
            if manageable && rng.chance(0.6) {
                let late = rng.chance(0.1) && parts.has("late");
                let resolved_at = if late {
                    FAULT_PHASE + QUIET + TTL_SECS + 24 * 3600
                } else if rng.chance(0.45) {
                    // Resolved moments after Fired (a flapping metric): the
                    // two race.
                    fired_at + rng.range(1, 30)
                } else {
                    fired_at + rng.range(90, 2400)
                };
                notifications.push(Notification {
                    alert: i,
                    fired: false,
                    body: body(&id, false, START + fired_at, START + resolved_at),
                    digest: String::new(),
                    send_at: resolved_at,
                    copies: copies(rng),
                    late,
                });
            }
            alerts.push(AlertPlan {
                key: correlation_key(&id),
                id,
                name,
                manageable,
            });
        }
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
            lag_max,
            acknowledge: rng.chance(0.3),
        }
    }
}
