//! A grid's description: what an operator hands to users (as a file, or over a magic-wormhole
//! invite, [`crate::grid::invite`]) so that they can watch caps of that grid.
//!
//! It is a JSON object:
//!
//! ```json
//! {
//!   "name": "Bob's Storage Company",
//!   "gateway_url": "http://127.0.0.1:3456/",
//!   "updates_servers": ["pb://<hash>@updates.example:8443/<swissnum>#v=1"],
//!   "newscap": "URI:DIR2-RO:…"
//! }
//! ```
//!
//! `name` may also be spelled `nickname` and `newscap` is optional, as in Gridsync invites; other
//! keys (an invite's `introducer`, `shares-needed`, …) are ignored. A description whose
//! `gateway_url` is absent or `null` says "use your own gateway": each user fetches listings
//! through their own Tahoe node ([`GridGateway::OwnNode`]), which the importing side resolves.
//!
//! A description holds secrets (every NURL's swissnum, the news read-cap): it is never logged,
//! and its `Debug` form names none of them.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use tahoe_caps::{Cap, CapRole};
use thiserror::Error;

use crate::describe::text::clean_line;
use mutable_updates::nurl::{Nurl, NurlError};

/// Longest grid name kept, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Where the users of a grid fetch listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridGateway {
    /// A gateway the operator runs (`http://` or `https://`, no credentials, no trailing `/`).
    Url(String),
    /// Each user's own Tahoe node (its `node.url`).
    OwnNode,
}

impl GridGateway {
    /// The URL, unless the users' own nodes are meant.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Url(url) => Some(url),
            Self::OwnNode => None,
        }
    }
}

/// A parsed grid description. Holds secrets (NURLs, news cap): keep it out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct GridFile {
    /// The grid's name.
    pub name: String,
    /// Where its users fetch listings.
    pub gateway: GridGateway,
    /// The updates servers.
    pub updates_servers: Vec<Nurl>,
    /// The news read-cap (always a read-only directory cap), if any.
    pub newscap: Option<Cap>,
}

/// Why a grid file is not usable. Never quotes secrets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GridFileError {
    /// Not JSON.
    #[error("the grid file is not valid JSON (line {line}, column {column})")]
    NotJson {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// Not a JSON object.
    #[error("the grid file must be a JSON object")]
    NotObject,
    /// A required key is absent.
    #[error("the grid file has no `{0}`")]
    Missing(&'static str),
    /// A key has the wrong JSON type.
    #[error("in the grid file, `{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// The grid name is empty or has control characters.
    #[error("the grid name must be non-empty text of at most {MAX_NAME_CHARS} characters without control characters")]
    BadName,
    /// The gateway URL is not usable.
    #[error("the grid file's `gateway_url` {0}")]
    BadGateway(&'static str),
    /// An updates-server entry is not a NURL.
    #[error("the grid file's updates server #{index} is not a valid NURL: {reason}")]
    BadNurl {
        /// 1-based position in the list.
        index: usize,
        /// What is wrong.
        reason: NurlError,
    },
    /// The news cap is not usable.
    #[error("the grid file's `newscap` {0}")]
    BadNewscap(String),
}

/// Parses a grid description's text.
pub fn parse_grid_file(text: &str) -> Result<GridFile, GridFileError> {
    let value: Value = serde_json::from_str(text).map_err(|e| GridFileError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let obj = value.as_object().ok_or(GridFileError::NotObject)?;

    let name = match (string_key(obj, "name")?, string_key(obj, "nickname")?) {
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => return Err(GridFileError::Missing("name")),
    };
    let clean = clean_line(name, usize::MAX);
    if clean.is_empty() || clean != name.trim() || clean.chars().count() > MAX_NAME_CHARS {
        return Err(GridFileError::BadName);
    }

    let gateway = match string_key(obj, "gateway_url")? {
        Some(url) => GridGateway::Url(check_gateway_url(url)?),
        None => GridGateway::OwnNode,
    };

    let servers = obj
        .get("updates_servers")
        .ok_or(GridFileError::Missing("updates_servers"))?
        .as_array()
        .ok_or(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a list of NURL strings",
        })?;
    if servers.is_empty() {
        return Err(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a non-empty list of NURL strings",
        });
    }
    let mut updates_servers: Vec<Nurl> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let s = s.as_str().ok_or(GridFileError::WrongType {
            key: "updates_servers",
            expected: "a list of NURL strings",
        })?;
        let nurl: Nurl = s.trim().parse().map_err(|reason| GridFileError::BadNurl {
            index: i + 1,
            reason,
        })?;
        if !updates_servers.contains(&nurl) {
            updates_servers.push(nurl);
        }
    }

    let newscap = match string_key(obj, "newscap")? {
        None => None,
        Some(text) => {
            let cap = Cap::parse(text.trim())
                .map_err(|e| GridFileError::BadNewscap(format!("is not a cap: {e}")))?;
            if !cap.is_directory() || !cap.is_mutable() || cap.role() == CapRole::Verify {
                return Err(GridFileError::BadNewscap(
                    "must be a read-cap of a mutable directory (URI:DIR2-RO:… or URI:DIR2-MDMF-RO:…)"
                        .to_owned(),
                ));
            }
            // Only reading is ever needed: never keep more authority than that.
            Some(cap.read_only())
        }
    };

    Ok(GridFile {
        name: clean,
        gateway,
        updates_servers,
        newscap,
    })
}

