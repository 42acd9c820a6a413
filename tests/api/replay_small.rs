//! replay's small promises: clear words for a wrong state folder, counts
//! in good English, `--json` wherever there is output, and an exit status
//! that survives a closed pipe.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::replay_roles::{json_lines, run};

#[test]
fn a_state_that_is_a_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let (code, stdout, stderr) = run(&file, &["events/metric-static-fired.json"], &[]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(
        stderr.contains("--state") && stderr.contains("is a file; name a folder"),
        "{stderr}"
    );
    assert!(!stderr.contains("File exists"), "{stderr}");
}

#[test]
fn one_event_is_one_event() {
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(state.path(), &["events/metric-static-fired.json"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout
            .trim_end()
            .ends_with("\n1 event: 1 created; 0 failed"),
        "{stdout}"
    );
}

#[test]
fn print_event_prints_one_json_line_per_event_with_json() {
    let state = tempfile::tempdir().unwrap();
    let files = [
        "events/metric-static-fired.json",
        "events/sqs-worker-batch.json",
    ];
    let (code, stdout, _) = run(
        state.path(),
        &[&["--print-event", "--json"][..], &files].concat(),
        &[],
    );
    assert_eq!(code, 0);
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0]["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    assert_eq!(lines[1]["Records"].as_array().unwrap().len(), 3);
    // Without --json, for people: indented.
    let (_, pretty, _) = run(state.path(), &["--print-event", files[0]], &[]);
    assert!(pretty.lines().count() > 10, "{pretty}");
    serde_json::from_str::<Value>(&pretty).unwrap();
}

#[test]
fn a_sync_round_with_nothing_to_do_still_prints_its_summary_with_json() {
    let state = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(
        state.path(),
        &["--sync", "--json", "--itsm", "dry-run"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(
        (&lines[0]["sync"]["examined"], &lines[0]["sync"]["dry_run"]),
        (&Value::from(0), &Value::from(true))
    );
}

#[test]
fn a_closed_pipe_keeps_the_exit_status_of_what_was_processed() {
    // `replay … | head -1` after a refused event: the run failed, and says so.
    let fired = format!(
        "{}/events/metric-static-fired.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replay"))
        .arg("--state")
        .arg(state.path())
        .args(["--token", "eyJhbGciOiJub25lIn0.e30."])
        .args(std::iter::repeat_n(&fired, 200))
        .env("ENTRA_TENANT_ID", "aaaabbbb-0000-cccc-1111-dddd2222eeee")
        .env("ENTRA_AUDIENCES", "api://x")
        .env("ENTRA_JWKS_URL", "file:///nonexistent/jwks.json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
