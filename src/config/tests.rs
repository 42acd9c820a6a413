//! The configuration read from the environment: defaults, errors that
//! name the variable, and the choices that follow from what is set.

use super::*;
use crate::adapters::servicenow::Credentials;
use std::collections::HashMap;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| map.get(k).cloned();
    Config::from_env(&Env::new(&lookup))
}

const BASE: [(&str, &str); 5] = [
    ("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee"),
    (
        "ENTRA_AUDIENCES",
        "api://itsm-bridge, 11112222-bbbb-3333-cccc-4444dddd5555",
    ),
    ("SERVICENOW_INSTANCE_URL", "https://dev1.service-now.com"),
    ("SERVICENOW_USERNAME", "bridge"),
    ("SERVICENOW_PASSWORD", "pw"),
];

#[test]
fn defaults() {
    let c = load(&BASE).unwrap();
    assert_eq!(c.entra.audiences.len(), 2);
    assert_eq!(c.entra.allowed_app_ids, vec![entra::ACTION_GROUP_APP_ID]);
    assert_eq!(
        c.entra.keys,
        KeySource::parse("https://login.microsoftonline.com/aaaabbbb-0000-cccc-1111-dddd2222eeee/discovery/v2.0/keys").unwrap()
    );
    let ItsmConfig::ServiceNow(sn, credentials) = c.itsm else {
        panic!("servicenow is the default")
    };
    assert!(matches!(
        credentials,
        CredentialsConfig::Fixed(Credentials::Basic { .. })
    ));
    assert!(matches!(c.store, StoreConfig::Embedded(_)));
    assert_eq!(sn.fields.close_code, "Solution provided");
    assert_eq!(c.settings.ttl_secs, 90 * 86400);
}

#[test]
fn errors_name_the_variable() {
    let without = |var: &str| {
        BASE.iter()
            .copied()
            .filter(|(k, _)| *k != var)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        load(&without("ENTRA_TENANT_ID")).unwrap_err().var,
        "ENTRA_TENANT_ID"
    );
    assert_eq!(
        load(&without("ENTRA_AUDIENCES")).unwrap_err().var,
        "ENTRA_AUDIENCES"
    );
    assert_eq!(
        load(&without("SERVICENOW_PASSWORD")).unwrap_err().var,
        "SERVICENOW_PASSWORD"
    );
    let mut bad = BASE.to_vec();
    bad.push(("SERVICENOW_INSTANCE_URL", "http://dev1.service-now.com"));
    assert_eq!(load(&bad).unwrap_err().var, "SERVICENOW_INSTANCE_URL");
    let mut bad = BASE.to_vec();
    bad.push(("ENTRA_LEEWAY_SECS", "soon"));
    assert_eq!(load(&bad).unwrap_err().var, "ENTRA_LEEWAY_SECS");
    let mut bad = BASE.to_vec();
    bad[0] = ("ENTRA_TENANT_ID", "contoso.onmicrosoft.com");
    assert_eq!(load(&bad).unwrap_err().var, "ENTRA_TENANT_ID");
}

#[test]
fn oauth_is_chosen_by_what_is_set() {
    let mut vars = BASE.to_vec();
    vars.extend([
        ("SERVICENOW_CLIENT_ID", "cid"),
        ("SERVICENOW_CLIENT_SECRET", "cs"),
    ]);
    let ItsmConfig::ServiceNow(_, CredentialsConfig::Fixed(credentials)) =
        load(&vars).unwrap().itsm
    else {
        panic!()
    };
    assert!(matches!(credentials, Credentials::OAuthPassword { .. }));
    let debug = format!("{credentials:?}");
    assert!(!debug.contains("pw") && !debug.contains("cs"), "{debug}");
}

#[test]
fn aws_settings() {
    let mut vars: Vec<_> = BASE
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("SERVICENOW_U") && !k.starts_with("SERVICENOW_P"))
        .collect();
    vars.extend([
        ("ITSM_SECRET_ID", "itsm-bridge/servicenow"),
        ("CORRELATION_TABLE", "itsm-bridge-correlation"),
    ]);
    let c = load(&vars).unwrap();
    assert!(c.uses_aws());
    assert_eq!(
        c.store,
        StoreConfig::DynamoDb {
            table: "itsm-bridge-correlation".into()
        }
    );
    let (secret_id, ttl) = c.itsm.secret().unwrap();
    assert_eq!((secret_id, ttl.as_secs()), ("itsm-bridge/servicenow", 3600));
}

