//! What a cap is, independent of its keys: kind, format and role.

use std::fmt;

/// The eighteen cap forms Tahoe-LAFS 1.20 writes, one per string prefix.
///
/// The names follow what the cap grants: "write", "read" or "verify", on a file or a directory.
/// `Sdmf…`/`Mdmf…` are the two mutable formats; `Chk…` and `Literal…` are immutable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapKind {
    /// `URI:SSK:` — write-cap of an SDMF mutable file.
    SdmfFileWrite,
    /// `URI:SSK-RO:` — read-cap of an SDMF mutable file.
    SdmfFileRead,
    /// `URI:SSK-Verifier:` — verify-cap of an SDMF mutable file.
    SdmfFileVerify,
    /// `URI:MDMF:` — write-cap of an MDMF mutable file.
    MdmfFileWrite,
    /// `URI:MDMF-RO:` — read-cap of an MDMF mutable file.
    MdmfFileRead,
    /// `URI:MDMF-Verifier:` — verify-cap of an MDMF mutable file.
    MdmfFileVerify,
    /// `URI:DIR2:` — write-cap of a mutable directory stored as SDMF.
    DirectoryWrite,
    /// `URI:DIR2-RO:` — read-cap of a mutable directory stored as SDMF.
    DirectoryRead,
    /// `URI:DIR2-Verifier:` — verify-cap of a mutable directory stored as SDMF.
    DirectoryVerify,
    /// `URI:DIR2-MDMF:` — write-cap of a mutable directory stored as MDMF.
    MdmfDirectoryWrite,
    /// `URI:DIR2-MDMF-RO:` — read-cap of a mutable directory stored as MDMF.
    MdmfDirectoryRead,
    /// `URI:DIR2-MDMF-Verifier:` — verify-cap of a mutable directory stored as MDMF.
    MdmfDirectoryVerify,
    /// `URI:CHK:` — read-cap of an immutable file.
    ChkFileRead,
    /// `URI:CHK-Verifier:` — verify-cap of an immutable file.
    ChkFileVerify,
    /// `URI:LIT:` — a small immutable file whose content is the cap itself.
    LiteralFile,
    /// `URI:DIR2-CHK:` — read-cap of an immutable directory.
    ImmutableDirectoryRead,
    /// `URI:DIR2-CHK-Verifier:` — verify-cap of an immutable directory.
    ImmutableDirectoryVerify,
    /// `URI:DIR2-LIT:` — a small immutable directory whose content is the cap itself.
    LiteralDirectory,
}

/// How the data behind a cap is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapFormat {
    /// Small Distributed Mutable File: one segment, the original mutable format.
    Sdmf,
    /// Medium Distributed Mutable File: segmented mutable format.
    Mdmf,
    /// Content Hash Key: an immutable file in shares.
    Chk,
    /// Literal: immutable data carried inside the cap, no shares, no storage index.
    Literal,
}

/// What a holder of the cap may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapRole {
    /// Read and modify (mutable write-caps only).
    Write,
    /// Read the content.
    Read,
    /// Check and repair shares without reading the content.
    Verify,
}

impl CapKind {
    /// Every kind, in the order Tahoe's documentation lists them.
    pub const ALL: [CapKind; 18] = [
        CapKind::SdmfFileWrite,
        CapKind::SdmfFileRead,
        CapKind::SdmfFileVerify,
        CapKind::MdmfFileWrite,
        CapKind::MdmfFileRead,
        CapKind::MdmfFileVerify,
        CapKind::DirectoryWrite,
        CapKind::DirectoryRead,
        CapKind::DirectoryVerify,
        CapKind::MdmfDirectoryWrite,
        CapKind::MdmfDirectoryRead,
        CapKind::MdmfDirectoryVerify,
        CapKind::ChkFileRead,
        CapKind::ChkFileVerify,
        CapKind::LiteralFile,
        CapKind::ImmutableDirectoryRead,
        CapKind::ImmutableDirectoryVerify,
        CapKind::LiteralDirectory,
    ];

