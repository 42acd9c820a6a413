//! The SAM template against the start-up checks: every combination its
//! parameters allow (their ranges and the values it derives from them)
//! passes the checks the worker makes with the same numbers at start. The
//! template is read as text, enough for its own regular layout.

use super::{Config, Env};

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The lines of one top-level block's entry (`  Name:` and what is indented under it).
fn entry(name: &str) -> Vec<&'static str> {
    let head = format!("  {name}:");
    let mut lines = TEMPLATE.lines().skip_while(|l| *l != head).skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if !l.starts_with("    ") {
            break;
        }
        out.push(l.trim());
    }
    assert!(!out.is_empty(), "no {name} in the template");
    out
}

fn field(name: &str, key: &str) -> Option<u64> {
    entry(name)
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}.{key}: {v}")))
}

/// A Number parameter's least and greatest value.
fn range(name: &str) -> (u64, u64) {
    if let Some(list) = entry(name)
        .iter()
        .find_map(|l| l.strip_prefix("AllowedValues: ["))
    {
        let values: Vec<u64> = list
            .trim_end_matches(']')
            .split(',')
            .map(|v| v.trim().parse().unwrap())
            .collect();
        return (values[0], *values.last().unwrap());
    }
    (
        field(name, "MinValue").unwrap_or_else(|| panic!("{name} has no MinValue")),
        field(name, "MaxValue").unwrap_or_else(|| panic!("{name} has no MaxValue")),
    )
}

/// `WorkerTiming` by batch size: (timeout, visibility timeout).
fn worker_timing(batch: u64) -> (u64, u64) {
    let line = entry("WorkerTiming")
        .into_iter()
        .find(|l| l.starts_with(&format!("\"{batch}\":")))
        .unwrap_or_else(|| panic!("no WorkerTiming for {batch}"));
    let number = |key: &str| -> u64 {
        let at = line.find(key).unwrap() + key.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number("TimeoutSecs"), number("VisibilitySecs"))
}

fn retention() -> u64 {
    let line = entry("Queue").concat();
    line.split("RetentionSecs: ")
        .nth(1)
        .unwrap()
        .trim_end_matches('}')
        .parse()
        .unwrap()
}

#[test]
fn the_worker_gets_what_it_checks_its_settings_against() {
    for var in [
        "WORKER_BATCH_SIZE: !Ref WorkerBatchSize",
        "WORKER_TIMEOUT_SECS: !FindInMap [WorkerTiming, !Ref WorkerBatchSize, TimeoutSecs]",
        "QUEUE_MAX_RECEIVE_COUNT: !Ref QueueMaxReceiveCount",
        "QUEUE_RETENTION_SECS: !FindInMap [Queue, Delivery, RetentionSecs]",
        "Timeout: !FindInMap [WorkerTiming, !Ref WorkerBatchSize, TimeoutSecs]",
        "MessageRetentionPeriod: !FindInMap [Queue, Delivery, RetentionSecs]",
        "VisibilityTimeout: !FindInMap [WorkerTiming, !Ref WorkerBatchSize, VisibilitySecs]",
    ] {
        assert!(TEMPLATE.contains(var), "the template lacks {var}");
    }
}

#[test]
fn every_combination_the_template_allows_passes_the_start_up_checks() {
    let (batch_min, batch_max) = range("WorkerBatchSize");
    let (_, deadline_max) = range("WorkerDeadlineMs");
    let (lease_min, _) = range("ClaimLeaseSecs");
    let (base_min, base_max) = range("WorkerBackoffBaseSecs");
    let (max_min, max_max) = range("WorkerBackoffMaxSecs");
    let (receives_min, receives_max) = range("QueueMaxReceiveCount");
    let (attempts_min, attempts_max) = range("WorkerPermanentAttempts");
    let (ttl_min, _) = range("RecordTtlDays");
    let retention = retention().to_string();
    // The one bound the template cannot express (CloudFormation has no
    // arithmetic): WorkerDeadlineMs must hold an attempt, here BMC Helix's
    // four requests at the default ItsmTimeoutMs.
    let deadline_min = 4 * field("ItsmTimeoutMs", "Default").unwrap();
    let mut checked = 0;
    for batch in batch_min..=batch_max {
        let (timeout, visibility) = worker_timing(batch);
        assert!(
            visibility >= 6 * timeout,
            "batch {batch}: {visibility} < 6 × {timeout}"
        );
        for deadline in [deadline_min, deadline_max] {
            for (base, max) in [
                (base_min, max_min),
                (base_max, max_min),
                (base_max, max_max),
            ] {
                for receives in [receives_min, receives_max] {
                    for attempts in [attempts_min, attempts_max] {
                        let vars = [
                            (
                                "ENTRA_TENANT_ID",
                                "aaaabbbb-0000-cccc-1111-dddd2222eeee".into(),
                            ),
                            ("ENTRA_AUDIENCES", "api://itsm-bridge".into()),
                            ("ITSM_KIND", "bmc-helix".into()),
                            ("BMC_URL", "https://acme-restapi.onbmc.com".into()),
                            ("ITSM_SECRET_ID", "itsm-bridge/bmc".into()),
                            (
                                "DELIVERY_QUEUE_URL",
                                "https://sqs.eu-west-1.amazonaws.com/1/d.fifo".into(),
                            ),
                            ("CLAIM_LEASE_SECS", lease_min.to_string()),
                            ("RECORD_TTL_DAYS", ttl_min.to_string()),
                            ("WORKER_DEADLINE_MS", deadline.to_string()),
                            ("WORKER_BACKOFF_BASE_SECS", base.to_string()),
                            ("WORKER_BACKOFF_MAX_SECS", max.to_string()),
                            ("WORKER_PERMANENT_ATTEMPTS", attempts.to_string()),
                            ("WORKER_BATCH_SIZE", batch.to_string()),
                            ("WORKER_TIMEOUT_SECS", timeout.to_string()),
                            ("QUEUE_MAX_RECEIVE_COUNT", receives.to_string()),
                            ("QUEUE_RETENTION_SECS", retention.clone()),
                        ];
                        let lookup =
                            |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
                        if let Err(e) = Config::from_env(&Env::new(&lookup)) {
                            panic!("the template allows what the function refuses: {e}\n{vars:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 10 * 2 * 3 * 2 * 2);
}

mod dashboard;
