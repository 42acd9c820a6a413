//! Store and forward settings: the delivery queue, the inline budget and
//! cool-down, and the worker's pacing.

use std::time::Duration;

use super::limits::Attempt;
use super::{ConfigError, Env, err};
use crate::domain::delivery::WorkerPolicy;

/// Around each message's ITSM calls the worker reads and writes its record
/// and sets its visibility: room for that, per message.
pub const PER_MESSAGE_OVERHEAD: Duration = Duration::from_secs(2);
/// SQS's largest batch for a FIFO event source, and its longest retention.
const MAX_BATCH: u64 = 10;
const MAX_RETENTION_SECS: u64 = 1_209_600;
/// A queue's retention when `QUEUE_RETENTION_SECS` does not say: SQS's default.
const DEFAULT_RETENTION_SECS: u64 = 345_600;

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
    /// `INLINE_COOLDOWN_SECS`: after an inline failure, how long this
    /// container queues at once instead of trying.
    pub cooldown_secs: i64,
    /// `WORKER_DEADLINE_MS`: how long the worker tries one notification.
    pub worker_deadline: Duration,
    /// `WORKER_BACKOFF_BASE_SECS`, `WORKER_BACKOFF_MAX_SECS`: a failed
    /// delivery is retried after base × 2^(receives − 1), at most max.
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// `WORKER_PERMANENT_ATTEMPTS`: receives of a notification the ITSM
    /// refuses (4xx) before it is parked in the dead-letter queue.
    pub permanent_attempts: u32,
}

