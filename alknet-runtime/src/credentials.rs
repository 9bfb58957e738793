//! The credential formats: API keys and signed tokens.
//!
//! **API key**: `alk_` followed by 43 base64url characters (32 random bytes, no padding).
//! The configuration stores only `sha256:` + the lowercase hex SHA-256 of the whole key.
//! The `alk_` prefix tells an API key from a token; it never authenticates anything.
//!
//! **Signed token**: four parts joined by `.`:
//!
//! ```text
//! alkt1.<key id>.<unix seconds>.<signature>
//! ```
//!
//! `alkt1` names the format; the key id names a `[[token_keys]]` entry (letters, digits,
//! `-`, `_`, `:`); the timestamp is the signing time in decimal Unix seconds; the signature
//! is the Ed25519 signature (RFC 8032) over the ASCII bytes of everything before the last
//! `.` — `alkt1.<key id>.<unix seconds>` — in base64url without padding (86 characters).
//! A node accepts a token whose key it knows, whose signature verifies, and whose
//! timestamp is within the configured window (±300 s by default) of its own clock. A token
//! can be used any number of times within its window: sign a fresh one per session.
//!
//! ```
//! use alknet_runtime::credentials::{sign_token, unix_now};
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7u8; 32]);
//! let token = sign_token(&key, "deploy", unix_now());
//! assert!(token.starts_with("alkt1.deploy."));
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::CallError;
use crate::encoding::hex;

pub use crate::config::time::unix_now;

/// What every API key starts with.
pub const API_KEY_PREFIX: &str = "alk_";
/// What every signed token starts with, the `.` included.
pub const TOKEN_PREFIX: &str = "alkt1.";
/// The fewest characters after `alk_` an API key may have: 128 bits in base64url.
pub const API_KEY_MIN_BODY: usize = 22;
const API_KEY_BYTES: usize = 32;

/// A fresh API key: `alk_` and 256 bits from the operating system's random source.
pub fn new_api_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; API_KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A fresh Ed25519 key for signing tokens, from the operating system's random source.
pub fn new_signing_key() -> Result<SigningKey, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    Ok(SigningKey::from_bytes(&secret))
}

/// What the configuration stores for `key`: `sha256:` and its hex digest.
///
/// ```
/// let line = alknet_runtime::credentials::api_key_hash("alk_example");
/// assert!(line.starts_with("sha256:"));
/// assert_eq!(line.len(), 7 + 64);
/// ```
pub fn api_key_hash(key: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

/// The SHA-256 of a presented API key, after checking its shape: a key without the prefix
/// or with fewer than 128 bits after it is refused before any lookup.
pub(crate) fn api_key_digest(key: &str) -> Result<[u8; 32], CallError> {
    let Some(body) = key.strip_prefix(API_KEY_PREFIX) else {
        return Err(CallError::unauthenticated(format!(
            "an API key starts with `{API_KEY_PREFIX}`"
        )));
    };
    if body.len() < API_KEY_MIN_BODY {
        return Err(CallError::unauthenticated(format!(
            "the API key is too short: it needs at least {API_KEY_MIN_BODY} characters after `{API_KEY_PREFIX}`"
        )));
    }
    Ok(Sha256::digest(key.as_bytes()).into())
}

/// 32 bytes of Ed25519 key material (a public or a secret key) from 64 hex digits, or `None`.
pub fn key_from_hex(text: &str) -> Option<[u8; 32]> {
    crate::encoding::from_hex::<32>(text)
}

/// 32 bytes of key material as 64 lowercase hex digits, as the configuration writes keys.
pub fn key_to_hex(key: &[u8; 32]) -> String {
    hex(key)
}

/// A token signed by `key` at `unix_time`, for the token key `key_id`.
pub fn sign_token(key: &SigningKey, key_id: &str, unix_time: i64) -> String {
    let message = format!("{TOKEN_PREFIX}{key_id}.{unix_time}");
    let signature = key.sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// A token taken apart; nothing about it is verified yet.
pub(crate) struct ParsedToken<'a> {
    pub(crate) key_id: &'a str,
    pub(crate) timestamp: i64,
    /// The bytes the signature covers.
    pub(crate) message: &'a [u8],
    pub(crate) signature: Signature,
}

pub(crate) fn parse_token(token: &str) -> Result<ParsedToken<'_>, CallError> {
    let malformed = |what: &str| {
        CallError::unauthenticated(format!(
            "the token is malformed: {what} (expected `alkt1.<key id>.<unix seconds>.<signature>`)"
        ))
    };
    let Some(rest) = token.strip_prefix(TOKEN_PREFIX) else {
        return Err(malformed("it does not start with `alkt1.`"));
    };
    let Some((head, signature)) = rest.rsplit_once('.') else {
        return Err(malformed("it has no signature"));
    };
    let Some((key_id, timestamp)) = head.split_once('.') else {
        return Err(malformed("it has too few parts"));
    };
    let timestamp = timestamp
        .parse::<i64>()
        .map_err(|_| malformed("the timestamp is not a whole number of seconds"))?;
    let mut bytes = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut bytes) {
        Ok(64) => {}
        _ => return Err(malformed("the signature is not 64 bytes of base64url")),
    }
    Ok(ParsedToken {
        key_id,
        timestamp,
        message: &token.as_bytes()[..TOKEN_PREFIX.len() + head.len()],
        signature: Signature::from_bytes(&bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_carry_256_random_bits_after_the_prefix() {
        let (a, b) = (new_api_key().unwrap(), new_api_key().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("alk_"));
        assert_eq!(a.len(), 4 + 43);
        assert!(api_key_digest(&a).is_ok());
    }

    #[test]
    fn the_prefix_alone_or_a_short_key_is_refused_before_lookup() {
        assert!(
            api_key_digest("alk_")
                .unwrap_err()
                .message
                .contains("too short")
        );
        assert!(api_key_digest("alk_abc").is_err());
        assert!(api_key_digest("sk_0123456789012345678901234").is_err());
    }

    #[test]
    fn a_token_parses_back_into_what_was_signed() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let token = sign_token(&key, "ci:deploy", 1_700_000_000);
        let parsed = parse_token(&token).unwrap();
        assert_eq!(parsed.key_id, "ci:deploy");
        assert_eq!(parsed.timestamp, 1_700_000_000);
        assert_eq!(parsed.message, b"alkt1.ci:deploy.1700000000");
        key.verifying_key()
            .verify_strict(parsed.message, &parsed.signature)
            .unwrap();
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (token, why) in [
            ("jwt.abc.def", "does not start"),
            ("alkt1.key", "no signature"),
            ("alkt1.key.AAAA", "too few parts"),
            ("alkt1.key.soon.AAAA", "timestamp"),
            ("alkt1.key.12.AAAA", "64 bytes"),
        ] {
            let err = parse_token(token).err().unwrap();
            assert!(err.message.contains(why), "{token}: {}", err.message);
        }
    }
}
