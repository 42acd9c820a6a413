//! `infra/hot-text.ld`, the linker script release builds of the Lambda
//! binary link with (`build.rs`): a broken one would break every deploy, and
//! only release builds read it, so its shape is checked here.

#[test]
fn the_hot_text_script_is_one_overwrite_of_text_ending_with_everything_else() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/hot-text.ld");
    let script = std::fs::read_to_string(path).expect("infra/hot-text.ld");
    let body = script
        .split_once("*/")
        .map_or(script.as_str(), |(_, rest)| rest);
    let lines: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines[..2], ["OVERWRITE_SECTIONS {", ".text : {"]);
    assert_eq!(lines[lines.len() - 3..], ["*(.text .text.*)", "}", "}"]);
    let patterns = &lines[2..lines.len() - 3];
    let bad: Vec<&&str> = patterns
        .iter()
        .filter(|p| {
            let Some(name) = p.strip_prefix("*(.text.").and_then(|p| p.strip_suffix(')')) else {
                return true;
            };
            // LLD reads a pattern up to a space or parenthesis; mangled names
            // never hold one, and `*` is the only wildcard hot_order.py writes.
            name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_$.*".contains(c))
        })
        .collect();
    assert!(bad.is_empty(), "lines LLD would misread: {bad:?}");
    let ours = patterns
        .iter()
        .filter(|p| p.contains("11itsm_bridge"))
        .count();
    assert!(
        ours > 50,
        "only {ours} of the webhook's own functions are listed: remake it (scripts/hot_order.py)"
    );
}
