//! `application/x-www-form-urlencoded` bodies and query strings, as ModSecurity v3's
//! `Transaction::extractArguments` splits and decodes them.

use super::Pair;
use crate::transform;

/// Query strings and application/x-www-form-urlencoded bodies, ModSecurity semantics: split on
/// `&` (ModSecurity's default argument separator), name=value split at the first `=`, a part
/// without `=` is a name with an empty value, `+` and `%XX` decoded (invalid escapes left as-is),
/// empty parts skipped.
///
/// ```text
/// let args = parse_urlencoded(b"a=1&b=x+y%21&flag&&c=%zz");
/// assert_eq!(args[1], (b"b".to_vec(), b"x y!".to_vec()));
/// assert_eq!(args[2], (b"flag".to_vec(), b"".to_vec()));
/// assert_eq!(args[3], (b"c".to_vec(), b"%zz".to_vec()));
/// ```
///
/// Differences from libmodsecurity: it adds an empty name with an empty value for an empty part
/// (`a&&b`, a leading `&`); this skips them, as Coraza and ModSecurity v2 do.
pub fn parse_urlencoded(input: &[u8]) -> Vec<Pair> {
    input
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut halves = part.splitn(2, |&b| b == b'=');
            let name = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            (url_decode(name), url_decode(value))
        })
        .collect()
}

/// ModSecurity's `urldecode_nonstrict_inplace`: `+` is a space, `%` with two hex digits is that
/// byte, any other `%` stays as it is (the `urlDecode` transformation).
fn url_decode(input: &[u8]) -> Vec<u8> {
    transform::url_decode(input, false, true).into_owned()
}

/// `%XX` decoding of a path (`+` stays a plus), as REQUEST_FILENAME holds it.
pub(crate) fn percent_decode(input: &[u8]) -> Vec<u8> {
    transform::url_decode(input, false, false).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (label, input, expected (name, value) pairs)
    type Case = (
        &'static str,
        &'static [u8],
        &'static [(&'static str, &'static str)],
    );

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn urlencoded_cases_follow_modsecurity() {
        let cases: &[Case] = &[
            (
                "simple pairs keep their order",
                b"a=1&b=2",
                &[("a", "1"), ("b", "2")],
            ),
            (
                "duplicate names are all kept",
                b"a=1&a=2",
                &[("a", "1"), ("a", "2")],
            ),
            (
                "a part without = is a name with an empty value",
                b"flag&x=1",
                &[("flag", ""), ("x", "1")],
            ),
            ("name= gives an empty value", b"a=", &[("a", "")]),
            ("=value gives an empty name", b"=v", &[("", "v")]),
            ("split at the first = only", b"a=b=c", &[("a", "b=c")]),
            (
                "empty parts are skipped",
                b"&a=1&&b=2&",
                &[("a", "1"), ("b", "2")],
            ),
            ("empty input has no arguments", b"", &[]),
            (
                "+ is a space in names and values",
                b"a+b=c+d",
                &[("a b", "c d")],
            ),
            (
                "%XX decodes either case",
                b"q=%3Cscript%3e",
                &[("q", "<script>")],
            ),
            (
                "%2B is a literal plus, not a space",
                b"q=1%2B1",
                &[("q", "1+1")],
            ),
            (
                "%26 and %3D do not split",
                b"q=a%26b%3Dc",
                &[("q", "a&b=c")],
            ),
            ("invalid escape stays as-is", b"q=%zz%4", &[("q", "%zz%4")]),
            ("lone % at the end stays", b"q=100%", &[("q", "100%")]),
            (
                "half-valid escape keeps the % and decodes nothing",
                b"q=%4g",
                &[("q", "%4g")],
            ),
            ("%00 decodes to a NUL byte", b"q=a%00b", &[("q", "a\0b")]),
            ("; is not a separator", b"a=1;b=2", &[("a", "1;b=2")]),
        ];
        for (label, input, expected) in cases {
            assert_eq!(parse_urlencoded(input), pairs(expected), "{label}");
        }
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        assert_eq!(
            parse_urlencoded(b"n=\xff%ff"),
            vec![(b"n".to_vec(), vec![0xff, 0xff])]
        );
    }

    #[test]
    fn no_panic_on_any_prefix() {
        let body = b"a=%41%4&b+c=%&d=%zz&&e";
        for prefix in super::super::every_prefix(body) {
            let _ = parse_urlencoded(prefix);
        }
    }
}
