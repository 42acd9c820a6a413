//! replay recognises the Lambda event it is given, as `cargo lambda
//! invoke` hands it over: alerts to the webhook, SQS batches to the worker,
//! scheduled events to the sync role; anything else is named as unknown.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// replay's exit code, stdout and stderr, run from the repository with the
/// given arguments and environment (nothing else from the caller's).
pub(crate) fn run(state: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replay"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--state")
        .arg(state)
        .args(args);
    for var in [
        "ENTRA_TENANT_ID",
        "ENTRA_AUDIENCES",
        "ENTRA_JWKS_URL",
        "ITSM_KIND",
        "STATE_DIR",
        "SERVICENOW_INSTANCE_URL",
        "CORRELATION_TABLE",
        "ROUTING_RULES",
        "ROUTING_RULES_FILE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub(crate) fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn every_file_in_events_replays() {
    let state = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/events"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.sort();
    let args: Vec<&str> = std::iter::once("--json")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (code, stdout, stderr) = run(state.path(), &args, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    for file in &files {
        let of_file: Vec<&Value> = lines.iter().filter(|l| l["event"] == **file).collect();
        assert!(!of_file.is_empty(), "{file} printed nothing");
        for l in of_file {
            let status = l["status"].as_u64().unwrap_or(200);
            assert!(status < 400, "{l}");
        }
    }
}

#[test]
fn an_sqs_event_is_the_workers_batch_with_the_answer_it_would_give() {
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(
        state.path(),
        &["--json", "events/sqs-worker-batch.json"],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    let fates: Vec<(&str, &str, u64)> = lines[..3]
        .iter()
        .map(|l| {
            (
                l["fate"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
                l["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    // The storage alert's Fired then its Resolved, the log alert between:
    // each delivered in the batch's order through the dry-run ServiceNow.
    assert_eq!(
        fates,
        [
            ("delivered", "created", 1),
            ("delivered", "created", 1),
            ("delivered", "resolved", 2)
        ]
    );
    assert_eq!(
        lines[0]["message_id"],
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(lines[0]["itsm_requests"][0]["method"], "POST");
    assert_eq!(lines[2]["itsm_requests"][0]["method"], "PATCH");
    assert_eq!(lines[2]["incident"], lines[0]["incident"]);
    assert_eq!(lines[3]["batchItemFailures"], serde_json::json!([]));

    // The same batch again: copies, deleted without a call.
    let (code, stdout, _) = run(
        state.path(),
        &["--json", "events/sqs-worker-batch.json"],
        &[],
    );
    assert_eq!(code, 0);
    let again = json_lines(&stdout);
    assert!(
        again[..3].iter().all(
            |l| l["fate"] == "already_delivered" && l["itsm_requests"] == serde_json::json!([])
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_batch_the_itsm_cannot_take_goes_back_to_the_queue_message_by_message() {
    use crate::fakes::{Fake, Vendor};
    use crate::helpers::{SN_PASSWORD, SN_USER};
    let (servicenow, fake) = Fake::serve(Vendor::ServiceNow).await;
    fake.set_down(true);
    let state = tempfile::tempdir().unwrap();
    let (path, uri) = (state.path().to_path_buf(), servicenow.uri());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(
            &path,
            &["--json", "--send", "events/sqs-worker-batch.json"],
            &[
                ("SERVICENOW_INSTANCE_URL", &uri),
                ("SERVICENOW_USERNAME", SN_USER),
                ("SERVICENOW_PASSWORD", SN_PASSWORD),
                ("ITSM_TIMEOUT_MS", "300"),
                ("WORKER_DEADLINE_MS", "1000"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        code, 1,
        "what is not delivered fails the run: {stdout}\n{stderr}"
    );
    let lines = json_lines(&stdout);
    let fates: Vec<&str> = lines[..3]
        .iter()
        .map(|l| l["fate"].as_str().unwrap())
        .collect();
    // The first finds ServiceNow down; the breaker holds the second; the
    // third waits behind the first of its alert.
    assert_eq!(fates, ["retry", "retry", "skipped"]);
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("503"),
        "{}",
        lines[0]
    );
    let back: Vec<&str> = lines[3]["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        back,
        [
            "00000000-0000-4000-8000-000000000001",
            "00000000-0000-4000-8000-000000000002",
            "00000000-0000-4000-8000-000000000003"
        ]
    );
    assert!(fake.incidents().is_empty());
}

#[test]
fn a_scheduled_event_is_one_sync_round_with_its_summary() {
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(state.path(), &["--json", "events/sync-schedule.json"], &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["event"], "events/sync-schedule.json");
    assert_eq!(lines[0]["sync"]["dry_run"], true);
    assert_eq!(lines[0]["sync"]["examined"], 0);

    let (code, stdout, _) = run(state.path(), &["events/sync-schedule.json"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("events/sync-schedule.json: sync: 0 changed incidents"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("1 event: 1 sync_round; 0 failed"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_shape_gets_one_line_naming_the_shapes_replay_knows() {
    let state = tempfile::tempdir().unwrap();
    let file = state.path().join("sns.json");
    std::fs::write(&file, r#"{"Records":[{"EventSource":"aws:sns","Sns":{}}]}"#).unwrap();
    let other = state.path().join("other.json");
    std::fs::write(&other, r#"{"hello":"world"}"#).unwrap();
    for f in [&file, &other] {
        let (code, stdout, stderr) = run(state.path(), &[f.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for shape in [
            "function URL event",
            "common-schema alert",
            "SQS event",
            "scheduled event",
        ] {
            assert!(stderr.contains(shape), "{stderr}");
        }
        assert!(stderr.contains("nothing was processed"), "{stderr}");
    }
}

#[test]
fn itsm_kind_picks_the_itsm_when_itsm_is_absent_and_the_flag_wins() {
    let state = tempfile::tempdir().unwrap();
    let first_path = |stdout: &str| json_lines(stdout)[0]["itsm_requests"][0]["path"].clone();
    let (code, stdout, stderr) = run(
        state.path(),
        &["--json", "events/metric-static-fired.json"],
        &[("ITSM_KIND", "jira")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first_path(&stdout), "/rest/api/3/issue", "{stdout}");
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(
        state.path(),
        &[
            "--json",
            "--itsm",
            "bmc-helix",
            "events/metric-static-fired.json",
        ],
        &[("ITSM_KIND", "jira")],
    );
    assert_eq!(code, 0);
    let path = first_path(&stdout);
    assert!(path.as_str().unwrap().starts_with("/api/arsys/"), "{path}");
    // A kind the configuration does not know is named, as the Lambda names it.
    let (code, _, stderr) = run(
        state.path(),
        &["events/metric-static-fired.json"],
        &[("ITSM_KIND", "remedy")],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("ITSM_KIND") && stderr.contains("remedy"),
        "{stderr}"
    );
}

#[test]
fn state_dir_is_the_state_folder_when_state_is_absent() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("from-env");
    let out = Command::new(env!("CARGO_BIN_EXE_replay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "events/metric-static-fired.json"])
        .env("STATE_DIR", &state)
        .env_remove("ENTRA_JWKS_URL")
        .env_remove("ITSM_KIND")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(state.join("correlation.redb").exists());
    assert!(state.join("dev-jwks.json").exists());
    // The same alert again, same STATE_DIR: the record is there.
    let again = Command::new(env!("CARGO_BIN_EXE_replay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "events/metric-static-fired.json"])
        .env("STATE_DIR", &state)
        .env_remove("ENTRA_JWKS_URL")
        .env_remove("ITSM_KIND")
        .output()
        .unwrap();
    let line: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(line["outcome"], "duplicate", "{line}");
}