fn string_key<'a>(
    obj: &'a Map<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, GridFileError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(GridFileError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

pub fn check_gateway_url(url: &str) -> Result<String, GridFileError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or(GridFileError::BadGateway(
            "must start with http:// or https://",
        ))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(GridFileError::BadGateway("has no host"));
    }
    if authority.contains('@') {
        // Credentials in a URL would end up in the (non-secret) config file.
        return Err(GridFileError::BadGateway(
            "must not contain a user name or password",
        ));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(GridFileError::BadGateway(
            "contains spaces or control characters",
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl std::fmt::Debug for GridFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridFile")
            .field("name", &self.name)
            .field("gateway", &self.gateway)
            .field("updates_servers", &self.updates_servers.len())
            .field("newscap", &self.newscap.is_some())
            .finish()
    }
}

impl GridFile {
    /// The description as JSON text, in the form [`parse_grid_file`] reads. It holds every
    /// secret of the grid: write it only to a private file or an encrypted channel.
    pub fn to_json(&self) -> String {
        let servers: Vec<String> = self.updates_servers.iter().map(Nurl::to_string).collect();
        let mut object = json!({
            "name": self.name,
            "gateway_url": self.gateway.url(),
            "updates_servers": servers,
        });
        if let (Some(cap), Some(map)) = (&self.newscap, object.as_object_mut()) {
            map.insert("newscap".to_owned(), Value::String(cap.to_string()));
        }
        let mut text = serde_json::to_string_pretty(&object).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Whether `url` is plain `http://` to a host other than this machine: every cap fetched
/// through it would cross the network unencrypted (the review's finding 5). Loopback names
/// and addresses (`localhost`, `127.0.0.0/8`, `::1`) are this machine.
pub fn is_plain_http_remote(url: &str) -> bool {
    let Some(rest) = url.trim().strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => true,
    }
}

/// Why an updates server's NURL file could not be used. Names the file, never its contents.
#[derive(Debug, Error)]
pub enum NurlFileError {
    /// The file could not be read.
    #[error("cannot read the NURL file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It does not hold a NURL.
    #[error("{} does not hold an updates server's NURL: {reason}", path.display())]
    NotANurl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: NurlError,
    },
}

/// Where `tahoe-updates-server` writes its NURL beside a storage node (its default
/// `--nurl-file`).
pub fn nurl_file_of_node(node_dir: &Path) -> PathBuf {
    node_dir.join("private").join("updates-server.nurl")
}

/// Reads the NURL an updates server wrote (the first non-empty line of the file).
pub fn read_nurl_file(path: &Path) -> Result<Nurl, NurlFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| NurlFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.parse().map_err(|reason| NurlFileError::NotANurl {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE";
    const SWISS: &str = "ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy";
    const NURL: &str =
        "pb://zXQ2QdHjQpJljyvOPSdaH3H6I4mnm31J-TnuX08zJPE@127.0.0.1:47002/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy#v=1";
    const DIR_RW: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    fn grid_json(extra: &str) -> String {
        format!(
            r#"{{"nickname": "Bob's Grid", "gateway_url": "http://127.0.0.1:3456/",
                "updates_servers": ["{NURL}", "{NURL}"], "introducer": "pb://x@y:1/z"{extra}}}"#
        )
    }

    #[test]
    fn a_grid_files_nurls_are_parsed_and_bad_ones_named_without_the_swissnum() {
        let g = parse_grid_file(&grid_json("")).unwrap();
        let n = &g.updates_servers[0];
        assert_eq!(n.spki_hash_base64(), HASH);
        assert_eq!((n.host.as_str(), n.port), ("127.0.0.1", 47002));
        assert_eq!(n.to_string(), NURL);
        assert!(!format!("{n:?}").contains(SWISS));
        let bad = grid_json("").replacen(":47002/", ":0/", 1);
        let err = parse_grid_file(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                GridFileError::BadNurl {
                    reason: NurlError::BadPort,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.to_string().contains(SWISS), "{err}");
    }

    #[test]
    fn parses_a_grid_file() {
        let newscap = DIR_RW;
        let g = parse_grid_file(&grid_json(&format!(r#", "newscap": "{newscap}""#))).unwrap();
        assert_eq!(g.name, "Bob's Grid");
        assert_eq!(
            g.gateway,
            GridGateway::Url("http://127.0.0.1:3456".to_owned())
        );
        assert_eq!(g.updates_servers.len(), 1, "duplicates are merged");
        let cap = g.newscap.unwrap();
        assert!(cap.is_readonly(), "the news cap is kept read-only");
        assert!(cap.is_directory());
        assert!(parse_grid_file(&grid_json("")).unwrap().newscap.is_none());
    }

    #[test]
    fn grid_file_errors_are_clear() {
        let check = |text: &str, want: &str| {
            let err = parse_grid_file(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
            assert!(!err.contains(SWISS) && !err.contains("rvbf3wlb"), "{err}");
        };
        check("{", "not valid JSON");
        check("[]", "must be a JSON object");
        check(
            r#"{"gateway_url": "http://x", "updates_servers": []}"#,
            "no `name`",
        );
        check(
            r#"{"name": "G", "gateway_url": "ftp://x"}"#,
            "http:// or https://",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://u:p@x"}"#,
            "user name or password",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://x"}"#,
            "no `updates_servers`",
        );
        check(
            r#"{"name": "G", "gateway_url": "http://x", "updates_servers": []}"#,
            "non-empty",
        );
        check(
            r#"{"name": 5, "gateway_url": "http://x", "updates_servers": []}"#,
            "`name` must be a string",
        );
        check(
            r#"{"name": "a\nb", "gateway_url": "http://x", "updates_servers": []}"#,
            "grid name",
        );
        check(
            &format!(
                r#"{{"name": "G", "gateway_url": "http://x", "updates_servers": ["{NURL}", "pb://{HASH}@h:1/{SWISS}#v=9"]}}"#
            ),
            "updates server #2 is not a valid NURL: the NURL's version is not 1",
        );
        check(
            &grid_json(r#", "newscap": "URI:DIR2-RO:garbage""#),
            "`newscap` is not a cap",
        );
        check(
            &grid_json(r#", "newscap": "URI:LIT:nbswy3dp""#),
            "read-cap of a mutable directory",
        );
    }

    #[test]
    fn a_description_without_a_gateway_means_the_users_own_node() {
        for gateway in ["", r#""gateway_url": null, "#] {
            let text = format!(r#"{{"name": "G", {gateway}"updates_servers": ["{NURL}"]}}"#);
            assert_eq!(
                parse_grid_file(&text).unwrap().gateway,
                GridGateway::OwnNode
            );
        }
    }

    #[test]
    fn a_rendered_description_reads_back_the_same() {
        for extra in ["".to_owned(), format!(r#", "newscap": "{DIR_RW}""#)] {
            let grid = parse_grid_file(&grid_json(&extra)).unwrap();
            assert_eq!(parse_grid_file(&grid.to_json()).unwrap(), grid);
            let own = GridFile {
                gateway: GridGateway::OwnNode,
                ..grid
            };
            assert_eq!(parse_grid_file(&own.to_json()).unwrap(), own);
            assert!(!format!("{own:?}").contains(SWISS));
        }
    }

    #[test]
    fn nurl_files_are_read_and_bad_ones_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let good = nurl_file_of_node(dir.path());
        std::fs::create_dir(dir.path().join("private")).unwrap();
        std::fs::write(&good, format!("\n{NURL}\n")).unwrap();
        assert_eq!(read_nurl_file(&good).unwrap().to_string(), NURL);
        let bad = dir.path().join("bad.nurl");
        std::fs::write(&bad, format!("pb://{HASH}@h:0/{SWISS}#v=1")).unwrap();
        let err = read_nurl_file(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.nurl") && !err.contains(SWISS), "{err}");
        let missing = read_nurl_file(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot read the NURL file"), "{missing}");
    }

    #[test]
    fn plain_http_is_remote_unless_it_is_this_machine() {
        for local in [
            "http://127.0.0.1:3456",
            "http://127.1.2.3/",
            "http://localhost:3456/uri",
            "http://[::1]:3456",
            "https://gateway.example",
        ] {
            assert!(!is_plain_http_remote(local), "{local}");
        }
        for remote in [
            "http://gateway.example",
            "http://10.0.0.2:3456",
            "http://[2001:db8::1]:80/",
        ] {
            assert!(is_plain_http_remote(remote), "{remote}");
        }
    }
}
