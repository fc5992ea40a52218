//! What a local Tahoe-LAFS node directory (`~/.tahoe` or `--node-dir`) tells us: the gateway
//! URL (`node.url`), the user's aliases (`private/aliases`, as `tahoe create-alias` writes
//! them) and the storage servers' announcements (`private/introducer_default_cache.yaml`),
//! whose nicknames name the updates servers that share a storage server's certificate.
//!
//! Aliases usually hold write-caps. [`NodeDir::aliases`] reduces each to its read-cap the moment
//! it is parsed and drops the write-cap: nothing above this module ever holds one.
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

use tahoe_caps::Cap;
use thiserror::Error;

use crate::describe::text::clean_line;

/// Longest nickname kept, in characters (as for server names in the config).
const MAX_NICKNAME_CHARS: usize = 100;
/// Bigger than any real cache (a few KiB per server); a bound keeps a stray file from filling
/// memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a node directory could not be used. Names the file, never its contents (the node's
/// files hold swissnums and caps).
#[derive(Debug, Error)]
pub enum NodeDirError {
    /// The directory named explicitly does not exist.
    #[error("the Tahoe node directory {} does not exist", .0.display())]
    Missing(PathBuf),
    /// A file of the node could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

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
    pub fn find(explicit: Option<&Path>) -> Result<Option<Self>, NodeDirError> {
        if let Some(path) = explicit {
            if !path.is_dir() {
                return Err(NodeDirError::Missing(path.to_path_buf()));
            }
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
    pub fn gateway_url(&self) -> Result<Option<String>, NodeDirError> {
        let path = self.node_url_file();
        Ok(read_optional(&path)?
            .map(|text| text.trim().to_owned())
            .filter(|url| !url.is_empty()))
    }

    /// The storage servers the node heard of from its introducer; empty when it has no cache.
    pub fn storage_announcements(&self) -> Result<Vec<StorageAnnouncement>, NodeDirError> {
        let path = self
            .path
            .join("private")
            .join("introducer_default_cache.yaml");
        Ok(read_optional(&path)?
            .map(|text| parse_announcements(&text))
            .unwrap_or_default())
    }
}

/// One of the user's Tahoe aliases, reduced to what watching needs.
#[derive(Clone, PartialEq, Eq)]
pub struct Alias {
    /// The alias's name (without the trailing `:`), cleaned for display.
    pub name: String,
    /// The read-only form of the alias's cap (a write-cap is attenuated on parsing).
    pub read_cap: Cap,
}

impl std::fmt::Debug for Alias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The read-cap is a secret too.
        f.debug_struct("Alias")
            .field("name", &self.name)
            .field("kind", &self.read_cap.kind().short_name())
            .finish_non_exhaustive()
    }
}

/// Longest alias name kept, in characters.
const MAX_ALIAS_CHARS: usize = 100;

impl NodeDir {
    /// The user's aliases: `private/aliases` (`name: cap` per line, as `tahoe create-alias` and
    /// `tahoe add-alias` write it) and, as Tahoe does, `private/root_dir.cap` as the alias
    /// `tahoe` unless `private/aliases` names one. Lines that are not an alias with a cap Tahoe
    /// would accept are skipped (Tahoe's own `tahoe ls` fails on them); the result is sorted by
    /// name. Every cap is reduced to its read-cap here.
    pub fn aliases(&self) -> Result<Vec<Alias>, NodeDirError> {
        let private = self.path.join("private");
        let mut aliases = read_optional(&private.join("aliases"))?
            .map(|text| parse_aliases(&text))
            .unwrap_or_default();
        if !aliases.iter().any(|a| a.name == "tahoe") {
            if let Some(root) = read_optional(&private.join("root_dir.cap"))? {
                if let Ok(cap) = Cap::parse(root.trim()) {
                    aliases.push(Alias {
                        name: "tahoe".to_owned(),
                        read_cap: cap.read_only(),
                    });
                }
            }
        }
        aliases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(aliases)
    }

    /// The alias called `name` (with or without its trailing `:`).
    pub fn alias(&self, name: &str) -> Result<Option<Alias>, NodeDirError> {
        let name = name.strip_suffix(':').unwrap_or(name);
        Ok(self.aliases()?.into_iter().find(|a| a.name == name))
    }
}

/// Parses the text of `private/aliases`. Tahoe reads it the same way (`allmydata.scripts.common
/// .get_aliases`): strip each line, skip blanks and `#` comments, split at the first `:`. A
/// later line of the same name wins, as in Tahoe's dict.
pub fn parse_aliases(text: &str) -> Vec<Alias> {
    let mut out: Vec<Alias> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, cap)) = line.split_once(':') else {
            continue;
        };
        let name = clean_line(name.trim(), MAX_ALIAS_CHARS);
        let Ok(cap) = Cap::parse(cap.trim()) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let alias = Alias {
            name,
            read_cap: cap.read_only(),
        };
        match out.iter_mut().find(|a| a.name == alias.name) {
            Some(existing) => *existing = alias,
            None => out.push(alias),
        }
    }
    out
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

fn read_optional(path: &Path) -> Result<Option<String>, NodeDirError> {
    use std::io::Read;
    let read_error = |source| NodeDirError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
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

    /// A write-cap and its read-cap from Tahoe 1.20 (`shared/vectors/caps.json`, random keys).
    const DIR_WRITE: &str =
        "URI:DIR2:rvbf3wlbpjwgh3wkcd7n2irdhi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";
    const DIR_READ: &str =
        "URI:DIR2-RO:uk4r3cnhlj2wyiah6zcj3ndhwi:s7yrvzsra4cqnjukalyocynpg74gzoihq44mg4hqp2gtwwb3vu4a";

    #[test]
    fn aliases_are_reduced_to_read_caps_on_parsing() {
        let write = Cap::parse(DIR_WRITE).unwrap();
        let text = format!(
            "# my aliases\n\nwork: {DIR_WRITE}\nbroken: URI:DIR2:nope\nnocolon\n  docs : {}\n",
            write.read_only()
        );
        let aliases = parse_aliases(&text);
        let names: Vec<&str> = aliases.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["work", "docs"]);
        for alias in &aliases {
            assert!(alias.read_cap.is_readonly(), "{alias:?}");
            assert_eq!(alias.read_cap, write.read_only());
            assert_eq!(alias.read_cap.to_string(), DIR_READ);
            assert!(!format!("{alias:?}").contains("URI:"));
        }
    }

    #[test]
    fn later_alias_of_the_same_name_wins_and_root_dir_cap_is_tahoe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let write = Cap::parse(DIR_WRITE).unwrap();
        std::fs::write(
            dir.path().join("private/root_dir.cap"),
            format!("{DIR_WRITE}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("private/aliases"),
            format!("a: {DIR_WRITE}\na: {}\n", write.read_only()),
        )
        .unwrap();
        let node = NodeDir::find(Some(dir.path())).unwrap().unwrap();
        let aliases = node.aliases().unwrap();
        let names: Vec<&str> = aliases.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "tahoe"]);
        assert_eq!(
            node.alias("tahoe:").unwrap().unwrap().read_cap,
            write.read_only()
        );
        assert!(node.alias("missing").unwrap().is_none());
    }

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
