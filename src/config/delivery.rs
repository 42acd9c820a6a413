//! Store and forward settings: the delivery queue, the inline budget, the
//! ITSM's breaker and the worker's pacing.

use std::time::Duration;

use super::limits::Attempt;
use super::{ConfigError, Env, err};
use crate::domain::delivery::WorkerPolicy;
use crate::domain::delivery::breaker::BreakerPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    /// No queue: a transient ITSM failure is a 503 and Azure retries.
    None,
    /// `DELIVERY_QUEUE_URL`: an SQS FIFO queue; `DEAD_LETTER_QUEUE_URL` is
    /// where the worker parks what the ITSM keeps refusing.
    Sqs {
        url: String,
        dead_letter_url: Option<String>,
    },
    /// The embedded store's outbox (replay; `replay --drain` delivers it).
    Outbox,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    pub queue: QueueConfig,
    /// `INLINE_BUDGET_MS`: how long the webhook tries the ITSM before queuing.
    pub inline_budget: Duration,
    /// `BREAKER_PROBE_SECS`, `BREAKER_PROBE_MAX_SECS`: once the ITSM is
    /// down, how often one probe asks whether it is back.
    pub breaker: BreakerPolicy,
    /// `WORKER_EVENT_SOURCE_MAPPING`: the UUID of the worker's SQS event
    /// source mapping, which the scheduled round pauses while the ITSM is down.
    pub event_source_mapping: Option<String>,
    /// `ITSM_MAX_RPS` over `WORKER_MAX_CONCURRENCY`, in calls per 1,000
    /// seconds: how fast this container's queued deliveries call the ITSM
    /// (`None`: unpaced).
    pub pace_per_ks: Option<u64>,
    /// What pacing adds to one attempt of a queued delivery at most: the
    /// wait before each of its requests. The worker's retries and the
    /// start-up checks count it, so that a paced attempt still ends within
    /// the worker's deadline, its claim's lease and the function's timeout.
    pub paced_wait: Duration,
    /// `WORKER_DEADLINE_MS`: how long the worker tries one notification.
    pub worker_deadline: Duration,
    /// `WORKER_BACKOFF_BASE_SECS`, `WORKER_BACKOFF_MAX_SECS`: a failed
    /// delivery is retried after base × 2^(receives − 1), at most max.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// `WORKER_PERMANENT_ATTEMPTS`: refusals in a row (4xx) of a
    /// notification before it is parked in the dead-letter queue.
    pub permanent_attempts: u32,
    /// `QUEUE_MAX_RECEIVE_COUNT`, the queue's redrive policy: on that
    /// receive the worker parks what still fails itself (SQS would move it
    /// without telling the record).
    pub max_receives: Option<u32>,
}

/// No queue, and the documented defaults.
impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue: QueueConfig::None,
            inline_budget: Duration::from_millis(4000),
            breaker: BreakerPolicy::default(),
            event_source_mapping: None,
            pace_per_ks: None,
            paced_wait: Duration::ZERO,
            worker_deadline: Duration::from_millis(20_000),
            backoff_base_secs: 30,
            backoff_max_secs: 1800,
            permanent_attempts: 3,
            max_receives: None,
        }
    }
}

