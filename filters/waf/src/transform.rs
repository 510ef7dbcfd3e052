//! SecLang transformations (the `t:` action), with libmodsecurity v3 semantics.
//!
//! A transformation maps bytes to bytes; a rule applies its list in order before the operator
//! runs. Every function here works on raw bytes (request data is not guaranteed UTF-8), never
//! panics, and returns [`Cow::Borrowed`] when the value does not change, so the common case — a
//! benign value with nothing to decode — allocates nothing.
//!
//! What this module does not do: `t:none` (the parser clears the list), `SecUnicodeMapFile`
//! code-page tables for `urlDecodeUni` (ModSecurity falls back to the low byte without one, as
//! here), and caching of transformed values (the engine's business).

use std::borrow::Cow;

use md5::Md5;
use sha1::{Digest, Sha1};

/// One SecLang transformation function: `Transform::from_name("urlDecodeUni")` resolves
/// `t:urlDecodeUni`, and its `apply(b"%3Cscript%3E")` gives `<script>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// Base64 decoding that stops at the first character outside the alphabet (or `=`).
    Base64Decode,
    /// Forgiving Base64 decoding: characters outside the alphabet are skipped.
    Base64DecodeExt,
    /// Base64 encoding with padding.
    Base64Encode,
    /// Command-line normalisation (`\ " ' ^` deleted, separators folded, lowercased).
    CmdLine,
    /// Runs of ASCII whitespace become one space.
    CompressWhitespace,
    /// CSS 2 escapes (`\HHHHHH`, `\c`, line continuations).
    CssDecode,
    /// ANSI C escapes (`\n`, `\xHH`, `\OOO`, ...).
    EscapeSeqDecode,
    /// Pairs of hexadecimal digits to bytes.
    HexDecode,
    /// Bytes to lowercase hexadecimal.
    HexEncode,
    /// HTML character references (`&#xHH;`, `&#DDD;`, `&quot; &amp; &lt; &gt; &nbsp;`).
    HtmlEntityDecode,
    /// JavaScript escapes (`\uHHHH`, `\xHH`, `\OOO`, `\n`, ...).
    JsDecode,
    /// The decimal length of the value.
    Length,
    /// ASCII lowercase.
    Lowercase,
    /// The raw 16-byte MD5 digest.
    Md5,
    /// Removes `/./`, resolves `/../`, collapses `//`.
    NormalizePath,
    /// [`Transform::NormalizePath`] after turning `\` into `/`.
    NormalizePathWin,
    /// Sets bit 7 so that each byte has even parity.
    ParityEven7bit,
    /// Sets bit 7 so that each byte has odd parity.
    ParityOdd7bit,
    /// Clears bit 7 of each byte.
    ParityZero7bit,
    /// Removes `/* */` and `<!-- -->` comments; `--` and `#` end the value.
    RemoveComments,
    /// Deletes the comment markers `/*`, `*/`, `<!--`, `-->`, `--` and `#`.
    RemoveCommentsChar,
    /// Deletes NUL bytes.
    RemoveNulls,
    /// Deletes ASCII whitespace and the bytes 0xA0 and 0xC2 (UTF-8 no-break space).
    RemoveWhitespace,
    /// Replaces each `/* ... */` comment (an unterminated one to the end) with one space.
    ReplaceComments,
    /// Replaces NUL bytes with spaces.
    ReplaceNulls,
    /// The raw 20-byte SHA-1 digest.
    Sha1,
    /// SQL hexadecimal literals (`0x414243`) to bytes.
    SqlHexDecode,
    /// Strips ASCII whitespace on both sides.
    Trim,
    /// Strips leading ASCII whitespace.
    TrimLeft,
    /// Strips trailing ASCII whitespace.
    TrimRight,
    /// ASCII uppercase.
    Uppercase,
    /// `%HH` and `+` decoding; invalid sequences are left as they are.
    UrlDecode,
    /// [`Transform::UrlDecode`] plus IIS `%uHHHH` (low byte, full-width ASCII folded).
    UrlDecodeUni,
    /// Percent-encoding of everything but `*`, digits and letters; space becomes `+`.
    UrlEncode,
    /// Each multi-byte UTF-8 character becomes `%uHHHH`.
    Utf8ToUnicode,
}

/// Every SecLang spelling, matched case-insensitively; the first of each is canonical.
const NAMES: &[(&str, Transform)] = &[
    ("base64Decode", Transform::Base64Decode),
    ("base64DecodeExt", Transform::Base64DecodeExt),
    ("base64Encode", Transform::Base64Encode),
    ("cmdLine", Transform::CmdLine),
    ("compressWhitespace", Transform::CompressWhitespace),
    ("cssDecode", Transform::CssDecode),
    ("escapeSeqDecode", Transform::EscapeSeqDecode),
    ("hexDecode", Transform::HexDecode),
    ("hexEncode", Transform::HexEncode),
    ("htmlEntityDecode", Transform::HtmlEntityDecode),
    ("jsDecode", Transform::JsDecode),
    ("length", Transform::Length),
    ("lowercase", Transform::Lowercase),
    ("md5", Transform::Md5),
    ("normalizePath", Transform::NormalizePath),
    ("normalisePath", Transform::NormalizePath),
    ("normalizePathWin", Transform::NormalizePathWin),
    ("normalisePathWin", Transform::NormalizePathWin),
    ("parityEven7bit", Transform::ParityEven7bit),
    ("parityOdd7bit", Transform::ParityOdd7bit),
    ("parityZero7bit", Transform::ParityZero7bit),
    ("removeComments", Transform::RemoveComments),
    ("removeCommentsChar", Transform::RemoveCommentsChar),
    ("removeNulls", Transform::RemoveNulls),
    ("removeWhitespace", Transform::RemoveWhitespace),
    ("replaceComments", Transform::ReplaceComments),
    ("replaceNulls", Transform::ReplaceNulls),
    ("sha1", Transform::Sha1),
    ("sqlHexDecode", Transform::SqlHexDecode),
    ("trim", Transform::Trim),
    ("trimLeft", Transform::TrimLeft),
    ("trimRight", Transform::TrimRight),
    ("uppercase", Transform::Uppercase),
    ("urlDecode", Transform::UrlDecode),
    ("urlDecodeUni", Transform::UrlDecodeUni),
    ("urlEncode", Transform::UrlEncode),
    ("utf8toUnicode", Transform::Utf8ToUnicode),
];

impl Transform {
    /// The transformation called `name` in SecLang, case-insensitively (`urlDecodeUni`,
    /// `base64decode`, British `normalisePath`/`normalisePathWin` too). `none` is not a
    /// transformation (the parser handles it): it returns `None`, as does an unknown name.
    pub fn from_name(name: &str) -> Option<Transform> {
        NAMES
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|&(_, t)| t)
    }

    /// The canonical SecLang name, as ModSecurity's reference manual spells it: the first
    /// spelling `NAMES` gives.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|&&(_, t)| t == self)
            .map_or("", |&(name, _)| name)
    }

    /// Applies the transformation.
    ///
    /// The result is borrowed (from `input`, possibly a prefix or a sub-slice of it, as
    /// `trim` gives) whenever the transformation could produce it without rewriting bytes; in
    /// particular an unchanged value is always `Cow::Borrowed(input)` and costs no allocation.
    pub fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        match self.apply_raw(input) {
            // `length` of "1", a path already normal...: an equal result is the unchanged input.
            Cow::Owned(bytes) if bytes == input => Cow::Borrowed(input),
            other => other,
        }
    }

    /// The transformation itself; it borrows wherever it can see that nothing changes.
    fn apply_raw(self, input: &[u8]) -> Cow<'_, [u8]> {
        match self {
            Transform::Base64Decode => base64_decode(input),
            Transform::Base64DecodeExt => base64_decode_ext(input),
            Transform::Base64Encode => base64_encode(input),
            Transform::CmdLine => cmd_line(input),
            Transform::CompressWhitespace => compress_whitespace(input),
            Transform::CssDecode => css_decode(input),
            Transform::EscapeSeqDecode => escape_seq_decode(input),
            Transform::HexDecode => hex_decode(input),
            Transform::HexEncode => hex_encode(input),
            Transform::HtmlEntityDecode => html_entity_decode(input),
            Transform::JsDecode => js_decode(input),
            Transform::Length => Cow::Owned(input.len().to_string().into_bytes()),
            Transform::Lowercase => map_bytes(input, |b| b.to_ascii_lowercase()),
            Transform::Md5 => Cow::Owned(Md5::digest(input).to_vec()),
            Transform::NormalizePath => normalize_path(input, false),
            Transform::NormalizePathWin => normalize_path(input, true),
            Transform::ParityEven7bit => map_bytes(input, |b| parity_7bit(b, true)),
            Transform::ParityOdd7bit => map_bytes(input, |b| parity_7bit(b, false)),
            Transform::ParityZero7bit => map_bytes(input, |b| b & 0x7f),
            Transform::RemoveComments => remove_comments(input),
            Transform::RemoveCommentsChar => remove_comments_char(input),
            Transform::RemoveNulls => remove_bytes(input, |b| b == 0),
            Transform::RemoveWhitespace => {
                // ModSecurity v3 also deletes 0xA0 (Latin-1 NBSP) and 0xC2 (the lead byte of
                // UTF-8 U+00A0), so a UTF-8 no-break space disappears entirely.
                remove_bytes(input, |b| is_c_space(b) || b == 0xa0 || b == 0xc2)
            }
            Transform::ReplaceComments => replace_comments(input),
            Transform::ReplaceNulls => map_bytes(input, |b| if b == 0 { b' ' } else { b }),
            Transform::Sha1 => Cow::Owned(Sha1::digest(input).to_vec()),
            Transform::SqlHexDecode => sql_hex_decode(input),
            Transform::Trim => Cow::Borrowed(trim_end(trim_start(input))),
            Transform::TrimLeft => Cow::Borrowed(trim_start(input)),
            Transform::TrimRight => Cow::Borrowed(trim_end(input)),
            Transform::Uppercase => map_bytes(input, |b| b.to_ascii_uppercase()),
            Transform::UrlDecode => url_decode(input, false, true),
            Transform::UrlDecodeUni => url_decode(input, true, true),
            Transform::UrlEncode => url_encode(input),
            Transform::Utf8ToUnicode => utf8_to_unicode(input),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output buffer
// ---------------------------------------------------------------------------------------------

/// The output of a decoder that stays a borrow of the input for as long as the bytes written
/// equal the input's prefix, and becomes a `Vec` at the first byte that differs.
struct Out<'a> {
    input: &'a [u8],
    /// While `owned` is `None`, the output is `input[..same]`.
    same: usize,
    owned: Option<Vec<u8>>,
}

