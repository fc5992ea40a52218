//! An async client for a Tahoe-LAFS gateway's web API (usually `http://127.0.0.1:3456/`).
//!
//! Only the calls the notifier needs: listing a directory or file (`GET /uri/$CAP?t=json`),
//! reading a file, adding a child, making directories. Every request names a cap in its URL, so
//! URLs are never logged or shown: errors and log lines name the operation and the HTTP status,
//! and any text from the gateway that could hold a cap passes through [`redact_caps`] first.
//!
//! Requests never go through an HTTP proxy (the environment's `HTTP_PROXY` would otherwise see
//! every cap) and never follow redirects (which could send a cap elsewhere).

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;
use tahoe_caps::Cap;
use thiserror::Error;

use crate::describe::snapshot::{self, Snapshot, SnapshotError, MAX_LISTING_BYTES};
use crate::describe::text::clean_line;

/// Requests its callers keep in flight at once (the engine's first listings): the connection
/// pool keeps as many idle sockets and no more.
pub const MAX_CONCURRENT_REQUESTS: usize = 4;

/// How long one request may take, from connecting to the last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer accepted for calls that return a cap (a cap is well under 1 KiB).
const MAX_CAP_ANSWER_BYTES: usize = 4096;

/// Most characters of a gateway's error text kept in an error.
const MAX_ERROR_DETAIL_CHARS: usize = 200;

/// Which kind of mutable directory to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirFormat {
    /// SDMF, Tahoe's default: the whole directory is one small mutable file.
    #[default]
    Sdmf,
    /// MDMF: a mutable file that can be written in parts.
    Mdmf,
}

impl DirFormat {
    fn as_query(self) -> &'static str {
        match self {
            Self::Sdmf => "sdmf",
            Self::Mdmf => "mdmf",
        }
    }
}