#[test]
fn bmc_helix_and_dry_runs() {
    let entra = &BASE[..2];
    let mut vars = entra.to_vec();
    vars.extend([
        ("ITSM_KIND", "bmc-helix"),
        ("BMC_URL", "https://acme-restapi.onbmc.com"),
        ("BMC_USERNAME", "u"),
    ]);
    assert_eq!(load(&vars).unwrap_err().var, "BMC_PASSWORD");
    vars.push(("BMC_PASSWORD", "p"));
    let c = load(&vars).unwrap();
    assert!(matches!(c.itsm, ItsmConfig::BmcHelix(..)));
    assert_eq!(
        c.settings
            .severity
            .levels(crate::domain::alert::Severity::Sev4),
        (4, 4),
        "BMC's 1-4 scale"
    );

    // A dry run needs no URL and no credentials.
    let mut dry = entra.to_vec();
    dry.extend([("ITSM_KIND", "bmc-helix"), ("ITSM_DRY_RUN", "true")]);
    assert!(matches!(
        load(&dry).unwrap().itsm,
        ItsmConfig::DryRun(DryRunFormat::BmcHelix(_))
    ));
    let mut dry = entra.to_vec();
    dry.push(("ITSM_KIND", "dry-run"));
    assert!(matches!(
        load(&dry).unwrap().itsm,
        ItsmConfig::DryRun(DryRunFormat::ServiceNow(_))
    ));
    dry.push(("ITSM_DRY_RUN", "maybe"));
    assert_eq!(load(&dry).unwrap_err().var, "ITSM_DRY_RUN");
}

#[test]
fn routing_rules_are_checked_at_start() {
    let mut vars = BASE.to_vec();
    vars.push((
        "ROUTING_RULES",
        r#"{"rules": [{"name": "r", "set": {"assignment_grp": "x"}}]}"#,
    ));
    let e = load(&vars).unwrap_err();
    assert_eq!(e.var, "ROUTING_RULES");
    assert!(
        e.problem.contains("assignment_grp") && e.problem.contains("line 1"),
        "{e}"
    );
    let mut vars = BASE.to_vec();
    vars.push(("ROUTING_RULES_FILE", "/nonexistent/rules.json"));
    assert_eq!(load(&vars).unwrap_err().var, "ROUTING_RULES_FILE");
    let dir = tempfile_dir();
    let path = dir.join("rules.json");
    std::fs::write(&path, "{\n  \"default\": {\"urgency\": 9}\n}").unwrap();
    let mut vars = BASE.to_vec();
    let path = path.display().to_string();
    vars.push(("ROUTING_RULES_FILE", &path));
    let e = load(&vars).unwrap_err();
    assert!(
        e.problem
            .contains("default: set.urgency is 9; this ITSM's scale is 1 to 3"),
        "{e}"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("itsm-bridge-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// With `children: incidents` an attempt may make the group's parent before
/// the alert's own incident: four requests, each up to ITSM_TIMEOUT_MS, and
/// the worker's deadline must hold them all.
#[test]
fn child_incidents_count_the_parents_requests_in_an_attempt() {
    let rules = r#"{"rules": [{"name": "vm-cpu", "match": {"alert_rule": "vm-cpu-*"},
                   "set": {}, "group": {"by": ["alert_rule"], "children": "incidents"}}]}"#;
    let mut vars = BASE.to_vec();
    vars.push(("ROUTING_RULES", rules));
    vars.push((
        "DELIVERY_QUEUE_URL",
        "https://sqs.eu-west-1.amazonaws.com/1/q.fifo",
    ));
    let c = load(&vars).unwrap();
    assert_eq!(c.settings.retry.attempt, Duration::from_secs(4 * 3));
    // The same rules with notes: the parent's find and create fit in two.
    let notes = rules.replace("\"incidents\"", "\"notes\"");
    let mut vars = BASE.to_vec();
    vars.push(("ROUTING_RULES", &notes));
    assert_eq!(
        load(&vars).unwrap().settings.retry.attempt,
        Duration::from_secs(2 * 3)
    );
    // A worker deadline that holds two requests but not four is refused,
    // naming the arithmetic.
    let mut vars = BASE.to_vec();
    vars.push(("ROUTING_RULES", rules));
    vars.push((
        "DELIVERY_QUEUE_URL",
        "https://sqs.eu-west-1.amazonaws.com/1/q.fifo",
    ));
    vars.push(("WORKER_DEADLINE_MS", "9000"));
    let e = load(&vars).unwrap_err();
    assert!(e.problem.contains("4 requests"), "{e}");
}
