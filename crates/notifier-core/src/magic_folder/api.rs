//! The local magic-folder daemon's HTTP API, as magic-folder 24.3.0 serves it.
//!
//! The daemon writes two files into its config directory (the one given to
//! `magic-folder --config DIR`): `api_client_endpoint`, a Twisted client string such as
//! `tcp:127.0.0.1:43833` (or `not running`), and `api_token`, the bearer token every request
//! must carry. Both are read again for every request: the daemon picks a new port each time it
//! starts, so a bridge that outlives a daemon restart must not cache them.
//!
//! The token is a password for the whole daemon (it can leave folders, add participants): it
//! lives only in an [`ApiToken`], which has no `Display`, redacts its `Debug` and marks the
//! HTTP header sensitive. Replies that carry caps are parsed straight into [`Cap`]s (whose
//! `Debug` redacts the keys); reply bodies are never quoted in errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use serde_json::Value;
use tahoe_caps::Cap;

use super::MagicFolderError;

/// How long one API request may take. `poll-remote` answers only when the poll it asked for is
/// done (lists of every participant, downloads of what changed), so this is generous.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The daemon's bearer token. Never printed, logged or stored by us.
pub struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// The `Authorization` header value, marked sensitive (kept out of reqwest's debug output).
    fn header(&self) -> Result<HeaderValue, MagicFolderError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .map_err(|_| MagicFolderError::BadToken)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Where the daemon listens and the token it wants, as read from its config directory.
#[derive(Debug)]
pub struct DaemonAccess {
    /// `http://host:port/`.
    pub base_url: Url,
    token: ApiToken,
}

/// Reads the daemon's endpoint and token from its config directory.
pub fn read_daemon_access(config_dir: &Path) -> Result<DaemonAccess, MagicFolderError> {
    let token_path = config_dir.join("api_token");
    let endpoint_path = config_dir.join("api_client_endpoint");
    if !token_path.is_file() {
        return Err(MagicFolderError::NotAConfigDir {
            dir: config_dir.to_owned(),
        });
    }
    let token = read_small_file(&token_path)?;
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MagicFolderError::BadToken);
    }
    let endpoint = match std::fs::read_to_string(&endpoint_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MagicFolderError::NotRunning {
                dir: config_dir.to_owned(),
            })
        }
        Err(source) => {
            return Err(MagicFolderError::Read {
                path: endpoint_path,
                source,
            })
        }
    };
    let base_url = parse_client_endpoint(endpoint.trim()).map_err(|reason| match reason {
        EndpointProblem::NotRunning => MagicFolderError::NotRunning {
            dir: config_dir.to_owned(),
        },
        EndpointProblem::Unsupported => MagicFolderError::UnsupportedEndpoint {
            dir: config_dir.to_owned(),
            endpoint: crate::describe::text::clean_line(endpoint.trim(), 100),
        },
    })?;
    Ok(DaemonAccess {
        base_url,
        token: ApiToken(token.to_owned()),
    })
}

