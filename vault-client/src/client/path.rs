//! Request paths and query strings, with every id and value percent-encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// `/v1/tenants/{tenant}/tokens/{id}`.
pub(crate) fn token_path(tenant: &str, id: &str) -> String {
    format!("/v1/tenants/{}/tokens/{}", segment(tenant), segment(id))
}

/// A path segment. Valid ids (`A-Z a-z 0-9 . _ -`) pass unchanged; any other byte is
/// percent-encoded so that a bad id reaches the daemon as one invalid segment (which it refuses)
/// and never as extra path or query.
pub(super) fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// A query string from `(name, value)` pairs: `?a=1&b=2`, or empty without pairs. Values are
/// percent-encoded; names are fixed by the caller.
pub(super) fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.push_str(&query_value(value));
    }
    out
}

/// A query value: RFC 3986 unreserved bytes pass, everything else is percent-encoded.
pub(super) fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// What a path segment encodes: every byte but `A-Z a-z 0-9 . _ -`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// What a query value encodes: every byte but RFC 3986's unreserved ones.
const QUERY_VALUE: &AsciiSet = &SEGMENT.remove(b'~');

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn valid_ids_pass_unchanged() {
        assert_eq!(segment("acme-01.prod_x"), "acme-01.prod_x");
        assert_eq!(token_path("acme", "tok-1"), "/v1/tenants/acme/tokens/tok-1");
    }

    #[test]
    fn bad_ids_cannot_change_the_path() {
        assert_eq!(segment("a/b"), "a%2Fb");
        assert_eq!(segment("a?confirm=a"), "a%3Fconfirm%3Da");
        assert_eq!(segment("é"), "%C3%A9");
        assert_eq!(query_value("x&limit=1"), "x%26limit%3D1");
        assert_eq!(query_value("a~b c"), "a~b%20c");
        assert_eq!(segment("a~b"), "a%7Eb");
    }
}