/// Why a gateway call failed. No variant holds a cap or a URL that contains one.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The gateway URL given in the configuration is unusable.
    #[error("the gateway URL is unusable: {0}")]
    BadUrl(String),
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client for the gateway: {0}")]
    Client(String),
    /// A child name that cannot be used in a directory.
    #[error("cannot {operation}: the name {name:?} is not a valid child name (empty, `.`, `..` or containing `/`)")]
    BadName {
        /// The operation.
        operation: &'static str,
        /// The name, cleaned for display.
        name: String,
    },
    /// A write was asked of a cap that cannot write.
    #[error("cannot {operation}: the cap is read-only (a write-cap is needed)")]
    ReadOnly {
        /// The operation.
        operation: &'static str,
    },
    /// A directory operation was asked of a file cap.
    #[error("cannot {operation}: the cap is not a directory")]
    NotADirectory {
        /// The operation.
        operation: &'static str,
    },
    /// The gateway could not be reached or the transfer broke off.
    #[error("cannot {operation}: {reason}")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// What went wrong (never the URL).
        reason: String,
    },
    /// The gateway answered with an HTTP error.
    #[error("cannot {operation}: the gateway answered HTTP {status}{}", detail_suffix(.detail))]
    Status {
        /// The operation.
        operation: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The first line of the gateway's explanation, caps redacted; may be empty.
        detail: String,
    },
    /// The answer was larger than accepted.
    #[error("cannot {operation}: the answer is larger than {limit} bytes")]
    TooLarge {
        /// The operation.
        operation: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// A `?t=json` answer could not be read.
    #[error("cannot {operation}: {source}")]
    Listing {
        /// The operation.
        operation: &'static str,
        /// The parse error (positions only, never content).
        source: SnapshotError,
    },
    /// The answer was not what Tahoe's web API gives.
    #[error("cannot {operation}: unexpected answer from the gateway: {detail}")]
    BadAnswer {
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// A client for one gateway. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Gateway {
    base: Url,
    client: reqwest::Client,
}

impl Gateway {
    /// A client for the gateway at `base_url` (e.g. `http://127.0.0.1:3456/`) with the
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Gateway, GatewayError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client whose requests each time out after `timeout`.
    ///
    /// The URL must be `http` or `https` with a host, and without user name, password, query or
    /// fragment (a password in a config file is a leak waiting to happen; the web API needs
    /// none). A path is kept as a prefix, for gateways behind a reverse proxy.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Gateway, GatewayError> {
        let base = validate_base_url(base_url)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            // Idle sockets beyond what callers use at once only hold buffers (and the gateway's
            // file descriptors).
            .pool_max_idle_per_host(MAX_CONCURRENT_REQUESTS)
            .pool_idle_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tahoe-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GatewayError::Client(error_chain(&e.without_url())))?;
        Ok(Gateway { base, client })
    }

    /// The gateway's base URL (holds no cap).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /uri/$CAP?t=json`, parsed into a [`Snapshot`] (a directory's children or a file's
    /// size).
    pub async fn list(&self, cap: &Cap) -> Result<Snapshot, GatewayError> {
        const OP: &str = "list a directory or file through the gateway";
        let bytes = self.list_raw(OP, cap).await?;
        snapshot::parse_listing(&bytes).map_err(|source| GatewayError::Listing {
            operation: OP,
            source,
        })
    }

    /// `GET /uri/$CAP`: the contents of a file, refused when longer than `max_bytes`.
    pub async fn read(&self, cap: &Cap, max_bytes: usize) -> Result<Vec<u8>, GatewayError> {
        const OP: &str = "read a file through the gateway";
        if cap.is_directory() {
            return Err(GatewayError::BadAnswer {
                operation: OP,
                detail: "the cap is a directory, not a file",
            });
        }
        let url = self.cap_url(cap, &[])?;
        self.call(OP, Method::GET, url, None, max_bytes).await
    }

    /// The read-only cap of the child `name` of the directory `dir` (its `ro_uri`, or the
    /// read-only form of its `rw_uri`), or `None` when there is no such child.
    pub async fn child_cap(&self, dir: &Cap, name: &str) -> Result<Option<Cap>, GatewayError> {
        const OP: &str = "look up a directory child through the gateway";
        let children = self.children_json(OP, dir).await?;
        match children.get(name) {
            None => Ok(None),
            Some(child) => child_read_cap(child)
                .map(Some)
                .ok_or(GatewayError::BadAnswer {
                    operation: OP,
                    detail: "the child has no cap this program understands",
                }),
        }
    }

    /// Every child of `dir` with its read-only cap, sorted by name. Children whose cap this
    /// program cannot parse (unknown kinds) are left out with a warning.
    pub async fn list_children_caps(&self, dir: &Cap) -> Result<Vec<(String, Cap)>, GatewayError> {
        const OP: &str = "list a directory's children through the gateway";
        let children = self.children_json(OP, dir).await?;
        let mut out: Vec<(String, Cap)> = Vec::with_capacity(children.len());
        for (name, child) in &children {
            match child_read_cap(child) {
                Some(cap) => out.push((name.clone(), cap)),
                None => tracing::warn!(
                    child = %clean_line(name, 100),
                    "directory child without a usable cap skipped"
                ),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// `PUT /uri/$DIRCAP/name`: adds or replaces the immutable file `name` in the directory
    /// (which needs a write-cap); returns the new child's cap.
    pub async fn put_child(
        &self,
        dir: &Cap,
        name: &str,
        contents: &[u8],
    ) -> Result<Cap, GatewayError> {
        self.put_file_at(dir, &[name], contents).await
    }

    /// `PUT /uri/$DIRCAP/a/b/name`: like [`Gateway::put_child`], into the subdirectory reached by
    /// following `path[..len-1]` from `dir` (Tahoe makes missing ones, as SDMF). The write goes
    /// through the parent's write access, so only `dir` needs to be a write-cap.
    pub async fn put_file_at(
        &self,
        dir: &Cap,
        path: &[&str],
        contents: &[u8],
    ) -> Result<Cap, GatewayError> {
        const OP: &str = "add a file to a directory through the gateway";
        check_writable_dir(OP, dir)?;
        if path.is_empty() {
            return Err(GatewayError::BadName {
                operation: OP,
                name: String::new(),
            });
        }
        for name in path {
            check_name(OP, name)?;
        }
        let url = self.cap_url(dir, path)?;
        let answer = self
            .call(
                OP,
                Method::PUT,
                url,
                Some(contents.to_vec()),
                MAX_CAP_ANSWER_BYTES,
            )
            .await?;
        parse_cap_answer(OP, &answer)
    }

    /// `POST /uri/$DIRCAP?t=mkdir&name=…`: makes an empty mutable subdirectory `name` (in the
    /// parent's format, SDMF or MDMF; replacing any child of that name); returns its write-cap.
    pub async fn mkdir_child(&self, dir: &Cap, name: &str) -> Result<Cap, GatewayError> {
        const OP: &str = "make a subdirectory through the gateway";
        check_writable_dir(OP, dir)?;
        check_name(OP, name)?;
        let format = match dir.format() {
            tahoe_caps::CapFormat::Mdmf => DirFormat::Mdmf,
            _ => DirFormat::Sdmf,
        };
        let mut url = self.cap_url(dir, &[])?;
        url.query_pairs_mut()
            .append_pair("t", "mkdir")
            .append_pair("format", format.as_query())
            .append_pair("name", name);
        let answer = self
            .call(OP, Method::POST, url, None, MAX_CAP_ANSWER_BYTES)
            .await?;
        parse_cap_answer(OP, &answer)
    }

    /// `POST /uri?t=mkdir[&format=mdmf]`: makes a new, unlinked, empty mutable directory;
    /// returns its write-cap.
    pub async fn create_dir(&self, format: DirFormat) -> Result<Cap, GatewayError> {
        const OP: &str = "create a directory through the gateway";
        let mut url = self.path_url(&["uri"])?;
        url.query_pairs_mut().append_pair("t", "mkdir");
        // Not `t=mkdir-with-children`: that one silently ignores format=mdmf.
        if format == DirFormat::Mdmf {
            url.query_pairs_mut().append_pair("format", "mdmf");
        }
        let answer = self
            .call(OP, Method::POST, url, None, MAX_CAP_ANSWER_BYTES)
            .await?;
        parse_cap_answer(OP, &answer)
    }

    async fn list_raw(&self, operation: &'static str, cap: &Cap) -> Result<Vec<u8>, GatewayError> {
        let mut url = self.cap_url(cap, &[])?;
        url.query_pairs_mut().append_pair("t", "json");
        self.call(operation, Method::GET, url, None, MAX_LISTING_BYTES)
            .await
    }

    /// The `children` object of a directory's `?t=json` answer.
    async fn children_json(
        &self,
        operation: &'static str,
        dir: &Cap,
    ) -> Result<serde_json::Map<String, Value>, GatewayError> {
        if !dir.is_directory() {
            return Err(GatewayError::NotADirectory { operation });
        }
        let bytes = self.list_raw(operation, dir).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| GatewayError::Listing {
            operation,
            source: SnapshotError::NotJson {
                line: e.line(),
                column: e.column(),
            },
        })?;
        let shape = |detail| GatewayError::BadAnswer { operation, detail };
        match value {
            Value::Array(mut pair) if pair.len() == 2 => {
                if pair[0].as_str() != Some("dirnode") {
                    return Err(shape("the listing is not a dirnode"));
                }
                match pair.pop() {
                    Some(Value::Object(mut info)) => match info.remove("children") {
                        Some(Value::Object(children)) => Ok(children),
                        _ => Err(shape("a dirnode without a children object")),
                    },
                    _ => Err(shape("a dirnode without an info object")),
                }
            }
            _ => Err(shape("expected a two-element array [type, info]")),
        }
    }

    /// `<base>/<segments…>`, each segment percent-encoded as needed.
    fn path_url(&self, segments: &[&str]) -> Result<Url, GatewayError> {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                GatewayError::BadUrl("the gateway URL cannot have a path".to_owned())
            })?;
            path.pop_if_empty();
            for segment in segments {
                path.push(segment);
            }
        }
        Ok(url)
    }

    /// `<base>/uri/<cap>/<segments…>`. The result holds a cap: never log or show it.
    fn cap_url(&self, cap: &Cap, rest: &[&str]) -> Result<Url, GatewayError> {
        let cap_text = cap.to_string();
        let mut segments = vec!["uri", cap_text.as_str()];
        segments.extend_from_slice(rest);
        self.path_url(&segments)
    }

    /// Sends one request and reads the answer (at most `limit` bytes). Errors never hold `url`.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<u8>, GatewayError> {
        let started = std::time::Instant::now();
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.body(body);
        }
        // Tahoe explains errors in plain text when asked (HTML otherwise).
        request = request.header(reqwest::header::ACCEPT, "text/plain, application/json");
        let mut response = request.send().await.map_err(|e| transport(operation, &e))?;
        let status = response.status();
        if !status.is_success() {
            let text = read_limited(&mut response, 4096).await.unwrap_or_default();
            let detail = error_detail(&text);
            tracing::debug!(
                operation,
                status = status.as_u16(),
                "gateway answered an error"
            );
            return Err(GatewayError::Status {
                operation,
                status: status.as_u16(),
                detail,
            });
        }
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(GatewayError::TooLarge { operation, limit });
        }
        let bytes = match read_limited(&mut response, limit).await {
            Ok(b) => b,
            Err(ReadError::TooLarge) => return Err(GatewayError::TooLarge { operation, limit }),
            Err(ReadError::Transport(e)) => return Err(transport(operation, &e)),
        };
        tracing::debug!(
            operation,
            status = status.as_u16(),
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "gateway call done"
        );
        Ok(bytes)
    }
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads the body chunk by chunk, stopping as soon as it passes `limit`.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn transport(operation: &'static str, error: &reqwest::Error) -> GatewayError {
    let reason = if error.is_timeout() {
        "the gateway did not answer in time".to_owned()
    } else if error.is_connect() {
        format!(
            "cannot connect to the gateway (is the Tahoe client running?): {}",
            root_cause(error)
        )
    } else {
        // reqwest's own message names the URL, which holds a cap: build one without it.
        clone_without_url(error)
    };
    GatewayError::Transport { operation, reason }
}