impl<'a> Out<'a> {
    /// An output that already holds `input[..prefix]` (the part a scan found nothing in).
    fn with_prefix(input: &'a [u8], prefix: usize) -> Self {
        Out {
            input,
            same: prefix.min(input.len()),
            owned: None,
        }
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        match self.owned.as_mut() {
            Some(owned) => owned.push(byte),
            None if self.input.get(self.same) == Some(&byte) => self.same += 1,
            None => self.spill().push(byte),
        }
    }

    fn push_slice(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// Removes the last byte written, if any.
    fn pop(&mut self) {
        match self.owned.as_mut() {
            Some(owned) => {
                owned.pop();
            }
            None => self.same = self.same.saturating_sub(1),
        }
    }

    #[cold]
    fn spill(&mut self) -> &mut Vec<u8> {
        let mut owned = Vec::with_capacity(self.input.len().saturating_add(16));
        owned.extend_from_slice(self.input.get(..self.same).unwrap_or_default());
        self.owned.insert(owned)
    }

    fn finish(self) -> Cow<'a, [u8]> {
        match self.owned {
            Some(owned) => Cow::Owned(owned),
            None => Cow::Borrowed(self.input.get(..self.same).unwrap_or_default()),
        }
    }
}

/// `input` from the first byte for which `interesting` holds, and an output holding the
/// bytes before it; `None` when no byte is interesting (the value is unchanged).
fn start_at<'a>(input: &'a [u8], interesting: impl Fn(u8) -> bool) -> Option<(Out<'a>, &'a [u8])> {
    let start = input.iter().position(|&b| interesting(b))?;
    let rest = input.get(start..).unwrap_or_default();
    Some((Out::with_prefix(input, start), rest))
}

// ---------------------------------------------------------------------------------------------
// Character classes shared by the decoders (C locale, as ModSecurity runs)
// ---------------------------------------------------------------------------------------------

/// `isspace` in the C locale: space, \t, \n, \v, \f, \r.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_octal(b: u8) -> bool {
    matches!(b, b'0'..=b'7')
}

/// A hexadecimal digit's value (shared by the decoders of this crate).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Two hexadecimal digits as a byte; `None` unless both are digits.
fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    Some((hex_value(hi)? << 4) | hex_value(lo)?)
}

fn all_hex(digits: &[u8]) -> bool {
    digits.iter().all(u8::is_ascii_hexdigit)
}

/// `bytes` split after its longest prefix (at most `max` bytes) whose bytes satisfy `class`.
fn span(bytes: &[u8], max: usize, class: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = bytes.iter().take(max).take_while(|&&b| class(b)).count();
    bytes.split_at_checked(n).unwrap_or((bytes, &[]))
}

/// The low byte of an IIS/JavaScript `%uHHHH` / `\uHHHH` escape, as ModSecurity decodes it:
/// the high byte is dropped, except that full-width ASCII (U+FF01..U+FF5E) maps to ASCII.
fn unicode_escape_byte(h1: u8, h2: u8, h3: u8, h4: u8) -> Option<u8> {
    let low = hex_pair(h3, h4)?;
    let full_width = matches!(h1, b'f' | b'F') && matches!(h2, b'f' | b'F');
    if full_width && low > 0 && low < 0x5f {
        Some(low + 0x20)
    } else {
        Some(low)
    }
}

/// The value of `strtol(digits, NULL, radix)` on an LP64 system, reduced to its low byte as
/// ModSecurity's `(unsigned char)` cast does; overflow saturates at `LONG_MAX` (low byte 0xFF).
fn strtol_low_byte(digits: &[u8], radix: u32) -> u8 {
    let mut value: i64 = 0;
    for &d in digits {
        let digit = char::from(d).to_digit(radix).unwrap_or(0);
        value = value
            .checked_mul(i64::from(radix))
            .and_then(|v| v.checked_add(i64::from(digit)))
            .unwrap_or(i64::MAX);
    }
    (value & 0xff) as u8
}

// ---------------------------------------------------------------------------------------------
// Byte maps and filters
// ---------------------------------------------------------------------------------------------

/// Maps each byte; borrowed if no byte changes.
fn map_bytes(input: &[u8], f: impl Fn(u8) -> u8) -> Cow<'_, [u8]> {
    match input.iter().position(|&b| f(b) != b) {
        None => Cow::Borrowed(input),
        Some(first) => {
            let mut owned = input.to_vec();
            for b in owned.iter_mut().skip(first) {
                *b = f(*b);
            }
            Cow::Owned(owned)
        }
    }
}

/// Deletes the bytes `remove` selects; borrowed if there are none.
fn remove_bytes(input: &[u8], remove: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    match input.iter().position(|&b| remove(b)) {
        None => Cow::Borrowed(input),
        Some(_) => Cow::Owned(input.iter().copied().filter(|&b| !remove(b)).collect()),
    }
}

/// parityEven7bit / parityOdd7bit as ModSecurity computes them: the parity is taken over all
/// eight bits of the input byte (bit 7 included), then bit 7 is set or cleared from it.
fn parity_7bit(b: u8, even: bool) -> u8 {
    let odd_ones = b.count_ones() % 2 == 1;
    if odd_ones == even {
        b | 0x80
    } else {
        b & 0x7f
    }
}

fn trim_start(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_c_space(b))
        .unwrap_or(input.len());
    input.get(start..).unwrap_or_default()
}

fn trim_end(input: &[u8]) -> &[u8] {
    let end = input
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(0, |i| i + 1);
    input.get(..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// URL encoding
// ---------------------------------------------------------------------------------------------

/// urlDecode / urlDecodeUni: `%HH` and `+`; with `uni`, also `%uHHHH`. A `%` that does not
/// start a valid escape is kept, and decoding goes on after it (`%%41` gives `%A`); an
/// invalid or truncated `%u` escape keeps both the `%` and the `u`. Without `plus_is_space`
/// a `+` stays (a path's `%XX` decoding); the body processors use it for form data too.
pub(crate) fn url_decode(input: &[u8], uni: bool, plus_is_space: bool) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'%' || (plus_is_space && b == b'+'))
    else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        rest = tail;
        match *c {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match tail {
                [b'u' | b'U', h1, h2, h3, h4, after @ ..]
                    if uni && all_hex(&[*h1, *h2, *h3, *h4]) =>
                {
                    out.push(unicode_escape_byte(*h1, *h2, *h3, *h4).unwrap_or(0));
                    rest = after;
                }
                [u @ (b'u' | b'U'), after @ ..] if uni => {
                    out.push(b'%');
                    out.push(*u);
                    rest = after;
                }
                [h1, h2, after @ ..] if hex_pair(*h1, *h2).is_some() => {
                    out.push(hex_pair(*h1, *h2).unwrap_or(0));
                    rest = after;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    out.finish()
}

/// urlEncode: keeps `*`, ASCII digits and letters, turns space into `+` and everything else
/// into `%hh` (lowercase hex).
fn url_encode(input: &[u8]) -> Cow<'_, [u8]> {
    let keep = |b: u8| b == b'*' || b.is_ascii_alphanumeric();
    let Some((mut out, rest)) = start_at(input, |b| !keep(b)) else {
        return Cow::Borrowed(input);
    };
    for &b in rest {
        if keep(b) {
            out.push(b);
        } else if b == b' ' {
            out.push(b'+');
        } else {
            out.push_slice(&[
                b'%',
                HEX_LOWER[usize::from(b >> 4)],
                HEX_LOWER[usize::from(b & 0xf)],
            ]);
        }
    }
    out.finish()
}

const HEX_LOWER: [u8; 16] = *b"0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// Hexadecimal
// ---------------------------------------------------------------------------------------------

fn hex_encode(input: &[u8]) -> Cow<'_, [u8]> {
    Cow::Owned(meshward_shared::audit::hex_encode(input).into_bytes())
}

/// ModSecurity's `xsingle2c`: the value of one hex digit, computed without validation. For a
/// non-digit it yields the same wrapped arithmetic as the C code, so hexDecode of invalid input
/// matches ModSecurity byte for byte.
fn xsingle2c(b: u8) -> u8 {
    if b >= b'A' {
        (b & 0xdf).wrapping_sub(b'A').wrapping_add(10)
    } else {
        b.wrapping_sub(b'0')
    }
}

/// hexDecode: each pair of characters becomes a byte; a trailing odd character is dropped.
/// ModSecurity does not validate the digits, and neither does this (same arithmetic).
fn hex_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_empty() {
        return Cow::Borrowed(input);
    }
    let out = input
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => xsingle2c(*hi).wrapping_mul(16).wrapping_add(xsingle2c(*lo)),
            _ => 0,
        })
        .collect();
    Cow::Owned(out)
}