    /// The string prefix, colon included, e.g. `URI:DIR2-RO:`.
    pub const fn prefix(self) -> &'static str {
        match self {
            CapKind::SdmfFileWrite => "URI:SSK:",
            CapKind::SdmfFileRead => "URI:SSK-RO:",
            CapKind::SdmfFileVerify => "URI:SSK-Verifier:",
            CapKind::MdmfFileWrite => "URI:MDMF:",
            CapKind::MdmfFileRead => "URI:MDMF-RO:",
            CapKind::MdmfFileVerify => "URI:MDMF-Verifier:",
            CapKind::DirectoryWrite => "URI:DIR2:",
            CapKind::DirectoryRead => "URI:DIR2-RO:",
            CapKind::DirectoryVerify => "URI:DIR2-Verifier:",
            CapKind::MdmfDirectoryWrite => "URI:DIR2-MDMF:",
            CapKind::MdmfDirectoryRead => "URI:DIR2-MDMF-RO:",
            CapKind::MdmfDirectoryVerify => "URI:DIR2-MDMF-Verifier:",
            CapKind::ChkFileRead => "URI:CHK:",
            CapKind::ChkFileVerify => "URI:CHK-Verifier:",
            CapKind::LiteralFile => "URI:LIT:",
            CapKind::ImmutableDirectoryRead => "URI:DIR2-CHK:",
            CapKind::ImmutableDirectoryVerify => "URI:DIR2-CHK-Verifier:",
            CapKind::LiteralDirectory => "URI:DIR2-LIT:",
        }
    }

    /// The short name Tahoe users know, the prefix without `URI:` and the last colon,
    /// e.g. `DIR2-RO`. This is also what [`fmt::Display`] prints.
    pub fn short_name(self) -> &'static str {
        let prefix = self.prefix();
        &prefix["URI:".len()..prefix.len() - 1]
    }

    /// The kind whose prefix is exactly `prefix` (colon included), if any.
    pub fn from_prefix(prefix: &str) -> Option<CapKind> {
        CapKind::ALL
            .into_iter()
            .find(|kind| kind.prefix() == prefix)
    }

    /// The name of the class Tahoe-LAFS 1.20 uses for this kind in `allmydata.uri`.
    pub const fn tahoe_class_name(self) -> &'static str {
        match self {
            CapKind::SdmfFileWrite => "WriteableSSKFileURI",
            CapKind::SdmfFileRead => "ReadonlySSKFileURI",
            CapKind::SdmfFileVerify => "SSKVerifierURI",
            CapKind::MdmfFileWrite => "WriteableMDMFFileURI",
            CapKind::MdmfFileRead => "ReadonlyMDMFFileURI",
            CapKind::MdmfFileVerify => "MDMFVerifierURI",
            CapKind::DirectoryWrite => "DirectoryURI",
            CapKind::DirectoryRead => "ReadonlyDirectoryURI",
            CapKind::DirectoryVerify => "DirectoryURIVerifier",
            CapKind::MdmfDirectoryWrite => "MDMFDirectoryURI",
            CapKind::MdmfDirectoryRead => "ReadonlyMDMFDirectoryURI",
            CapKind::MdmfDirectoryVerify => "MDMFDirectoryURIVerifier",
            CapKind::ChkFileRead => "CHKFileURI",
            CapKind::ChkFileVerify => "CHKFileVerifierURI",
            CapKind::LiteralFile => "LiteralFileURI",
            CapKind::ImmutableDirectoryRead => "ImmutableDirectoryURI",
            CapKind::ImmutableDirectoryVerify => "ImmutableDirectoryURIVerifier",
            CapKind::LiteralDirectory => "LiteralDirectoryURI",
        }
    }

    /// How the data is stored.
    pub const fn format(self) -> CapFormat {
        match self {
            CapKind::SdmfFileWrite
            | CapKind::SdmfFileRead
            | CapKind::SdmfFileVerify
            | CapKind::DirectoryWrite
            | CapKind::DirectoryRead
            | CapKind::DirectoryVerify => CapFormat::Sdmf,
            CapKind::MdmfFileWrite
            | CapKind::MdmfFileRead
            | CapKind::MdmfFileVerify
            | CapKind::MdmfDirectoryWrite
            | CapKind::MdmfDirectoryRead
            | CapKind::MdmfDirectoryVerify => CapFormat::Mdmf,
            CapKind::ChkFileRead
            | CapKind::ChkFileVerify
            | CapKind::ImmutableDirectoryRead
            | CapKind::ImmutableDirectoryVerify => CapFormat::Chk,
            CapKind::LiteralFile | CapKind::LiteralDirectory => CapFormat::Literal,
        }
    }

    /// What a holder of the cap may do.
    pub const fn role(self) -> CapRole {
        match self {
            CapKind::SdmfFileWrite
            | CapKind::MdmfFileWrite
            | CapKind::DirectoryWrite
            | CapKind::MdmfDirectoryWrite => CapRole::Write,
            CapKind::SdmfFileRead
            | CapKind::MdmfFileRead
            | CapKind::DirectoryRead
            | CapKind::MdmfDirectoryRead
            | CapKind::ChkFileRead
            | CapKind::LiteralFile
            | CapKind::ImmutableDirectoryRead
            | CapKind::LiteralDirectory => CapRole::Read,
            CapKind::SdmfFileVerify
            | CapKind::MdmfFileVerify
            | CapKind::DirectoryVerify
            | CapKind::MdmfDirectoryVerify
            | CapKind::ChkFileVerify
            | CapKind::ImmutableDirectoryVerify => CapRole::Verify,
        }
    }

    /// Whether the cap names a directory rather than a file.
    pub const fn is_directory(self) -> bool {
        matches!(
            self,
            CapKind::DirectoryWrite
                | CapKind::DirectoryRead
                | CapKind::DirectoryVerify
                | CapKind::MdmfDirectoryWrite
                | CapKind::MdmfDirectoryRead
                | CapKind::MdmfDirectoryVerify
                | CapKind::ImmutableDirectoryRead
                | CapKind::ImmutableDirectoryVerify
                | CapKind::LiteralDirectory
        )
    }

    /// Whether the cap names a mutable slot, whose content can change. True for the mutable
    /// verify-caps too: this is the question a notifier asks.
    pub const fn is_mutable(self) -> bool {
        self.format().is_mutable()
    }

    /// Tahoe's own `is_mutable()` answer, which is `false` for the mutable verify-caps.
    pub const fn tahoe_is_mutable(self) -> bool {
        self.is_mutable() && !matches!(self.role(), CapRole::Verify)
    }

    /// Whether the cap cannot modify anything: every kind except the write-caps.
    pub const fn is_readonly(self) -> bool {
        !matches!(self.role(), CapRole::Write)
    }

    /// The read-only kind a cap of this kind attenuates to; read, verify and immutable kinds
    /// map to themselves.
    pub const fn read_only(self) -> CapKind {
        match self {
            CapKind::SdmfFileWrite => CapKind::SdmfFileRead,
            CapKind::MdmfFileWrite => CapKind::MdmfFileRead,
            CapKind::DirectoryWrite => CapKind::DirectoryRead,
            CapKind::MdmfDirectoryWrite => CapKind::MdmfDirectoryRead,
            other => other,
        }
    }

    /// The verify kind a cap of this kind attenuates to; `None` for the literal kinds, which
    /// have no shares to verify.
    pub const fn verify(self) -> Option<CapKind> {
        match self {
            CapKind::SdmfFileWrite | CapKind::SdmfFileRead | CapKind::SdmfFileVerify => {
                Some(CapKind::SdmfFileVerify)
            }
            CapKind::MdmfFileWrite | CapKind::MdmfFileRead | CapKind::MdmfFileVerify => {
                Some(CapKind::MdmfFileVerify)
            }
            CapKind::DirectoryWrite | CapKind::DirectoryRead | CapKind::DirectoryVerify => {
                Some(CapKind::DirectoryVerify)
            }
            CapKind::MdmfDirectoryWrite
            | CapKind::MdmfDirectoryRead
            | CapKind::MdmfDirectoryVerify => Some(CapKind::MdmfDirectoryVerify),
            CapKind::ChkFileRead | CapKind::ChkFileVerify => Some(CapKind::ChkFileVerify),
            CapKind::ImmutableDirectoryRead | CapKind::ImmutableDirectoryVerify => {
                Some(CapKind::ImmutableDirectoryVerify)
            }
            CapKind::LiteralFile | CapKind::LiteralDirectory => None,
        }
    }
}

