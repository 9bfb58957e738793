//! Page cursors: opaque to the caller, and authenticated, so a cursor that was altered or
//! that belongs to another query is refused rather than read as a position.
//!
//! ```text
//! base64url( last id of the page | HMAC-SHA-256(key, query | 0 | last id)[..16] )
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const TAG_LEN: usize = 16;

/// The cursor after `last` in the listing `query` describes.
pub fn encode(key: &[u8; 32], query: &str, last: &str) -> String {
    let mut bytes = last.as_bytes().to_vec();
    bytes.extend_from_slice(&tag(key, query, last));
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The id a cursor continues after, if it is one [`encode`] made for `query` with `key`.
pub fn decode(key: &[u8; 32], query: &str, cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let split = bytes.len().checked_sub(TAG_LEN)?;
    let (last, given) = bytes.split_at(split);
    let last = std::str::from_utf8(last).ok()?;
    bool::from(tag(key, query, last).ct_eq(given)).then(|| last.to_string())
}

fn tag(key: &[u8; 32], query: &str, last: &str) -> [u8; TAG_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(query.as_bytes());
    mac.update(&[0]);
    mac.update(last.as_bytes());
    let full = mac.finalize().into_bytes();
    full[..TAG_LEN].try_into().expect("16 of 32 bytes")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_decodes_only_as_what_was_encoded(
            query in "[a-z ]{0,20}",
            last in "[A-Za-z0-9_.:-]{1,128}",
            noise in ".{0,200}",
        ) {
            let key = [5; 32];
            let cursor = encode(&key, &query, &last);
            prop_assert_eq!(decode(&key, &query, &cursor), Some(last.clone()));
            // Text that is not that cursor is refused, never read as a position.
            if noise != cursor {
                prop_assert_eq!(decode(&key, &query, &noise), None);
            }
            let mut altered = cursor.into_bytes();
            let at = noise.len() % altered.len();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            prop_assert_eq!(decode(&key, &query, &String::from_utf8(altered).unwrap()), None);
        }
    }

    #[test]
    fn a_cursor_reads_back_only_for_its_query_and_key() {
        let key = [3; 32];
        let cursor = encode(&key, "nodes g person", "n-42");
        assert_eq!(
            decode(&key, "nodes g person", &cursor).as_deref(),
            Some("n-42")
        );
        assert_eq!(decode(&key, "nodes g place", &cursor), None);
        assert_eq!(decode(&[4; 32], "nodes g person", &cursor), None);
        let mut altered = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        altered[0] ^= 1;
        assert_eq!(
            decode(&key, "nodes g person", &URL_SAFE_NO_PAD.encode(altered)),
            None
        );
        assert_eq!(decode(&key, "nodes g person", "short"), None);
        assert_eq!(decode(&key, "nodes g person", "not base64!"), None);
    }
}
