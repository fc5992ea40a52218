//! Node log tails for error messages, with caps scrubbed out.

use std::path::Path;

use crate::process::RUN_LOG;

/// How many lines of each node's log go into an error.
const TAIL_LINES: usize = 15;

/// The last lines of a node's log: `logs/twistd.log` when Tahoe wrote one, else the captured
/// stdout/stderr of `tahoe run` (which is where 1.20 logs). Caps are redacted.
pub(crate) fn tail(name: &str, dir: &Path) -> String {
    let candidates = [dir.join("logs").join("twistd.log"), dir.join(RUN_LOG)];
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(TAIL_LINES);
            let mut out = format!("--- last lines of {name}: {} ---\n", path.display());
            for line in &lines[start..] {
                out.push_str(&redact_caps(line));
                out.push('\n');
            }
            return out;
        }
    }
    format!("--- {name}: no log written in {} ---\n", dir.display())
}

/// Replaces everything that looks like a capability (`URI:` up to the next delimiter) with
/// `URI:<redacted>`, so that answers and logs can go into error messages.
pub(crate) fn redact_caps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("URI:") {
        out.push_str(&rest[..pos]);
        out.push_str("URI:<redacted>");
        let after = &rest[pos + 4..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.')))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_cap() {
        let text = "bad \"URI:DIR2:abc:def\" and URI:SSK-RO:x:y/child; ok";
        assert_eq!(
            redact_caps(text),
            "bad \"URI:<redacted>\" and URI:<redacted>/child; ok"
        );
        assert_eq!(redact_caps("nothing here"), "nothing here");
    }
}
