//! Identifiers: generation ids (`gen_` + ULID), key ids, request ids.

/// A ULID from a millisecond timestamp and 10 random bytes.
pub fn ulid(now_ms: u64, random: [u8; 10]) -> String {
    let mut r = [0u8; 16];
    r[6..].copy_from_slice(&random);
    ulid::Ulid::from_parts(now_ms, u128::from_be_bytes(r)).to_string()
}

/// A prefixed ULID, e.g. `gen_01J…`.
pub fn prefixed(prefix: &str, now_ms: u64, random: [u8; 10]) -> String {
    let mut s = String::with_capacity(prefix.len() + 27);
    s.push_str(prefix);
    s.push('_');
    s.push_str(&ulid(now_ms, random));
    s
}

/// Whether `s` is an id [`prefixed`] could have made with `prefix` (`key_` and a ULID).
pub fn is_prefixed(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        // (As issued: upper case. The decoder takes lower case too, which names no key.)
        .is_some_and(|u| {
            u.len() == 26
                && !u.bytes().any(|b| b.is_ascii_lowercase())
                && ulid::Ulid::from_string(u).is_ok()
        })
}

/// A client's `x-request-id`, kept when it is short printable ASCII, else `None`.
pub fn sanitize_request_id(value: &str) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    ok.then_some(value)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_ids_are_gen_plus_a_sortable_ulid() {
        let a = prefixed("gen", 1_700_000_000_000, [0; 10]);
        let b = prefixed("gen", 1_700_000_000_001, [255; 10]);
        assert_eq!(a.len(), 30);
        assert!(a.starts_with("gen_"));
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(a < b, "later ids sort after earlier ones");
        assert_ne!(prefixed("gen", 5, [1; 10]), prefixed("gen", 5, [2; 10]));
    }

    #[test]
    fn prefixed_ids_are_recognised() {
        let id = prefixed("key", 1_700_000_000_000, [7; 10]);
        assert!(is_prefixed("key", &id));
        assert!(!is_prefixed("gen", &id));
        for not in [
            "key_",
            "key",
            "",
            "key_01",
            &format!("{id}0"),
            &id.replace("key_", "key-"),
            &id.to_lowercase(),
        ] {
            assert!(!is_prefixed("key", not), "{not}");
        }
        assert!(
            !is_prefixed("key", &format!("key_{}", "U".repeat(26))),
            "not base32"
        );
    }

    #[test]
    fn request_ids_are_kept_only_when_safe() {
        assert_eq!(sanitize_request_id("req-123"), Some("req-123"));
        assert_eq!(sanitize_request_id(""), None);
        assert_eq!(sanitize_request_id("a\nb"), None);
        assert_eq!(sanitize_request_id(&"x".repeat(129)), None);
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
