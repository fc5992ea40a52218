//! The wire form of slot proofs (the `proofs` extension): `{"prefix": "<base64>", "signature":
//! "<base64>", "key": "<base64>"}`, standard base64 with padding, `key` left out when the
//! client asked for proofs without keys (or already got the key on this connection). What a
//! proof means and how it is verified is [`crate::proof`]'s business; this module only moves
//! the bytes and bounds them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::{kind, quote, MessageError};
use crate::proof::layout::{MAX_SIGNATURE_LEN, MAX_VERIFICATION_KEY_LEN, SDMF_PREFIX_LEN};
use crate::proof::SlotProof;

/// What a client asks of proofs in `options.proofs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofRequest {
    /// `"with-keys"`: each proof in the status carries the slot's verification key.
    WithKeys,
    /// `"without-keys"`: the client holds the keys already; proofs leave them out.
    WithoutKeys,
}

impl ProofRequest {
    /// The option's wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WithKeys => "with-keys",
            Self::WithoutKeys => "without-keys",
        }
    }

    pub(super) fn parse(value: &Value) -> Result<Option<Self>, MessageError> {
        match value {
            Value::Null => Ok(None),
            Value::String(text) if text == "with-keys" => Ok(Some(Self::WithKeys)),
            Value::String(text) if text == "without-keys" => Ok(Some(Self::WithoutKeys)),
            Value::String(text) => Err(MessageError::malformed(format!(
                "options.proofs must be \"with-keys\" or \"without-keys\"; it is {}",
                quote(text)
            ))),
            other => Err(MessageError::malformed(format!(
                "options.proofs must be \"with-keys\" or \"without-keys\"; it is {}",
                kind(other)
            ))),
        }
    }
}

/// Appends a proof's wire form.
pub(super) fn render(out: &mut String, proof: &SlotProof) {
    out.push_str("{\"prefix\":\"");
    STANDARD.encode_string(proof.prefix_bytes(), out);
    out.push_str("\",\"signature\":\"");
    STANDARD.encode_string(proof.signature(), out);
    out.push('"');
    if let Some(key) = proof.verification_key() {
        out.push_str(",\"key\":\"");
        STANDARD.encode_string(key, out);
        out.push('"');
    }
    out.push('}');
}

/// Reads a proof's wire form; `what` names it in errors (e.g. `proofs entry "…"`).
pub(super) fn parse(what: &str, value: &Value) -> Result<SlotProof, MessageError> {
    let Value::Object(map) = value else {
        return Err(MessageError::malformed(format!(
            "{what} must be an object with prefix, signature and key; it is {}",
            kind(value)
        )));
    };
    let prefix = field(what, map.get("prefix"), "prefix", SDMF_PREFIX_LEN)?
        .ok_or_else(|| MessageError::malformed(format!("{what} has no prefix")))?;
    let signature = field(what, map.get("signature"), "signature", MAX_SIGNATURE_LEN)?
        .ok_or_else(|| MessageError::malformed(format!("{what} has no signature")))?;
    let key = field(what, map.get("key"), "key", MAX_VERIFICATION_KEY_LEN)?;
    SlotProof::new(&prefix, &signature, key.as_deref())
        .map_err(|e| MessageError::malformed(format!("{what} is not a slot proof: {e}")))
}

/// One base64 field, decoded; refused before decoding when its text is longer than `max` bytes
/// could ever encode to, so that a hostile peer cannot make us decode megabytes.
fn field(
    what: &str,
    value: Option<&Value>,
    name: &str,
    max: usize,
) -> Result<Option<Vec<u8>>, MessageError> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text,
        Some(other) => {
            return Err(MessageError::malformed(format!(
                "{what}'s {name} must be a base64 string; it is {}",
                kind(other)
            )))
        }
    };
    if text.len() > max.div_ceil(3) * 4 {
        return Err(MessageError::malformed(format!(
            "{what}'s {name} is longer than any slot's ({max} bytes at most)"
        )));
    }
    STANDARD
        .decode(text)
        .map(Some)
        .map_err(|e| MessageError::malformed(format!("{what}'s {name} is not base64: {e}")))
}