impl DeliveryConfig {
    pub fn from_env(
        env: &Env,
        lease_secs: u64,
        attempt: &Attempt,
    ) -> Result<DeliveryConfig, ConfigError> {
        let queue = match env.get("DELIVERY_QUEUE_URL") {
            None => QueueConfig::None,
            Some(url) if url.ends_with(".fifo") => QueueConfig::Sqs {
                url,
                dead_letter_url: env.get("DEAD_LETTER_QUEUE_URL"),
            },
            Some(url) => {
                return Err(err(
                    "DELIVERY_QUEUE_URL",
                    format!(
                        "{url:?} is not a FIFO queue (its name ends in .fifo): per-alert order needs one"
                    ),
                ));
            }
        };
        let inline_budget = env.number("INLINE_BUDGET_MS", 4000)?;
        let worker_deadline = env.number("WORKER_DEADLINE_MS", 20_000)?;
        if worker_deadline >= lease_secs * 1000 {
            return Err(err(
                "WORKER_DEADLINE_MS",
                format!(
                    "{worker_deadline} must stay below CLAIM_LEASE_SECS ({lease_secs} s): a claim must outlive the attempt it protects"
                ),
            ));
        }
        let backoff_max_secs = env.number("WORKER_BACKOFF_MAX_SECS", 1800)?;
        let backoff_base_secs = env.number("WORKER_BACKOFF_BASE_SECS", 30)?;
        if !(1..=backoff_max_secs).contains(&backoff_base_secs) {
            return Err(err(
                "WORKER_BACKOFF_BASE_SECS",
                format!(
                    "{backoff_base_secs} must be 1 to WORKER_BACKOFF_MAX_SECS ({backoff_max_secs}): \
                     the first retry delay doubles up to the longest"
                ),
            ));
        }
        let share = super::pace::per_container(env)?;
        let pace_per_ks = share.map(|r| (r * 1000.0).round() as u64);
        let paced_wait = share.map_or(Duration::ZERO, |r| {
            super::pace::spacing(r).saturating_mul(attempt.requests.max(1))
        });
        let config = DeliveryConfig {
            inline_budget: Duration::from_millis(inline_budget),
            breaker: breaker_policy(env)?,
            event_source_mapping: event_source_mapping(env)?,
            pace_per_ks,
            paced_wait,
            worker_deadline: Duration::from_millis(worker_deadline),
            backoff_base_secs,
            backoff_max_secs,
            permanent_attempts: env.number("WORKER_PERMANENT_ATTEMPTS", 3)? as u32,
            max_receives: match env.get("QUEUE_MAX_RECEIVE_COUNT") {
                Some(_) => Some(env.number("QUEUE_MAX_RECEIVE_COUNT", 1)? as u32),
                None => None,
            },
            queue,
        };
        if config.queue != QueueConfig::None {
            config.check_worker(env, lease_secs, attempt)?;
        }
        Ok(config)
    }

    /// The worker's rules, as configured.
    pub fn worker_policy(&self) -> WorkerPolicy {
        WorkerPolicy {
            permanent_attempts: self.permanent_attempts,
            backoff_base_secs: self.backoff_base_secs,
            backoff_max_secs: self.backoff_max_secs,
            max_receives: self.max_receives,
        }
    }

    /// How long to leave a notification in the queue after its `receives`th
    /// failed delivery (1 for the first), or as long as the ITSM asked.
    pub fn backoff(&self, receives: u32, retry_after: Option<Duration>) -> Duration {
        self.worker_policy().backoff(receives, retry_after)
    }
}

/// The breaker's probe interval: first, and most after failed probes doubled it.
fn breaker_policy(env: &Env) -> Result<BreakerPolicy, ConfigError> {
    if env.get("INLINE_COOLDOWN_SECS").is_some() {
        tracing::warn!(
            "INLINE_COOLDOWN_SECS is no longer read: the ITSM's breaker (BREAKER_PROBE_SECS) \
             replaces the per-container cool-down"
        );
    }
    let probe = env.number("BREAKER_PROBE_SECS", 60)?;
    let most = env.number("BREAKER_PROBE_MAX_SECS", probe)?;
    if !(probe..=3600).contains(&most) {
        return Err(err(
            "BREAKER_PROBE_MAX_SECS",
            format!(
                "{most} must be BREAKER_PROBE_SECS ({probe}) to 3600: failed probes double \
                 the interval up to this"
            ),
        ));
    }
    Ok(BreakerPolicy {
        probe_secs: probe as i64,
        probe_max_secs: most as i64,
        ..BreakerPolicy::default()
    })
}

