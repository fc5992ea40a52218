//! What a local Tahoe-LAFS node directory (`~/.tahoe` or `--node-dir`) tells us: the gateway
//! URL (`node.url`) and the storage servers' announcements
//! (`private/introducer_default_cache.yaml`), whose nicknames name the updates servers that share
//! a storage server's certificate.
//!
//! The announcement cache is YAML written by Tahoe (PyYAML `safe_dump`, block style):
//!
//! ```yaml
//! - ann:
//!     anonymous-storage-FURL: pb://…
//!     anonymous-storage-NURLs:
//!     - pb://<spki-hash>@127.0.0.1:37235/<swissnum>#v=1
//!     nickname: storage2
//!     …
//!   key_s: v0-…
//! ```
//!
//! Only two keys matter, so this is a small line parser rather than a YAML dependency. The
//! cache also holds the storage servers' swissnums (secrets for the storage service): the parser
//! keeps only the certificate hash from each NURL and drops everything after the `@`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use notifier_core::text::clean_line;

/// Longest nickname kept, in characters (as for server names in the config).
const MAX_NICKNAME_CHARS: usize = 100;
/// Bigger than any real cache (a few KiB per server); a bound keeps a stray file from filling
/// memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A Tahoe node directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDir {
    path: PathBuf,
}

/// One storage server's announcement: its nickname and the certificate hashes of its NURLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAnnouncement {
    /// The server's nickname, cleaned for display; `None` if it announced none.
    pub nickname: Option<String>,
    /// The SPKI hashes of its `anonymous-storage-NURLs`.
    pub spki_hashes: Vec<String>,
}

impl NodeDir {
    /// The node directory to use: `explicit` (`--node-dir`, which must exist), else `~/.tahoe`
    /// if it exists, else none.
    pub fn find(explicit: Option<&Path>) -> anyhow::Result<Option<Self>> {
        if let Some(path) = explicit {
            anyhow::ensure!(
                path.is_dir(),
                "the Tahoe node directory {} does not exist (given with --node-dir)",
                path.display()
            );
            return Ok(Some(Self {
                path: path.to_path_buf(),
            }));
        }
        let default = directories::BaseDirs::new().map(|d| d.home_dir().join(".tahoe"));
        Ok(default.filter(|p| p.is_dir()).map(|path| Self { path }))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the gateway URL is kept.
    pub fn node_url_file(&self) -> PathBuf {
        self.path.join("node.url")
    }

    /// The gateway URL from `node.url` (written by a running or once-run node); `None` when the
    /// file is absent or empty.
    pub fn gateway_url(&self) -> anyhow::Result<Option<String>> {
        let path = self.node_url_file();
        Ok(read_optional(&path)?
            .map(|text| text.trim().to_owned())
            .filter(|url| !url.is_empty()))
    }

    /// The storage servers the node heard of from its introducer; empty when it has no cache.
    pub fn storage_announcements(&self) -> anyhow::Result<Vec<StorageAnnouncement>> {
        let path = self
            .path
            .join("private")
            .join("introducer_default_cache.yaml");
        Ok(read_optional(&path)?
            .map(|text| parse_announcements(&text))
            .unwrap_or_default())
    }
}

/// The nickname of the storage server announcing `spki_hash`, if any.
pub fn nickname_for<'a>(
    announcements: &'a [StorageAnnouncement],
    spki_hash: &str,
) -> Option<&'a str> {
    announcements
        .iter()
        .find(|a| a.spki_hashes.iter().any(|h| h == spki_hash))
        .and_then(|a| a.nickname.as_deref())
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    // Lossy: a stray non-UTF-8 byte in someone's nickname should not hide every other server.
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Parses the announcement cache. Unknown keys and shapes are skipped, never an error: naming
/// servers is a convenience, and a newer Tahoe may write more.
pub fn parse_announcements(text: &str) -> Vec<StorageAnnouncement> {
    let mut out = Vec::new();
    let mut current: Option<StorageAnnouncement> = None;
    // Indentation of the `anonymous-storage-NURLs:` key while its block list is being read.
    let mut in_nurls: Option<usize> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            // A top-level list item starts the next announcement.
            if let Some(done) = current.take() {
                out.push(done);
            }
            in_nurls = None;
            if content.starts_with('-') {
                current = Some(StorageAnnouncement {
                    nickname: None,
                    spki_hashes: Vec::new(),
                });
            }
            continue;
        }
        let Some(ann) = current.as_mut() else {
            continue;
        };
        if let Some(key_indent) = in_nurls {
            // PyYAML writes a mapping's block list at the key's own indentation.
            if indent >= key_indent {
                if let Some(item) = content.strip_prefix("- ") {
                    if let Some(hash) = parse_scalar(item).as_deref().and_then(spki_hash_of) {
                        ann.spki_hashes.push(hash);
                    }
                    continue;
                }
            }
            in_nurls = None;
        }
        if let Some(value) = content.strip_prefix("anonymous-storage-NURLs:") {
            let value = value.trim();
            if value.is_empty() {
                in_nurls = Some(indent);
            } else if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                // Flow style, `[pb://…, pb://…]`: NURLs contain no commas of their own.
                ann.spki_hashes.extend(
                    list.split(',')
                        .filter_map(|item| parse_scalar(item.trim()))
                        .filter_map(|item| spki_hash_of(&item)),
                );
            }
        } else if let Some(value) = content.strip_prefix("nickname:") {
            ann.nickname = parse_scalar(value.trim())
                .map(|n| clean_line(&n, MAX_NICKNAME_CHARS))
                .filter(|n| !n.is_empty());
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
    out
}

