//! Every numeric setting, row by row: out of its range it is refused with
//! the variable, the value and the range; at its bounds nothing panics.

use std::collections::HashMap;

use super::super::{Config, ConfigError, Env};
use super::NUMBERS;

fn load(vars: &[(&str, String)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let lookup = move |k: &str| map.get(k).cloned();
    Config::from_env(&Env::new(&lookup))
}

/// Every role's settings read: a queue with a dead-letter count and a
/// worker timeout, and the sync role's Azure side.
fn full() -> Vec<(&'static str, String)> {
    [
        ("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
        ("ENTRA_AUDIENCES", "api://itsm-bridge"),
        ("ITSM_DRY_RUN", "true"),
        ("ITSM_SECRET_ID", "itsm-bridge/servicenow"),
        (
            "DELIVERY_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/d.fifo",
        ),
        ("QUEUE_MAX_RECEIVE_COUNT", "60"),
        ("WORKER_TIMEOUT_SECS", "180"),
        ("ITSM_MAX_RPS", "5"),
        ("AZURE_CLIENT_ID", "11112222-bbbb-3333-cccc-4444dddd5555"),
        ("AZURE_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
        ("AZURE_CLIENT_SECRET", "s"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

fn with(var: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut vars = full();
    vars.retain(|(k, _)| *k != var);
    vars.push((var, value.to_string()));
    vars
}

#[test]
fn the_full_configuration_loads() {
    let c = load(&full()).unwrap();
    assert!(c.sync.is_some());
    assert!(c.delivery.max_receives.is_some());
}

#[test]
fn out_of_range_is_refused_naming_the_variable_the_value_and_the_range() {
    for n in NUMBERS {
        let mut bad: Vec<String> = vec![
            (n.max + 1).to_string(),
            u64::MAX.to_string(),
            "18446744073709551616".into(),
        ];
        if n.min > 0 {
            bad.push((n.min - 1).to_string());
        }
        let range = format!("{} to {}", n.min, n.max);
        for value in &bad {
            let e = load(&with(n.var, value)).unwrap_err();
            assert_eq!(e.var, n.var, "{value}: {e}");
            assert!(
                e.problem.contains(value.as_str()) && e.problem.contains(&range),
                "{e} should name {value} and {range}"
            );
        }
        for value in ["-1", "ten", "1.5"] {
            let e = load(&with(n.var, value)).unwrap_err();
            assert_eq!(e.var, n.var, "{value}: {e}");
            assert!(
                e.problem.contains("whole number") && e.problem.contains(&range),
                "{e}"
            );
        }
    }
}

#[test]
fn the_issues_examples_are_refused_not_a_panic() {
    for (var, value) in [
        ("RECORD_TTL_DAYS", "0"),
        ("RECORD_TTL_DAYS", "106751991167300"),
        ("CLAIM_LEASE_SECS", "18446744073709551615"),
        ("ITSM_TIMEOUT_MS", "0"),
    ] {
        let e = load(&with(var, value)).unwrap_err();
        assert_eq!((e.var, e.problem.starts_with(value)), (var, true), "{e}");
    }
}

#[test]
fn at_its_bounds_every_setting_loads_or_is_refused_for_another_reason_never_a_panic() {
    for n in NUMBERS {
        for value in [n.min, n.max] {
            let value = value.to_string();
            let own = format!("{value} must be {} to {}", n.min, n.max);
            if let Err(e) = load(&with(n.var, &value)) {
                assert!(!e.problem.starts_with(&own), "{e}");
            }
        }
    }
    // All at once, at the top and at the bottom: whatever the cross-checks
    // say, no arithmetic overflows.
    for top in [true, false] {
        let mut vars = full();
        for n in NUMBERS {
            vars.retain(|(k, _)| *k != n.var);
            vars.push((n.var, if top { n.max } else { n.min }.to_string()));
        }
        let _ = load(&vars);
    }
}

#[test]
fn the_configuration_reference_states_every_range() {
    let reference = include_str!("../../../docs/CONFIGURATION.md");
    for n in NUMBERS {
        let row = reference
            .lines()
            .find(|l| {
                l.split('|')
                    .nth(1)
                    .is_some_and(|first| first.contains(&format!("`{}`", n.var)))
            })
            .unwrap_or_else(|| panic!("{} has no row in docs/CONFIGURATION.md", n.var));
        let range = format!("{} to {}", n.min, n.max);
        assert!(
            row.contains(&range),
            "{}'s row does not say {range}: {row}",
            n.var
        );
    }
}