/// No queue, and the documented defaults.
impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue: QueueConfig::None,
            inline_budget: Duration::from_millis(4000),
            cooldown_secs: 30,
            worker_deadline: Duration::from_millis(20_000),
            backoff_base_secs: 30,
            backoff_max_secs: 1800,
            permanent_attempts: 3,
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
        if !(500..=8000).contains(&inline_budget) {
            return Err(err(
                "INLINE_BUDGET_MS",
                format!(
                    "{inline_budget} must be 500 to 8000: Azure waits about 10 s for an answer"
                ),
            ));
        }
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
        // SQS caps a message's visibility timeout at 12 hours.
        if !(1..=43_200).contains(&backoff_max_secs) {
            return Err(err(
                "WORKER_BACKOFF_MAX_SECS",
                format!(
                    "{backoff_max_secs} must be 1 to 43200: the delay is a message's visibility \
                     timeout, which SQS caps at 12 hours"
                ),
            ));
        }
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
        let config = DeliveryConfig {
            inline_budget: Duration::from_millis(inline_budget),
            cooldown_secs: env.number("INLINE_COOLDOWN_SECS", 30)? as i64,
            worker_deadline: Duration::from_millis(worker_deadline),
            backoff_base_secs,
            backoff_max_secs,
            permanent_attempts: env.number("WORKER_PERMANENT_ATTEMPTS", 3)?.max(1) as u32,
            queue,
        };
        if config.queue != QueueConfig::None {
            config.check_worker(env, lease_secs, attempt)?;
        }
        Ok(config)
    }

    /// What the worker's deployment must leave room for: one whole attempt
    /// within its deadline, a batch within its function's timeout
    /// (`WORKER_BATCH_SIZE`, `WORKER_TIMEOUT_SECS`: Lambda does not tell a
    /// function its timeout), and every receive before the queue's retention
    /// deletes a message (`QUEUE_MAX_RECEIVE_COUNT`, `QUEUE_RETENTION_SECS`).
    fn check_worker(
        &self,
        env: &Env,
        lease_secs: u64,
        attempt: &Attempt,
    ) -> Result<(), ConfigError> {
        let deadline = self.worker_deadline.as_millis() as u64;
        let longest = attempt.longest().as_millis() as u64;
        let below_lease = lease_secs * 1000 - 1;
        if deadline < longest {
            return Err(err(
                "WORKER_DEADLINE_MS",
                format!(
                    "{deadline} must be {longest} to {below_lease}: one attempt can take {}, \
                     and the worker's first attempt must end within its deadline (or lower ITSM_TIMEOUT_MS)",
                    attempt.describe()
                ),
            ));
        }
        let batch = env.number("WORKER_BATCH_SIZE", 1)?;
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(err(
                "WORKER_BATCH_SIZE",
                format!(
                    "{batch} must be 1 to {MAX_BATCH}: the most an SQS FIFO event source hands over"
                ),
            ));
        }
        let overhead = PER_MESSAGE_OVERHEAD.as_millis() as u64;
        let per_receive_secs = match env.get("WORKER_TIMEOUT_SECS") {
            Some(_) => {
                let timeout = env.number("WORKER_TIMEOUT_SECS", 0)?;
                if !(1..=900).contains(&timeout) {
                    return Err(err(
                        "WORKER_TIMEOUT_SECS",
                        format!("{timeout} must be 1 to 900: a Lambda function's timeout"),
                    ));
                }
                let most = (timeout * 1000 / batch).saturating_sub(overhead);
                if deadline > most {
                    return Err(err(
                        "WORKER_DEADLINE_MS",
                        format!(
                            "{deadline} must be {longest} to {}: WORKER_BATCH_SIZE ({batch}) messages, \
                             each up to WORKER_DEADLINE_MS and {overhead} ms around it, must end \
                             within the worker's timeout WORKER_TIMEOUT_SECS ({timeout} s)",
                            most.min(below_lease)
                        ),
                    ));
                }
                timeout
            }
            None => (batch * (deadline + overhead)).div_ceil(1000),
        };
        let Some(_) = env.get("QUEUE_MAX_RECEIVE_COUNT") else {
            return Ok(());
        };
        let receives = env.number("QUEUE_MAX_RECEIVE_COUNT", 0)?;
        if !(1..=1000).contains(&receives) {
            return Err(err(
                "QUEUE_MAX_RECEIVE_COUNT",
                format!("{receives} must be 1 to 1000: SQS's range for maxReceiveCount"),
            ));
        }
        if u64::from(self.permanent_attempts) > receives {
            return Err(err(
                "WORKER_PERMANENT_ATTEMPTS",
                format!(
                    "{} must be 1 to QUEUE_MAX_RECEIVE_COUNT ({receives}): the worker parks what \
                     the ITSM refuses, with the reason, before SQS dead-letters it without one",
                    self.permanent_attempts
                ),
            ));
        }
        let retention = env.number("QUEUE_RETENTION_SECS", DEFAULT_RETENTION_SECS)?;
        if !(60..=MAX_RETENTION_SECS).contains(&retention) {
            return Err(err(
                "QUEUE_RETENTION_SECS",
                format!("{retention} must be 60 to {MAX_RETENTION_SECS}: SQS's range"),
            ));
        }
        // An alert's Resolved can wait behind its Fired for all the Fired's
        // receives, then take as many of its own: both within the retention.
        let fits = |n| 2 * self.time_to_dead_letter(n, per_receive_secs) <= retention;
        if !fits(receives) {
            let most = (1..receives).rev().find(|&n| fits(n)).unwrap_or(0);
            return Err(err(
                "QUEUE_MAX_RECEIVE_COUNT",
                format!(
                    "{receives} must be 1 to {most}: {receives} receives take up to {} h with these \
                     backoffs (WORKER_BACKOFF_BASE_SECS {}, WORKER_BACKOFF_MAX_SECS {}) and \
                     {per_receive_secs} s of processing each; an alert's Resolved can wait behind its \
                     Fired for all of them and then take as long again, and past the queue's retention \
                     (QUEUE_RETENTION_SECS {retention} s) messages expire instead of reaching the \
                     dead-letter queue",
                    self.time_to_dead_letter(receives, per_receive_secs) / 3600,
                    self.backoff_base_secs,
                    self.backoff_max_secs,
                ),
            ));
        }
        Ok(())
    }

    /// How long a message that keeps failing stays in the queue before SQS
    /// dead-letters it: each of its `receives` is processed (up to
    /// `per_receive_secs`), then waits out its backoff.
    pub fn time_to_dead_letter(&self, receives: u64, per_receive_secs: u64) -> u64 {
        (1..=receives)
            .map(|n| self.backoff(n as u32, None).as_secs() + per_receive_secs)
            .sum()
    }

    /// The worker's rules, as configured.
    pub fn worker_policy(&self) -> WorkerPolicy {
        WorkerPolicy {
            permanent_attempts: self.permanent_attempts,
            backoff_base_secs: self.backoff_base_secs,
            backoff_max_secs: self.backoff_max_secs,
        }
    }

    /// How long to leave a notification in the queue after its `receives`th
    /// failed delivery (1 for the first), or as long as the ITSM asked.
    pub fn backoff(&self, receives: u32, retry_after: Option<Duration>) -> Duration {
        self.worker_policy().backoff(receives, retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<DeliveryConfig, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        DeliveryConfig::from_env(&Env::new(&lookup), 60, &ATTEMPT)
    }

    /// ServiceNow with basic credentials and the default request timeout.
    const ATTEMPT: Attempt = Attempt {
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

    const FIFO: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/d.fifo";

    /// The worker as the SAM template deploys it: batches of 5, 180 s.
    fn worker(extra: &[(&'static str, &'static str)]) -> Result<DeliveryConfig, ConfigError> {
        let mut vars = vec![
            ("DELIVERY_QUEUE_URL", FIFO),
            ("WORKER_BATCH_SIZE", "5"),
            ("WORKER_TIMEOUT_SECS", "180"),
            ("QUEUE_MAX_RECEIVE_COUNT", "60"),
            ("QUEUE_RETENTION_SECS", "1209600"),
        ];
        for (k, v) in extra {
            vars.retain(|(n, _)| n != k);
            vars.push((k, v));
        }
        config(&vars)
    }

    fn refused(e: ConfigError, var: &str, says: &[&str]) {
        assert_eq!(e.var, var, "{e}");
        for s in says {
            assert!(e.problem.contains(s), "{e} lacks {s:?}");
        }
    }

    #[test]
    fn backoffs_outside_what_sqs_can_wait_are_refused_not_a_panic() {
        refused(
            config(&[("WORKER_BACKOFF_BASE_SECS", "50000")]).unwrap_err(),
            "WORKER_BACKOFF_BASE_SECS",
            &["50000 must be 1 to WORKER_BACKOFF_MAX_SECS (1800)"],
        );
        refused(
            config(&[("WORKER_BACKOFF_MAX_SECS", "86400")]).unwrap_err(),
            "WORKER_BACKOFF_MAX_SECS",
            &["86400 must be 1 to 43200", "12 hours"],
        );
        refused(
            config(&[("WORKER_BACKOFF_BASE_SECS", "0")]).unwrap_err(),
            "WORKER_BACKOFF_BASE_SECS",
            &["0 must be 1 to"],
        );
    }

    #[test]
    fn a_worker_deadline_must_hold_one_whole_attempt() {
        // Without a queue there is no worker to hold to it.
        assert!(config(&[("WORKER_DEADLINE_MS", "5000")]).is_ok());
        refused(
            worker(&[("WORKER_DEADLINE_MS", "5000")]).unwrap_err(),
            "WORKER_DEADLINE_MS",
            &[
                "5000 must be 6000 to 59999",
                "ITSM_TIMEOUT_MS (3000) × 2 requests (find and create) = 6000 ms",
            ],
        );
        assert!(worker(&[("WORKER_DEADLINE_MS", "6000")]).is_ok());
    }

    #[test]
    fn a_batch_must_fit_in_the_workers_timeout() {
        assert!(worker(&[]).is_ok(), "the template's defaults");
        refused(
            worker(&[("WORKER_BATCH_SIZE", "10")]).unwrap_err(),
            "WORKER_DEADLINE_MS",
            &[
                "20000 must be 6000 to 16000",
                "WORKER_BATCH_SIZE (10)",
                "WORKER_TIMEOUT_SECS (180 s)",
            ],
        );
        assert!(worker(&[("WORKER_BATCH_SIZE", "10"), ("WORKER_DEADLINE_MS", "16000")]).is_ok());
        refused(
            worker(&[("WORKER_BATCH_SIZE", "11")]).unwrap_err(),
            "WORKER_BATCH_SIZE",
            &["11 must be 1 to 10"],
        );
        refused(
            worker(&[("WORKER_TIMEOUT_SECS", "1000")]).unwrap_err(),
            "WORKER_TIMEOUT_SECS",
            &["1000 must be 1 to 900"],
        );
    }

    #[test]
    fn every_receive_must_happen_before_the_queue_forgets_the_message() {
        // SQS's default 4 days: about 91 receives with the default backoff.
        let four_days = [("QUEUE_RETENTION_SECS", "345600")];
        assert!(worker(&four_days).is_ok());
        let e = worker(&[four_days[0], ("QUEUE_MAX_RECEIVE_COUNT", "200")]).unwrap_err();
        refused(
            e,
            "QUEUE_MAX_RECEIVE_COUNT",
            &[
                "200 must be 1 to 91",
                "QUEUE_RETENTION_SECS 345600 s",
                "dead-letter queue",
            ],
        );
        let c = worker(&[]).unwrap();
        let t = c.time_to_dead_letter(91, 180);
        assert!(
            2 * t <= 345_600 && 2 * c.time_to_dead_letter(92, 180) > 345_600,
            "{t}"
        );
        // 14 days hold 309.
        assert!(worker(&[("QUEUE_MAX_RECEIVE_COUNT", "309")]).is_ok());
        refused(
            worker(&[("QUEUE_MAX_RECEIVE_COUNT", "310")]).unwrap_err(),
            "QUEUE_MAX_RECEIVE_COUNT",
            &["310 must be 1 to 309"],
        );
        refused(
            worker(&[("WORKER_PERMANENT_ATTEMPTS", "61")]).unwrap_err(),
            "WORKER_PERMANENT_ATTEMPTS",
            &["61 must be 1 to QUEUE_MAX_RECEIVE_COUNT (60)"],
        );
        refused(
            worker(&[("QUEUE_RETENTION_SECS", "2000000")]).unwrap_err(),
            "QUEUE_RETENTION_SECS",
            &["must be 60 to 1209600"],
        );
    }
}
