//! Azure's side of the sync role: Alerts Management's alert states. Each
//! alert counts the state changes that took effect, whatever the caller
//! heard. Alerts Management keeps alerts 30 days (then 404), and takes only
//! its own ids (`…/Microsoft.AlertsManagement/alerts/…`): an activity log
//! or budget alert id is refused (400), however often it is asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use itsm_bridge::domain::ports::{AlertState, AlertStates, AzureError};

use crate::exec::{Class, Ctx, Plan};

const RETENTION_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct AzureAlert {
    pub fired_at: i64,
    pub state: AlertState,
    /// Changes to Closed and to Acknowledged that took effect.
    pub closes: u32,
    pub acks: u32,
}

pub struct SimAzure {
    pub alerts: Mutex<BTreeMap<String, AzureAlert>>,
    ctx: Arc<Ctx>,
}

/// Whether Alerts Management takes this id at all.
pub fn manageable(alert_id: &str) -> bool {
    alert_id.contains("/providers/Microsoft.AlertsManagement/alerts/")
}

impl SimAzure {
    pub fn new(ctx: Arc<Ctx>) -> SimAzure {
        SimAzure {
            alerts: Mutex::default(),
            ctx,
        }
    }

    /// Azure raises the alert (its first Fired).
    pub fn raise(&self, alert_id: &str, now: i64) {
        self.alerts
            .lock()
            .expect("azure lock")
            .entry(alert_id.to_string())
            .or_insert(AzureAlert {
                fired_at: now,
                state: AlertState::New,
                closes: 0,
                acks: 0,
            });
    }

    pub fn get(&self, alert_id: &str) -> Option<AzureAlert> {
        self.alerts
            .lock()
            .expect("azure lock")
            .get(alert_id)
            .cloned()
    }

    /// What Alerts Management answers for the id before any state is read.
    fn refusal(&self, alert_id: &str) -> Option<AzureError> {
        if !manageable(alert_id) {
            return Some(AzureError::Rejected {
                status: 400,
                message: "InvalidResourceType: not an Alerts Management alert".into(),
            });
        }
        let now = self.ctx.now();
        match self.get(alert_id) {
            Some(a) if now - a.fired_at < RETENTION_SECS => None,
            _ => Some(AzureError::NotFound),
        }
    }

    fn error(plan: Plan) -> AzureError {
        match plan {
            Plan::Throttle => AzureError::Throttled {
                retry_after: Some(Duration::from_secs(60)),
            },
            other => AzureError::Unavailable(format!("simulated {other:?}")),
        }
    }
}

fn described<T: std::fmt::Debug>(r: &Result<T, AzureError>) -> Option<String> {
    Some(match r {
        Ok(t) => format!("{t:?}"),
        Err(e) => e.to_string(),
    })
}

#[async_trait]
impl AlertStates for SimAzure {
    async fn current(&self, alert_id: &str) -> Result<AlertState, AzureError> {
        let name = self.ctx.name(alert_id);
        self.ctx
            .call(
                Class::Azure,
                ("azure.current", &name),
                None,
                || {
                    if let Some(e) = self.refusal(alert_id) {
                        return Err(e);
                    }
                    Ok(self.get(alert_id).map_or(AlertState::New, |a| a.state))
                },
                described,
            )
            .await
            .map_err(Self::error)?
    }

    async fn change(
        &self,
        alert_id: &str,
        state: AlertState,
        _comment: &str,
    ) -> Result<(), AzureError> {
        let subject = format!("{} {}", self.ctx.name(alert_id), state.as_str());
        self.ctx
            .call(
                Class::Azure,
                ("azure.change", &subject),
                None,
                || {
                    if let Some(e) = self.refusal(alert_id) {
                        return Err(e);
                    }
                    let mut alerts = self.alerts.lock().expect("azure lock");
                    let a = alerts.get_mut(alert_id).expect("raised");
                    a.state = state;
                    match state {
                        AlertState::Closed => a.closes += 1,
                        AlertState::Acknowledged => a.acks += 1,
                        AlertState::New => {}
                    }
                    Ok(())
                },
                described,
            )
            .await
            .map_err(Self::error)?
    }
}
