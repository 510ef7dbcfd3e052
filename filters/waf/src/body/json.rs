//! JSON bodies → ARGS_POST, named as libmodsecurity v3 names them
//! (src/request_body_processor/json.cc with yajl).
//!
//! Naming, for `{"user": {"name": "a", "tags": ["x", ["y"]], "": 1}}`:
//!
//! | argument | value |
//! |---|---|
//! | `json.user.name` | `a` |
//! | `json.user.tags.array_0` | `x` |
//! | `json.user.tags.array_1.array_0` | `y` |
//! | `json.user.empty-key` | `1` |
//!
//! - Object members are joined with `.` under the prefix `json`.
//! - Array elements are `array_<index>`, the index counting every element of that array
//!   (scalars and containers alike). A top-level array gives `json.array_0`, …; a top-level
//!   scalar is the single argument `json`.
//! - An empty member name is `empty-key` (libmodsecurity's `getCurrentKey`).
//! - Strings are their unescaped bytes, numbers their JSON text as written (`1.50e3`), booleans
//!   `true` / `false`, `null` an empty value. Empty objects and arrays add nothing.
//! - Every value is kept, in document order, duplicate names included.
//!
//! Coraza names array elements by bare index (`json.user.tags.0`) and also adds the array
//! itself with its length (`json.user.tags` = `2`); ModSecurity v3 does neither, and CRS's
//! regression tests were written against both, so ModSecurity's naming is the one kept here.
//!
//! Grammar as yajl enforces it (no comments, no trailing commas, one top-level value, UTF-8
//! strings without raw control characters), plus yajl's extra whitespace characters `\v` and
//! `\f`. The parser is iterative: nesting depth costs heap, never stack.

use super::Pair;

/// yajl's text for a parse the callbacks cancelled, which is how libmodsecurity stops at its
/// depth limit; it appends `. Parsing depth limit exceeded`.
const DEPTH_EXCEEDED: &str =
    "parse error: client cancelled parse via callback return value. Parsing depth limit exceeded";

/// The arguments would take more memory than `output_budget` allows (libmodsecurity stops the
/// same way, through SecArgumentsLimit).
const OUTPUT_EXCEEDED: &str =
    "parse error: client cancelled parse via callback return value. Arguments exceed the output limit";

/// JSON bodies → ARGS_POST with ModSecurity v3 naming (see the module documentation).
///
/// `max_depth` is SecRequestBodyJsonDepthLimit: the number of nested objects / arrays allowed
/// (libmodsecurity's default is 10000); one more is an error. An empty body gives no arguments
/// and no error, as in libmodsecurity. Invalid JSON → `Err` with a yajl-style message, as is
/// output over 64 times the body's size (deep nesting makes every name long).
pub fn parse_json(body: &[u8], max_depth: usize) -> Result<Vec<Pair>, String> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    // Outside strings only ASCII is valid, so checking the whole body is checking the strings.
    if std::str::from_utf8(body).is_err() {
        return Err("lexical error: invalid bytes in UTF8 string.".to_owned());
    }
    let mut parser = Parser {
        input: body,
        pos: 0,
        max_depth,
        budget: super::output_budget(body.len()),
        containers: Vec::new(),
        current_key: Vec::new(),
        args: Vec::new(),
    };
    parser.run()?;
    Ok(parser.args)
}

/// An open object or array, as libmodsecurity's `JSONContainer`.
struct Container {
    /// The member name (or empty, inside an array) it was opened under; `json` at the top.
    name: Vec<u8>,
    /// Arrays count their elements to name them.
    element_count: Option<usize>,
}

