//! The newline-joined lists the edge's JavaScript (`src/edge/http.js`) and the core exchange, so
//! that each step costs one call across the wasm boundary: header lists out ("name\nvalue\n…"),
//! a request's or response's few fields in. HTTP forbids line breaks in header names and values,
//! and URLs carry them percent-encoded, so a newline can only ever be a separator.

/// Header pairs as one string. A name or value holding a line break makes it `Err` with the
/// offending header's name, never its value (which may be a credential).
pub fn join_headers<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, &'a str> {
    let mut out = String::with_capacity(256);
    for (name, value) in pairs {
        if value.contains(['\n', '\r']) || name.contains(['\n', '\r']) {
            return Err(name);
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
    }
    Ok(out)
}

/// Splits a newline-joined list into exactly `N` fields: an empty or missing field is `None`.
pub fn split<const N: usize>(joined: &str) -> [Option<&str>; N] {
    let mut out = [None; N];
    for (slot, part) in out.iter_mut().zip(joined.split('\n')) {
        *slot = (!part.is_empty()).then_some(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_join_and_refuse_line_breaks_by_name_only() {
        let joined = join_headers([("content-type", "application/json"), ("x-a", "")]).unwrap();
        assert_eq!(joined, "content-type\napplication/json\nx-a\n");
        assert_eq!(join_headers([]).unwrap(), "");
        let err = join_headers([("authorization", "Bearer sk-secret\nx")]).unwrap_err();
        assert_eq!(err, "authorization");
        assert!(join_headers([("bad\rname", "v")]).is_err());
    }

    #[test]
    fn fields_split_to_a_fixed_count_with_empties_as_none() {
        let [method, url, auth, rid] = split::<4>("POST\nhttps://x/v1?a=b\n\nreq_1");
        assert_eq!(
            (method, url, auth, rid),
            (Some("POST"), Some("https://x/v1?a=b"), None, Some("req_1"))
        );
        assert_eq!(split::<3>("only"), [Some("only"), None, None]);
        assert_eq!(
            split::<2>("a\nb\nc"),
            [Some("a"), Some("b")],
            "extra fields are ignored"
        );
    }
}