/// The certificate hash of a NURL, `pb://<hash>@…`; `None` if it is not one. Only the hash is
/// returned: the rest holds the storage server's swissnum.
fn spki_hash_of(nurl: &str) -> Option<String> {
    let rest = nurl.strip_prefix("pb://")?;
    let (hash, _) = rest.split_once('@')?;
    let valid = hash.len() == 43
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| hash.to_owned())
}

/// One YAML scalar on one line: plain, `'single'` or `"double"` quoted. `None` for null, for
/// block scalars (`|`, `>`) and for quotes that do not close on the line (PyYAML folds only
/// long values, which no nickname or NURL is).
fn parse_scalar(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(inner) = value.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        return Some(inner.replace("''", "'"));
    }
    if let Some(inner) = value.strip_prefix('"') {
        return unescape_double_quoted(inner.strip_suffix('"')?);
    }
    if value.starts_with('|') || value.starts_with('>') {
        return None;
    }
    // In a plain scalar, ` #` starts a comment; a `#` inside (as in `#v=1`) does not.
    let plain = value.split(" #").next().unwrap_or("").trim_end();
    match plain {
        "" | "~" | "null" | "Null" | "NULL" => None,
        other => Some(other.to_owned()),
    }
}

/// Undoes YAML double-quote escapes (PyYAML writes non-ASCII text as `\xNN`/`\uNNNN`).
fn unescape_double_quoted(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        let hex_digits = match escaped {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        if hex_digits > 0 {
            let hex: String = chars.by_ref().take(hex_digits).collect();
            let code = u32::from_str_radix(&hex, 16).ok()?;
            out.push(char::from_u32(code)?);
            continue;
        }
        out.push(match escaped {
            'n' => '\n',
            't' => '\t',
            'e' => '\u{1b}',
            'a' => '\u{7}',
            'b' => '\u{8}',
            'v' => '\u{b}',
            'f' => '\u{c}',
            'r' => '\r',
            '0' => '\0',
            ' ' => ' ',
            '_' => '\u{a0}',
            'N' => '\u{85}',
            'L' => '\u{2028}',
            'P' => '\u{2029}',
            other => other,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H0: &str = "5qwv44mvU6xpT4lJDQfZ4WCMW1JstiW-37bIwPhaXd0";
    const H1: &str = "mXj7DC6pvt4kOsosX335D-jfRcVygzb6Ki0yq11rr1c";
    const H2: &str = "dBYSrHtiLU0VX1GPa8ZS1XTj3AxYM6lkjg0W3QH_Yao";
    const SWISS: &str = "y3oj5tqbwbmhx5rv3c7fkqs2xrrhxeqz";

    /// The shape of a cache written by Tahoe 1.20 for a three-server local grid.
    fn real_cache() -> String {
        let mut text = String::new();
        for (hash, port, nick) in [(H2, 37235, "storage2"), (H1, 39443, "storage1")] {
            text.push_str(&format!(
                "- ann:\n    anonymous-storage-FURL: pb://abc@tcp:127.0.0.1:{port}/{SWISS}\n    \
                 anonymous-storage-NURLs:\n    - pb://{hash}@127.0.0.1:{port}/{SWISS}#v=1\n    \
                 app-versions: []\n    my-version: tahoe-lafs/1.20.0\n    nickname: {nick}\n    \
                 nonce: jv2c3lk5nrdlh4nc45dcnackl4hkyshrd2gsnlyxtl6dbwfplk4a\n    \
                 oldest-supported: 1.0.0\n    seqnum: 1\n    service-name: storage\n    \
                 version: 0\n  key_s: v0-ce5bakvutmjuft4jpsfh54ysknurhtse2m3qz55wpovdapgsntjq\n"
            ));
        }
        text
    }

    #[test]
    fn parses_a_real_cache_and_keeps_no_swissnum() {
        let anns = parse_announcements(&real_cache());
        assert_eq!(
            anns,
            vec![
                StorageAnnouncement {
                    nickname: Some("storage2".into()),
                    spki_hashes: vec![H2.into()],
                },
                StorageAnnouncement {
                    nickname: Some("storage1".into()),
                    spki_hashes: vec![H1.into()],
                },
            ]
        );
        assert_eq!(nickname_for(&anns, H1), Some("storage1"));
        assert_eq!(nickname_for(&anns, H0), None);
        assert!(!format!("{anns:?}").contains(SWISS));
    }

    #[test]
    fn quoted_flow_and_odd_entries() {
        let text = format!(
            "# comment\n- ann:\n    nickname: 'Bob''s \"disk\"'\n    anonymous-storage-NURLs: [\"pb://{H0}@h:1/{SWISS}#v=1\", pb://{H1}@h:2/{SWISS}#v=1]\n\
             - ann:\n    nickname: \"caf\\xE9 \\u263A\\e[31m\"\n    anonymous-storage-NURLs:\n      - 'pb://{H2}@h:3/{SWISS}#v=1'\n      - pb://short@h:4/{SWISS}\n    other:\n    - pb://{H0}@h:5/x\n\
             - ann:\n    nickname: ~\n    anonymous-storage-NURLs:\n    - pb://{H0}@h:6/{SWISS} # trailing comment\n\
             - ann:\n    nickname: |\n      block\n"
        );
        let anns = parse_announcements(&text);
        assert_eq!(anns.len(), 4);
        assert_eq!(anns[0].nickname.as_deref(), Some("Bob's \"disk\""));
        assert_eq!(anns[0].spki_hashes, vec![H0.to_owned(), H1.to_owned()]);
        // Escape sequences in a nickname cannot reach the terminal as controls.
        assert_eq!(anns[1].nickname.as_deref(), Some("café ☺[31m"));
        assert_eq!(anns[1].spki_hashes, vec![H2.to_owned()]);
        assert_eq!(anns[2].nickname, None);
        assert_eq!(anns[2].spki_hashes, vec![H0.to_owned()]);
        assert_eq!(anns[3].nickname, None);
        assert!(anns[3].spki_hashes.is_empty());
    }

    #[test]
    fn garbage_gives_nothing() {
        assert!(parse_announcements("").is_empty());
        assert!(parse_announcements("{not: yaml: at all").is_empty());
        assert!(parse_announcements("  - indented\n  nickname: x\n").is_empty());
    }

    #[test]
    fn node_dir_files() {
        let tmp = tempfile::tempdir().unwrap();
        let node = NodeDir::find(Some(tmp.path())).unwrap().unwrap();
        assert_eq!(node.gateway_url().unwrap(), None);
        assert!(node.storage_announcements().unwrap().is_empty());
        std::fs::write(tmp.path().join("node.url"), "http://127.0.0.1:3456/\n").unwrap();
        std::fs::create_dir(tmp.path().join("private")).unwrap();
        std::fs::write(
            tmp.path()
                .join("private")
                .join("introducer_default_cache.yaml"),
            real_cache(),
        )
        .unwrap();
        assert_eq!(
            node.gateway_url().unwrap().as_deref(),
            Some("http://127.0.0.1:3456/")
        );
        assert_eq!(node.storage_announcements().unwrap().len(), 2);
        assert!(NodeDir::find(Some(&tmp.path().join("missing"))).is_err());
    }
}
