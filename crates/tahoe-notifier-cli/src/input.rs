//! Reading one secret (a cap or a NURL) from stdin: piped in, or typed at a prompt that does not
//! echo. Secrets never come from argv, where other users of the machine can see them.

use std::io::{self, BufRead, IsTerminal};

use anyhow::{bail, Context as _};

/// More than any cap or NURL; a bound keeps a mistaken `< big-file` from filling memory.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// Reads the secret: from a hidden prompt when stdin is a terminal, else the first non-empty
/// line of stdin. `what` names it in the prompt and in errors (e.g. "cap"); `example` is a
/// command line showing how to pipe it in.
pub fn read_secret(what: &str, example: &str) -> anyhow::Result<String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let typed = rpassword::prompt_password(format!("Paste the {what} (it is not shown): "))
            .with_context(|| format!("cannot read the {what} from the terminal"))?;
        let trimmed = typed.trim();
        if trimmed.is_empty() {
            bail!("no {what} was entered");
        }
        return Ok(trimmed.to_owned());
    }
    first_non_empty_line(stdin.lock(), what)?.with_context(|| {
        format!("no {what} on stdin: pipe it in, e.g. `{example}`, or run the command in a terminal to be asked for it")
    })
}

/// The first line of `input` that is not blank, trimmed; `None` at the end of input.
fn first_non_empty_line(input: impl BufRead, what: &str) -> anyhow::Result<Option<String>> {
    let mut bounded = input.take(MAX_INPUT_BYTES);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = bounded
            .read_until(b'\n', &mut line)
            .context("cannot read stdin")?;
        if read == 0 {
            if bounded.limit() == 0 {
                bail!("stdin holds more than {MAX_INPUT_BYTES} bytes before any {what}");
            }
            return Ok(None);
        }
        // The line is not quoted in the error: it may be the secret with a stray byte in it.
        let text = std::str::from_utf8(&line)
            .map_err(|_| anyhow::anyhow!("the {what} on stdin is not valid UTF-8 text"))?;
        let text = text.trim();
        if !text.is_empty() {
            return Ok(Some(text.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_non_empty_line_trimmed() {
        let input = b"\n  \r\n  URI:DIR2-RO:abc \r\nsecond\n" as &[u8];
        assert_eq!(
            first_non_empty_line(input, "cap").unwrap().as_deref(),
            Some("URI:DIR2-RO:abc")
        );
        assert_eq!(
            first_non_empty_line(b"last-without-newline" as &[u8], "cap")
                .unwrap()
                .as_deref(),
            Some("last-without-newline")
        );
    }

    #[test]
    fn empty_input_is_none_and_bad_input_is_refused_without_quoting_it() {
        assert_eq!(first_non_empty_line(b"\n\n" as &[u8], "cap").unwrap(), None);
        let err = first_non_empty_line(b"URI:secret\xff\n" as &[u8], "cap").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let blank = vec![b'\n'; usize::try_from(MAX_INPUT_BYTES).unwrap() + 10];
        assert!(first_non_empty_line(blank.as_slice(), "cap").is_err());
    }
}
