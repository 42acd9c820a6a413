//! Text the domain writes into ITSM fields: cleaned of control characters
//! and cut to the field's limit. A leaf: it knows nothing of alerts.

/// Drops control characters (keeping newlines and tabs) and cuts to `max`
/// characters, so nothing in a payload breaks the ITSM's field limits.
/// Takes the text by value: clean, short text (most of it) is returned as is.
pub fn clean(s: impl Into<String>, max: usize) -> String {
    let s = s.into();
    if s.len() <= max && plain(&s, true) {
        return s;
    }
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    if out.chars().count() > max {
        out = out.chars().take(max - 1).collect();
        out.push('…');
    }
    out
}

/// `clean` for one-line fields: newlines and tabs become spaces too.
pub fn clean_line(s: impl Into<String>, max: usize) -> String {
    let s = s.into();
    if s.len() <= max && plain(&s, false) {
        return s;
    }
    let line: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    clean(line, max)
}

/// Printable ASCII (with newlines and tabs if `breaks`). A fold without
/// early exit, which the compiler vectorises; a char-by-char `is_control`
/// scan is not. Field texts are short, so reading to the end costs nothing.
fn plain(s: &str, breaks: bool) -> bool {
    let bad = s.bytes().fold(false, |bad, b| {
        let ok = (b.wrapping_sub(0x20) < 0x5f) | (breaks & ((b == b'\n') | (b == b'\t')));
        bad | !ok
    });
    !bad
}

/// Unix seconds as RFC 3339 (the time a record notes when Azure gave none).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_go_and_long_text_is_cut() {
        assert_eq!(clean("a\u{0}b\nc\td", 10), "ab\nc\td");
        assert_eq!(clean_line("a\nb\tc", 10), "a b c");
        let cut = clean("x".repeat(20), 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
        assert_eq!(clean("café", 4), "café", "counts characters, not bytes");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_744_740_000), "2025-04-15T18:00:00Z");
    }
}
