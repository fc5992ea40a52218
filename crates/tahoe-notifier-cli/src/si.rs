//! `tahoe-notifier si`: storage index, kind and mutability of caps read from stdin.
//!
//! The storage index is what a notifier subscribes to; this lets a user or a script find it
//! without the cap ever appearing in argv, in the output or in an error message.

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use tahoe_caps::Cap;

/// A cap line longer than this is not a cap; refusing it keeps memory bounded on hostile input.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Width of the kind column in text output: the longest short name, `DIR2-MDMF-Verifier`.
const KIND_COLUMN_WIDTH: usize = 18;

/// Print the storage index of each cap on stdin, one cap per line.
///
/// Text output: `<storage index>  <kind>  mutable|immutable  directory|file` (`-` as the
/// storage index of literal caps, which have none), where the kind is the cap's prefix name as
/// Tahoe writes it (`DIR2-RO`, `MDMF`, `CHK`, …) and "mutable" means the slot can change, which
/// holds for mutable verify-caps too. Blank lines are skipped. A bad line gets an
/// error on stderr naming its line number, never the cap; the exit code is then 1.
///
/// With the global `--json`: one JSON object per cap with the fields line, storage_index, kind,
/// format, mutable, directory and role.
#[derive(Debug, clap::Args)]
pub struct SiArgs {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Text,
    Json,
}

/// What happened to the input, for the exit code.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    caps: usize,
    failed_lines: usize,
}

/// Runs the command on stdin and stdout. `Err` only when stdin or stdout fail; bad lines are
/// reported on stderr and give exit code 1.
pub fn run(_args: &SiArgs, json: bool) -> anyhow::Result<ExitCode> {
    let format = if json {
        OutputFormat::Json
    } else {
        OutputFormat::Text
    };
    let summary = describe_caps(
        io::stdin().lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
        format,
    )?;
    Ok(if summary.failed_lines > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn describe_caps(
    mut input: impl BufRead,
    output: &mut impl Write,
    errors: &mut impl Write,
    format: OutputFormat,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut line = Vec::new();
    let mut line_number = 0usize;
    loop {
        let read = read_bounded_line(&mut input, &mut line).context("reading stdin")?;
        if read == LineRead::EndOfInput {
            break;
        }
        line_number += 1;
        let outcome = match read {
            LineRead::TooLong => Err(format!(
                "longer than {MAX_LINE_BYTES} bytes, which no cap is"
            )),
            _ => describe_line(&line, line_number, format),
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(description)) => {
                summary.caps += 1;
                if let Err(error) = writeln!(output, "{description}") {
                    // `si | head` closes the pipe early: stop reading, this is not a failure.
                    if error.kind() == io::ErrorKind::BrokenPipe {
                        return Ok(summary);
                    }
                    return Err(error).context("writing stdout");
                }
            }
            Err(problem) => {
                summary.failed_lines += 1;
                writeln!(errors, "line {line_number}: {problem}").context("writing stderr")?;
            }
        }
    }
    output.flush().context("writing stdout")?;
    if summary.failed_lines > 0 {
        writeln!(
            errors,
            "{} of {} cap lines failed",
            summary.failed_lines,
            summary.failed_lines + summary.caps
        )
        .context("writing stderr")?;
    }
    Ok(summary)
}

/// One output line for one input line; `Ok(None)` for a blank line. The error text never
/// contains the line itself.
fn describe_line(
    raw: &[u8],
    line_number: usize,
    format: OutputFormat,
) -> Result<Option<String>, String> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err("not valid UTF-8".to_owned());
    };
    // The line ending belongs to the input's framing, not to the cap; CRLF files are common.
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let cap: Cap = text.parse().map_err(|error| format!("{error}"))?;
    Ok(Some(match format {
        OutputFormat::Text => text_line(&cap),
        OutputFormat::Json => json_line(&cap, line_number),
    }))
}

