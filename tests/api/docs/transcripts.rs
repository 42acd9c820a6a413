//! The replay transcripts in README.md and docs/*.md, run and compared, in
//! the manner of trycmd's Markdown cases: a `console` block holds `$ cargo
//! run --bin replay -- …` lines (settings `NAME=value` may come first), an
//! optional `? N` line with the exit code (0 when absent), then what the
//! command prints on stdout. In the expected text `[..]` stands for any text
//! within a line and a line `...` for any number of lines. Each block runs in
//! the repository with a fresh state folder and an empty environment besides,
//! so that one block's commands share state and nothing else leaks in.
//!
//! The other replay command lines in code blocks (usage lines with
//! placeholders, `--send`, `--store dynamodb` aside) must run and succeed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Block, blocks, pages, root};

const REPLAY: &str = "cargo run --bin replay --";

/// One `$` line of a transcript and what it must print.
struct Step {
    /// The line as written, for messages.
    line: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    status: i32,
    expected: Vec<String>,
}

struct Transcript {
    page: PathBuf,
    at: usize,
    steps: Vec<Step>,
}

fn parse(page: &Path, block: &Block) -> Transcript {
    let mut steps: Vec<Step> = Vec::new();
    for line in &block.lines {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(command_step(page, block.at, command));
            continue;
        }
        let step = steps.last_mut().unwrap_or_else(|| {
            panic!(
                "{}:{}: a console block starts with a `$ ` line",
                page.display(),
                block.at
            )
        });
        match line.strip_prefix("? ") {
            Some(code) if step.expected.is_empty() => {
                step.status = code.trim().parse().expect("`? N`: an exit code");
            }
            _ => step.expected.push(line.trim_end().to_string()),
        }
    }
    Transcript {
        page: page.to_path_buf(),
        at: block.at,
        steps,
    }
}

fn command_step(page: &Path, at: usize, command: &str) -> Step {
    let mut env = Vec::new();
    let mut rest = command.trim();
    // Settings before the command, as a shell takes them.
    while let Some((word, tail)) = rest.split_once(' ') {
        match word.split_once('=') {
            Some((name, value)) if super::is_var(name) => {
                env.push((name.to_string(), value.to_string()));
                rest = tail.trim_start();
            }
            _ => break,
        }
    }
    let args = rest.strip_prefix(REPLAY).unwrap_or_else(|| {
        panic!(
            "{}:{at}: a console block is a replay transcript; `{command}` is not \
             `{REPLAY} …` (show other commands in an sh block)",
            page.display()
        )
    });
    assert!(
        !args.contains(['"', '\'', '\\', '|', '>', '<', '$']),
        "{}:{at}: `{command}`: a transcript's command takes no quoting, pipes or redirections",
        page.display()
    );
    Step {
        line: command.to_string(),
        env,
        args: args.split_whitespace().flat_map(expand).collect(),
        status: 0,
        expected: Vec::new(),
    }
}