/// reqwest errors cannot be cloned; rebuild the message from the chain, skipping the top-level
/// text, which is the only part that shows the URL.
fn clone_without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else if error.is_request() {
        "the request failed"
    } else {
        "the HTTP exchange failed"
    };
    format!("{kind}: {}", root_cause(error))
}

/// The message of the innermost error in the chain (an OS error or hyper's description).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    redact_caps(&current.to_string())
}

/// The whole chain of an error whose top level holds no URL, joined with `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error;
    while let Some(next) = current.source() {
        parts.push(next.to_string());
        current = next;
    }
    redact_caps(&parts.join(": "))
}

/// The first non-empty line of a gateway's error answer, caps redacted, shortened; empty for
/// HTML (a gateway asked for HTML anyway) and binary answers.
fn error_detail(body: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return String::new();
    };
    if text.trim_start().starts_with('<') {
        return String::new();
    }
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    clean_line(&redact_caps(line), MAX_ERROR_DETAIL_CHARS)
}

/// Replaces anything that looks like a cap (`URI:…`, also after `ro.`/`imm.`), a `/uri/…` path
/// or a fURL/NURL (`pb://…`) with a placeholder. Used on every text that comes from the
/// gateway or goes into a notification, as a second line of defence.
pub fn redact_caps(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let lower = rest.to_ascii_lowercase();
        let found = [
            ("uri:", "<cap>"),
            ("/uri/", "/uri/<cap>"),
            ("pb://", "<nurl>"),
        ]
        .iter()
        .filter_map(|(needle, placeholder)| {
            lower.find(needle).map(|at| (at, *needle, *placeholder))
        })
        .min_by_key(|(at, needle, _)| (*at, std::cmp::Reverse(needle.len())));
        let Some((at, needle, placeholder)) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        let after = &rest[at + needle.len()..];
        // The secret runs until whitespace, a quote or a bracket.
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']' | '}' | ',')
            })
            .unwrap_or(after.len());
        out.push_str(placeholder);
        rest = &after[end..];
    }
}