/// What the parser expects next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (the top-level one, an array element after `,`, or a member value after `:`).
    Value,
    /// The first element of an array, or `]`.
    FirstElement,
    /// The first member name of an object, or `}`.
    FirstKey,
    /// A member name after `,`.
    Key,
    /// `,` or the closing bracket of the innermost container.
    Separator,
    /// Nothing more: the top-level value is complete.
    End,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Bytes of names and values still allowed (see `output_budget`).
    budget: usize,
    containers: Vec<Container>,
    /// The member name read last and not yet used (libmodsecurity's `m_current_key`).
    current_key: Vec<u8>,
    args: Vec<Pair>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(crate::transform::is_c_space) {
            self.pos += 1;
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let mut expect = Expect::Value;
        loop {
            self.skip_whitespace();
            let Some(c) = self.peek() else {
                return if expect == Expect::End {
                    Ok(())
                } else {
                    Err("parse error: premature EOF".to_owned())
                };
            };
            expect = match expect {
                Expect::End => return Err("parse error: trailing garbage".to_owned()),
                Expect::FirstElement if c == b']' => {
                    self.pos += 1;
                    self.close_container()
                }
                Expect::Value | Expect::FirstElement => self.value(c)?,
                Expect::FirstKey if c == b'}' => {
                    self.pos += 1;
                    self.close_container()
                }
                Expect::FirstKey | Expect::Key => {
                    if c != b'"' {
                        return Err("parse error: invalid object key (must be a string)".into());
                    }
                    self.pos += 1;
                    self.current_key = self.string()?;
                    self.skip_whitespace();
                    if self.peek() != Some(b':') {
                        return Err(if self.peek().is_none() {
                            "parse error: premature EOF".into()
                        } else {
                            "parse error: object key and value must be separated by a colon (':')"
                                .into()
                        });
                    }
                    self.pos += 1;
                    Expect::Value
                }
                Expect::Separator => {
                    let in_array = self
                        .containers
                        .last()
                        .is_some_and(|c| c.element_count.is_some());
                    self.pos += 1;
                    match (c, in_array) {
                        (b',', true) => Expect::Value,
                        (b',', false) => Expect::Key,
                        (b']', true) | (b'}', false) => self.close_container(),
                        (_, true) => {
                            return Err(
                                "parse error: after array element, I expect ',' or ']'".into()
                            )
                        }
                        (_, false) => {
                            return Err(
                                "parse error: after key and value, inside map, I expect ',' or '}'"
                                    .into(),
                            )
                        }
                    }
                }
            };
        }
    }

    /// A value starting with `c` (not consumed yet).
    fn value(&mut self, c: u8) -> Result<Expect, String> {
        match c {
            b'{' | b'[' => {
                self.pos += 1;
                let is_array = c == b'[';
                let name = self.current_key_name();
                self.containers.push(Container {
                    name,
                    element_count: is_array.then_some(0),
                });
                if self.containers.len() > self.max_depth {
                    return Err(DEPTH_EXCEEDED.to_owned());
                }
                Ok(if is_array {
                    Expect::FirstElement
                } else {
                    Expect::FirstKey
                })
            }
            b'"' => {
                self.pos += 1;
                let s = self.string()?;
                self.add_argument(s)?;
                Ok(self.after_value())
            }
            b't' => self.literal(b"true", b"true"),
            b'f' => self.literal(b"false", b"false"),
            b'n' => self.literal(b"null", b""),
            b'-' | b'0'..=b'9' => {
                let number = self.number()?;
                self.add_argument(number)?;
                Ok(self.after_value())
            }
            b']' | b'}' | b',' | b':' => {
                Err("parse error: unallowed token at this point in JSON text".into())
            }
            _ => Err("lexical error: invalid char in json text.".into()),
        }
    }

    fn after_value(&self) -> Expect {
        if self.containers.is_empty() {
            Expect::End
        } else {
            Expect::Separator
        }
    }

    fn close_container(&mut self) -> Expect {
        self.containers.pop();
        // A closed container was one element of the enclosing array.
        if let Some(Container {
            element_count: Some(count),
            ..
        }) = self.containers.last_mut()
        {
            *count += 1;
        }
        self.after_value()
    }

    fn literal(&mut self, word: &[u8], value: &[u8]) -> Result<Expect, String> {
        let end = self.pos + word.len();
        if self.input.get(self.pos..end) != Some(word) {
            return Err(if end > self.input.len() {
                "parse error: premature EOF".into()
            } else {
                "lexical error: invalid string in json text.".into()
            });
        }
        self.pos = end;
        self.add_argument(value.to_vec())?;
        Ok(self.after_value())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, returned as written.
    fn number(&mut self) -> Result<Vec<u8>, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => {
                return Err(
                    "lexical error: malformed number, a digit is required after the minus sign."
                        .into(),
                )
            }
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(
                    "lexical error: malformed number, a digit is required after the decimal point."
                        .into(),
                );
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(
                    "lexical error: malformed number, a digit is required after the exponent."
                        .into(),
                );
            }
            self.digits();
        }
        Ok(self.input.get(start..self.pos).unwrap_or_default().to_vec())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// The rest of a string whose opening quote is consumed, unescaped.
    fn string(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c != b'"' && c != b'\\' && c >= 0x20)
            {
                self.pos += 1;
            }
            out.extend_from_slice(self.input.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err("parse error: premature EOF".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err("lexical error: invalid character inside string.".into());
                }
            }
        }
    }

    /// One escape after its backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(c) = self.peek() else {
            return Err("parse error: premature EOF".into());
        };
        self.pos += 1;
        let byte = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate joins the low one that must follow; alone, yajl
                    // writes `?`.
                    let low = self.input.get(self.pos..self.pos + 2) == Some(b"\\u");
                    let pair = if low {
                        let save = self.pos;
                        self.pos += 2;
                        match self.hex4() {
                            Ok(low @ 0xDC00..=0xDFFF) => Some(low),
                            _ => {
                                self.pos = save;
                                None
                            }
                        }
                    } else {
                        None
                    };
                    match pair {
                        Some(low) => 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                        None => {
                            out.push(b'?');
                            return Ok(());
                        }
                    }
                } else {
                    unit
                };
                push_utf8(out, code);
                return Ok(());
            }
            _ => return Err(
                "lexical error: inside a string, '\\' occurs before a character which it may not."
                    .into(),
            ),
        };
        out.push(byte);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = self.peek().and_then(|c| (c as char).to_digit(16));
            let Some(digit) = digit else {
                return Err(if self.peek().is_none() {
                    "parse error: premature EOF".into()
                } else {
                    "lexical error: invalid (non-hex) character occurs after '\\u' inside string."
                        .into()
                });
            };
            value = value << 4 | digit;
            self.pos += 1;
        }
        Ok(value)
    }

    /// libmodsecurity's `getCurrentKey`: the name a new value or container gets.
    fn current_key_name(&mut self) -> Vec<u8> {
        let Some(top) = self.containers.last() else {
            return b"json".to_vec();
        };
        if self.current_key.is_empty() {
            return if top.element_count.is_some() {
                Vec::new()
            } else {
                b"empty-key".to_vec()
            };
        }
        std::mem::take(&mut self.current_key)
    }

    /// libmodsecurity's `JSON::addArgument`: the path of the open containers, then the key.
    fn add_argument(&mut self, value: Vec<u8>) -> Result<(), String> {
        let capacity = self
            .containers
            .iter()
            .map(|c| c.name.len() + ".array_".len() + 20)
            .fold(self.current_key.len(), usize::saturating_add);
        let mut name = Vec::with_capacity(capacity);
        for container in &self.containers {
            name.extend_from_slice(&container.name);
            match container.element_count {
                Some(index) => {
                    name.extend_from_slice(b".array_");
                    push_decimal(&mut name, index);
                }
                None => name.push(b'.'),
            }
        }
        match self.containers.last_mut() {
            Some(Container {
                element_count: Some(count),
                ..
            }) => *count += 1,
            _ => {
                let key = self.current_key_name();
                name.extend_from_slice(&key);
            }
        }
        let size = name.len().saturating_add(value.len());
        self.budget = self
            .budget
            .checked_sub(size)
            .ok_or_else(|| OUTPUT_EXCEEDED.to_owned())?;
        self.args.push((name, value));
        Ok(())
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// UTF-8 bytes of a code point; a lone low surrogate is encoded as its three bytes, as yajl
/// does.
fn push_utf8(out: &mut Vec<u8>, code: u32) {
    // Every branch masks to the bits it keeps, so the casts cannot truncate anything.
    match code {
        0..=0x7F => out.push(code as u8),
        0x80..=0x7FF => {
            out.push(0xC0 | (code >> 6) as u8);
            out.push(0x80 | (code & 0x3F) as u8);
        }
        0x800..=0xFFFF => {
            out.push(0xE0 | (code >> 12) as u8);
            out.push(0x80 | ((code >> 6) & 0x3F) as u8);
            out.push(0x80 | (code & 0x3F) as u8);
        }
        _ => {
            out.push(0xF0 | ((code >> 18) & 0x07) as u8);
            out.push(0x80 | ((code >> 12) & 0x3F) as u8);
            out.push(0x80 | ((code >> 6) & 0x3F) as u8);
            out.push(0x80 | (code & 0x3F) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (label, body, expected (name, value) pairs)
    type NamingCase = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    fn args(body: &str) -> Vec<(String, String)> {
        match parse_json(body.as_bytes(), 10_000) {
            Ok(pairs) => pairs
                .into_iter()
                .map(|(n, v)| {
                    (
                        String::from_utf8_lossy(&n).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    )
                })
                .collect(),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_values_follow_modsecurity_v3() {
        let cases: &[NamingCase] = &[
            (
                "flat object",
                r#"{"foo":"bar","n":1}"#,
                &[("json.foo", "bar"), ("json.n", "1")],
            ),
            (
                "nested objects join with dots",
                r#"{"user":{"name":"a","address":{"city":"b"}}}"#,
                &[("json.user.name", "a"), ("json.user.address.city", "b")],
            ),
            (
                "array elements are array_<index>",
                r#"{"tags":["x","y"]}"#,
                &[("json.tags.array_0", "x"), ("json.tags.array_1", "y")],
            ),
            (
                "top-level array",
                r#"["one","two","three"]"#,
                &[
                    ("json.array_0", "one"),
                    ("json.array_1", "two"),
                    ("json.array_2", "three"),
                ],
            ),
            (
                // ModSecurity regression test issue-1576.json
                "nested arrays and objects in arrays",
                r#"{"foo":"bar","ops":[["um","um e meio"],"dois",{"eins":["zwei","drei"]}],"whee":"lhebs"}"#,
                &[
                    ("json.foo", "bar"),
                    ("json.ops.array_0.array_0", "um"),
                    ("json.ops.array_0.array_1", "um e meio"),
                    ("json.ops.array_1", "dois"),
                    ("json.ops.array_2.eins.array_0", "zwei"),
                    ("json.ops.array_2.eins.array_1", "drei"),
                    ("json.whee", "lhebs"),
                ],
            ),
            (
                "objects in a top-level array",
                r#"[{"a":1},{"a":2}]"#,
                &[("json.array_0.a", "1"), ("json.array_1.a", "2")],
            ),
            (
                "top-level string",
                r#""just text""#,
                &[("json", "just text")],
            ),
            ("top-level number", "42", &[("json", "42")]),
            (
                "numbers keep their text",
                r#"{"a":-0.50,"b":1E+3,"c":0,"d":12345678901234567890123}"#,
                &[
                    ("json.a", "-0.50"),
                    ("json.b", "1E+3"),
                    ("json.c", "0"),
                    ("json.d", "12345678901234567890123"),
                ],
            ),
            (
                "booleans and null",
                r#"{"t":true,"f":false,"n":null}"#,
                &[("json.t", "true"), ("json.f", "false"), ("json.n", "")],
            ),
            (
                "empty containers add nothing",
                r#"{"a":{},"b":[],"c":1}"#,
                &[("json.c", "1")],
            ),
            (
                "empty member name",
                r#"{"":1,"o":{"":2}}"#,
                &[("json.empty-key", "1"), ("json.o.empty-key", "2")],
            ),
            (
                "duplicate names are all kept, in order",
                r#"{"a":1,"a":2}"#,
                &[("json.a", "1"), ("json.a", "2")],
            ),
            (
                "dots in member names are kept",
                r#"{"java.lang.Process":"test"}"#,
                &[("json.java.lang.Process", "test")],
            ),
            (
                "yajl whitespace, \\v and \\f included",
                "\u{b}{ \"a\" :\t1\r\n,\u{c}\"b\":2 }\n",
                &[("json.a", "1"), ("json.b", "2")],
            ),
        ];
        for (label, body, expected) in cases {
            assert_eq!(args(body), owned(expected), "{label}");
        }
    }

    #[test]
    fn indexes_count_past_one_digit() {
        let body = format!("[{}]", vec!["0"; 101].join(","));
        let names: Vec<String> = args(&body).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.get(10).map(String::as_str), Some("json.array_10"));
        assert_eq!(names.last().map(String::as_str), Some("json.array_100"));
        let mut out = Vec::new();
        push_decimal(&mut out, usize::MAX);
        assert_eq!(out, usize::MAX.to_string().into_bytes());
    }

    #[test]
    fn strings_are_unescaped() {
        let cases: &[(&str, &str, &[u8])] = &[
            (
                "simple escapes",
                r#""a\"b\\c\/d\b\f\n\r\t""#,
                b"a\"b\\c/d\x08\x0c\n\r\t",
            ),
            ("\\u escape", r#""\u0061lert""#, b"alert"),
            (
                "escaped backslash stays a backslash (CRS 920540-3)",
                r#""\\u0065val""#,
                b"\\u0065val",
            ),
            ("two-byte UTF-8", r#""caf\u00e9""#, "café".as_bytes()),
            ("three-byte UTF-8", r#""\u20AC""#, "€".as_bytes()),
            ("surrogate pair", r#""\ud83d\ude00""#, "😀".as_bytes()),
            ("lone high surrogate becomes ?", r#""\ud83dx""#, b"?x"),
            (
                "high surrogate then a non-surrogate escape",
                r#""\ud83d\u0041""#,
                b"?A",
            ),
            (
                "lone low surrogate keeps its bytes",
                r#""\udc00""#,
                b"\xed\xb0\x80",
            ),
            ("\\u0000 is a NUL byte", r#""a\u0000b""#, b"a\0b"),
            ("raw UTF-8 passes through", "\"日本\"", "日本".as_bytes()),
            ("unescaped keys too", r#"{"\u0041":1}"#, b"1"),
        ];
        for (label, body, expected) in cases {
            let parsed = parse_json(body.as_bytes(), 10);
            let value = parsed
                .as_ref()
                .ok()
                .and_then(|p| p.first())
                .map(|(_, v)| v.as_slice());
            assert_eq!(value, Some(*expected), "{label}: {parsed:?}");
        }
        assert_eq!(args(r#"{"\u0041":1}"#), owned(&[("json.A", "1")]));
    }

    #[test]
    fn depth_limit_counts_nested_containers() {
        let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(parse_json(nested(3).as_bytes(), 3).is_ok());
        assert_eq!(
            parse_json(nested(4).as_bytes(), 3),
            Err(DEPTH_EXCEEDED.to_owned())
        );
        assert!(parse_json(br#"{"a":{"b":1}}"#, 2).is_ok());
        assert!(parse_json(br#"{"a":{"b":{"c":1}}}"#, 2).is_err());
        assert_eq!(
            parse_json(b"1", 0),
            Ok(vec![(b"json".to_vec(), b"1".to_vec())])
        );
        assert!(parse_json(b"{}", 0).is_err());
    }

    #[test]
    fn very_deep_nesting_does_not_overflow_the_stack() {
        let n = 200_000;
        let deep = "[".repeat(n) + "1" + &"]".repeat(n);
        let parsed = parse_json(deep.as_bytes(), usize::MAX);
        let name_len = parsed.ok().and_then(|p| p.first().map(|(n, _)| n.len()));
        assert_eq!(name_len, Some("json".len() + n * ".array_0".len()));
        assert!(parse_json(deep.as_bytes(), 10_000).is_err());
    }

    #[test]
    fn empty_body_is_no_arguments_and_no_error() {
        assert_eq!(parse_json(b"", 10), Ok(vec![]));
    }

    #[test]
    fn invalid_json_is_an_error() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("only whitespace", b"  ", "parse error: premature EOF"),
            (
                "unterminated object",
                br#"{"a":1"#,
                "parse error: premature EOF",
            ),
            (
                "unterminated string",
                br#"{"a":"x"#,
                "parse error: premature EOF",
            ),
            (
                "trailing garbage",
                br#"{"a":1} x"#,
                "parse error: trailing garbage",
            ),
            ("two values", b"1 2", "parse error: trailing garbage"),
            (
                "trailing comma in an array",
                b"[1,]",
                "parse error: unallowed token at this point in JSON text",
            ),
            (
                "trailing comma in an object",
                br#"{"a":1,}"#,
                "parse error: invalid object key (must be a string)",
            ),
            (
                "single quotes",
                b"{'a':1}",
                "parse error: invalid object key (must be a string)",
            ),
            (
                "unquoted key",
                b"{a:1}",
                "parse error: invalid object key (must be a string)",
            ),
            (
                "missing colon",
                br#"{"a" 1}"#,
                "parse error: object key and value must be separated by a colon (':')",
            ),
            (
                "missing comma",
                b"[1 2]",
                "parse error: after array element, I expect ',' or ']'",
            ),
            (
                "missing comma in object",
                br#"{"a":1 "b":2}"#,
                "parse error: after key and value, inside map, I expect ',' or '}'",
            ),
            (
                "mismatched bracket",
                b"[1}",
                "parse error: after array element, I expect ',' or ']'",
            ),
            (
                "comment",
                b"/* x */ 1",
                "lexical error: invalid char in json text.",
            ),
            (
                "bad literal",
                b"[tru]",
                "lexical error: invalid string in json text.",
            ),
            ("NaN", b"NaN", "lexical error: invalid char in json text."),
            (
                "leading zero",
                b"[01]",
                "parse error: after array element, I expect ',' or ']'",
            ),
            (
                "minus without digits",
                b"-",
                "lexical error: malformed number, a digit is required after the minus sign.",
            ),
            (
                "dot without digits",
                b"1.",
                "lexical error: malformed number, a digit is required after the decimal point.",
            ),
            (
                "exponent without digits",
                b"1e+",
                "lexical error: malformed number, a digit is required after the exponent.",
            ),
            (
                "raw control character in a string",
                b"\"a\tb\"",
                "lexical error: invalid character inside string.",
            ),
            (
                "unknown escape",
                br#""\x41""#,
                "lexical error: inside a string, '\\' occurs before a character which it may not.",
            ),
            (
                "short \\u escape",
                br#""\u12G4""#,
                "lexical error: invalid (non-hex) character occurs after '\\u' inside string.",
            ),
            (
                "invalid UTF-8",
                b"\"\xff\"",
                "lexical error: invalid bytes in UTF8 string.",
            ),
        ];
        for (label, body, message) in cases {
            assert_eq!(parse_json(body, 10), Err(message.to_string()), "{label}");
        }
    }

    #[test]
    fn no_panic_on_any_prefix_of_a_valid_body() {
        let body = r#"{"a":[1,-2.5e+3,true,false,null,{"b":"x\"\\\/\u00e9\ud83d\ude00"}],"":{}}"#;
        assert!(parse_json(body.as_bytes(), 10).is_ok());
        for prefix in super::super::every_prefix(body.as_bytes()) {
            let _ = parse_json(prefix, 10);
        }
    }
}
