//! The first bytes of a JSON body that was cut (`AUDIT_MAX_BODY_BYTES`) made into a JSON document again, so
//! that what is kept of it goes through the same key rules as a whole body (a personal key whose object value
//! was cut is still redacted whole, a secret key still dropped), never through the weaker free-text rules.
//!
//! The prefix is cut back to its last complete member and the containers still open there are closed: a
//! member whose value was cut (a string, a number, a key without its value) is left out entirely, never kept
//! in part. One pass over the prefix, no allocation but the output and the stack of open containers.

/// `prefix` (the start of a JSON document) cut back to its last complete member and closed, or `None` when it
/// does not start a JSON object or array, or is malformed where it was read.
pub(super) fn close(prefix: &[u8]) -> Option<Vec<u8>> {
    // Closers of the containers open at the current position, innermost last.
    let mut open: Vec<u8> = Vec::new();
    // End of the last point where the document can be cut: after `{` or `[`, before `,`, after `}` or `]`.
    // After it no structural byte occurs (each would be a cut point itself), so the containers open there
    // are exactly those still open at the end of the prefix.
    let mut cut = None;
    let (mut in_string, mut escaped) = (false, false);
    for (i, &b) in prefix.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' if !open.is_empty() => in_string = true,
            b'{' | b'[' => {
                open.push(if b == b'{' { b'}' } else { b']' });
                cut = Some(i + 1);
            }
            b'}' | b']' => {
                if open.pop() != Some(b) {
                    return None;
                }
                if open.is_empty() {
                    // The whole document ended inside the prefix: what follows it is not JSON anyway.
                    return Some(prefix[..=i].to_vec());
                }
                cut = Some(i + 1);
            }
            b',' if !open.is_empty() => cut = Some(i),
            // Before the first container: only whitespace (and a byte-order mark, which the caller strips).
            _ if open.is_empty() && !b.is_ascii_whitespace() => return None,
            _ => {}
        }
    }
    let cut = cut?;
    let mut out = Vec::with_capacity(cut + open.len());
    out.extend_from_slice(&prefix[..cut]);
    out.extend(open.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::close;

    fn closed(prefix: &str) -> Option<String> {
        close(prefix.as_bytes()).map(|b| String::from_utf8(b).expect("utf-8"))
    }

    #[test]
    fn a_cut_member_is_left_out_whole_and_open_containers_are_closed() {
        assert_eq!(closed(r#"{"a":1,"b":"jane@exa"#).as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(closed(r#"{"a":1,"b":12"#).as_deref(), Some(r#"{"a":1}"#), "a number may have been cut");
        assert_eq!(closed(r#"{"a":{"b":[1,2"#).as_deref(), Some(r#"{"a":{"b":[1]}}"#));
        assert_eq!(closed(r#"{"a":{"#).as_deref(), Some(r#"{"a":{}}"#));
        assert_eq!(closed(r#"[{"a":1},{"b""#).as_deref(), Some(r#"[{"a":1},{}]"#));
        assert_eq!(closed(r#"{"a":"x,}]{[\"y","#).as_deref(), Some(r#"{"a":"x,}]{[\"y"}"#), "structure inside strings");
        assert_eq!(closed(r#"  {"k":"#).as_deref(), Some("  {}"));
    }

    #[test]
    fn a_document_complete_within_the_prefix_is_kept_as_it_is() {
        assert_eq!(closed(r#"{"a":[1]}   trailing"#).as_deref(), Some(r#"{"a":[1]}"#));
    }

    #[test]
    fn what_is_not_a_cut_object_or_array_is_refused() {
        for prefix in ["", "   ", r#""just a string"#, "12345", "nul", r#"{"a":1]"#, "x{", r#"}"#] {
            assert_eq!(closed(prefix), None, "{prefix:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_document_closes_into_json_or_nothing() {
        let doc = r#"{"title":"t","nested":{"list":[1,"two",{"three":3}],"s":"a\"b\\"},"n":-1.5e3,"b":true}"#;
        for end in 0..doc.len() {
            if let Some(json) = close(&doc.as_bytes()[..end]) {
                serde_json::from_slice::<serde_json::Value>(&json)
                    .unwrap_or_else(|e| panic!("prefix {:?} closed into {:?}: {e}", &doc[..end], json));
            }
        }
    }
}
