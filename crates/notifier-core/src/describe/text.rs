//! Making untrusted text (child names, news messages, labels) safe to show as plain text.

/// Whether `c` is a bidirectional-formatting character: they can make shown text read
/// differently from what it is (e.g. a file name that appears to end in `.pdf`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Whether `c` is removed from shown text: C0/C1 controls (except newline and tab, which
/// [`clean_multiline`] keeps), DEL, bidi controls, and the byte-order mark.
fn is_removed(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c) || c == '\u{FEFF}'
}

/// Cleans multi-line text: `\r\n` and lone `\r` become `\n`, other controls are removed, tabs and
/// newlines are kept.
pub fn clean_multiline(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    normalized.chars().filter(|&c| !is_removed(c)).collect()
}

/// Cleans one line of text for a notification or a list: every control (newlines and tabs
/// too) becomes a space or is removed, runs of spaces are kept as they are, and the result is
/// cut to `max_chars` characters with `…` when longer.
pub fn clean_line(text: &str, max_chars: usize) -> String {
    let cleaned: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if is_removed(c) => None,
            c => Some(c),
        })
        .collect();
    truncate_chars(cleaned.trim(), max_chars)
}

/// Cuts `text` to at most `max_chars` characters, ending with `…` when cut.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let keep = max_chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_keeps_lines_and_drops_controls() {
        assert_eq!(
            clean_multiline("a\r\nb\rc\u{7}\u{1b}[31m\td\u{202E}e\u{85}f"),
            "a\nb\nc[31m\tdef"
        );
    }

    #[test]
    fn line_flattens_and_truncates() {
        assert_eq!(clean_line("  a\nb\tc\u{0}  ", 10), "a b c");
        assert_eq!(clean_line("abcdefghij", 5), "abcd…");
        assert_eq!(clean_line("report\u{202E}fdp.exe", 50), "reportfdp.exe");
        assert_eq!(truncate_chars("ééé", 3), "ééé");
        assert_eq!(truncate_chars("éééé", 3), "éé…");
    }
}
