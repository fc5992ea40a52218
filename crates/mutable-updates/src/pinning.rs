//! TLS as the Tahoe-LAFS HTTP storage protocol does it: self-signed certificates, pinned by
//! the SHA-256 of their SubjectPublicKeyInfo.
//!
//! There are no certificate authorities, names or expiry dates to check: a Tahoe node makes its
//! own certificate once and keeps it for years, and its NURL carries the hash of the public key.
//! The client therefore accepts exactly the certificate whose SPKI hashes to the pinned value,
//! and still verifies the handshake signatures, so that only the holder of the private key can
//! complete the handshake.
//!
//! Every config built here uses the *ring* provider explicitly, never a process-wide default,
//! so that no other crate in the process can change what we trust or how.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The message of the rustls error a client gets when the server's certificate is not the
/// pinned one.
pub const PIN_MISMATCH_MESSAGE: &str = "server certificate does not match the pinned SPKI hash";

/// Why the SPKI of a certificate could not be found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    /// The DER structure is broken at the named field.
    #[error("the certificate is not valid DER: {field}: {problem}")]
    Der {
        /// The X.509 field being read.
        field: &'static str,
        /// What was wrong with it.
        problem: &'static str,
    },
    /// A PEM text holds no `CERTIFICATE` section.
    #[error("the PEM text holds no CERTIFICATE section")]
    NoCertificate,
    /// A PEM text is malformed.
    #[error("the PEM text is malformed: {0}")]
    Pem(&'static str),
}