fn validate_base_url(text: &str) -> Result<Url, GatewayError> {
    let bad = |why: &str| GatewayError::BadUrl(why.to_owned());
    let mut url = Url::parse(text.trim()).map_err(|e| {
        GatewayError::BadUrl(format!(
            "not a URL ({e}); expected e.g. http://127.0.0.1:3456/"
        ))
    })?;
    match url.scheme() {
        "http" | "https" => {}
        _ => return Err(bad("only http:// and https:// gateways are supported")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it holds a user name or password; Tahoe's web API needs none, remove it",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query (?…) or fragment (#…)"));
    }
    if url.path().to_ascii_lowercase().contains("/uri") {
        return Err(bad(
            "give the gateway's root (e.g. http://127.0.0.1:3456/), not a /uri/ address",
        ));
    }
    // Treat the path as a directory so that joining keeps it.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn check_writable_dir(operation: &'static str, dir: &Cap) -> Result<(), GatewayError> {
    if !dir.is_directory() {
        return Err(GatewayError::NotADirectory { operation });
    }
    if dir.is_readonly() {
        return Err(GatewayError::ReadOnly { operation });
    }
    Ok(())
}

fn check_name(operation: &'static str, name: &str) -> Result<(), GatewayError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(GatewayError::BadName {
            operation,
            name: clean_line(name, 100),
        });
    }
    Ok(())
}