impl fmt::Display for CapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

impl CapFormat {
    /// Upper-case name as Tahoe's web API writes it: `SDMF`, `MDMF`, `CHK`, `LIT`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapFormat::Sdmf => "SDMF",
            CapFormat::Mdmf => "MDMF",
            CapFormat::Chk => "CHK",
            CapFormat::Literal => "LIT",
        }
    }

    /// Whether data in this format lives in a mutable slot.
    pub const fn is_mutable(self) -> bool {
        matches!(self, CapFormat::Sdmf | CapFormat::Mdmf)
    }
}

impl fmt::Display for CapFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CapRole {
    /// Lower-case name: `write`, `read`, `verify`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapRole::Write => "write",
            CapRole::Read => "read",
            CapRole::Verify => "verify",
        }
    }
}

impl fmt::Display for CapRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_and_round_trip() {
        for kind in CapKind::ALL {
            assert_eq!(CapKind::from_prefix(kind.prefix()), Some(kind));
            assert!(kind.prefix().starts_with("URI:") && kind.prefix().ends_with(':'));
        }
    }

    #[test]
    fn attenuation_never_gains_authority() {
        for kind in CapKind::ALL {
            assert!(kind.read_only().is_readonly());
            assert_eq!(kind.read_only().format(), kind.format());
            assert_eq!(kind.read_only().is_directory(), kind.is_directory());
            if let Some(verify) = kind.verify() {
                assert_eq!(verify.role(), CapRole::Verify);
                assert_eq!(verify.format(), kind.format());
            }
        }
    }
}