/// sqlHexDecode: `0x` (or `0X`) followed by at least one pair of hex digits is replaced by the
/// bytes those pairs encode; decoding stops at the first incomplete or invalid pair.
fn sql_hex_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'0') else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        match rest {
            [b'0', b'x' | b'X', h1, h2, after @ ..] if hex_pair(*h1, *h2).is_some() => {
                out.push(hex_pair(*h1, *h2).unwrap_or(0));
                rest = after;
                while let [h1, h2, after @ ..] = rest {
                    let Some(byte) = hex_pair(*h1, *h2) else {
                        break;
                    };
                    out.push(byte);
                    rest = after;
                }
            }
            _ => {
                out.push(*c);
                rest = tail;
            }
        }
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// Base64
// ---------------------------------------------------------------------------------------------

// Written by hand rather than with the `base64` crate: ModSecurity's two decoders are lenient
// in ways that crate does not offer (base64Decode returns the partial decoding up to the first
// invalid byte; base64DecodeExt skips invalid bytes anywhere, with its own `=` rule), and the
// crate would cost more .wasm than these few lines.

const BASE64_ALPHABET: [u8; 64] =
    *b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Collects 6-bit groups into bytes; a trailing partial group yields the whole bytes it holds.
#[derive(Default)]
struct Base64Sink {
    out: Vec<u8>,
    bits: u32,
    count: u8,
}

impl Base64Sink {
    fn push(&mut self, sextet: u8) {
        self.bits = (self.bits << 6) | u32::from(sextet);
        self.count += 1;
        if self.count == 4 {
            self.out.extend_from_slice(&[
                (self.bits >> 16) as u8,
                (self.bits >> 8) as u8,
                self.bits as u8,
            ]);
            self.bits = 0;
            self.count = 0;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        match self.count {
            2 => self.out.push((self.bits >> 4) as u8),
            3 => self
                .out
                .extend_from_slice(&[(self.bits >> 10) as u8, (self.bits >> 2) as u8]),
            _ => {}
        }
        self.out
    }
}

/// base64Decode: CR and LF are skipped; the first other byte outside the alphabet (`=` and
/// space included) ends the input, and what was decoded before it is the result (as
/// ModSecurity 2 and Coraza do, which the CRS tests are written against).
fn base64_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_empty() {
        return Cow::Borrowed(input);
    }
    let mut sink = Base64Sink::default();
    for &b in input {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        let Some(sextet) = base64_value(b) else { break };
        sink.push(sextet);
    }
    Cow::Owned(sink.finish())
}

/// base64DecodeExt, ModSecurity's forgiving decoder: bytes outside the alphabet are skipped
/// wherever they are. A `=` is skipped too, except that one which ends a run of `=` when the
/// characters decoded so far number 4n+1 (`QUJDR=`) makes the whole result empty, as in
/// ModSecurity.
fn base64_decode_ext(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_empty() {
        return Cow::Borrowed(input);
    }
    let mut sink = Base64Sink::default();
    let mut rest = input;
    while let [b, tail @ ..] = rest {
        rest = tail;
        if *b == b'=' {
            if tail.first() != Some(&b'=') && sink.count == 1 {
                return Cow::Owned(Vec::new());
            }
            continue;
        }
        if let Some(sextet) = base64_value(*b) {
            sink.push(sextet);
        }
    }
    Cow::Owned(sink.finish())
}

fn base64_encode(input: &[u8]) -> Cow<'_, [u8]> {
    if input.is_empty() {
        return Cow::Borrowed(input);
    }
    let sym = |bits: u32| BASE64_ALPHABET[(bits & 0x3f) as usize];
    let mut out = Vec::with_capacity(input.len().div_ceil(3).saturating_mul(4));
    for chunk in input.chunks(3) {
        let (b0, b1, b2) = match *chunk {
            [a] => (a, None, None),
            [a, b] => (a, Some(b), None),
            [a, b, c, ..] => (a, Some(b), Some(c)),
            [] => continue,
        };
        let bits =
            u32::from(b0) << 16 | u32::from(b1.unwrap_or(0)) << 8 | u32::from(b2.unwrap_or(0));
        out.push(sym(bits >> 18));
        out.push(sym(bits >> 12));
        out.push(if b1.is_some() { sym(bits >> 6) } else { b'=' });
        out.push(if b2.is_some() { sym(bits) } else { b'=' });
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------------------
// Escape decoders: HTML, JavaScript, CSS, ANSI C
// ---------------------------------------------------------------------------------------------

/// htmlEntityDecode. Numeric references `&#DDD` / `&#xHH` take all the digits that follow
/// and keep the low byte of their value (`&#0000060;` is `<`); named references are `quot amp
/// lt gt nbsp` in any case (`&nbsp;` is the byte 0xA0). The `;` is optional. Anything else is
/// left as it is.
fn html_entity_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'&') else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        rest = tail;
        if *c != b'&' || tail.is_empty() {
            out.push(*c);
            continue;
        }
        match tail {
            [b'#', x @ (b'x' | b'X'), digits @ ..] => {
                let (number, after) = span(digits, usize::MAX, |b| b.is_ascii_hexdigit());
                if number.is_empty() {
                    out.push_slice(&[b'&', b'#', *x]);
                    rest = digits;
                } else {
                    out.push(strtol_low_byte(number, 16));
                    rest = skip_semicolon(after);
                }
            }
            [b'#', digits @ ..] => {
                let (number, after) = span(digits, usize::MAX, |b| b.is_ascii_digit());
                if number.is_empty() {
                    out.push_slice(b"&#");
                    rest = digits;
                } else {
                    out.push(strtol_low_byte(number, 10));
                    rest = skip_semicolon(after);
                }
            }
            _ => {
                let (name, after) = span(tail, usize::MAX, |b| b.is_ascii_alphanumeric());
                match named_entity(name) {
                    Some(byte) => {
                        out.push(byte);
                        rest = skip_semicolon(after);
                    }
                    None => {
                        out.push(b'&');
                        out.push_slice(name);
                        rest = after;
                    }
                }
            }
        }
    }
    out.finish()
}

fn named_entity(name: &[u8]) -> Option<u8> {
    const ENTITIES: [(&[u8], u8); 5] = [
        (b"quot", b'"'),
        (b"amp", b'&'),
        (b"lt", b'<'),
        (b"gt", b'>'),
        (b"nbsp", 0xa0),
    ];
    ENTITIES
        .iter()
        .find(|(entity, _)| entity.eq_ignore_ascii_case(name))
        .map(|&(_, byte)| byte)
}

fn skip_semicolon(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b";").unwrap_or(bytes)
}

/// Up to `max` octal digits at the start of `bytes`, their value and what follows them.
fn octal_prefix(bytes: &[u8], max: usize) -> (u32, &[u8]) {
    let (digits, after) = span(bytes, max, is_octal);
    let value = digits
        .iter()
        .fold(0u32, |acc, &d| acc * 8 + u32::from(d - b'0'));
    (value, after)
}

/// jsDecode: `\uHHHH` (low byte, full-width ASCII folded), `\xHH`, `\OOO` (at most one
/// byte: a third digit is used only if the first is 0-3), `\a \b \f \n \r \t \v`, and `\c`
/// for any other `c` (the backslash is dropped). A trailing lone backslash stays.
fn js_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'\\') else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        rest = tail;
        if *c != b'\\' {
            out.push(*c);
            continue;
        }
        match tail {
            [b'u', h1, h2, h3, h4, after @ ..] if all_hex(&[*h1, *h2, *h3, *h4]) => {
                out.push(unicode_escape_byte(*h1, *h2, *h3, *h4).unwrap_or(0));
                rest = after;
            }
            [b'x', h1, h2, after @ ..] if hex_pair(*h1, *h2).is_some() => {
                out.push(hex_pair(*h1, *h2).unwrap_or(0));
                rest = after;
            }
            [first, ..] if is_octal(*first) => {
                let max = if *first <= b'3' { 3 } else { 2 };
                let (value, after) = octal_prefix(tail, max);
                out.push((value & 0xff) as u8);
                rest = after;
            }
            [other, after @ ..] => {
                out.push(c_escape(*other).unwrap_or(*other));
                rest = after;
            }
            [] => out.push(b'\\'),
        }
    }
    out.finish()
}

/// The single-letter C escapes both jsDecode and escapeSeqDecode know.
fn c_escape(letter: u8) -> Option<u8> {
    match letter {
        b'a' => Some(0x07),
        b'b' => Some(0x08),
        b'f' => Some(0x0c),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(0x0b),
        _ => None,
    }
}

