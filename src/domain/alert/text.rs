//! Text the domain writes into ITSM fields: cleaned of control characters
//! and cut to the field's limit, with alert-controlled values kept inside
//! their own field. A leaf: it knows nothing of alerts.

use std::borrow::Cow;

/// Whether `c` ends a line for some reader of an ITSM field or a log.
fn is_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Bidirectional formatting characters: they make text display in another
/// order than it is stored (a reversed "Link:" line, "Trojan Source").
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Replaces each line break (a `\r\n` pair counting as one) with `with`.
fn replace_breaks<'a>(s: &'a str, with: &str) -> Cow<'a, str> {
    if !s.chars().any(is_break) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if is_break(c) {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push_str(with);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Indentation of a value's continuation lines.
pub const CONTINUATION: &str = "\n    ";

/// Alert text as the value of a labelled line (`Label: value`): a line
/// break continues the value on an indented line, so no value can begin a
/// line of its own and pass for one of the bridge's labels.
pub fn continued(s: &str) -> Cow<'_, str> {
    replace_breaks(s, CONTINUATION)
}

/// Alert text inside a sentence, a list item or a one-line field: line
/// breaks become spaces.
pub fn inline(s: &str) -> Cow<'_, str> {
    replace_breaks(s, " ")
}

/// Drops control and bidirectional formatting characters (keeping newlines
/// and tabs; other line breaks become spaces, since alert text reaches here
/// only through [`continued`] or [`inline`]) and cuts to `max` characters,
/// so nothing in a payload breaks the ITSM's field limits.
/// Takes the text by value: clean, short text (most of it) is returned as is.
pub fn clean(s: impl Into<String>, max: usize) -> String {
    let s = s.into();
    if s.len() <= max && plain(&s, true) {
        return s;
    }
    let mut out: String = s
        .chars()
        .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t') && !is_bidi(*c))
        .map(|c| if is_break(c) && c != '\n' { ' ' } else { c })
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
    fn alert_text_stays_inside_its_field() {
        let forged = "cpu\nLink: https://evil\r\nResource: x\u{2028}y\rz";
        assert_eq!(
            continued(forged),
            "cpu\n    Link: https://evil\n    Resource: x\n    y\n    z"
        );
        assert_eq!(inline(forged), "cpu Link: https://evil Resource: x y z");
        assert!(matches!(continued("plain"), Cow::Borrowed(_)));
        let bidi = "a\u{202E}kniL\u{202C}\u{2066}b\u{2069}\u{200F}";
        assert_eq!(clean(bidi, 100), "akniLb");
        assert_eq!(clean("a\u{2029}b\u{85}c", 100), "a bc");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_744_740_000), "2025-04-15T18:00:00Z");
    }
}
