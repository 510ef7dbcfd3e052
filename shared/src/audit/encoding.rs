//! Small encodings the audit formats need: lowercase hex, the header's
//! percent-encoding, and RFC 3339 timestamps.

/// Lowercase hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    hex_encode_into(&mut out, bytes);
    out
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn hex_encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    out.extend(hex_digits(bytes).map(char::from));
}

/// The lowercase hex digits of `bytes`, two per byte.
pub fn hex_digits(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
}

/// Decodes lowercase hex; `None` for odd length, uppercase or other characters
/// (the formats write lowercase only, so anything else is not ours).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Bytes a header value carries as they are. Everything else, including the
/// separators `;` `=` `|` `%`, `,` (some proxies split header values on it),
/// spaces, controls and non-ASCII bytes, is written as `%XX` (uppercase hex).
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'/'
                | b':'
                | b'@'
                | b'+'
                | b'!'
                | b'*'
                | b'\''
                | b'('
                | b')'
                | b'$'
                | b'&'
                | b'?'
                | b'['
                | b']'
        )
}

pub(crate) fn percent_encode_into(out: &mut String, value: &str) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0x0f)] as char);
        }
    }
}

/// Decodes what [`percent_encode_into`] wrote. Rejects malformed escapes and
/// results that are not UTF-8; whether the input was canonical is checked by
/// re-encoding (see `header.rs`).
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = nibble(*bytes.get(i + 1)?)?;
            let lo = nibble(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `2026-01-01T00:00:00.000Z` for a Unix time in milliseconds (UTC).
pub fn format_rfc3339_millis(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // What `format!("{year:04}-{month:02}-…")` writes, digit by digit: this
    // runs for every audit record, and the formatting machinery costs more
    // than the arithmetic.
    let mut out = String::with_capacity(24);
    if year >= 10_000 {
        out.push_str(&year.to_string());
    } else {
        push_digits(&mut out, year, 4);
    }
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, rem / 3600, 2);
    out.push(':');
    push_digits(&mut out, rem % 3600 / 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    out.push('.');
    push_digits(&mut out, millis, 3);
    out.push('Z');
    out
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        let digit = (n / 10u64.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_uppercase() {
        assert_eq!(hex_encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00abff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(hex_decode("00ABFF"), None);
        assert_eq!(hex_decode("abc"), None);
    }

    #[test]
    fn percent_encoding_escapes_separators_and_round_trips() {
        let mut s = String::new();
        percent_encode_into(&mut s, "a;b=c|d%e,f g\u{e9}/x?y:1");
        assert_eq!(s, "a%3Bb%3Dc%7Cd%25e%2Cf%20g%C3%A9/x?y:1");
        assert_eq!(
            percent_decode(&s).as_deref(),
            Some("a;b=c|d%e,f g\u{e9}/x?y:1")
        );
    }

    #[test]
    fn percent_decoding_rejects_broken_escapes_and_non_utf8() {
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(
            percent_decode("%ff"),
            None,
            "lowercase hex is not canonical"
        );
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        let rows = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000, "10000-01-01T00:00:00.000Z"),
            (86_400_000 * 400 + 3_723_004, "1971-02-05T01:02:03.004Z"),
        ];
        for (ms, want) in rows {
            assert_eq!(format_rfc3339_millis(ms), want, "{ms}");
        }
    }
}
