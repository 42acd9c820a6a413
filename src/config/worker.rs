//! What the worker's deployment must leave room for, checked at start when
//! a delivery queue is configured: one whole attempt within its deadline, a
//! batch within its function's timeout (`WORKER_BATCH_SIZE`,
//! `WORKER_TIMEOUT_SECS`: Lambda does not tell a function its timeout), and
//! every receive of a failing message before the queue's retention deletes
//! it (`QUEUE_MAX_RECEIVE_COUNT`, `QUEUE_RETENTION_SECS`), so that it reaches
//! the dead-letter queue instead of expiring unseen.

use std::time::Duration;

use super::delivery::DeliveryConfig;
use super::limits::Attempt;
use super::{ConfigError, Env, err};

/// Around each message's ITSM calls the worker reads and writes its record
/// and sets its visibility: room for that, per message.
const PER_MESSAGE_OVERHEAD: Duration = Duration::from_secs(2);
/// SQS's longest retention (`numbers` bounds `QUEUE_RETENTION_SECS` by it).
pub(super) const MAX_RETENTION_SECS: u64 = 1_209_600;
/// A queue's retention when `QUEUE_RETENTION_SECS` does not say: SQS's default.
const DEFAULT_RETENTION_SECS: u64 = 345_600;
/// How long queued work holds its alert's later notifications in the queue:
/// a day past the longest any SQS queue keeps a message, so that whatever
/// the queue's retention, its messages are delivered, dead-lettered or gone.
pub const QUEUE_HORIZON_SECS: i64 = MAX_RETENTION_SECS as i64 + 86_400;

impl DeliveryConfig {
    /// What the worker's deployment must leave room for: one whole attempt
    /// within its deadline, a batch within its function's timeout
    /// (`WORKER_BATCH_SIZE`, `WORKER_TIMEOUT_SECS`: Lambda does not tell a
    /// function its timeout), and every receive before the queue's retention
    /// deletes a message (`QUEUE_MAX_RECEIVE_COUNT`, `QUEUE_RETENTION_SECS`).
    pub(super) fn check_worker(
        &self,
        env: &Env,
        lease_secs: u64,
        attempt: &Attempt,
    ) -> Result<(), ConfigError> {
        let deadline = self.worker_deadline.as_millis() as u64;
        let longest = (attempt.longest() + self.paced_wait).as_millis() as u64;
        let below_lease = lease_secs * 1000 - 1;
        if deadline < longest {
            return Err(err(
                "WORKER_DEADLINE_MS",
                format!(
                    "{deadline} must be {longest} to {below_lease}: one attempt can take {}{}, \
                     and the worker's first attempt must end within its deadline (or lower ITSM_TIMEOUT_MS)",
                    attempt.describe(),
                    if self.paced_wait.is_zero() {
                        String::new()
                    } else {
                        format!(
                            ", plus {} ms waiting for ITSM_MAX_RPS's pace",
                            self.paced_wait.as_millis()
                        )
                    }
                ),
            ));
        }
        let batch = env.number("WORKER_BATCH_SIZE", 1)?;
        let overhead = PER_MESSAGE_OVERHEAD.as_millis() as u64;
        let per_receive_secs = match env.get("WORKER_TIMEOUT_SECS") {
            Some(_) => {
                let timeout = env.number("WORKER_TIMEOUT_SECS", 1)?;
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
        let receives = env.number("QUEUE_MAX_RECEIVE_COUNT", 1)?;
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
}

#[cfg(test)]
mod tests {
    use super::super::delivery::tests::config;
    use super::*;

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
            &["50000 must be 1 to 43200"],
        );
        refused(
            config(&[("WORKER_BACKOFF_BASE_SECS", "2000")]).unwrap_err(),
            "WORKER_BACKOFF_BASE_SECS",
            &["2000 must be 1 to WORKER_BACKOFF_MAX_SECS (1800)"],
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