/// escapeSeqDecode (ANSI C): `\a \b \f \n \r \t \v \\ \? \' \"`, `\xHH` (or `\XHH`), and
/// `\O` to `\OOO` (the value's low byte). For an unknown or invalid escape the backslash is
/// dropped and the next character kept (`\z` gives `z`, `\x4g` gives `x4g`). A trailing lone
/// backslash stays.
fn escape_seq_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'\\') else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        rest = tail;
        if *c != b'\\' {
            out.push(*c);
            continue;
        }
        match tail {
            [b'x' | b'X', h1, h2, after @ ..] if hex_pair(*h1, *h2).is_some() => {
                out.push(hex_pair(*h1, *h2).unwrap_or(0));
                rest = after;
            }
            [first, ..] if is_octal(*first) => {
                let (value, after) = octal_prefix(tail, 3);
                out.push((value & 0xff) as u8);
                rest = after;
            }
            [other, after @ ..] => {
                let decoded = match other {
                    b'\\' | b'?' | b'\'' | b'"' => *other,
                    _ => c_escape(*other).unwrap_or(*other),
                };
                out.push(decoded);
                rest = after;
            }
            [] => out.push(b'\\'),
        }
    }
    out.finish()
}

/// cssDecode (CSS 2 escapes). `\` followed by 1-6 hex digits becomes one byte: the digits'
/// value for one digit, else the last two digits; for `\HHHH` (or 5-6 digits starting with
/// `0`/`00`) full-width ASCII `\ff01`..`\ff5e` is folded to ASCII. One whitespace after a hex
/// escape is consumed. `\` + newline is a line continuation (both dropped); `\` + any other
/// character gives that character; a trailing lone `\` is dropped.
fn css_decode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b == b'\\') else {
        return Cow::Borrowed(input);
    };
    while let [c, tail @ ..] = rest {
        rest = tail;
        if *c != b'\\' {
            out.push(*c);
            continue;
        }
        let (digits, after) = span(tail, 6, |b| b.is_ascii_hexdigit());
        if !digits.is_empty() {
            out.push(css_hex_escape(digits));
            rest = match after {
                [space, after_space @ ..] if is_c_space(*space) => after_space,
                _ => after,
            };
            continue;
        }
        match tail {
            [b'\n', after @ ..] => rest = after,
            [other, after @ ..] => {
                out.push(*other);
                rest = after;
            }
            [] => {}
        }
    }
    out.finish()
}

/// The byte ModSecurity's cssDecode produces for 1-6 hex `digits`.
fn css_hex_escape(digits: &[u8]) -> u8 {
    let byte = match digits {
        [one] => hex_value(*one).unwrap_or(0),
        [.., hi, lo] => hex_pair(*hi, *lo).unwrap_or(0),
        [] => 0,
    };
    // The full-width check applies when the value may be a 16-bit code point U+FFxx.
    let (check, ff) = match digits {
        [a, b, _, _] => (true, (*a, *b)),
        [b'0', a, b, _, _] => (true, (*a, *b)),
        [b'0', b'0', a, b, _, _] => (true, (*a, *b)),
        _ => (false, (0, 0)),
    };
    let is_ff = matches!(ff.0, b'f' | b'F') && matches!(ff.1, b'f' | b'F');
    if check && is_ff && byte > 0 && byte < 0x5f {
        byte + 0x20
    } else {
        byte
    }
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// utf8toUnicode, as ModSecurity v3 encodes: each well-formed 2-4 byte UTF-8 sequence
/// becomes `%u` and its code point in lowercase hex, at least four digits (`é` gives
/// `%u00e9`, U+1F600 gives `%u1f600`). ASCII passes through, except NUL bytes, which
/// ModSecurity drops unless the NUL is the last byte. Its handling of malformed input is kept:
/// a lead byte (0xC0-0xF4) whose continuation bytes are missing or wrong is dropped; stray
/// continuation bytes and 0xF8-0xFF pass through; 0xF5-0xF7 pass through and are also
/// decoded; an overlong form or a surrogate is encoded and then followed by its raw lead byte
/// (so `C0 AF` gives `%u002f` + 0xC0, which no `/` rule matches).
fn utf8_to_unicode(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| b >= 0x80 || b == 0) else {
        return Cow::Borrowed(input);
    };
    while let [lead, tail @ ..] = rest {
        let lead = *lead;
        rest = tail;
        let (needed, min, payload) = match lead {
            0x00 if !tail.is_empty() => continue,
            0x00..=0x7f => {
                out.push(lead);
                continue;
            }
            0xc0..=0xdf => (1, 0x80, lead & 0x1f),
            0xe0..=0xef => (2, 0x800, lead & 0x0f),
            0xf0..=0xf7 => {
                if lead >= 0xf5 {
                    out.push(lead);
                }
                (3, 0x1_0000, lead & 0x07)
            }
            _ => {
                out.push(lead);
                continue;
            }
        };
        let Some(continuation) = tail.get(..needed) else {
            continue;
        };
        if !continuation.iter().all(|&b| is_continuation(b)) {
            continue;
        }
        let code_point = continuation
            .iter()
            .fold(u32::from(payload), |cp, &b| (cp << 6) | u32::from(b & 0x3f));
        push_percent_u(&mut out, code_point);
        // ModSecurity appends the raw lead byte once for a surrogate and once for an overlong
        // form (an overlong-encoded surrogate gets it twice).
        if (0xd800..=0xdfff).contains(&code_point) {
            out.push(lead);
        }
        if code_point < min {
            out.push(lead);
        }
        rest = tail.get(needed..).unwrap_or_default();
    }
    out.finish()
}

/// `%u` and `code_point` in lowercase hex, zero-padded to four digits.
fn push_percent_u(out: &mut Out<'_>, code_point: u32) {
    out.push_slice(b"%u");
    let digits = (32 - code_point.leading_zeros()).div_ceil(4).max(4);
    for shift in (0..digits).rev() {
        out.push(HEX_LOWER[((code_point >> (shift * 4)) & 0xf) as usize]);
    }
}

// ---------------------------------------------------------------------------------------------
// Whitespace and command lines
// ---------------------------------------------------------------------------------------------

/// compressWhitespace: each run of ASCII whitespace becomes one space.
fn compress_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, rest)) = start_at(input, is_c_space) else {
        return Cow::Borrowed(input);
    };
    let mut in_space = false;
    for &b in rest {
        if is_c_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    out.finish()
}

/// cmdLine, as the reference manual describes: deletes `\ " ' ^`; turns each run of
/// space, tab, CR, LF, `,` and `;` into one space; deletes a space before `/` or `(`;
/// lowercases ASCII.
fn cmd_line(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, rest)) = start_at(input, |b| {
        matches!(
            b,
            b'\\' | b'"' | b'\'' | b'^' | b',' | b';' | b' ' | b'\t' | b'\r' | b'\n'
        ) || b.is_ascii_uppercase()
    }) else {
        return Cow::Borrowed(input);
    };
    // The prefix before `start` holds none of the bytes above, so it cannot end in a space.
    let mut space = false;
    for &b in rest {
        match b {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// Comments
// ---------------------------------------------------------------------------------------------

/// replaceComments: each `/* ... */` becomes one space; an unterminated comment runs to the
/// end and also becomes one space. A lone `*/` is left as it is.
fn replace_comments(input: &[u8]) -> Cow<'_, [u8]> {
    let Some(start) = input.windows(2).position(|w| w == b"/*") else {
        return Cow::Borrowed(input);
    };
    let mut out = Out::with_prefix(input, start);
    let mut rest = input.get(start..).unwrap_or_default();
    let mut in_comment = false;
    while let [c, tail @ ..] = rest {
        rest = tail;
        match (in_comment, *c, tail.first()) {
            (false, b'/', Some(b'*')) => {
                in_comment = true;
                rest = tail.get(1..).unwrap_or_default();
            }
            (false, other, _) => out.push(other),
            (true, b'*', Some(b'/')) => {
                in_comment = false;
                out.push(b' ');
                rest = tail.get(1..).unwrap_or_default();
            }
            (true, _, _) => {}
        }
    }
    if in_comment {
        out.push(b' ');
    }
    out.finish()
}

/// removeComments: deletes `/* ... */` and `<!-- ... -->` comments (an unterminated one, to
/// the end, becomes one space), and ends the value at `--` or `#` (an SQL or shell line
/// comment runs to the end of the value).
fn remove_comments(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) = start_at(input, |b| matches!(b, b'/' | b'<' | b'-' | b'#'))
    else {
        return Cow::Borrowed(input);
    };
    let mut in_comment = false;
    while let [c, tail @ ..] = rest {
        if in_comment {
            rest = if let Some(after) = rest.strip_prefix(b"*/") {
                in_comment = false;
                after
            } else if let Some(after) = rest.strip_prefix(b"-->") {
                in_comment = false;
                after
            } else {
                tail
            };
        } else if let Some(after) = rest
            .strip_prefix(b"/*")
            .or_else(|| rest.strip_prefix(b"<!--"))
        {
            in_comment = true;
            rest = after;
        } else if rest.starts_with(b"--") || *c == b'#' {
            break;
        } else {
            out.push(*c);
            rest = tail;
        }
    }
    if in_comment {
        out.push(b' ');
    }
    out.finish()
}