/// A path with `*` in its last part, as the shell expands it (sorted); any
/// other word as it is.
fn expand(word: &str) -> Vec<String> {
    if !word.contains('*') {
        return vec![word.to_string()];
    }
    let (dir, pattern) = word.rsplit_once('/').unwrap_or((".", word));
    assert!(!dir.contains('*'), "{word}: `*` only in the last part");
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| wildcard(pattern, n, "*"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{word} matches no file");
    names
}

/// Whether `text` is `pattern` with each `any` standing for any text.
fn wildcard(pattern: &str, text: &str, any: &str) -> bool {
    let parts: Vec<&str> = pattern.split(any).collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    // The leftmost place of each middle part leaves the most room for the rest.
    let mut middle = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match middle.find(part) {
            Some(at) => middle = &middle[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the printed lines match the expected ones (`...`: any lines).
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => match actual.split_first() {
            Some((line, more)) => wildcard(first, line.trim_end(), "[..]") && matches(rest, more),
            None => false,
        },
    }
}

fn replay(state: &Path, env: &[(String, String)], args: &[String]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replay"));
    command
        .current_dir(root())
        .args(args)
        .env_clear()
        .env("STATE_DIR", state);
    for keep in ["PATH", "TMPDIR"] {
        if let Some(v) = std::env::var_os(keep) {
            command.env(keep, v);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

fn transcripts() -> Vec<Transcript> {
    pages()
        .iter()
        .flat_map(|(page, text)| {
            blocks(text)
                .iter()
                .filter(|b| b.info == "console")
                .map(|b| parse(page, b))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_transcript_prints_what_the_docs_say() {
    let all = transcripts();
    // The Quickstart, a second run, the worker's batch, explain, a storm,
    // a queued answer with its reason, a dry-run drain, a sync round.
    assert!(all.len() >= 6, "{} transcripts", all.len());
    let commands: Vec<&str> = all
        .iter()
        .flat_map(|t| t.steps.iter().map(|s| s.line.as_str()))
        .collect();
    for flag in ["--explain", "--drain", "--sync", "--send"] {
        assert!(
            commands.iter().any(|c| c.contains(flag)),
            "a transcript shows {flag}"
        );
    }
    let outputs: Vec<&String> = all
        .iter()
        .flat_map(|t| t.steps.iter().flat_map(|s| &s.expected))
        .collect();
    for says in [
        "202 queued",
        "in the outbox (itsm_failed: ",
        "would_deliver",
        "sync: ",
    ] {
        assert!(
            outputs.iter().any(|l| l.contains(says)),
            "a transcript shows {says:?}"
        );
    }
    for t in &all {
        let state = tempfile::tempdir().unwrap();
        for step in &t.steps {
            let out = replay(state.path(), &step.env, &step.args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let printed: Vec<&str> = stdout.lines().collect();
            let status = out.status.code().unwrap_or(-1);
            assert!(
                status == step.status && matches(&step.expected, &printed),
                "{}:{}: `$ {}` exited {status} (the docs say {}) and printed\n{stdout}\n\
                 stderr:\n{}\nwhere the docs say\n{}",
                t.page.strip_prefix(root()).unwrap_or(&t.page).display(),
                t.at,
                step.line,
                step.status,
                String::from_utf8_lossy(&out.stderr),
                step.expected.join("\n"),
            );
        }
    }
}

/// The replay command lines outside transcripts that run as they stand: no
/// placeholders, nothing sent, no AWS.
fn runnable_replay_lines() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (page, text) in pages() {
        for block in blocks(&text).iter().filter(|b| b.info != "console") {
            for line in &block.lines {
                let Some(args) = line.trim().strip_prefix(&format!("{REPLAY} ")) else {
                    continue;
                };
                let args = args.split(" >").next().unwrap();
                if args.contains(['[', '…', '<'])
                    || args.contains("--send")
                    || args.contains("dynamodb")
                {
                    continue;
                }
                let at = format!("{}:{}: {line}", page.display(), block.at);
                out.push((at, args.split_whitespace().flat_map(expand).collect()));
            }
        }
    }
    out
}

#[test]
fn the_other_replay_command_lines_run() {
    let lines = runnable_replay_lines();
    assert!(lines.len() >= 4, "{lines:?}");
    for (at, args) in &lines {
        let state = tempfile::tempdir().unwrap();
        let out = replay(state.path(), &[], args);
        assert!(
            out.status.success(),
            "{at}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_quickstart_shows_its_own_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks = blocks(&readme);
    let first = |info: &str, prefix: &str| -> String {
        blocks
            .iter()
            .filter(|b| b.info == info)
            .flat_map(|b| &b.lines)
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix:?} in the README's {info} blocks"))
    };
    assert_eq!(
        first("sh", REPLAY),
        first("console", &format!("$ {REPLAY}"))
    );
}

#[test]
fn the_matcher_reads_wildcards_as_trycmd_does() {
    let e = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(matches(&e(&["a [..] c"]), &["a b c"]));
    assert!(matches(&e(&["a [..]"]), &["a b"]));
    assert!(matches(&e(&["[..]"]), &[""]));
    assert!(!matches(&e(&["a [..] c"]), &["a b d"]));
    assert!(matches(&e(&["x", "...", "z"]), &["x", "y1", "y2", "z"]));
    assert!(matches(&e(&["x", "...", "z"]), &["x", "z"]));
    assert!(!matches(&e(&["x", "...", "z"]), &["x", "y"]));
    assert!(!matches(&e(&["x"]), &["x", "more"]));
    assert!(wildcard("[..]ab[..]ab", "abab", "[..]"));
    assert!(!wildcard("ab[..]ba", "aba", "[..]"));
}
