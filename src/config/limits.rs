//! Settings that bound one another, checked together at start: how long one
//! attempt at the ITSM can take, and how long a correlation record must
//! outlive the queue that may still hold its alert's notifications. Each
//! error names the variable, its value, the range it must be in and why.

use std::time::Duration;

use super::itsm::{ItsmConfig, attempt_timeout};
use super::{ConfigError, Env, err};

/// The worst case of one state machine attempt: every request it makes
/// taking the whole `ITSM_TIMEOUT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// One request's time limit (`ITSM_TIMEOUT_MS`).
    pub timeout: Duration,
    /// The most requests one attempt makes, and which.
    pub requests: u32,
    pub why: &'static str,
}

impl Attempt {
    /// `child_incidents`: a routing rule groups with `children: incidents`.
    pub fn from_env(
        env: &Env,
        itsm: &ItsmConfig,
        child_incidents: bool,
    ) -> Result<Attempt, ConfigError> {
        let (requests, why) = itsm.requests_per_attempt(child_incidents);
        Ok(Attempt {
            timeout: attempt_timeout(env)?,
            requests,
            why,
        })
    }

    /// The longest one attempt can take.
    pub fn longest(&self) -> Duration {
        self.timeout.saturating_mul(self.requests.max(1))
    }

    /// The arithmetic, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "ITSM_TIMEOUT_MS ({}) × {} requests ({}) = {} ms",
            self.timeout.as_millis(),
            self.requests,
            self.why,
            self.longest().as_millis()
        )
    }
}

/// Azure keeps an alert 30 days; SQS keeps a message 14 days at most in the
/// delivery queue and 14 more in the dead-letter queue (a FIFO queue's
/// message starts its retention afresh when it is dead-lettered).
pub const MIN_SHARED_TTL_DAYS: u64 = 30;
const MAX_TTL_DAYS: u64 = 3650;

/// `RECORD_TTL_DAYS`, in seconds. A finished record must outlive every
/// notification of its alert that the queues may still hold (a repeated
/// Fired that finds no record opens a second incident) and, with the sync
/// role, the Azure alert it closes.
pub fn record_ttl_secs(env: &Env, queue: bool, sync: bool) -> Result<i64, ConfigError> {
    const VAR: &str = "RECORD_TTL_DAYS";
    let days = env.number(VAR, 90)?;
    let (min, why) = if queue {
        (
            MIN_SHARED_TTL_DAYS,
            "with a delivery queue a notification can wait 14 days in it and 14 more in the \
             dead-letter queue, and a repeated Fired delivered after its alert's record expired \
             would open a second incident",
        )
    } else if sync {
        (
            MIN_SHARED_TTL_DAYS,
            "Azure keeps an alert 30 days, and the sync role finds it only through its record",
        )
    } else {
        (
            1,
            "a record that expires at once lets a repeated Fired open a second incident",
        )
    };
    if !(min..=MAX_TTL_DAYS).contains(&days) {
        return Err(err(
            VAR,
            format!("{days} must be {min} to {MAX_TTL_DAYS}: {why}"),
        ));
    }
    Ok(days as i64 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let vars = vars.to_vec();
        // The last setting of a variable wins.
        move |k: &str| {
            vars.iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_short_ttl_is_refused_where_a_queue_or_azure_outlives_it() {
        let seven = env(&[("RECORD_TTL_DAYS", "7")]);
        let seven = Env::new(&seven);
        assert_eq!(record_ttl_secs(&seven, false, false), Ok(7 * 86_400));
        for (queue, sync, reason) in [
            (true, false, "dead-letter queue"),
            (false, true, "Azure keeps an alert 30 days"),
        ] {
            let e = record_ttl_secs(&seven, queue, sync).unwrap_err();
            assert_eq!(e.var, "RECORD_TTL_DAYS");
            assert!(
                e.problem.starts_with("7 must be 30 to 3650") && e.problem.contains(reason),
                "{e}"
            );
        }
        let zero = env(&[("RECORD_TTL_DAYS", "0")]);
        assert!(record_ttl_secs(&Env::new(&zero), false, false).is_err());
        let unset = env(&[]);
        assert_eq!(
            record_ttl_secs(&Env::new(&unset), true, true),
            Ok(90 * 86_400)
        );
    }

    fn load(vars: &[(&'static str, &'static str)]) -> Result<super::super::Config, ConfigError> {
        let mut all = vec![
            ("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
            ("ENTRA_AUDIENCES", "api://itsm-bridge"),
            ("ITSM_TIMEOUT_MS", "2000"),
        ];
        all.extend_from_slice(vars);
        let lookup = env(&all);
        super::super::Config::from_env(&Env::new(&lookup))
    }

    #[test]
    fn the_retry_policy_leaves_room_for_every_request_of_an_attempt() {
        let servicenow = [
            ("SERVICENOW_INSTANCE_URL", "https://dev1.service-now.com"),
            ("SERVICENOW_USERNAME", "bridge"),
            ("SERVICENOW_PASSWORD", "pw"),
        ];
        let oauth = [
            ("SERVICENOW_INSTANCE_URL", "https://dev1.service-now.com"),
            ("SERVICENOW_CLIENT_ID", "cid"),
            ("SERVICENOW_CLIENT_SECRET", "cs"),
        ];
        let bmc = [
            ("ITSM_KIND", "bmc-helix"),
            ("BMC_URL", "https://acme-restapi.onbmc.com"),
            ("BMC_USERNAME", "u"),
            ("BMC_PASSWORD", "p"),
        ];
        let jira = [
            ("ITSM_KIND", "jira"),
            ("JIRA_URL", "https://acme.atlassian.net"),
            ("JIRA_PROJECT", "OPS"),
            ("JIRA_EMAIL", "bridge@example.com"),
            ("JIRA_API_TOKEN", "t"),
        ];
        let cases: [(&[(&str, &str)], u64); 4] = [
            (&servicenow, 4000),
            (&oauth, 6000),
            (&bmc, 8000),
            (&jira, 6000),
        ];
        for (vars, ms) in cases {
            let c = load(vars).unwrap();
            assert_eq!(
                c.settings.retry.attempt,
                Duration::from_millis(ms),
                "{vars:?}"
            );
        }
        let e = load(&[
            servicenow[0],
            servicenow[1],
            servicenow[2],
            ("ITSM_TIMEOUT_MS", "0"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "ITSM_TIMEOUT_MS");
    }

    #[test]
    fn the_record_ttl_is_held_to_the_queue_and_reaches_the_sync_role() {
        let base = [
            ("ITSM_DRY_RUN", "true"),
            ("AZURE_CLIENT_ID", "11112222-bbbb-3333-cccc-4444dddd5555"),
            ("AZURE_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
            ("AZURE_CLIENT_SECRET", "s"),
        ];
        let c = load(&[
            base[0],
            base[1],
            base[2],
            base[3],
            ("RECORD_TTL_DAYS", "45"),
        ])
        .unwrap();
        assert_eq!(c.settings.ttl_secs, 45 * 86_400);
        // Queued work holds its alert while any SQS queue may hold its message.
        assert_eq!(c.settings.queue_horizon_secs, 15 * 86_400);
        assert_eq!(c.sync.unwrap().settings.record_ttl_secs, 45 * 86_400);
        let e = load(&[
            base[0],
            (
                "DELIVERY_QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/d.fifo",
            ),
            ("RECORD_TTL_DAYS", "14"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "RECORD_TTL_DAYS");
    }
}
