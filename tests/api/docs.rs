//! The docs against the code, so that a newcomer's walk through them works:
//! every environment variable the code reads has a row in the configuration
//! reference and every row names one it reads; the README's and the guides'
//! replay transcripts print what they say (`transcripts`); every relative
//! link and anchor leads somewhere (`links`); the README's test command is
//! the one CI runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod links;
mod transcripts;

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every guide under docs/, with their text.
fn pages() -> Vec<(PathBuf, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guides.sort();
    paths.extend(guides);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// A fenced code block: its info string and its lines, without the fence's
/// indentation (blocks inside list items are indented).
pub struct Block {
    pub info: String,
    pub lines: Vec<String>,
    /// The line of the opening fence, 1-based, for messages.
    pub at: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    // The open block and its fence's indentation.
    let mut open: Option<(usize, Block)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if open.is_none() {
            if let Some(info) = trimmed.strip_prefix("```") {
                let block = Block {
                    info: info.trim().to_string(),
                    lines: Vec::new(),
                    at: n + 1,
                };
                open = Some((indent, block));
            }
            continue;
        }
        if trimmed == "```" {
            out.push(open.take().unwrap().1);
            continue;
        }
        let (fence, block) = open.as_mut().unwrap();
        let cut = line.len().min(*fence);
        let inner = if line.is_char_boundary(cut) && line[..cut].trim().is_empty() {
            &line[cut..]
        } else {
            line
        };
        block.lines.push(inner.to_string());
    }
    assert!(open.is_none(), "a code block is never closed");
    out
}

// ---------------------------------------------------------------------------
// The configuration reference, both ways.

/// Names in capitals the code spells that are not its settings.
const NOT_SETTINGS: [(&str, &str); 3] = [
    ("HPD_CI", "a BMC Helix form field"),
    ("CARGO_PKG_VERSION", "cargo's, at build time (env!)"),
    ("CARGO_MANIFEST_DIR", "cargo's, at build time (env!)"),
];

/// The code of `dir`, without tests: files named `tests.rs`, folders named
/// `tests`, and a file's own `#[cfg(test)] mod tests { … }` at its end.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "tests" {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("\n#[cfg(test)]\nmod tests {").next().unwrap();
            out.push(code.to_string());
        }
    }
}

fn is_var(name: &str) -> bool {
    name.contains('_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every string literal in `src` (tests aside) that is a variable's name:
/// the code reads variables by name, through `Env::get`, `number`,
/// `required`, helpers that take the name, `std::env::var` or a list of
/// names, so every name it reads is spelt there.
fn variables_read() -> BTreeSet<String> {
    let mut texts = Vec::new();
    sources(&root().join("src"), &mut texts);
    let mut vars = BTreeSet::new();
    for text in &texts {
        // `"NAME"` wherever it stands, whatever quotes came before.
        for (at, _) in text.match_indices('"') {
            let name: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let closed = text[at + 1 + name.len()..].starts_with('"');
            if closed && is_var(&name) && !NOT_SETTINGS.iter().any(|(k, _)| *k == name) {
                vars.insert(name);
            }
        }
    }
    vars
}

/// The variables named in the first column of docs/CONFIGURATION.md's
/// reference tables (the section "Reference", up to the next `## `).
fn variables_in_reference() -> BTreeSet<String> {
    let page = std::fs::read_to_string(root().join("docs/CONFIGURATION.md")).unwrap();
    let section = page
        .split("\n## Reference\n")
        .nth(1)
        .expect("docs/CONFIGURATION.md has a Reference section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|w| is_var(w))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_variable_the_code_reads_is_in_the_configuration_reference_and_back() {
    let read = variables_read();
    assert!(read.len() > 60, "the scan finds the variables: {read:?}");
    for var in [
        "AWS_LAMBDA_RUNTIME_API",
        "_HANDLER",
        "RECORD_TTL_DAYS",
        "BMC_URL",
    ] {
        assert!(read.contains(var), "the scan finds {var}: {read:?}");
    }
    let reference = variables_in_reference();
    let missing: Vec<&String> = read.difference(&reference).collect();
    assert!(
        missing.is_empty(),
        "read by the code, missing from docs/CONFIGURATION.md's reference: {missing:?}"
    );
    let unread: Vec<&String> = reference.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "in docs/CONFIGURATION.md's reference, but no code reads them (move them to \
         \"Read by others\", or remove them): {unread:?}"
    );
}

// ---------------------------------------------------------------------------
// The README's test command and CI's.

#[test]
fn the_readmes_test_command_is_the_one_ci_runs() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let line = ci
        .lines()
        .find(|l| l.contains("cargo test"))
        .expect(".ci/run runs cargo test");
    // CI also keeps a log of it.
    let command = line.split(" 2>&1").next().unwrap().trim();
    assert!(
        command.ends_with("cargo test --locked --all-targets"),
        "{command}"
    );
    for page in ["README.md", "docs/TESTS.md"] {
        let text = std::fs::read_to_string(root().join(page)).unwrap();
        let shown = blocks(&text)
            .into_iter()
            .filter(|b| b.info == "sh")
            .flat_map(|b| b.lines)
            .any(|l| l.trim() == command);
        assert!(
            shown,
            "{page} shows the test command .ci/run runs: {command}"
        );
    }
}
