//! Reading a Tahoe storage node's directory: its TLS identity, its swissnum, its share store.
//!
//! Reusing the node's certificate and swissnum makes our NURL differ from the storage server's
//! own only in the port, so a client can check that we really stand beside that server.

use std::path::{Path, PathBuf};

use mutable_updates::nurl::Swissnum;
use thiserror::Error;

/// Where each piece of the server's identity comes from.
#[derive(Debug, Clone, Default)]
pub struct IdentitySources {
    /// The Tahoe node directory, the default source of everything below.
    pub node_dir: Option<PathBuf>,
    /// PEM certificate (may also hold the key, as Tahoe's `private/node.pem` does).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, when not in the certificate file.
    pub tls_key: Option<PathBuf>,
    /// A file holding only the swissnum.
    pub swissnum_file: Option<PathBuf>,
    /// The node's `storage` directory (holding `shares/`).
    pub storage_dir: Option<PathBuf>,
}

/// A storage node's identity, ready to serve with.
#[derive(Debug)]
pub struct NodeIdentity {
    /// PEM text of the certificate.
    pub cert_pem: Vec<u8>,
    /// PEM text of the private key (the same as `cert_pem` for a combined file).
    pub key_pem: Vec<u8>,
    /// The secret clients present.
    pub swissnum: Swissnum,
    /// The directory whose `shares/` we watch.
    pub storage_dir: PathBuf,
}

/// Why the node's identity could not be read. Names files, never their contents.
#[derive(Debug, Error)]
pub enum NodeError {
    /// Neither the node directory nor an explicit override says where a piece is.
    #[error("no {what}: pass --node-dir (a Tahoe storage node directory) or {flag}")]
    Missing {
        /// The piece missing.
        what: &'static str,
        /// The flag that would supply it.
        flag: &'static str,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The fURL file does not end in a swissnum.
    #[error("{path} does not look like a Tahoe fURL (pb://<tub id>@<hints>/<swissnum>)")]
    BadFurl {
        /// The file.
        path: PathBuf,
    },
    /// The swissnum file is empty or not text.
    #[error("{path} holds no swissnum (expected one line of text)")]
    BadSwissnum {
        /// The file.
        path: PathBuf,
    },
}

impl IdentitySources {
    /// Reads every piece, overrides first, then the node directory.
    pub fn load(&self) -> Result<NodeIdentity, NodeError> {
        let node_file = |relative: &str| self.node_dir.as_ref().map(|dir| dir.join(relative));
        let cert_path = self
            .tls_cert
            .clone()
            .or_else(|| node_file("private/node.pem"))
            .ok_or(NodeError::Missing {
                what: "TLS certificate",
                flag: "--tls-cert",
            })?;
        let key_path = self.tls_key.clone().unwrap_or_else(|| cert_path.clone());
        let cert_pem = read(&cert_path)?;
        let key_pem = if key_path == cert_path {
            cert_pem.clone()
        } else {
            read(&key_path)?
        };
        let swissnum = match (&self.swissnum_file, node_file("private/storage.furl")) {
            (Some(path), _) => swissnum_from_file(path)?,
            (None, Some(furl)) => swissnum_from_furl_file(&furl)?,
            (None, None) => {
                return Err(NodeError::Missing {
                    what: "swissnum",
                    flag: "--swissnum-file",
                })
            }
        };
        let storage_dir = self
            .storage_dir
            .clone()
            .or_else(|| node_file("storage"))
            .ok_or(NodeError::Missing {
                what: "storage directory",
                flag: "--storage-dir",
            })?;
        Ok(NodeIdentity {
            cert_pem,
            key_pem,
            swissnum,
            storage_dir,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })
}

fn swissnum_from_file(path: &Path) -> Result<Swissnum, NodeError> {
    let text = String::from_utf8(read(path)?).map_err(|_| NodeError::BadSwissnum {
        path: path.to_owned(),
    })?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return Err(NodeError::BadSwissnum {
            path: path.to_owned(),
        });
    }
    Ok(Swissnum::new(secret.to_owned()))
}

fn swissnum_from_furl_file(path: &Path) -> Result<Swissnum, NodeError> {
    let text = String::from_utf8(read(path)?).map_err(|_| NodeError::BadFurl {
        path: path.to_owned(),
    })?;
    swissnum_from_furl(text.trim()).ok_or_else(|| NodeError::BadFurl {
        path: path.to_owned(),
    })
}

/// The swissnum of a fURL: the path part after the last `/`.
pub fn swissnum_from_furl(furl: &str) -> Option<Swissnum> {
    let rest = furl.strip_prefix("pb://")?;
    let (_, path) = rest.split_once('/')?;
    let secret = path.split('#').next()?;
    let valid = !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| Swissnum::new(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swissnum_is_the_last_path_part_of_the_furl() {
        let swissnum = swissnum_from_furl(
            "pb://abcdefgh@tcp:127.0.0.1:4700,tcp:[::1]:4700/ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy",
        )
        .unwrap();
        assert_eq!(swissnum.as_bytes(), b"ce3vpscmnqkoksnaaxq7vpmhqgr4yqsy");
        assert!(swissnum_from_furl("http://x/y").is_none());
        assert!(swissnum_from_furl("pb://abc@host/").is_none());
    }

    #[test]
    fn missing_pieces_name_the_flag() {
        let error = IdentitySources::default().load().unwrap_err();
        assert!(error.to_string().contains("--tls-cert"), "{error}");
    }
}
