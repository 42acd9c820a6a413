//! The docs against the code: every environment variable the code reads has
//! a row in the README's configuration reference.

use std::collections::BTreeSet;
use std::path::Path;

/// The calls through which the code reads a variable by name.
const READERS: [&str; 7] = ["get", "number", "required", "list", "var", "var_os", "secs"];

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn is_var(name: &str) -> bool {
    name.contains('_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every `reader("NAME"` in `src`.
fn variables_read() -> BTreeSet<String> {
    let mut texts = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut texts,
    );
    let mut vars = BTreeSet::new();
    for text in &texts {
        for (at, _) in text.match_indices("(\"") {
            let before = &text[..at];
            let reader = before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if !READERS.contains(&reader) {
                continue;
            }
            let name: String = text[at + 2..].chars().take_while(|c| *c != '"').collect();
            if is_var(&name) {
                vars.insert(name);
            }
        }
    }
    vars
}

#[test]
fn every_variable_the_code_reads_is_in_the_configuration_reference() {
    let readme = include_str!("../../README.md");
    let reference: String = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').nth(1).unwrap_or(""))
        .collect();
    let read = variables_read();
    assert!(read.len() > 60, "the scan finds the variables: {read:?}");
    let missing: Vec<&String> = read
        .iter()
        .filter(|v| !reference.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code, missing from the README's configuration reference: {missing:?}"
    );
}

/// The README's replay command lines (in code blocks) that run as they
/// stand: no placeholders, nothing sent, no AWS.
fn runnable_replay_lines() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let mut in_block = false;
    let mut out = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let Some(args) = line.trim().strip_prefix("cargo run --bin replay -- ") else {
            continue;
        };
        let args = args.split(" >").next().unwrap();
        if !in_block
            || args.contains(['[', '…'])
            || args.contains("--send")
            || args.contains("dynamodb")
        {
            continue;
        }
        out.push(args.split_whitespace().map(String::from).collect());
    }
    out
}

fn replay_in(state: &Path, args: &[String]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_replay"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("STATE_DIR", state)
        .env_remove("ENTRA_JWKS_URL")
        .env_remove("ITSM_KIND")
        .output()
        .unwrap()
}

#[test]
fn the_readmes_replay_examples_run_and_say_what_the_readme_says() {
    let lines = runnable_replay_lines();
    assert!(lines.len() >= 3, "{lines:?}");
    for args in &lines {
        let state = tempfile::tempdir().unwrap();
        let out = replay_in(state.path(), args);
        assert!(
            out.status.success(),
            "replay {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The Quickstart's first command, as its prose describes it: a create
    // and a resolve; run again, a stale Fired and an already resolved.
    let quickstart = &lines[0];
    let state = tempfile::tempdir().unwrap();
    let first = String::from_utf8(replay_in(state.path(), quickstart).stdout).unwrap();
    for says in [
        "201 created",
        "POST /api/now/table/incident",
        "200 resolved",
        "PATCH",
    ] {
        assert!(first.contains(says), "the README says {says:?}: {first}");
    }
    let again = String::from_utf8(replay_in(state.path(), quickstart).stdout).unwrap();
    for says in ["stale_fired", "already_resolved"] {
        assert!(again.contains(says), "the README says {says:?}: {again}");
    }
}
