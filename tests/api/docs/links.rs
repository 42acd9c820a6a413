//! Every relative link in README.md, docs/*.md and BENCHMARKS.md leads to a
//! file that exists, and every `#anchor` to a heading of that file, named
//! as GitHub names it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{pages, root};

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text outside code blocks and inline code.
fn prose(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            // Odd pieces between backticks are code.
            let outside: Vec<&str> = line.split('`').step_by(2).collect();
            out.push(outside.join(" "));
        }
    }
    out
}

/// The anchors of a page's headings (a repeated heading gets `-1`, `-2`…).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let base = slug(heading.trim_start_matches('#').replace('`', "").as_str());
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `[text](target)` targets in the page's prose.
fn targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').expect("a closed link");
            out.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_leads_somewhere() {
    let mut all: Vec<(PathBuf, String)> = pages();
    let benchmarks = root().join("BENCHMARKS.md");
    all.push((
        benchmarks.clone(),
        std::fs::read_to_string(&benchmarks).unwrap(),
    ));
    let mut checked = 0;
    let mut broken = Vec::new();
    for (page, text) in &all {
        for target in targets(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let dir = page.parent().unwrap();
            let path: PathBuf = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", shown(page)));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if !anchors(&text).contains(anchor) {
                broken.push(format!(
                    "{}: {target}: {} has no heading with that anchor",
                    shown(page),
                    shown(&path)
                ));
            }
        }
    }
    assert!(checked > 50, "{checked} links");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn anchors_are_named_as_github_names_them() {
    assert_eq!(
        slug(
            "ServiceNow (`ITSM_KIND=servicenow`)"
                .replace('`', "")
                .as_str()
        ),
        "servicenow-itsm_kindservicenow"
    );
    assert_eq!(slug("The outbox and --drain"), "the-outbox-and---drain");
    assert_eq!(slug("Drain at the ITSM's pace"), "drain-at-the-itsms-pace");
    assert_eq!(slug("5. The action group"), "5-the-action-group");
    let twice = anchors("# A\n## b\n```\n# not a heading\n```\n## B\n");
    assert_eq!(
        twice,
        ["a", "b", "b-1"].iter().map(|s| s.to_string()).collect()
    );
}