/// Why a TLS server config could not be built.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// No `CERTIFICATE` section in either PEM text.
    #[error("no CERTIFICATE section found in the PEM text")]
    NoCertificate,
    /// No private key section (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    #[error("no private key found in the PEM text")]
    NoPrivateKey,
    /// A PEM text is malformed. (The details are ours, never the text: it may hold a key.)
    #[error("the PEM text is malformed: {0}")]
    Pem(&'static str),
    /// The certificate cannot be read.
    #[error("the certificate cannot be read: {0}")]
    Certificate(#[from] CertificateError),
    /// The private key does not belong to the certificate.
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    /// rustls refused the certificate or key.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Describes a PEM error in our own words: the library's text may quote lines of the input.
fn describe_pem_error(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::NoItemsFound => "no section of the wanted kind",
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it could not be read",
    }
}

// ---------------------------------------------------------------------------------------------
// A small DER reader: just enough X.509 to find the SubjectPublicKeyInfo.
// ---------------------------------------------------------------------------------------------

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT` — the optional version field of a v2/v3 tbsCertificate.
const TAG_CONTEXT_0: u8 = 0xa0;

/// One tag-length-value element.
struct Tlv<'a> {
    tag: u8,
    /// The contents.
    value: &'a [u8],
    /// Tag, length and contents: what the SPKI hash is taken over.
    whole: &'a [u8],
}

/// Reads DER elements one after another from a slice. Every access is bounds-checked, so
/// hostile input yields an error, never a panic.
struct DerReader<'a> {
    input: &'a [u8],
}

impl<'a> DerReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    fn read(&mut self, field: &'static str) -> Result<Tlv<'a>, CertificateError> {
        let fail = |problem| CertificateError::Der { field, problem };
        let (&tag, rest) = self.input.split_first().ok_or(fail("missing"))?;
        if tag & 0x1f == 0x1f {
            // High tag numbers never occur in the part of X.509 we walk.
            return Err(fail("unexpected multi-byte tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(fail("length missing"))?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 {
                return Err(fail("indefinite length is not DER"));
            }
            if count > 4 {
                return Err(fail("length too large"));
            }
            let (bytes, after) = rest
                .split_at_checked(count)
                .ok_or(fail("length truncated"))?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let header_len = self.input.len() - rest.len();
        let (value, after) = rest
            .split_at_checked(length)
            .ok_or(fail("contents truncated"))?;
        let whole = self
            .input
            .get(..header_len + length)
            .ok_or(fail("contents truncated"))?;
        self.input = after;
        Ok(Tlv { tag, value, whole })
    }

    fn read_tagged(&mut self, tag: u8, field: &'static str) -> Result<Tlv<'a>, CertificateError> {
        let tlv = self.read(field)?;
        if tlv.tag != tag {
            return Err(CertificateError::Der {
                field,
                problem: "unexpected type",
            });
        }
        Ok(tlv)
    }
}

/// Finds the DER SubjectPublicKeyInfo inside a DER certificate.
pub fn spki_der(certificate_der: &[u8]) -> Result<&[u8], CertificateError> {
    let mut outer = DerReader::new(certificate_der);
    let certificate = outer.read_tagged(TAG_SEQUENCE, "Certificate")?;
    if !outer.is_empty() {
        return Err(CertificateError::Der {
            field: "Certificate",
            problem: "trailing data after the certificate",
        });
    }
    let mut certificate = DerReader::new(certificate.value);
    let tbs = certificate.read_tagged(TAG_SEQUENCE, "tbsCertificate")?;
    // The outer structure must still look like a certificate, not any SEQUENCE of SEQUENCEs.
    certificate.read_tagged(TAG_SEQUENCE, "signatureAlgorithm")?;
    certificate.read_tagged(TAG_BIT_STRING, "signatureValue")?;

    let mut tbs = DerReader::new(tbs.value);
    // v1 certificates leave the version out; v3 ones (all of Tahoe's) carry it as [0].
    if tbs.peek_tag() == Some(TAG_CONTEXT_0) {
        tbs.read("version")?;
    }
    tbs.read_tagged(TAG_INTEGER, "serialNumber")?;
    tbs.read_tagged(TAG_SEQUENCE, "signature")?;
    tbs.read_tagged(TAG_SEQUENCE, "issuer")?;
    tbs.read_tagged(TAG_SEQUENCE, "validity")?;
    tbs.read_tagged(TAG_SEQUENCE, "subject")?;
    let spki = tbs.read_tagged(TAG_SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(spki.whole)
}

/// SHA-256 over the DER SubjectPublicKeyInfo of a DER certificate: the hash a NURL pins.
pub fn spki_sha256(certificate_der: &[u8]) -> Result<[u8; 32], CertificateError> {
    spki_der(certificate_der).map(|spki| Sha256::digest(spki).into())
}

/// The pinned hash of the first certificate in a PEM text (such as Tahoe's `private/node.pem`).
pub fn spki_hash_of_pem(cert_pem: &[u8]) -> Result<[u8; 32], CertificateError> {
    let certificate = CertificateDer::from_pem_slice(cert_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertificateError::NoCertificate,
        other => CertificateError::Pem(describe_pem_error(&other)),
    })?;
    spki_sha256(&certificate)
}

// ---------------------------------------------------------------------------------------------
// Client side: the pinned verifier
// ---------------------------------------------------------------------------------------------

/// The error inside the rustls error of a pin mismatch; [`is_pin_mismatch`] looks for it.
#[derive(Clone, Copy, Error)]
#[error("{}", PIN_MISMATCH_MESSAGE)]
pub struct PinMismatch;

/// rustls renders `CertificateError::Other` through `Debug`, so `Debug` carries the message too:
/// the user then reads "invalid peer certificate: Other(OtherError(server certificate does not
/// match the pinned SPKI hash))" rather than a bare type name.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PIN_MISMATCH_MESSAGE)
    }
}

/// Whether a rustls error is the pin mismatch of [`pinned_client_config`].
pub fn is_pin_mismatch(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<PinMismatch>().is_some()
        }
        _ => false,
    }
}

/// Accepts exactly the certificate whose SPKI hashes to `expected`.
struct PinnedSpkiVerifier {
    expected: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedSpkiVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedSpkiVerifier")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedSpkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No CA, name or expiry check on purpose: Tahoe certificates are self-signed and
        // long-lived; the pin is the whole of the trust decision.
        let actual = spki_sha256(end_entity).map_err(|e| {
            tracing::debug!(error = %e, "server sent an unreadable certificate");
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            &actual[..],
            &self.expected[..],
        )) {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::debug!("server certificate does not match the pinned SPKI hash");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client offers TLS 1.3 only (see `pinned_client_config`), so this is never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Tahoe's node certificates are X.509 v1, which webpki refuses to parse as end-entity
        // certificates; the signature is therefore checked against the pinned SPKI directly.
        let spki = spki_der(cert).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(spki);
        crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The ring provider, chosen explicitly so that a process default cannot change it.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that trusts exactly the server whose certificate's SPKI hashes to
/// `spki_hash`, and checks the handshake signatures with ring's algorithms.
///
/// A mismatch fails the handshake with
/// `InvalidCertificate(CertificateError::Other(..))` whose message is
/// [`PIN_MISMATCH_MESSAGE`]; [`is_pin_mismatch`] recognizes it.
pub fn pinned_client_config(spki_hash: [u8; 32]) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = PinnedSpkiVerifier {
        expected: spki_hash,
        algorithms: provider.signature_verification_algorithms,
    };
    // TLS 1.3 only: its signatures can be checked against the raw SPKI (see the verifier), and
    // every server we talk to is ours, built on rustls.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        // Cannot fail: ring's default provider offers TLS 1.3 suites. This is no outside input,
        // so a failure would be a build defect, not a runtime case.
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// A server config from a PEM certificate (chain) and a PEM private key, without client auth.
///
/// A single PEM text that holds both, as Tahoe's `private/node.pem` does, may be passed as
/// both arguments: the certificate is looked for in `cert_pem` and then in `key_pem`, the key
/// in `key_pem` and then in `cert_pem`. Key types: PKCS#8, PKCS#1 (RSA) and SEC1 (EC).
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let certificates = read_certificates(cert_pem)?;
    let certificates = if certificates.is_empty() {
        read_certificates(key_pem)?
    } else {
        certificates
    };
    if certificates.is_empty() {
        return Err(TlsSetupError::NoCertificate);
    }
    let key = match read_key(key_pem)? {
        Some(key) => key,
        None => read_key(cert_pem)?.ok_or(TlsSetupError::NoPrivateKey)?,
    };
    let provider = provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(TlsSetupError::Rustls)?;
    // rustls's own `with_single_cert` parses the certificate with webpki, which refuses the
    // X.509 v1 certificates Tahoe nodes use; compare the key with the certificate's SPKI here.
    let certificate_spki = spki_der(&certificates[0])?;
    let key_matches = signing_key
        .public_key()
        .is_some_and(|public| public.as_ref() == certificate_spki);
    if !key_matches {
        return Err(TlsSetupError::KeyMismatch);
    }
    let certified = Arc::new(rustls::sign::CertifiedKey::new(certificates, signing_key));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCertificate(certified)));
    Ok(Arc::new(config))
}

/// Presents the same certificate to every client, whatever name it asks for.
#[derive(Debug)]
struct FixedCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCertificate {
    fn resolve(
        &self,
        _client_hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// A server config from one PEM text holding certificate and key, such as `node.pem`.
pub fn server_config_from_combined_pem(
    pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    server_config_from_pem(pem, pem)
}

fn read_certificates(pem_text: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    CertificateDer::pem_slice_iter(pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem(describe_pem_error(&e)))
}

fn read_key(pem_text: &[u8]) -> Result<Option<PrivateKeyDer<'static>>, TlsSetupError> {
    match PrivateKeyDer::from_pem_slice(pem_text) {
        Ok(key) => Ok(Some(key)),
        Err(pem::Error::NoItemsFound) => Ok(None),
        Err(other) => Err(TlsSetupError::Pem(describe_pem_error(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcgen_cert() -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
    }

    #[test]
    fn hash_matches_rcgen_spki() {
        let made = rcgen_cert();
        let expected: [u8; 32] = Sha256::digest(made.key_pair.public_key_der()).into();
        assert_eq!(spki_sha256(made.cert.der()).unwrap(), expected);
        assert_eq!(
            spki_der(made.cert.der()).unwrap(),
            made.key_pair.public_key_der()
        );
        assert_eq!(
            spki_hash_of_pem(made.cert.pem().as_bytes()).unwrap(),
            expected
        );
    }

    #[test]
    fn other_key_types() {
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let expected: [u8; 32] = Sha256::digest(key.public_key_der()).into();
            assert_eq!(spki_sha256(cert.der()).unwrap(), expected);
        }
    }

    /// Builds a DER element with a definite length.
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else if len < 0x100 {
            out.extend([0x81, u8::try_from(len).unwrap()]);
        } else {
            out.extend([
                0x82,
                u8::try_from(len >> 8).unwrap(),
                u8::try_from(len & 0xff).unwrap(),
            ]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn synthetic(version: bool, spki: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(TAG_CONTEXT_0, &tlv(TAG_INTEGER, &[2])));
        }
        tbs.extend(tlv(TAG_INTEGER, &[1]));
        for _ in 0..4 {
            tbs.extend(tlv(TAG_SEQUENCE, &[]));
        }
        tbs.extend_from_slice(spki);
        let mut cert = tlv(TAG_SEQUENCE, &tbs);
        cert.extend(tlv(TAG_SEQUENCE, &[]));
        cert.extend(tlv(TAG_BIT_STRING, &[0]));
        tlv(TAG_SEQUENCE, &cert)
    }

    #[test]
    fn version_field_is_optional() {
        let spki = tlv(TAG_SEQUENCE, &[0x05, 0x00, 0x03, 0x01, 0x00]);
        let big_spki = tlv(TAG_SEQUENCE, &[7u8; 300]);
        for s in [&spki, &big_spki] {
            let expected: [u8; 32] = Sha256::digest(s).into();
            assert_eq!(spki_sha256(&synthetic(true, s)).unwrap(), expected);
            assert_eq!(spki_sha256(&synthetic(false, s)).unwrap(), expected);
        }
    }

    #[test]
    fn broken_der_says_where() {
        let made = rcgen_cert();
        let der = made.cert.der().to_vec();
        assert_eq!(
            spki_sha256(&[]),
            Err(CertificateError::Der {
                field: "Certificate",
                problem: "missing"
            })
        );
        assert_eq!(
            spki_sha256(&der[..der.len() - 1]),
            Err(CertificateError::Der {
                field: "Certificate",
                problem: "contents truncated"
            })
        );
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(
            spki_sha256(&trailing),
            Err(CertificateError::Der {
                field: "Certificate",
                problem: "trailing data after the certificate"
            })
        );
        assert_eq!(
            spki_sha256(&[0x30, 0x80, 0, 0]),
            Err(CertificateError::Der {
                field: "Certificate",
                problem: "indefinite length is not DER"
            })
        );
        assert_eq!(
            spki_sha256(&[0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(CertificateError::Der {
                field: "Certificate",
                problem: "length too large"
            })
        );
        assert_eq!(
            spki_sha256(&tlv(TAG_SEQUENCE, &tlv(TAG_INTEGER, &[1]))),
            Err(CertificateError::Der {
                field: "tbsCertificate",
                problem: "unexpected type"
            })
        );
        let missing_spki = {
            let mut tbs = tlv(TAG_INTEGER, &[1]);
            for _ in 0..4 {
                tbs.extend(tlv(TAG_SEQUENCE, &[]));
            }
            let mut cert = tlv(TAG_SEQUENCE, &tbs);
            cert.extend(tlv(TAG_SEQUENCE, &[]));
            cert.extend(tlv(TAG_BIT_STRING, &[0]));
            tlv(TAG_SEQUENCE, &cert)
        };
        assert_eq!(
            spki_sha256(&missing_spki),
            Err(CertificateError::Der {
                field: "subjectPublicKeyInfo",
                problem: "missing"
            })
        );
        assert_eq!(
            CertificateError::Der {
                field: "subjectPublicKeyInfo",
                problem: "missing"
            }
            .to_string(),
            "the certificate is not valid DER: subjectPublicKeyInfo: missing"
        );
    }

    #[test]
    fn pem_errors() {
        assert_eq!(
            spki_hash_of_pem(b"nothing here"),
            Err(CertificateError::NoCertificate)
        );
        let made = rcgen_cert();
        let key_pem = made.key_pair.serialize_pem();
        assert!(matches!(
            server_config_from_pem(key_pem.as_bytes(), key_pem.as_bytes()),
            Err(TlsSetupError::NoCertificate)
        ));
        let cert_pem = made.cert.pem();
        assert!(matches!(
            server_config_from_pem(cert_pem.as_bytes(), b""),
            Err(TlsSetupError::NoPrivateKey)
        ));
        let other = rcgen_cert();
        let err = server_config_from_pem(
            cert_pem.as_bytes(),
            other.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsSetupError::KeyMismatch), "{err}");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            spki_hash_of_pem(broken.as_bytes()),
            Err(CertificateError::Pem(_))
        ));
    }

    #[test]
    fn server_config_accepts_separate_and_combined_pem() {
        let made = rcgen_cert();
        let cert_pem = made.cert.pem();
        let key_pem = made.key_pair.serialize_pem();
        server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
        let combined = format!("{key_pem}{cert_pem}");
        server_config_from_combined_pem(combined.as_bytes()).unwrap();
        server_config_from_pem(combined.as_bytes(), b"").unwrap();
        server_config_from_pem(b"", combined.as_bytes()).unwrap();
    }

    #[test]
    fn pin_mismatch_is_recognizable() {
        let err = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch)),
        ));
        assert!(is_pin_mismatch(&err));
        assert!(err.to_string().contains(PIN_MISMATCH_MESSAGE), "{err}");
        assert!(!is_pin_mismatch(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding
        )));
    }
}
