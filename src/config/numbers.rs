//! Every numeric setting's range, checked at start (whether or not the
//! role reads it), so that no value can overflow a computation or mean
//! nothing: the error names the variable, the value and the range. The
//! configuration reference (docs/CONFIGURATION.md) says the same ranges (a test compares).
//! Settings whose bounds depend on another (`WORKER_BACKOFF_BASE_SECS` up to
//! `WORKER_BACKOFF_MAX_SECS`, `RECORD_TTL_DAYS` with a queue) are checked
//! again where they are read.

use super::{ConfigError, Env, err};

/// One numeric setting.
#[derive(Debug, Clone, Copy)]
pub struct Number {
    pub var: &'static str,
    pub min: u64,
    pub max: u64,
    /// What the range stands for, ending the error.
    pub why: &'static str,
}

const fn n(var: &'static str, min: u64, max: u64, why: &'static str) -> Number {
    Number { var, min, max, why }
}

/// A Lambda function runs 15 minutes at most.
const LAMBDA_MS: u64 = 900_000;
const DAY: u64 = 86_400;

pub const NUMBERS: &[Number] = &[
    n(
        "CLAIM_LEASE_SECS",
        5,
        3600,
        "how long a delivery holds its alert's claim, in seconds",
    ),
    n(
        "ITSM_TIMEOUT_MS",
        100,
        60_000,
        "one request's time limit, in milliseconds",
    ),
    n(
        "ITSM_DEADLINE_MS",
        100,
        LAMBDA_MS,
        "an attempt's whole time, retries included, in milliseconds",
    ),
    n(
        "ITSM_CREATE_SETTLE_SECS",
        0,
        3600,
        "after a create that went unanswered, the alert waits \
        this long before an empty search counts as proof that nothing was created",
    ),
    n(
        "ITSM_SECRET_TTL_SECS",
        0,
        DAY,
        "how long the ITSM's secret is cached, in seconds",
    ),
    n(
        "ENTRA_LEEWAY_SECS",
        0,
        300,
        "clock skew allowed on a token's times, in seconds",
    ),
    n(
        "ENTRA_KEY_REFRESH_SECS",
        60,
        7 * DAY,
        "how often Entra's signing keys are fetched again, in seconds",
    ),
    n(
        "ENTRA_UNKNOWN_KID_INTERVAL_SECS",
        0,
        DAY,
        "the least time between key fetches for an unknown key id, in seconds",
    ),
    n(
        "RECORD_TTL_DAYS",
        1,
        3650,
        "how long a finished record is kept, in days",
    ),
    n(
        "INLINE_BUDGET_MS",
        500,
        8000,
        "Azure waits about 10 s for an answer",
    ),
    n(
        "WORKER_DEADLINE_MS",
        100,
        LAMBDA_MS,
        "one queued delivery's whole time, in milliseconds",
    ),
    n(
        "WORKER_BACKOFF_MAX_SECS",
        1,
        43_200,
        "the delay is a message's visibility timeout, which \
        SQS caps at 12 hours",
    ),
    n(
        "WORKER_BACKOFF_BASE_SECS",
        1,
        43_200,
        "the first retry delay doubles up to WORKER_BACKOFF_MAX_SECS",
    ),
    n(
        "WORKER_PERMANENT_ATTEMPTS",
        1,
        1000,
        "refusals of a notification before it is parked",
    ),
    n(
        "WORKER_BATCH_SIZE",
        1,
        10,
        "the most an SQS FIFO event source hands over",
    ),
    n("WORKER_TIMEOUT_SECS", 1, 900, "a Lambda function's timeout"),
    n(
        "WORKER_MAX_CONCURRENCY",
        1,
        1000,
        "the worker containers that may run at once",
    ),
    n(
        "QUEUE_MAX_RECEIVE_COUNT",
        1,
        1000,
        "SQS's range for maxReceiveCount",
    ),
    n(
        "QUEUE_RETENTION_SECS",
        60,
        super::worker::MAX_RETENTION_SECS,
        "SQS's range",
    ),
    n(
        "BREAKER_PROBE_SECS",
        1,
        3600,
        "the seconds between probes of a down ITSM (the backlog \
        starts flowing within one of them after it is back)",
    ),
    n(
        "BREAKER_PROBE_MAX_SECS",
        1,
        3600,
        "failed probes double the interval up to this, in seconds",
    ),
    n(
        "SYNC_OVERLAP_SECS",
        0,
        DAY,
        "how far each round reads back before its watermark, in seconds",
    ),
    n(
        "SYNC_SETTLE_SECS",
        0,
        3600,
        "how old a change must be before a round reads it, in seconds",
    ),
    n(
        "SYNC_FIRST_LOOKBACK_SECS",
        0,
        30 * DAY,
        "how far the first round reads back, in seconds \
        (Azure keeps an alert 30 days)",
    ),
    n(
        "SYNC_PAGE_SIZE",
        1,
        1000,
        "changed incidents read per request",
    ),
    n("SYNC_MAX_PAGES", 1, 10_000, "pages one round reads at most"),
    n(
        "SYNC_ROUND_BUDGET_SECS",
        1,
        900,
        "one round's time, in seconds (a Lambda's timeout at most)",
    ),
    n(
        "SYNC_MAX_HOLD_SECS",
        1,
        30 * DAY,
        "how old a watermark may be before it counts as held too long, in seconds",
    ),
    n(
        "AZURE_TIMEOUT_MS",
        100,
        60_000,
        "one request to Azure's time limit, in milliseconds",
    ),
];

/// The range of `var`, which every numeric setting has.
pub fn range(var: &str) -> Option<&'static Number> {
    NUMBERS.iter().find(|n| n.var == var)
}

/// `value` of `var` within its range, or the error that names both.
pub fn checked(var: &'static str, value: u64) -> Result<u64, ConfigError> {
    let Some(n) = range(var) else {
        debug_assert!(false, "{var} has no range in config::numbers::NUMBERS");
        return Ok(value);
    };
    if (n.min..=n.max).contains(&value) {
        return Ok(value);
    }
    Err(err(
        var,
        format!("{value} must be {} to {}: {}", n.min, n.max, n.why),
    ))
}

/// Checks every numeric setting that is set, read or not by this role.
pub fn check_all(env: &Env) -> Result<(), ConfigError> {
    for n in NUMBERS {
        if env.get(n.var).is_some() {
            env.number(n.var, n.min)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