fn text_line(cap: &Cap) -> String {
    let storage_index = cap
        .storage_index()
        .map_or_else(|| "-".to_owned(), |si| si.to_string());
    format!(
        "{storage_index:<26}  {:<KIND_COLUMN_WIDTH$}  {}  {}",
        cap.kind().short_name(),
        if cap.is_mutable() {
            "mutable"
        } else {
            "immutable"
        },
        if cap.is_directory() {
            "directory"
        } else {
            "file"
        },
    )
}

fn json_line(cap: &Cap, line_number: usize) -> String {
    serde_json::json!({
        "line": line_number,
        "storage_index": cap.storage_index().map(|si| si.to_string()),
        "kind": cap.kind().short_name(),
        "format": cap.format().as_str(),
        "mutable": cap.is_mutable(),
        "directory": cap.is_directory(),
        "role": cap.role().as_str(),
    })
    .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    Line,
    TooLong,
    EndOfInput,
}

/// Reads up to and including the next `\n` into `line`, keeping at most `MAX_LINE_BYTES`; the
/// rest of an overlong line is skipped.
fn read_bounded_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<LineRead> {
    line.clear();
    let limit = (MAX_LINE_BYTES + 1) as u64;
    let read = Read::take(&mut *input, limit).read_until(b'\n', line)?;
    if read == 0 {
        return Ok(LineRead::EndOfInput);
    }
    if line.len() <= MAX_LINE_BYTES || line.last() == Some(&b'\n') {
        return Ok(LineRead::Line);
    }
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            input.consume(end + 1);
            break;
        }
        let skipped = buffer.len();
        input.consume(skipped);
    }
    Ok(LineRead::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_CAP: &str =
        "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    fn run_on(input: &[u8], format: OutputFormat) -> (Summary, String, String) {
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let summary = describe_caps(input, &mut output, &mut errors, format).unwrap();
        (
            summary,
            String::from_utf8(output).unwrap(),
            String::from_utf8(errors).unwrap(),
        )
    }

    #[test]
    fn text_output_has_four_columns() {
        let (summary, output, errors) = run_on(
            format!("{READ_CAP}\r\n\n  \nURI:LIT:\n").as_bytes(),
            OutputFormat::Text,
        );
        assert_eq!(
            summary,
            Summary {
                caps: 2,
                failed_lines: 0
            }
        );
        assert_eq!(errors, "");
        let lines: Vec<Vec<&str>> = output
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "3zuybt32gbkka6auscupso6swe",
                    "DIR2-RO",
                    "mutable",
                    "directory"
                ],
                vec!["-", "LIT", "immutable", "file"],
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_by_number_and_skipped() {
        let mut input = format!("garbage\n{READ_CAP}\n").into_bytes();
        input.extend_from_slice(b"URI:LIT:\xff\n");
        let (summary, output, errors) = run_on(&input, OutputFormat::Json);
        assert_eq!(
            summary,
            Summary {
                caps: 1,
                failed_lines: 2
            }
        );
        let object: serde_json::Value = serde_json::from_str(output.trim_end()).unwrap();
        assert_eq!(object["line"], 2);
        assert_eq!(object["storage_index"], "3zuybt32gbkka6auscupso6swe");
        assert_eq!(object["kind"], "DIR2-RO");
        assert!(errors.contains("line 1: not a cap"), "{errors}");
        assert!(errors.contains("line 3: not valid UTF-8"), "{errors}");
        assert!(errors.contains("2 of 3 cap lines failed"), "{errors}");
        assert!(!errors.contains("uk4r3cnhlj2wyiah6zcj3ndhwi"));
    }

    #[test]
    fn overlong_lines_are_refused_without_keeping_them() {
        let mut input = vec![b'a'; MAX_LINE_BYTES * 3];
        input.push(b'\n');
        input.extend_from_slice(READ_CAP.as_bytes());
        let (summary, output, errors) = run_on(&input, OutputFormat::Text);
        assert_eq!(
            summary,
            Summary {
                caps: 1,
                failed_lines: 1
            }
        );
        assert!(errors.starts_with("line 1: longer than"), "{errors}");
        assert!(output.starts_with("3zuybt32gbkka6auscupso6swe"));
    }
}
