//! The ciphertexts of `secret/encrypt`: self-describing, so `decrypt` needs only the
//! ciphertext and its associated data.
//!
//! ```text
//! format (1 byte, 1) | name length (1) | key name | key version (4, big-endian)
//! | nonce (24) | aad check (16) | encrypted plaintext | tag (16)
//! ```
//!
//! The AEAD's associated data is everything before the encrypted plaintext, so the name,
//! version, nonce and check cannot be changed unseen. The check is an HMAC of the header
//! and the caller's `aad`, under a key of its own: it tells a wrong `aad` from a ciphertext
//! that was altered, which the AEAD's tag alone cannot.

use alknet_runtime::CallError;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{AeadInOut, Generate};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The format byte this code writes and reads.
pub const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;
const CHECK_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// The longest key name: its length is one byte of the header.
pub const MAX_NAME_LEN: usize = 64;

/// One version of a named key: the AEAD key and the key of the `aad` check.
pub struct VersionKey {
    pub aead: XChaCha20Poly1305,
    pub check: Hmac<Sha256>,
}

/// A ciphertext, read: where its parts are.
pub struct Parsed<'a> {
    pub name: &'a str,
    pub version: u32,
    /// Everything before the encrypted plaintext: the AEAD's associated data.
    authenticated: &'a [u8],
    /// The header the check covers (everything before the check).
    header: &'a [u8],
    check: &'a [u8],
    nonce: &'a [u8],
    body: &'a [u8],
    tag: &'a [u8],
}

/// What can be wrong with a ciphertext once its key is known.
pub enum Refusal {
    /// The `aad` is not the one it was made with (or the check was altered).
    AadMismatch,
    /// It was altered after it was made.
    Tampered,
}

/// Whether `name` can name a key: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), CallError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(CallError::invalid_input(format!(
            "`{name}` is not a key name: 1 to {MAX_NAME_LEN} of `A-Z a-z 0-9 . _ -`"
        )))
    }
}

/// Encrypt `plaintext` under `key`, version `version` of `name`.
pub fn encrypt(
    key: &VersionKey,
    name: &str,
    version: u32,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CallError> {
    let header_len = 2 + name.len() + 4 + NONCE_LEN;
    let mut out = Vec::with_capacity(header_len + CHECK_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&XNonce::generate());
    let check = aad_check(key, &out, aad);
    out.extend_from_slice(&check);
    let authenticated = out.len();
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(authenticated);
    let nonce = XNonce::try_from(&head[header_len - NONCE_LEN..header_len]).expect("24 bytes");
    let tag = key
        .aead
        .encrypt_inout_detached(&nonce, head, body.into())
        .map_err(|_| CallError::invalid_input("the plaintext is too long for one ciphertext"))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Read a ciphertext's parts.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, CallError> {
    let malformed = |why: &str| {
        CallError::invalid_input(format!(
            "the ciphertext is not one `secret/encrypt` made: {why}"
        ))
    };
    let (&format, rest) = bytes
        .split_first()
        .ok_or_else(|| malformed("it is empty"))?;
    if format != FORMAT {
        return Err(malformed(&format!(
            "its format byte is {format}, not {FORMAT}"
        )));
    }
    let (&name_len, rest) = rest
        .split_first()
        .ok_or_else(|| malformed("it ends before the key name"))?;
    let name_len = usize::from(name_len);
    let fixed = name_len + 4 + NONCE_LEN + CHECK_LEN + TAG_LEN;
    if rest.len() < fixed {
        return Err(malformed(&format!(
            "it is {} bytes, shorter than its header and tag",
            bytes.len()
        )));
    }
    let name = std::str::from_utf8(&rest[..name_len])
        .ok()
        .filter(|name| check_name(name).is_ok())
        .ok_or_else(|| malformed("its key name is not a key name"))?;
    let version = u32::from_be_bytes(rest[name_len..name_len + 4].try_into().expect("4 bytes"));
    let header_len = 2 + name_len + 4 + NONCE_LEN;
    let authenticated_len = header_len + CHECK_LEN;
    let tag_at = bytes.len() - TAG_LEN;
    Ok(Parsed {
        name,
        version,
        authenticated: &bytes[..authenticated_len],
        header: &bytes[..header_len],
        check: &bytes[header_len..authenticated_len],
        nonce: &bytes[header_len - NONCE_LEN..header_len],
        body: &bytes[authenticated_len..tag_at],
        tag: &bytes[tag_at..],
    })
}

/// Decrypt a parsed ciphertext with its key.
pub fn decrypt(key: &VersionKey, parsed: &Parsed<'_>, aad: &[u8]) -> Result<Vec<u8>, Refusal> {
    let check = aad_check(key, parsed.header, aad);
    if !bool::from(check.ct_eq(parsed.check)) {
        return Err(Refusal::AadMismatch);
    }
    let nonce = XNonce::try_from(parsed.nonce).expect("24 bytes");
    let tag = parsed.tag.try_into().expect("16 bytes");
    let mut plaintext = parsed.body.to_vec();
    key.aead
        .decrypt_inout_detached(
            &nonce,
            parsed.authenticated,
            plaintext.as_mut_slice().into(),
            tag,
        )
        .map_err(|_| Refusal::Tampered)?;
    Ok(plaintext)
}

fn aad_check(key: &VersionKey, header: &[u8], aad: &[u8]) -> [u8; CHECK_LEN] {
    let mut mac = key.check.clone();
    mac.update(header);
    mac.update(aad);
    let full = mac.finalize().into_bytes();
    full[..CHECK_LEN]
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}