/// The read-only cap of a `[type, {ro_uri, rw_uri, …}]` child entry.
fn child_read_cap(child: &Value) -> Option<Cap> {
    let info = child.as_array()?.get(1)?.as_object()?;
    let parse = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .and_then(|s| Cap::parse(s).ok())
    };
    parse("ro_uri")
        .or_else(|| parse("rw_uri"))
        .map(|c| c.read_only())
}

fn parse_cap_answer(operation: &'static str, answer: &[u8]) -> Result<Cap, GatewayError> {
    let bad = GatewayError::BadAnswer {
        operation,
        detail: "the answer is not a cap",
    };
    let text = std::str::from_utf8(answer).map_err(|_| GatewayError::BadAnswer {
        operation,
        detail: "the answer is not a cap",
    })?;
    Cap::parse(text.trim()).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR_RW: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    #[test]
    fn base_urls_are_validated() {
        let g = Gateway::new("http://127.0.0.1:3456").unwrap();
        assert_eq!(g.base_url(), "http://127.0.0.1:3456/");
        let g = Gateway::new("https://gw.example/tahoe").unwrap();
        assert_eq!(g.base_url(), "https://gw.example/tahoe/");
        for (bad, why) in [
            ("http://alice:secret@127.0.0.1:3456/", "password"),
            ("http://alice@127.0.0.1:3456/", "user name"),
            ("ftp://127.0.0.1/", "only http"),
            ("127.0.0.1:3456", "not a URL"),
            ("localhost:3456", "only http"),
            ("not a url", "not a URL"),
            ("http://127.0.0.1:3456/?t=json", "query"),
            ("http://127.0.0.1:3456/uri/URI:DIR2:abc:def", "not a /uri/"),
        ] {
            let err = Gateway::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
            assert!(!err.contains("URI:"), "{err}");
        }
    }

    #[test]
    fn urls_put_the_cap_and_escape_names() {
        let g = Gateway::new("http://127.0.0.1:3456/").unwrap();
        let cap = Cap::parse(DIR_RW).unwrap();
        let url = g.cap_url(&cap, &["a b?#%.txt"]).unwrap();
        assert_eq!(
            url.as_str(),
            format!("http://127.0.0.1:3456/uri/{DIR_RW}/a%20b%3F%23%25.txt")
        );
        let prefixed = Gateway::new("http://h/tahoe/").unwrap();
        assert!(prefixed
            .cap_url(&cap, &[])
            .unwrap()
            .as_str()
            .starts_with("http://h/tahoe/uri/URI:DIR2:"));
    }

    #[test]
    fn redaction_hides_caps_paths_and_nurls() {
        let text = format!(
            "No such child: {DIR_RW} at /uri/{DIR_RW}/x (\"ro.URI:SSK-RO:aa:bb\") pb://abc@h:1/swiss#v=1 end"
        );
        let r = redact_caps(&text);
        assert_eq!(
            r,
            "No such child: <cap> at /uri/<cap> (\"ro.<cap>\") <nurl> end"
        );
        assert_eq!(redact_caps("plain text"), "plain text");
        assert_eq!(redact_caps("uri:x"), "<cap>");
    }

    #[test]
    fn error_details_are_one_clean_line_without_caps() {
        let body = format!("\n\nUnrecoverableFileError: the folder {DIR_RW} is gone\nTraceback…");
        assert_eq!(
            error_detail(body.as_bytes()),
            "UnrecoverableFileError: the folder <cap> is gone"
        );
        assert_eq!(error_detail(b"<html><body>x</body></html>"), "");
        assert_eq!(error_detail(b"\xff\xfe"), "");
        let err = GatewayError::Status {
            operation: "list a directory",
            status: 410,
            detail: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "cannot list a directory: the gateway answered HTTP 410"
        );
    }

    #[test]
    fn child_caps_prefer_read_only() {
        let cap = Cap::parse(DIR_RW).unwrap();
        let ro = cap.read_only().to_string();
        let entry = serde_json::json!(["dirnode", {"rw_uri": DIR_RW}]);
        assert_eq!(child_read_cap(&entry).unwrap().to_string(), ro);
        let entry = serde_json::json!(["dirnode", {"ro_uri": ro, "rw_uri": DIR_RW}]);
        assert_eq!(child_read_cap(&entry).unwrap().to_string(), ro);
        assert!(child_read_cap(&serde_json::json!(["unknown", {"ro_uri": "URI:XYZ:1"}])).is_none());
    }

    #[tokio::test]
    async fn writes_are_checked_before_sending() {
        let g = Gateway::new("http://127.0.0.1:9/").unwrap();
        let rw = Cap::parse(DIR_RW).unwrap();
        let err = g.put_child(&rw.read_only(), "x", b"").await.unwrap_err();
        assert!(matches!(err, GatewayError::ReadOnly { .. }), "{err}");
        for name in ["", ".", "..", "a/b"] {
            let err = g.mkdir_child(&rw, name).await.unwrap_err();
            assert!(matches!(err, GatewayError::BadName { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn unreachable_gateway_error_names_the_operation_not_the_cap() {
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let g = Gateway::with_timeout("http://127.0.0.1:9/", Duration::from_secs(2)).unwrap();
        let cap = Cap::parse(DIR_RW).unwrap();
        let err = g.list(&cap).await.unwrap_err().to_string();
        assert!(err.starts_with("cannot list a directory or file"), "{err}");
        assert!(err.contains("cannot connect to the gateway"), "{err}");
        assert!(!err.contains("URI:"), "{err}");
        assert!(!err.contains("rvbf3wlbp"), "{err}");
    }
}