/// removeCommentsChar: deletes the comment markers `/*`, `*/`, `<!--`, `-->`, `--` and `#`,
/// keeping what is between them.
fn remove_comments_char(input: &[u8]) -> Cow<'_, [u8]> {
    let Some((mut out, mut rest)) =
        start_at(input, |b| matches!(b, b'/' | b'*' | b'<' | b'-' | b'#'))
    else {
        return Cow::Borrowed(input);
    };
    const MARKERS: [&[u8]; 6] = [b"/*", b"*/", b"<!--", b"-->", b"--", b"#"];
    while let [c, tail @ ..] = rest {
        match MARKERS.iter().find_map(|m| rest.strip_prefix(*m)) {
            Some(after) => rest = after,
            None => {
                out.push(*c);
                rest = tail;
            }
        }
    }
    out.finish()
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// normalizePath / normalizePathWin (which first turns every `\` into `/`). Empty segments
/// (`//`) and self references (`/./`) are removed, and each `..` removes the segment before
/// it. An absolute path cannot go above `/`; a relative one keeps the `..` it cannot resolve
/// (`a/../../b` gives `../b`). A trailing `/` stays if the input had one; a path that
/// resolves to nothing is empty (`./` gives ``), or `/` when absolute.
fn normalize_path(input: &[u8], windows: bool) -> Cow<'_, [u8]> {
    let is_sep = |b: u8| b == b'/' || (windows && b == b'\\');
    if !needs_path_normalization(input, windows) {
        return Cow::Borrowed(input);
    }
    let absolute = input.first().is_some_and(|&b| is_sep(b));
    let trailing = input.last().is_some_and(|&b| is_sep(b));
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in input.split(|&b| is_sep(b)) {
        match segment {
            b"" | b"." => {}
            b".." => match segments.last() {
                Some(&last) if last != b".." => {
                    segments.pop();
                }
                _ if absolute => {}
                _ => segments.push(segment),
            },
            _ => segments.push(segment),
        }
    }
    let mut out = Vec::with_capacity(input.len());
    if absolute {
        out.push(b'/');
    }
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(segment);
    }
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// Whether normalize_path could change `input`: a `\` (Windows), or an empty, `.` or `..`
/// segment anywhere but a leading `..` run of a relative path (which stays as it is).
fn needs_path_normalization(input: &[u8], windows: bool) -> bool {
    if windows && input.contains(&b'\\') {
        return true;
    }
    let mut segments = input.split(|&b| b == b'/').peekable();
    let absolute = input.first() == Some(&b'/');
    if absolute {
        segments.next(); // the empty segment before the root slash
    }
    let mut leading_dotdots = !absolute;
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            // The empty segment after a trailing slash is the slash itself, kept as it is;
            // a lone "/" is the root.
            b"" if is_last => {}
            b"" | b"." => return true,
            b".." if !leading_dotdots => return true,
            b".." => {}
            _ => leading_dotdots = false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every transformation, for the properties that hold for all of them.
    const ALL: [Transform; 35] = [
        Transform::Base64Decode,
        Transform::Base64DecodeExt,
        Transform::Base64Encode,
        Transform::CmdLine,
        Transform::CompressWhitespace,
        Transform::CssDecode,
        Transform::EscapeSeqDecode,
        Transform::HexDecode,
        Transform::HexEncode,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::Length,
        Transform::Lowercase,
        Transform::Md5,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::ParityEven7bit,
        Transform::ParityOdd7bit,
        Transform::ParityZero7bit,
        Transform::RemoveComments,
        Transform::RemoveCommentsChar,
        Transform::RemoveNulls,
        Transform::RemoveWhitespace,
        Transform::ReplaceComments,
        Transform::ReplaceNulls,
        Transform::Sha1,
        Transform::SqlHexDecode,
        Transform::Trim,
        Transform::TrimLeft,
        Transform::TrimRight,
        Transform::Uppercase,
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::UrlEncode,
        Transform::Utf8ToUnicode,
    ];

    /// Runs `t` over `(label, input, expected)` rows; every failure is reported at once.
    #[track_caller]
    fn check(t: Transform, rows: &[(&str, &[u8], &[u8])]) {
        let mut failures = Vec::new();
        for &(label, input, expected) in rows {
            let got = t.apply(input);
            if &*got != expected {
                failures.push(format!(
                    "{}: {label}: input {:?}: expected {:?}, got {:?}",
                    t.name(),
                    String::from_utf8_lossy(input),
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&got)
                ));
            } else if expected == input && matches!(got, Cow::Owned(_)) {
                failures.push(format!("{}: {label}: unchanged value was copied", t.name()));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn every_crs_transformation_name_resolves() {
        let crs = [
            "urlDecodeUni",
            "lowercase",
            "jsDecode",
            "htmlEntityDecode",
            "utf8toUnicode",
            "removeNulls",
            "cssDecode",
            "cmdLine",
            "removeWhitespace",
            "replaceComments",
            "normalizePath",
            "escapeSeqDecode",
            "compressWhitespace",
            "normalizePathWin",
            "length",
            "base64Decode",
            "sha1",
            "hexEncode",
            "removeCommentsChar",
            "base64decode",
        ];
        for name in crs {
            let t = Transform::from_name(name).unwrap_or_else(|| panic!("{name} does not resolve"));
            assert!(
                t.name().eq_ignore_ascii_case(name),
                "{name} resolved to {}",
                t.name()
            );
        }
    }

    #[test]
    fn every_modsecurity_v3_name_resolves_case_insensitively_and_round_trips() {
        let v3 = [
            "base64Decode",
            "base64DecodeExt",
            "base64Encode",
            "cmdLine",
            "compressWhitespace",
            "cssDecode",
            "escapeSeqDecode",
            "hexDecode",
            "hexEncode",
            "htmlEntityDecode",
            "jsDecode",
            "length",
            "lowercase",
            "md5",
            "normalizePath",
            "normalizePathWin",
            "parityEven7bit",
            "parityOdd7bit",
            "parityZero7bit",
            "removeComments",
            "removeCommentsChar",
            "removeNulls",
            "removeWhitespace",
            "replaceComments",
            "replaceNulls",
            "sha1",
            "sqlHexDecode",
            "trim",
            "trimLeft",
            "trimRight",
            "uppercase",
            "urlDecode",
            "urlDecodeUni",
            "urlEncode",
            "utf8toUnicode",
        ];
        assert_eq!(v3.len(), ALL.len());
        for name in v3 {
            for spelling in [
                name.to_string(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
            ] {
                let t = Transform::from_name(&spelling)
                    .unwrap_or_else(|| panic!("{spelling} does not resolve"));
                assert_eq!(t.name(), name);
            }
        }
        for t in ALL {
            assert_eq!(Transform::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn british_path_spellings_resolve() {
        assert_eq!(
            Transform::from_name("normalisePath"),
            Some(Transform::NormalizePath)
        );
        assert_eq!(
            Transform::from_name("NORMALISEPATHWIN"),
            Some(Transform::NormalizePathWin)
        );
    }

    #[test]
    fn none_and_unknown_names_are_not_transformations() {
        for name in [
            "none",
            "None",
            "",
            "t:lowercase",
            "lowercase ",
            "urlDecodeUnicode",
            "base64",
        ] {
            assert_eq!(Transform::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn empty_input_never_panics_and_decoders_leave_it_empty() {
        for t in ALL {
            let out = t.apply(b"");
            match t {
                Transform::Length => assert_eq!(&*out, b"0"),
                Transform::Md5 => assert_eq!(out.len(), 16),
                Transform::Sha1 => assert_eq!(out.len(), 20),
                _ => assert!(
                    out.is_empty() && matches!(out, Cow::Borrowed(_)),
                    "{}",
                    t.name()
                ),
            }
        }
    }

    #[test]
    fn plain_text_passes_every_decoder_without_allocating() {
        let plain: &[u8] = b"hello world 42 and more text";
        let decoders = [
            Transform::CssDecode,
            Transform::EscapeSeqDecode,
            Transform::HtmlEntityDecode,
            Transform::JsDecode,
            Transform::NormalizePath,
            Transform::NormalizePathWin,
            Transform::ParityZero7bit,
            Transform::RemoveComments,
            Transform::RemoveCommentsChar,
            Transform::RemoveNulls,
            Transform::ReplaceComments,
            Transform::ReplaceNulls,
            Transform::SqlHexDecode,
            Transform::Trim,
            Transform::TrimLeft,
            Transform::TrimRight,
            Transform::Lowercase,
            Transform::UrlDecode,
            Transform::UrlDecodeUni,
            Transform::Utf8ToUnicode,
            Transform::CompressWhitespace,
            Transform::CmdLine,
        ];
        for t in decoders {
            let out = t.apply_raw(plain);
            assert!(
                matches!(out, Cow::Borrowed(b) if b == plain),
                "{}",
                t.name()
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic xorshift stream over every byte value, weighted to the escape
        // characters the decoders look at, in lengths 0..64.
        let interesting = b"%uU+&#xX;\\/.*-<!>#0fF7\n \t=ABab\xc0\xc2\xe0\xf0\xf5\xff\x80\x00";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..4000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        (r >> 8) as u8
                    } else {
                        interesting[(r >> 8) as usize % interesting.len()]
                    }
                })
                .collect();
            for t in ALL {
                let out = t.apply(&input);
                if &*out == input.as_slice() {
                    assert!(
                        matches!(out, Cow::Borrowed(_)),
                        "{} copied an unchanged value",
                        t.name()
                    );
                }
            }
        }
    }

    #[test]
    fn url_decode_uni_follows_modsecurity() {
        check(
            Transform::UrlDecodeUni,
            &[
                ("empty", b"", b""),
                ("no escapes", b"TestCase", b"TestCase"),
                ("percent-hex", b"%3Cscript%3e", b"<script>"),
                ("plus is a space", b"a+b", b"a b"),
                ("%00 is a NUL byte", b"a%00b", b"a\0b"),
                ("%u takes the low byte", b"%u0041%u1262", b"Ab"),
                ("upper-case U works too", b"%U003C", b"<"),
                (
                    "full-width ASCII folds to ASCII",
                    b"%uff1cscript%uFF1E",
                    b"<script>",
                ),
                (
                    "full-width range ends at U+FF5E",
                    b"%uff5f%uff00",
                    b"\x5f\x00",
                ),
                ("invalid hex keeps the percent", b"%zz%4", b"%zz%4"),
                ("truncated escape at the end", b"abc%4", b"abc%4"),
                ("lone percent", b"%", b"%"),
                ("percent before a valid escape", b"%%41", b"%A"),
                ("invalid %u keeps %u and goes on", b"%u00zz%41", b"%u00zzA"),
                ("truncated %u", b"%u004", b"%u004"),
                ("%u at the end", b"%u", b"%u"),
                ("decodes once only", b"%2541", b"%41"),
                ("raw high bytes pass", b"\xff\xfe%41", b"\xff\xfeA"),
            ],
        );
    }

    #[test]
    fn url_decode_follows_modsecurity() {
        check(
            Transform::UrlDecode,
            &[
                ("empty", b"", b""),
                ("percent-hex", b"%3Cscript%3E", b"<script>"),
                ("plus is a space", b"a+b+", b"a b "),
                ("%u is not decoded", b"%u0041", b"%u0041"),
                ("invalid and truncated escapes stay", b"%g1%2", b"%g1%2"),
                ("trailing percent", b"100%", b"100%"),
                ("mixed", b"%41%zz%42", b"A%zzB"),
            ],
        );
    }

    #[test]
    fn url_encode_follows_modsecurity() {
        check(
            Transform::UrlEncode,
            &[
                ("empty", b"", b""),
                ("letters, digits and * stay", b"abcXYZ019*", b"abcXYZ019*"),
                ("space is a plus", b"a b", b"a+b"),
                (
                    "others are lowercase %hh",
                    b"<a href='x'>",
                    b"%3ca+href%3d%27x%27%3e",
                ),
                (
                    "dot, dash and underscore are encoded too",
                    b".-_",
                    b"%2e%2d%5f",
                ),
                ("NUL and high bytes", b"\0\xff", b"%00%ff"),
            ],
        );
    }

    #[test]
    fn case_transformations_are_ascii_only() {
        check(
            Transform::Lowercase,
            &[
                ("empty", b"", b""),
                ("already lower", b"select 1", b"select 1"),
                ("mixed", b"SeLeCt UNION", b"select union"),
                ("non-ASCII untouched", b"\xc3\x89T\xc9", b"\xc3\x89t\xc9"),
            ],
        );
        check(
            Transform::Uppercase,
            &[
                ("empty", b"", b""),
                ("already upper", b"ABC 1", b"ABC 1"),
                ("mixed", b"SeLeCt", b"SELECT"),
                ("non-ASCII untouched", b"\xc3\xa9t", b"\xc3\xa9T"),
            ],
        );
    }

    #[test]
    fn js_decode_follows_modsecurity() {
        check(
            Transform::JsDecode,
            &[
                ("empty", b"", b""),
                ("no escapes", b"alert(1)", b"alert(1)"),
                ("\\x escape", b"\\x3cscript\\x3E", b"<script>"),
                ("\\u takes the low byte", b"\\u0061\\u1262", b"ab"),
                ("\\u full-width folds", b"\\uff1c", b"<"),
                ("\\U is not an escape", b"\\U0041", b"U0041"),
                ("\\X is not an escape", b"\\X41", b"X41"),
                ("octal", b"\\101\\60\\7", b"A0\x07"),
                ("octal above 0377 uses two digits", b"\\477", b"\x277"),
                ("octal stops at a non-octal digit", b"\\18", b"\x018"),
                (
                    "named escapes",
                    b"\\a\\b\\f\\n\\r\\t\\v",
                    b"\x07\x08\x0c\n\r\t\x0b",
                ),
                (
                    "other characters lose the backslash",
                    b"\\'\\\"\\\\\\z",
                    b"'\"\\z",
                ),
                ("truncated \\u", b"\\u004", b"u004"),
                ("truncated \\x", b"\\x4", b"x4"),
                ("invalid \\x", b"\\xzz", b"xzz"),
                ("trailing backslash stays", b"abc\\", b"abc\\"),
                ("lone backslash", b"\\", b"\\"),
            ],
        );
    }

    #[test]
    fn html_entity_decode_handles_numeric_and_named_references() {
        check(
            Transform::HtmlEntityDecode,
            &[
                ("empty", b"", b""),
                ("no entities", b"TestCase", b"TestCase"),
                ("NUL passes", b"Test\0Case", b"Test\0Case"),
                ("hex", b"&#x3c;&#X3E;", b"<>"),
                ("decimal", b"&#60;&#62;", b"<>"),
                ("semicolon optional", b"&#x3cscript&#62", b"<script>"),
                ("leading zeros", b"&#0000060;&#x000003c;", b"<<"),
                ("low byte of a large value", b"&#x4142;&#321;", b"\x42\x41"),
                (
                    "overflowing value saturates",
                    b"&#99999999999999999999999;",
                    b"\xff",
                ),
                ("named", b"&quot;&amp;&lt;&gt;&nbsp;", b"\"&<>\xa0"),
                ("named in any case", b"&LT;&Gt;&AMP;", b"<>&"),
                ("named without semicolon", b"&ltscript&gt", b"&ltscript>"),
                ("unknown named entity stays", b"&copy;&foo", b"&copy;&foo"),
                ("no digits", b"&#;&#x;&#xg", b"&#;&#x;&#xg"),
                ("truncated", b"&#", b"&#"),
                ("truncated hex", b"&#x", b"&#x"),
                ("lone ampersand", b"a & b &", b"a & b &"),
                ("decodes once only", b"&amp;lt;", b"&lt;"),
            ],
        );
    }

    #[test]
    fn css_decode_follows_modsecurity() {
        check(
            Transform::CssDecode,
            &[
                ("empty", b"", b""),
                ("no escapes", b"color: red", b"color: red"),
                ("one hex digit", b"\\a", b"\x0a"),
                ("two hex digits", b"\\3c", b"<"),
                ("three digits use the last two", b"\\13c", b"<"),
                ("four digits", b"\\003c", b"<"),
                ("six digits", b"\\00003c", b"<"),
                ("full width at four digits", b"\\ff1c", b"<"),
                (
                    "full width at five digits with a leading 0",
                    b"\\0ff1c",
                    b"<",
                ),
                (
                    "no fold at five digits without a leading 0",
                    b"\\1ff1c",
                    b"\x1c",
                ),
                ("full width at six digits with 00", b"\\00ff1c", b"<"),
                ("at most six digits", b"\\00003c1", b"<1"),
                (
                    "one whitespace after an escape is eaten",
                    b"\\3c  x",
                    b"< x",
                ),
                ("newline continuation", b"a\\\nb", b"ab"),
                (
                    "other characters lose the backslash",
                    b"java\\script\\:",
                    b"javascript:",
                ),
                ("trailing backslash is dropped", b"abc\\", b"abc"),
                ("raw high byte after backslash", b"\\\xff", b"\xff"),
            ],
        );
    }

    #[test]
    fn escape_seq_decode_follows_modsecurity() {
        check(
            Transform::EscapeSeqDecode,
            &[
                ("empty", b"", b""),
                ("no escapes", b"TestCase", b"TestCase"),
                ("named", b"\\a\\b\\f\\n\\r\\t\\v", b"\x07\x08\x0c\n\r\t\x0b"),
                (
                    "quotes, question mark, backslash",
                    b"\\\\\\?\\'\\\"",
                    b"\\?'\"",
                ),
                ("hex in either case", b"\\x41\\X42", b"AB"),
                ("octal one to three digits", b"\\0\\12\\101", b"\0\nA"),
                ("octal keeps the low byte", b"\\777\\400", b"\xff\x00"),
                ("octal stops at four digits", b"\\1011", b"A1"),
                ("invalid hex drops the backslash", b"\\xg1", b"xg1"),
                ("truncated hex", b"\\x4", b"x4"),
                ("unknown escape drops the backslash", b"\\z\\8", b"z8"),
                ("trailing backslash stays", b"abc\\", b"abc\\"),
            ],
        );
    }

    #[test]
    fn utf8_to_unicode_encodes_multibyte_characters() {
        check(
            Transform::Utf8ToUnicode,
            &[
                ("empty", b"", b""),
                ("ASCII passes", b"abc<>", b"abc<>"),
                ("NUL is dropped unless last", b"\0a\0\0b\0", b"ab\0"),
                (
                    "NUL before a multibyte character",
                    "\0é".as_bytes(),
                    b"%u00e9",
                ),
                ("two bytes", "é".as_bytes(), b"%u00e9"),
                ("three bytes", "€ ＜".as_bytes(), b"%u20ac %uff1c"),
                ("four bytes", "😀".as_bytes(), b"%u1f600"),
                ("largest code point", b"\xf4\x8f\xbf\xbf", b"%u10ffff"),
                ("mixed", "a→b".as_bytes(), b"a%u2192b"),
                (
                    "overlong slash is encoded plus its lead byte",
                    b"\xc0\xaf",
                    b"%u002f\xc0",
                ),
                ("overlong three-byte", b"\xe0\x80\xaf", b"%u002f\xe0"),
                ("overlong four-byte", b"\xf0\x80\x80\xaf", b"%u002f\xf0"),
                (
                    "surrogate is encoded plus its lead byte",
                    b"\xed\xa0\x80",
                    b"%ud800\xed",
                ),
                (
                    "overlong surrogate gets the lead byte twice",
                    b"\xf0\x8d\xa0\x80",
                    b"%ud800\xf0\xf0",
                ),
                (
                    "lead byte without continuation is dropped",
                    b"a\xc3b",
                    b"ab",
                ),
                ("truncated at the end is dropped", b"ab\xe2\x82", b"ab\x82"),
                ("stray continuation passes", b"\x80a", b"\x80a"),
                ("0xF8-0xFF pass", b"\xf8\xff", b"\xf8\xff"),
                (
                    "0xF5 passes and is decoded",
                    b"\xf5\x80\x80\x80",
                    b"\xf5%u140000",
                ),
            ],
        );
    }

    #[test]
    fn null_transformations() {
        check(
            Transform::RemoveNulls,
            &[
                ("empty", b"", b""),
                ("none", b"abc", b"abc"),
                ("removes all", b"\0a\0\0b\0", b"ab"),
            ],
        );
        check(
            Transform::ReplaceNulls,
            &[
                ("empty", b"", b""),
                ("none", b"abc", b"abc"),
                ("replaces all", b"\0a\0\0b", b" a  b"),
            ],
        );
    }

    #[test]
    fn cmd_line_follows_the_reference_manual() {
        check(
            Transform::CmdLine,
            &[
                ("empty", b"", b""),
                ("plain", b"ls", b"ls"),
                (
                    "deletes \\ \" ' ^",
                    b"c^a\"t' /e\\tc/pa''sswd",
                    b"cat/etc/passwd",
                ),
                ("commas and semicolons become a space", b"a,b;c", b"a b c"),
                ("whitespace runs compress", b"a \t\r\n ,; b", b"a b"),
                (
                    "space before slash removed",
                    b"cat    /etc/passwd",
                    b"cat/etc/passwd",
                ),
                (
                    "space before paren removed",
                    b"system ('id')",
                    b"system(id)",
                ),
                ("lowercases", b"WHOAMI", b"whoami"),
                ("leading space is kept as one", b"  ls", b" ls"),
                ("trailing space is kept as one", b"ls ; ", b"ls "),
                ("deleted chars do not break a space run", b"a \" b", b"a b"),
                ("vertical tab is not a separator", b"a\x0bb", b"a\x0bb"),
                (
                    "manual example",
                    b"\"/bin/\"e''c\\h^o t^e\"st\"",
                    b"/bin/echo test",
                ),
            ],
        );
    }

    #[test]
    fn whitespace_transformations() {
        check(
            Transform::RemoveWhitespace,
            &[
                ("empty", b"", b""),
                ("none", b"abc", b"abc"),
                ("ASCII whitespace", b" a\tb\nc\rd\x0be\x0cf ", b"abcdef"),
                (
                    "UTF-8 and Latin-1 no-break spaces",
                    b"a\xc2\xa0b\xa0c",
                    b"abc",
                ),
                ("other high bytes stay", b"\xc3\xa9", b"\xc3\xa9"),
            ],
        );
        check(
            Transform::CompressWhitespace,
            &[
                ("empty", b"", b""),
                ("single spaces stay", b"a b c", b"a b c"),
                ("runs become one space", b"a  \t\n b", b"a b"),
                ("a lone tab becomes a space", b"a\tb", b"a b"),
                ("leading and trailing runs", b"\r\n a \x0b\x0c", b" a "),
                (
                    "no-break space is not whitespace",
                    b"a\xa0\xa0b",
                    b"a\xa0\xa0b",
                ),
            ],
        );
        check(
            Transform::Trim,
            &[
                ("empty", b"", b""),
                ("none", b"a b", b"a b"),
                ("both sides", b" \t\na b\r\x0b\x0c", b"a b"),
                ("all whitespace", b"   ", b""),
                ("no-break space is not trimmed", b"\xa0a\xa0", b"\xa0a\xa0"),
            ],
        );
        check(
            Transform::TrimLeft,
            &[
                ("empty", b"", b""),
                ("left only", b"  a b  ", b"a b  "),
                ("all whitespace", b" \t", b""),
            ],
        );
        check(
            Transform::TrimRight,
            &[
                ("empty", b"", b""),
                ("right only", b"  a b  ", b"  a b"),
                ("all whitespace", b" \t", b""),
            ],
        );
    }

    #[test]
    fn trims_borrow_a_sub_slice() {
        assert!(matches!(
            Transform::Trim.apply(b"  x  "),
            Cow::Borrowed(b"x")
        ));
    }

    #[test]
    fn replace_comments_follows_modsecurity() {
        check(
            Transform::ReplaceComments,
            &[
                ("empty", b"", b""),
                ("no comments", b"select 1", b"select 1"),
                ("one comment", b"un/**/ion", b"un ion"),
                ("comment with text", b"un/* x */ion/*y*/sel", b"un ion sel"),
                ("unterminated runs to the end", b"select/* 1", b"select "),
                ("lone opener at the end", b"a/*", b"a "),
                ("lone closer stays", b"a*/b", b"a*/b"),
                ("openers do not nest", b"/*/*a*/*/", b" */"),
                ("slash-star-slash is not closed", b"/*/x", b" "),
                ("SQL dashes stay", b"a-- b#", b"a-- b#"),
            ],
        );
    }

    #[test]
    fn remove_comments_follows_modsecurity() {
        check(
            Transform::RemoveComments,
            &[
                ("empty", b"", b""),
                ("no comments", b"select 1", b"select 1"),
                ("C comment removed", b"un/**/ion", b"union"),
                ("HTML comment removed", b"a<!-- x -->b", b"ab"),
                ("unterminated is one space", b"select/* 1", b"select "),
                ("double dash ends the value", b"1 or 1=1-- x", b"1 or 1=1"),
                ("hash ends the value", b"1#x", b"1"),
                ("text after a comment is still scanned", b"/*a*/#b", b""),
                ("adjacent comments", b"a/*x*//*y*/b", b"ab"),
                ("single dash stays", b"a-b", b"a-b"),
            ],
        );
    }

    #[test]
    fn remove_comments_char_deletes_markers_only() {
        check(
            Transform::RemoveCommentsChar,
            &[
                ("empty", b"", b""),
                ("no markers", b"select 1", b"select 1"),
                ("C markers", b"un/*x*/ion", b"unxion"),
                ("HTML markers", b"<!--a-->", b"a"),
                ("double dash", b"1--2", b"12"),
                ("hash", b"a#b#", b"ab"),
                ("single characters stay", b"a/b*c-d<e!", b"a/b*c-d<e!"),
                ("three dashes", b"a---b", b"a-b"),
            ],
        );
    }

    #[test]
    fn normalize_path_matches_the_secrules_language_vectors() {
        check(
            Transform::NormalizePath,
            &[
                ("empty", b"", b""),
                ("already normal", b"/foo/bar/baz", b"/foo/bar/baz"),
                (
                    "NUL is an ordinary byte",
                    b"/foo/bar\0/baz",
                    b"/foo/bar\0/baz",
                ),
                ("one segment", b"x", b"x"),
                ("dot", b".", b""),
                ("dot slash", b"./", b""),
                ("dot dotdot", b"./..", b".."),
                ("dot dotdot slash", b"./../", b"../"),
                ("dotdot", b"..", b".."),
                ("dotdot slash", b"../", b"../"),
                ("dotdot dot", b"../.", b".."),
                ("dotdot dot slash", b".././", b"../"),
                ("dotdot dotdot", b"../..", b"../.."),
                ("double slash", b"/dir/foo//bar", b"/dir/foo/bar"),
                (
                    "relative, trailing slash",
                    b"dir/foo//bar/",
                    b"dir/foo/bar/",
                ),
                ("backref", b"dir/../foo", b"foo"),
                ("backref above a relative root", b"dir/../../foo", b"../foo"),
                ("mixed", b"dir/./.././../../foo/bar", b"../../foo/bar"),
                (
                    "ends in dot",
                    b"dir/./.././../../foo/bar/.",
                    b"../../foo/bar",
                ),
                (
                    "ends in dot slash",
                    b"dir/./.././../../foo/bar/./",
                    b"../../foo/bar/",
                ),
                (
                    "ends in dotdot",
                    b"dir/./.././../../foo/bar/..",
                    b"../../foo",
                ),
                (
                    "ends in dotdot slash",
                    b"dir/./.././../../foo/bar/../",
                    b"../../foo/",
                ),
                (
                    "doubled slashes everywhere",
                    b"dir//.//..//.//..//..//foo//bar//",
                    b"../../foo/bar/",
                ),
                (
                    "deep backrefs",
                    b"dir/subdir/subsubdir/subsubsubdir/../../..",
                    b"dir",
                ),
                (
                    "absolute mixed",
                    b"/dir/./subdir/../subsubdir/../subsubsubdir/../",
                    b"/dir/",
                ),
                (
                    "cannot climb above root",
                    b"/./.././../../../../../../../\0/../etc/./passwd",
                    b"/etc/passwd",
                ),
                ("root", b"/", b"/"),
                ("double root", b"//", b"/"),
                ("root dotdot stays root", b"/..", b"/"),
                ("backslash is not a separator", b"a\\..\\b", b"a\\..\\b"),
                (
                    "dots inside names stay",
                    b"/a.b/..c/d../...",
                    b"/a.b/..c/d../...",
                ),
                (
                    "leading dotdot run is already normal",
                    b"../../a/b",
                    b"../../a/b",
                ),
                ("dotdot after a kept dotdot", b"../a/../..", b"../.."),
            ],
        );
    }

    #[test]
    fn normalize_path_win_turns_backslashes_into_slashes_first() {
        check(
            Transform::NormalizePathWin,
            &[
                ("empty", b"", b""),
                ("backslashes", b"\\foo\\bar\\baz", b"/foo/bar/baz"),
                ("dotdot", b"..\\", b"../"),
                (
                    "mixed separators",
                    b"C:\\dir/..\\windows\\\\system32",
                    b"C:/windows/system32",
                ),
                (
                    "backref to root",
                    b"\\.\\..\\..\\\\0\\..\\etc\\.\\passwd",
                    b"/etc/passwd",
                ),
                ("forward slashes alone", b"/a/./b", b"/a/b"),
                ("already normal", b"/a/b", b"/a/b"),
            ],
        );
    }

    #[test]
    fn length_is_decimal_byte_count() {
        check(
            Transform::Length,
            &[
                ("empty", b"", b"0"),
                ("ascii", b"abc", b"3"),
                ("bytes, not characters", "é".as_bytes(), b"2"),
                ("ten", b"0123456789", b"10"),
                (
                    "length of a one-digit value equal to its length",
                    b"x",
                    b"1",
                ),
            ],
        );
        assert!(matches!(Transform::Length.apply(b"1"), Cow::Borrowed(b"1")));
    }

    #[test]
    fn digests_are_raw_binary() {
        let rows: [(Transform, &[u8], &str); 4] = [
            (
                Transform::Sha1,
                b"",
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            ),
            (
                Transform::Sha1,
                b"abc",
                "a9993e364706816aba3e25717850c26c9cd0d89d",
            ),
            (Transform::Md5, b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (Transform::Md5, b"abc", "900150983cd24fb0d6963f7d28e17f72"),
        ];
        for (t, input, hex) in rows {
            let digest = t.apply(input);
            assert_eq!(digest.len() * 2, hex.len(), "{} is raw, not hex", t.name());
            let as_hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                as_hex,
                hex,
                "{}({:?})",
                t.name(),
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn sha1_then_hex_encode_gives_the_hex_digest() {
        let digest = Transform::Sha1.apply(b"abc");
        assert_eq!(
            &*Transform::HexEncode.apply(&digest),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn hex_encode_and_decode() {
        check(
            Transform::HexEncode,
            &[
                ("empty", b"", b""),
                ("text", b"Az", b"417a"),
                ("binary", b"\0\x0f\xff", b"000fff"),
            ],
        );
        check(
            Transform::HexDecode,
            &[
                ("empty", b"", b""),
                ("pairs", b"414243", b"ABC"),
                ("either case", b"3c3E", b"<>"),
                ("odd trailing digit dropped", b"41424", b"AB"),
                ("single digit", b"4", b""),
                ("invalid digits use ModSecurity's arithmetic", b"zz", b"S"),
            ],
        );
    }

    #[test]
    fn sql_hex_decode_follows_modsecurity() {
        check(
            Transform::SqlHexDecode,
            &[
                ("empty", b"", b""),
                ("no hex", b"select 0", b"select 0"),
                ("literal", b"select 0x414243", b"select ABC"),
                ("upper X", b"0X41", b"A"),
                ("odd digit left over", b"0x4142a", b"ABa"),
                ("needs a full pair", b"0x4", b"0x4"),
                ("not hex", b"0xzz", b"0xzz"),
                ("stops at the first bad pair", b"0x41zz", b"Azz"),
                ("two literals", b"0x41,0x42", b"A,B"),
            ],
        );
    }

    #[test]
    fn base64_decode_stops_at_the_first_invalid_character() {
        check(
            Transform::Base64Decode,
            &[
                ("empty", b"", b""),
                ("padded", b"VGVzdENhc2U=", b"TestCase"),
                ("unpadded", b"VGVzdENhc2U", b"TestCase"),
                ("two padding chars", b"QQ==", b"A"),
                ("stops at an invalid char", b"VGVzdA!!Q2FzZQ==", b"Test"),
                ("stops at a space", b"VGVz dA==", b"Tes"),
                ("line breaks are skipped", b"VGVz\r\ndA==", b"Test"),
                ("partial group of one is dropped", b"QUJDR", b"ABC"),
                ("first char invalid", b"!QUJD", b""),
                ("url-safe alphabet is invalid", b"-_-_", b""),
                ("stops at NUL", b"QUJD\0RA==", b"ABC"),
            ],
        );
    }

    #[test]
    fn base64_decode_ext_skips_invalid_characters() {
        check(
            Transform::Base64DecodeExt,
            &[
                ("empty", b"", b""),
                ("padded", b"VGVzdENhc2U=", b"TestCase"),
                ("skips spaces and dots", b"VGVz d.EN hc2U=", b"TestCase"),
                ("skips any invalid byte", b"Q!U\xffJ\0D", b"ABC"),
                ("padding inside is skipped", b"QQ==QUJD", b"A\x04\x14\x24"),
                (
                    "lone = after a group's first char empties it",
                    b"QUJDR=",
                    b"",
                ),
                (
                    "a run of = ending after a group's first char empties it too",
                    b"QUJDR==",
                    b"",
                ),
                ("= after a complete group is skipped", b"QUJD=RA==", b"ABCD"),
                ("nothing valid", b"!!!", b""),
            ],
        );
    }

    #[test]
    fn base64_encode_pads() {
        check(
            Transform::Base64Encode,
            &[
                ("empty", b"", b""),
                ("one byte", b"A", b"QQ=="),
                ("two bytes", b"AB", b"QUI="),
                ("three bytes", b"ABC", b"QUJD"),
                ("binary", b"\xff\xfe\0", b"//4A"),
                ("text", b"TestCase", b"VGVzdENhc2U="),
            ],
        );
    }

    #[test]
    fn base64_round_trips() {
        let input: Vec<u8> = (0..=255u8).collect();
        let encoded = Transform::Base64Encode.apply(&input);
        assert_eq!(&*Transform::Base64Decode.apply(&encoded), input.as_slice());
        assert_eq!(
            &*Transform::Base64DecodeExt.apply(&encoded),
            input.as_slice()
        );
    }

    #[test]
    fn parity_transformations() {
        check(
            Transform::ParityEven7bit,
            &[
                ("empty", b"", b""),
                ("even ones stay", b"\x00\x03", b"\x00\x03"),
                ("odd ones get bit 7", b"\x01\x07C", b"\x81\x87\xc3"),
                ("bit 7 counts in the parity", b"\x80\x81", b"\x80\x01"),
            ],
        );
        check(
            Transform::ParityOdd7bit,
            &[
                ("empty", b"", b""),
                ("odd ones stay", b"\x01\x07", b"\x01\x07"),
                ("even ones get bit 7", b"\x00\x03A", b"\x80\x83\xc1"),
                ("bit 7 counts in the parity", b"\x80\x81", b"\x00\x81"),
            ],
        );
        check(
            Transform::ParityZero7bit,
            &[
                ("empty", b"", b""),
                ("ASCII stays", b"abc", b"abc"),
                ("clears bit 7", b"\xc1\xff\x80", b"A\x7f\x00"),
            ],
        );
    }

    #[test]
    fn crs_chains_decode_layered_evasions() {
        // 941xxx: urlDecodeUni, htmlEntityDecode, jsDecode, cssDecode, lowercase in sequence.
        let chain = |input: &[u8], ts: &[Transform]| -> Vec<u8> {
            ts.iter()
                .fold(input.to_vec(), |value, t| t.apply(&value).into_owned())
        };
        let xss = chain(
            b"%26lt%3BSCRIPT%26gt%3B\\u0061lert(1)",
            &[
                Transform::UrlDecodeUni,
                Transform::HtmlEntityDecode,
                Transform::JsDecode,
                Transform::Lowercase,
            ],
        );
        assert_eq!(xss, b"<script>alert(1)");
        // 932xxx: cmdLine after urlDecodeUni.
        let rce = chain(
            b"c%5Ea%22t+%2Fe%27tc%2Fpasswd",
            &[Transform::UrlDecodeUni, Transform::CmdLine],
        );
        assert_eq!(rce, b"cat/etc/passwd");
        // 930xxx: normalizePathWin after urlDecodeUni.
        let lfi = chain(
            b"..%5c..%5cwindows%5c.%5cwin.ini",
            &[Transform::UrlDecodeUni, Transform::NormalizePathWin],
        );
        assert_eq!(lfi, b"../../windows/win.ini");
    }
}