/// The mapping's UUID: it goes into the Lambda API's request path.
fn event_source_mapping(env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(uuid) = env.get("WORKER_EVENT_SOURCE_MAPPING") else {
        return Ok(None);
    };
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    let hex = uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !hex || groups != [8, 4, 4, 4, 12] {
        return Err(err(
            "WORKER_EVENT_SOURCE_MAPPING",
            format!(
                "{uuid:?} is not an event source mapping's UUID (8-4-4-4-12 hex digits, as \
                 `aws lambda list-event-source-mappings` shows it)"
            ),
        ));
    }
    Ok(Some(uuid))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::config) fn config(vars: &[(&str, &str)]) -> Result<DeliveryConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        DeliveryConfig::from_env(&Env::new(&lookup), 60, &ATTEMPT)
    }

    /// ServiceNow with basic credentials and the default request timeout.
    pub(in crate::config) const ATTEMPT: Attempt = Attempt {
        timeout: Duration::from_secs(3),
        requests: 2,
        why: "find and create",
    };

    #[test]
    fn backoff_doubles_to_its_cap_and_honours_retry_after() {
        let c = config(&[]).unwrap();
        let secs = |n, ra: Option<u64>| c.backoff(n, ra.map(Duration::from_secs)).as_secs();
        assert_eq!(
            [
                secs(1, None),
                secs(2, None),
                secs(3, None),
                secs(7, None),
                secs(60, None)
            ],
            [30, 60, 120, 1800, 1800]
        );
        assert_eq!(secs(5, Some(7)), 7, "Retry-After wins over the backoff");
        assert_eq!(secs(1, Some(90_000)), 1800, "but not past the cap");
    }

    #[test]
    fn a_paced_attempt_must_still_fit_the_workers_deadline() {
        let queue = (
            "DELIVERY_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/d.fifo",
        );
        // 0.2 a second: 5 s before each of the attempt's 2 requests of 3 s.
        let c = config(&[queue, ("ITSM_MAX_RPS", "0.2")]).unwrap();
        assert_eq!(c.paced_wait, Duration::from_secs(10));
        // 0.1 a second: 20 s of waits and 6 s of requests exceed the 20 s deadline.
        let e = config(&[queue, ("ITSM_MAX_RPS", "0.1")]).unwrap_err();
        assert_eq!(e.var, "WORKER_DEADLINE_MS");
        assert!(e.problem.contains("ITSM_MAX_RPS's pace"), "{e}");
        assert_eq!(config(&[queue]).unwrap().paced_wait, Duration::ZERO);
    }

    #[test]
    fn the_breakers_settings_and_the_mappings_uuid_are_checked_with_their_ranges() {
        let c = config(&[]).unwrap();
        assert_eq!((c.breaker.probe_secs, c.breaker.probe_max_secs), (60, 60));
        let c = config(&[
            ("BREAKER_PROBE_SECS", "30"),
            ("BREAKER_PROBE_MAX_SECS", "300"),
        ])
        .unwrap();
        assert_eq!((c.breaker.probe_secs, c.breaker.probe_max_secs), (30, 300));
        for (vars, var, says) in [
            (
                vec![("BREAKER_PROBE_SECS", "0")],
                "BREAKER_PROBE_SECS",
                "1 to 3600",
            ),
            (
                vec![("BREAKER_PROBE_SECS", "86400")],
                "BREAKER_PROBE_SECS",
                "1 to 3600",
            ),
            (
                vec![
                    ("BREAKER_PROBE_SECS", "120"),
                    ("BREAKER_PROBE_MAX_SECS", "60"),
                ],
                "BREAKER_PROBE_MAX_SECS",
                "BREAKER_PROBE_SECS (120) to 3600",
            ),
            (
                vec![("WORKER_EVENT_SOURCE_MAPPING", "../functions/x")],
                "WORKER_EVENT_SOURCE_MAPPING",
                "8-4-4-4-12",
            ),
        ] {
            let e = config(&vars).unwrap_err();
            assert_eq!(e.var, var);
            assert!(e.problem.contains(says), "{e}");
        }
        let uuid = "a1b2c3d4-e5f6-4a5b-8c7d-0123456789ab";
        let c = config(&[("WORKER_EVENT_SOURCE_MAPPING", uuid)]).unwrap();
        assert_eq!(c.event_source_mapping.as_deref(), Some(uuid));
    }

    #[test]
    fn a_standard_queue_and_a_budget_past_azures_wait_are_refused() {
        assert_eq!(config(&[]).unwrap().queue, QueueConfig::None);
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/itsm-bridge-delivery";
        let e = config(&[("DELIVERY_QUEUE_URL", url)]).unwrap_err();
        assert_eq!(e.var, "DELIVERY_QUEUE_URL");
        let fifo = format!("{url}.fifo");
        assert!(matches!(
            config(&[("DELIVERY_QUEUE_URL", &fifo)]).unwrap().queue,
            QueueConfig::Sqs { .. }
        ));
        assert_eq!(
            config(&[("INLINE_BUDGET_MS", "9500")]).unwrap_err().var,
            "INLINE_BUDGET_MS"
        );
        assert_eq!(
            config(&[("WORKER_DEADLINE_MS", "60000")]).unwrap_err().var,
            "WORKER_DEADLINE_MS"
        );
    }
}
