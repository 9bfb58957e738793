//! Lowercase hex, as fingerprints, hashes and keys are written.

/// `bytes` as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits (either case), or `None`: keys as the node's
/// configuration and credentials write them.
#[cfg(feature = "node")]
pub(crate) fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(hex(&bytes), "007fabff");
        #[cfg(feature = "node")]
        {
            assert_eq!(from_hex::<4>("007FABff"), Some(bytes));
            assert_eq!(from_hex::<4>("007fab"), None);
            assert_eq!(from_hex::<2>("0g00"), None);
        }
    }
}