fn read_small_file(path: &Path) -> Result<String, MagicFolderError> {
    std::fs::read_to_string(path).map_err(|source| MagicFolderError::Read {
        path: path.to_owned(),
        source,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum EndpointProblem {
    NotRunning,
    Unsupported,
}

/// `tcp:HOST:PORT` or `tcp:host=HOST:port=PORT` (Twisted client strings; what magic-folder
/// writes) to `http://HOST:PORT/`. Other transports (unix sockets, TLS) are not supported.
fn parse_client_endpoint(text: &str) -> Result<Url, EndpointProblem> {
    if text == "not running" || text.is_empty() {
        return Err(EndpointProblem::NotRunning);
    }
    let rest = text
        .strip_prefix("tcp:")
        .ok_or(EndpointProblem::Unsupported)?;
    let mut host = None;
    let mut port = None;
    let mut positional = Vec::new();
    for part in rest.split(':') {
        if let Some(value) = part.strip_prefix("host=") {
            host = Some(value.to_owned());
        } else if let Some(value) = part.strip_prefix("port=") {
            port = Some(value.to_owned());
        } else if part.contains('=') {
            // timeout=, bindAddress=: irrelevant to us.
        } else {
            positional.push(part.to_owned());
        }
    }
    let mut positional = positional.into_iter();
    let host = host
        .or_else(|| positional.next())
        .ok_or(EndpointProblem::Unsupported)?;
    let port: u16 = port
        .or_else(|| positional.next())
        .and_then(|p| p.parse().ok())
        .ok_or(EndpointProblem::Unsupported)?;
    if host.is_empty() || host.contains(['/', '@', '[', ']', ' ']) {
        return Err(EndpointProblem::Unsupported);
    }
    Url::parse(&format!("http://{host}:{port}/")).map_err(|_| EndpointProblem::Unsupported)
}

/// A folder as `GET /v1/magic-folder` describes it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    /// The folder's name in this daemon.
    pub name: String,
    /// Our author name in it.
    pub author: String,
    /// Seconds between magic-folder's own remote polls.
    pub poll_interval: u64,
    /// Seconds between scans of the local folder (`None`: scanning disabled).
    pub scan_interval: Option<u64>,
    /// The local folder.
    pub magic_path: PathBuf,
    /// Whether we hold the collective's write cap.
    pub is_admin: bool,
}

/// The read caps of a folder's collective and of our own personal directory.
///
/// Both are `None` for a folder joined read-only: magic-folder 24.3.0 keeps no personal
/// directory for it, and its `include_secret_information` answer then fails (it dereferences
/// the missing upload cap), so the collective's cap cannot be had either.
#[derive(Debug, Clone, Default)]
pub struct FolderCaps {
    /// The collective (participant name → personal directory), read-only.
    pub collective: Option<Cap>,
    /// Our own personal directory, read-only: the participant that is us.
    pub own_personal: Option<Cap>,
}

/// One participant of a folder.
#[derive(Debug, Clone)]
pub struct Participant {
    /// Its name in the collective.
    pub name: String,
    /// Read cap of its personal directory (where its snapshots are published).
    pub personal_dmd: Cap,
}

/// A client for one daemon, named by its config directory.
#[derive(Debug, Clone)]
pub struct MagicFolderClient {
    config_dir: PathBuf,
    http: reqwest::Client,
}

impl MagicFolderClient {
    /// A client for the daemon whose config directory is `config_dir`. Checks that the
    /// directory looks like one (the daemon need not be running yet).
    pub fn new(config_dir: &Path) -> Result<Self, MagicFolderError> {
        if !config_dir.join("api_token").is_file() {
            return Err(MagicFolderError::NotAConfigDir {
                dir: config_dir.to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| MagicFolderError::Http {
                what: "making an HTTP client".to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            config_dir: config_dir.to_owned(),
            http,
        })
    }

    /// The daemon's config directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    async fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
    ) -> Result<Vec<u8>, MagicFolderError> {
        let access = read_daemon_access(&self.config_dir)?;
        let mut url = access.base_url.clone();
        {
            let mut path =
                url.path_segments_mut()
                    .map_err(|()| MagicFolderError::UnsupportedEndpoint {
                        dir: self.config_dir.clone(),
                        endpoint: access.base_url.to_string(),
                    })?;
            path.clear();
            path.extend(segments);
        }
        if let Some((key, value)) = query {
            url.query_pairs_mut().append_pair(key, value);
        }
        // What we asked, for errors: the path only (folder names are not secret).
        let what = format!("{method} {}", url.path());
        let response = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, access.token.header()?)
            .send()
            .await
            .map_err(|e| MagicFolderError::Http {
                what: what.clone(),
                reason: e.without_url().to_string(),
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(MagicFolderError::Unauthorized {
                dir: self.config_dir.clone(),
            });
        }
        let body = response.bytes().await.map_err(|e| MagicFolderError::Http {
            what: what.clone(),
            reason: e.without_url().to_string(),
        })?;
        if !status.is_success() {
            // magic-folder's errors are `{"reason": "..."}`, without secrets; show the reason.
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
                .map(|r| crate::describe::text::clean_line(&r, 200))
                .unwrap_or_default();
            return Err(MagicFolderError::Status {
                what,
                status: status.as_u16(),
                reason,
            });
        }
        Ok(body.to_vec())
    }

    async fn request_json(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
    ) -> Result<Value, MagicFolderError> {
        let body = self.request(method.clone(), segments, query).await?;
        serde_json::from_slice(&body).map_err(|e| MagicFolderError::BadReply {
            what: format!("{method} /{}", segments.join("/")),
            reason: format!("not JSON ({e})"),
        })
    }

    /// `GET /v1/magic-folder`: every folder of the daemon.
    pub async fn folders(&self) -> Result<Vec<FolderInfo>, MagicFolderError> {
        let reply = self
            .request_json(Method::GET, &["v1", "magic-folder"], None)
            .await?;
        parse_folders(&reply)
    }

    /// The collective's and our own personal directory's read caps, from
    /// `GET /v1/magic-folder?include_secret_information=1`. That reply also holds our signing
    /// key and write caps: they are dropped here and never leave this function.
    pub async fn folder_caps(&self, folder: &str) -> Result<FolderCaps, MagicFolderError> {
        let reply = match self
            .request_json(
                Method::GET,
                &["v1", "magic-folder"],
                Some(("include_secret_information", "1")),
            )
            .await
        {
            Ok(reply) => reply,
            // What 24.3.0 answers when a folder was joined read-only (see [`FolderCaps`]).
            Err(MagicFolderError::Status { status: 500, .. }) => {
                tracing::info!(
                    folder,
                    "magic-folder cannot tell the collective's cap (a read-only folder?): \
                     participants are listed on the timer only"
                );
                return Ok(FolderCaps::default());
            }
            Err(error) => return Err(error),
        };
        let info = reply
            .get(folder)
            .ok_or_else(|| MagicFolderError::UnknownFolder {
                folder: folder.to_owned(),
                known: object_keys(&reply),
            })?;
        let cap_field = |key: &str| -> Result<Option<Cap>, MagicFolderError> {
            match info.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => value
                    .as_str()
                    .and_then(|text| Cap::parse(text).ok())
                    .filter(|cap| cap.is_directory() && cap.is_mutable())
                    .map(|cap| Some(cap.read_only()))
                    .ok_or_else(|| MagicFolderError::BadReply {
                        what: "GET /v1/magic-folder".to_owned(),
                        reason: format!("folder {folder:?} has no usable {key}"),
                    }),
            }
        };
        Ok(FolderCaps {
            collective: cap_field("collective_dircap")?,
            own_personal: cap_field("upload_dircap")?,
        })
    }

    /// `GET /v1/magic-folder/<folder>/participants`.
    pub async fn participants(&self, folder: &str) -> Result<Vec<Participant>, MagicFolderError> {
        let reply = self
            .request_json(
                Method::GET,
                &["v1", "magic-folder", folder, "participants"],
                None,
            )
            .await?;
        parse_participants(&reply)
    }

    /// `PUT /v1/magic-folder/<folder>/poll-remote`: the daemon polls every participant now.
    /// Answers when that poll is done.
    pub async fn poll_remote(&self, folder: &str) -> Result<(), MagicFolderError> {
        self.request(
            Method::PUT,
            &["v1", "magic-folder", folder, "poll-remote"],
            None,
        )
        .await
        .map(|_| ())
    }

    /// `GET /v1/magic-folder/<folder>/conflicts`: relative path → the participants whose
    /// versions conflict with ours.
    pub async fn conflicts(
        &self,
        folder: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, MagicFolderError> {
        let reply = self
            .request_json(
                Method::GET,
                &["v1", "magic-folder", folder, "conflicts"],
                None,
            )
            .await?;
        let object = reply
            .as_object()
            .ok_or_else(|| MagicFolderError::BadReply {
                what: "GET conflicts".to_owned(),
                reason: "not an object".to_owned(),
            })?;
        Ok(object
            .iter()
            .map(|(path, authors)| {
                let authors = authors
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                (path.clone(), authors)
            })
            .collect())
    }
}

fn object_keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn parse_folders(reply: &Value) -> Result<Vec<FolderInfo>, MagicFolderError> {
    let bad = |reason: String| MagicFolderError::BadReply {
        what: "GET /v1/magic-folder".to_owned(),
        reason,
    };
    let object = reply
        .as_object()
        .ok_or_else(|| bad("not an object".to_owned()))?;
    object
        .iter()
        .map(|(name, info)| {
            let author = info
                .pointer("/author/name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("folder {name:?} has no author name")))?;
            let poll_interval = info
                .get("poll_interval")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("folder {name:?} has no poll_interval")))?;
            Ok(FolderInfo {
                name: name.clone(),
                author: author.to_owned(),
                poll_interval,
                scan_interval: info.get("scan_interval").and_then(Value::as_u64),
                magic_path: PathBuf::from(
                    info.get("magic_path").and_then(Value::as_str).unwrap_or(""),
                ),
                is_admin: info
                    .get("is_admin")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect()
}

fn parse_participants(reply: &Value) -> Result<Vec<Participant>, MagicFolderError> {
    let bad = |reason: String| MagicFolderError::BadReply {
        what: "GET participants".to_owned(),
        reason,
    };
    let object = reply
        .as_object()
        .ok_or_else(|| bad("not an object".to_owned()))?;
    object
        .iter()
        .map(|(name, info)| {
            let cap = info
                .get("personal_dmd")
                .and_then(Value::as_str)
                .and_then(|text| Cap::parse(text).ok())
                .filter(Cap::is_directory)
                .ok_or_else(|| {
                    bad(format!(
                        "participant {name:?} has no usable personal directory cap"
                    ))
                })?;
            Ok(Participant {
                name: name.clone(),
                personal_dmd: cap.read_only(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn client_endpoints_in_both_twisted_forms_become_http_urls() {
        assert_eq!(
            parse_client_endpoint("tcp:127.0.0.1:43833")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:43833/"
        );
        assert_eq!(
            parse_client_endpoint("tcp:host=localhost:port=8080:timeout=5")
                .unwrap()
                .as_str(),
            "http://localhost:8080/"
        );
        assert_eq!(
            parse_client_endpoint("not running"),
            Err(EndpointProblem::NotRunning)
        );
        assert_eq!(
            parse_client_endpoint("unix:path=/tmp/s"),
            Err(EndpointProblem::Unsupported)
        );
        assert_eq!(
            parse_client_endpoint("tcp:127.0.0.1:notaport"),
            Err(EndpointProblem::Unsupported)
        );
    }

    #[test]
    fn the_token_is_redacted_and_its_header_sensitive() {
        let token = ApiToken("s3cr3t-token".to_owned());
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let header = token.header().unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("s3cr3t"));
    }

    #[test]
    fn access_is_read_from_the_config_dir_and_a_stopped_daemon_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_daemon_access(dir.path()),
            Err(MagicFolderError::NotAConfigDir { .. })
        ));
        std::fs::write(dir.path().join("api_token"), "abcDEF123_-=\n").unwrap();
        assert!(matches!(
            read_daemon_access(dir.path()),
            Err(MagicFolderError::NotRunning { .. })
        ));
        std::fs::write(dir.path().join("api_client_endpoint"), "not running\n").unwrap();
        let error = read_daemon_access(dir.path()).unwrap_err();
        assert!(error.to_string().contains("magic-folder --config"));
        std::fs::write(
            dir.path().join("api_client_endpoint"),
            "tcp:127.0.0.1:4321\n",
        )
        .unwrap();
        let access = read_daemon_access(dir.path()).unwrap();
        assert_eq!(access.base_url.as_str(), "http://127.0.0.1:4321/");
        assert!(!format!("{access:?}").contains("abcDEF"));
    }

    #[test]
    fn participants_and_folders_replies_are_parsed_without_quoting_caps() {
        let cap = "URI:DIR2-RO:7f5srobjotufcrdvlmg22teaii:v4v3dyxoow7ni2ygnjieyvxqdvzlrm5vjzpwcaht42rnkql7ilgq";
        let reply = serde_json::json!({"alice": {"personal_dmd": cap}});
        let parsed = parse_participants(&reply).unwrap();
        assert_eq!(parsed[0].name, "alice");
        assert_eq!(parsed[0].personal_dmd.to_string(), cap);
        let bad = serde_json::json!({"eve": {"personal_dmd": "URI:DIR2-RO:zzz"}});
        let error = parse_participants(&bad).unwrap_err().to_string();
        assert!(error.contains("eve") && !error.contains("URI:"));
        let folders = serde_json::json!({"Shared": {
            "name": "Shared", "author": {"name": "bob", "verify_key": "X"},
            "stash_path": "/s", "magic_path": "/m", "poll_interval": 60,
            "scan_interval": 60, "is_admin": true}});
        let folders = parse_folders(&folders).unwrap();
        assert_eq!(folders[0].author, "bob");
        assert_eq!(folders[0].poll_interval, 60);
    }
}
