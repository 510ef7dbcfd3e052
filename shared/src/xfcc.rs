//! `x-forwarded-client-cert` (XFCC) parsing, as Envoy writes the header.
//!
//! The header is a list of elements separated by `,`; an element is a list of
//! `Key=value` pairs separated by `;`; keys are `By`, `Hash`, `Cert`, `Chain`,
//! `Subject`, `URI` and `DNS` (case-insensitive); a value may be double-quoted,
//! and inside quotes `\"` is a literal quote (and `\\` a backslash).
//!
//! The parser is strict: an unknown key, a repeated single-valued key, an empty
//! element or an unterminated quote make the whole header invalid. XFCC is
//! caller-controlled except for the element the trusted proxy appended, so an
//! ambiguous header must never yield an identity (ARCHITECTURE §7). This module
//! does not decide whom to trust; see the tenant filter for that.
//!
//! ```
//! use meshward_shared::xfcc::{self, XfccKey};
//! let header = r#"By=spiffe://td/ns/a/sa/x;URI=spiffe://td/ns/b/sa/y,By=spiffe://td/ns/c/sa/gw;Subject="CN=a,O=\"b\"";URI=spiffe://td/ns/d/sa/z"#;
//! let elements = xfcc::parse(header).unwrap();
//! assert_eq!(elements.len(), 2);
//! assert_eq!(elements[1].get(XfccKey::Subject), Some(r#"CN=a,O="b""#));
//! assert_eq!(elements[1].get(XfccKey::Uri), Some("spiffe://td/ns/d/sa/z"));
//! ```

use std::fmt;

/// The most elements a header may hold; more is treated as malformed
/// (each hop adds one, and no mesh path is this deep).
pub const MAX_ELEMENTS: usize = 64;

/// The keys Envoy writes in an XFCC element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccKey {
    By,
    Hash,
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

impl XfccKey {
    fn from_name(name: &str) -> Option<XfccKey> {
        const KEYS: [(&str, XfccKey); 7] = [
            ("by", XfccKey::By),
            ("hash", XfccKey::Hash),
            ("cert", XfccKey::Cert),
            ("chain", XfccKey::Chain),
            ("subject", XfccKey::Subject),
            ("uri", XfccKey::Uri),
            ("dns", XfccKey::Dns),
        ];
        KEYS.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, key)| *key)
    }

    /// Only `DNS` may appear more than once in an element (one per DNS SAN).
    fn repeatable(self) -> bool {
        matches!(self, XfccKey::Dns)
    }

    pub fn name(self) -> &'static str {
        match self {
            XfccKey::By => "By",
            XfccKey::Hash => "Hash",
            XfccKey::Cert => "Cert",
            XfccKey::Chain => "Chain",
            XfccKey::Subject => "Subject",
            XfccKey::Uri => "URI",
            XfccKey::Dns => "DNS",
        }
    }
}

/// One element of the header: what one proxy recorded about one client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XfccElement {
    pairs: Vec<(XfccKey, String)>,
}

impl XfccElement {
    /// The value of a key (the first, for `DNS`).
    pub fn get(&self, key: XfccKey) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a key, in order.
    pub fn get_all(&self, key: XfccKey) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in header order.
    pub fn pairs(&self) -> &[(XfccKey, String)] {
        &self.pairs
    }
}

/// Why an XFCC header is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XfccError {
    /// The header is empty or holds an empty element (`a,,b`, trailing `,`).
    EmptyElement,
    /// A pair has no `=`.
    MissingEquals,
    /// A pair's key is not one of Envoy's keys.
    UnknownKey(String),
    /// A single-valued key appears twice in one element.
    DuplicateKey(&'static str),
    /// A quoted value is not closed.
    UnterminatedQuote,
    /// Characters follow a closing quote before the next `;` or `,`.
    TextAfterQuote,
    /// More than [`MAX_ELEMENTS`] elements.
    TooManyElements,
}

impl fmt::Display for XfccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XfccError::EmptyElement => f.write_str("empty XFCC element"),
            XfccError::MissingEquals => f.write_str("XFCC pair without `=`"),
            XfccError::UnknownKey(k) => write!(f, "unknown XFCC key `{k}`"),
            XfccError::DuplicateKey(k) => write!(f, "XFCC key `{k}` repeated in one element"),
            XfccError::UnterminatedQuote => f.write_str("unterminated quoted XFCC value"),
            XfccError::TextAfterQuote => f.write_str("text after a quoted XFCC value"),
            XfccError::TooManyElements => {
                write!(f, "more than {MAX_ELEMENTS} XFCC elements")
            }
        }
    }
}

impl std::error::Error for XfccError {}

/// Parses a whole XFCC header value into its elements.
pub fn parse(header: &str) -> Result<Vec<XfccElement>, XfccError> {
    let mut parser = Parser {
        chars: header.char_indices().peekable(),
        src: header,
    };
    let mut elements = Vec::new();
    loop {
        let (element, more) = parser.element()?;
        if elements.len() == MAX_ELEMENTS {
            return Err(XfccError::TooManyElements);
        }
        elements.push(element);
        if !more {
            return Ok(elements);
        }
    }
}

/// Parses the whole header (quoting can hide a `,`, so no shortcut is safe)
/// and returns its last element: with Envoy's `APPEND_FORWARD`, the only one
/// the proxy itself wrote.
pub fn parse_last(header: &str) -> Result<XfccElement, XfccError> {
    parse(header)?.pop().ok_or(XfccError::EmptyElement)
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    src: &'a str,
}

/// What ended a value: `;` (another pair), `,` (another element), or the end.
enum End {
    Pair,
    Element,
    Header,
}

impl Parser<'_> {
    /// One element; the bool says whether another element follows.
    fn element(&mut self) -> Result<(XfccElement, bool), XfccError> {
        let mut element = XfccElement::default();
        loop {
            let key_text = self.key()?;
            let key = match key_text {
                None => return Err(XfccError::EmptyElement),
                Some(k) => {
                    XfccKey::from_name(k).ok_or_else(|| XfccError::UnknownKey(k.to_string()))?
                }
            };
            let (value, end) = self.value()?;
            if !key.repeatable() && element.get(key).is_some() {
                return Err(XfccError::DuplicateKey(key.name()));
            }
            element.pairs.push((key, value));
            match end {
                End::Pair => continue,
                End::Element => return Ok((element, true)),
                End::Header => return Ok((element, false)),
            }
        }
    }

    /// The key up to `=`, trimmed; `None` for an empty pair (`;;`, `,,`, end).
    fn key(&mut self) -> Result<Option<&str>, XfccError> {
        let start = self.chars.peek().map(|(i, _)| *i).unwrap_or(self.src.len());
        for (i, c) in self.chars.by_ref() {
            match c {
                '=' => {
                    let key = self.src.get(start..i).unwrap_or_default().trim();
                    return Ok(if key.is_empty() { None } else { Some(key) });
                }
                ',' | ';' | '"' => {
                    let text = self.src.get(start..i).unwrap_or_default().trim();
                    return Err(if text.is_empty() {
                        XfccError::EmptyElement
                    } else {
                        XfccError::MissingEquals
                    });
                }
                _ => {}
            }
        }
        let text = self.src.get(start..).unwrap_or_default().trim();
        Err(if text.is_empty() {
            XfccError::EmptyElement
        } else {
            XfccError::MissingEquals
        })
    }

    fn value(&mut self) -> Result<(String, End), XfccError> {
        // Skip blanks before the value, then see whether it is quoted.
        while matches!(self.chars.peek(), Some((_, ' ' | '\t'))) {
            self.chars.next();
        }
        if matches!(self.chars.peek(), Some((_, '"'))) {
            self.chars.next();
            let mut value = String::new();
            loop {
                match self.chars.next() {
                    None => return Err(XfccError::UnterminatedQuote),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match self.chars.next() {
                        Some((_, c)) => value.push(c),
                        None => return Err(XfccError::UnterminatedQuote),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            loop {
                match self.chars.next() {
                    None => return Ok((value, End::Header)),
                    Some((_, ';')) => return Ok((value, End::Pair)),
                    Some((_, ',')) => return Ok((value, End::Element)),
                    Some((_, ' ' | '\t')) => {}
                    Some(_) => return Err(XfccError::TextAfterQuote),
                }
            }
        }
        let start = self.chars.peek().map(|(i, _)| *i).unwrap_or(self.src.len());
        for (i, c) in self.chars.by_ref() {
            let end = match c {
                ';' => End::Pair,
                ',' => End::Element,
                // A quote inside an unquoted value is ambiguous: reject it
                // rather than guess where the value ends.
                '"' => return Err(XfccError::UnterminatedQuote),
                _ => continue,
            };
            let value = self.src.get(start..i).unwrap_or_default().trim_end();
            return Ok((value.to_string(), end));
        }
        let value = self.src.get(start..).unwrap_or_default().trim_end();
        Ok((value.to_string(), End::Header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";

    #[test]
    fn a_single_envoy_element_parses() {
        let h = format!(
            r#"By={GW};Hash=abc123;Subject="";URI=spiffe://cluster.local/ns/bank-a/sa/api;DNS=a.example;DNS=b.example"#
        );
        let e = parse(&h).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].get(XfccKey::By), Some(GW));
        assert_eq!(e[0].get(XfccKey::Hash), Some("abc123"));
        assert_eq!(e[0].get(XfccKey::Subject), Some(""));
        assert_eq!(
            e[0].get(XfccKey::Uri),
            Some("spiffe://cluster.local/ns/bank-a/sa/api")
        );
        assert_eq!(
            e[0].get_all(XfccKey::Dns).collect::<Vec<_>>(),
            vec!["a.example", "b.example"]
        );
        assert_eq!(e[0].get(XfccKey::Cert), None);
    }

    #[test]
    fn several_elements_keep_their_order_and_last_is_the_proxys() {
        let h = "By=spiffe://td/a;URI=spiffe://td/forged,By=spiffe://td/gw;URI=spiffe://td/real";
        let all = parse(h).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get(XfccKey::Uri), Some("spiffe://td/forged"));
        let last = parse_last(h).unwrap();
        assert_eq!(last.get(XfccKey::Uri), Some("spiffe://td/real"));
    }

    #[test]
    fn quoted_values_may_hold_separators() {
        let h = r#"Subject="CN=x,OU=a;b";URI=spiffe://td/one"#;
        let all = parse(h).unwrap();
        assert_eq!(
            all.len(),
            1,
            "the comma inside quotes does not split elements"
        );
        assert_eq!(all[0].get(XfccKey::Subject), Some("CN=x,OU=a;b"));
    }

    #[test]
    fn escaped_quotes_inside_a_quoted_value_are_literal() {
        let h = r#"Subject="CN=\"evil\",URI=spiffe://td/x";URI=spiffe://td/real"#;
        let all = parse(h).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].get(XfccKey::Subject),
            Some(r#"CN="evil",URI=spiffe://td/x"#)
        );
        assert_eq!(all[0].get(XfccKey::Uri), Some("spiffe://td/real"));
        let h = r#"Subject="a\\";URI=spiffe://td/y"#;
        assert_eq!(parse(h).unwrap()[0].get(XfccKey::Subject), Some(r"a\"));
    }

    #[test]
    fn keys_are_case_insensitive() {
        let h = "by=spiffe://td/gw;uRi=spiffe://td/a;HASH=00;dns=x;SUBJECT=\"s\";cert=\"c\";Chain=\"ch\"";
        let e = parse_last(h).unwrap();
        assert_eq!(e.get(XfccKey::By), Some("spiffe://td/gw"));
        assert_eq!(e.get(XfccKey::Uri), Some("spiffe://td/a"));
        assert_eq!(e.get(XfccKey::Hash), Some("00"));
        assert_eq!(e.get(XfccKey::Chain), Some("ch"));
    }

    #[test]
    fn blanks_around_pairs_and_elements_are_ignored() {
        let h = " By=spiffe://td/a ; URI=spiffe://td/b , URI = \"spiffe://td/c\" ";
        let all = parse(h).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get(XfccKey::Uri), Some("spiffe://td/b"));
        assert_eq!(all[1].get(XfccKey::Uri), Some("spiffe://td/c"));
    }

    #[test]
    fn malformed_headers_are_rejected_with_a_reason() {
        let cases: &[(&str, &str, XfccError)] = &[
            ("empty header", "", XfccError::EmptyElement),
            ("blank header", "  ", XfccError::EmptyElement),
            (
                "empty element in the middle",
                "URI=a,,URI=b",
                XfccError::EmptyElement,
            ),
            ("trailing comma", "URI=a,", XfccError::EmptyElement),
            ("trailing semicolon", "URI=a;", XfccError::EmptyElement),
            ("pair without =", "URI", XfccError::MissingEquals),
            (
                "pair without = before ;",
                "URI;By=x",
                XfccError::MissingEquals,
            ),
            ("empty key", "=x", XfccError::EmptyElement),
            (
                "unknown key",
                "Foo=bar",
                XfccError::UnknownKey("Foo".into()),
            ),
            (
                "duplicate URI",
                "URI=a;URI=b",
                XfccError::DuplicateKey("URI"),
            ),
            (
                "duplicate By, other case",
                "By=a;by=b",
                XfccError::DuplicateKey("By"),
            ),
            (
                "unterminated quote",
                r#"Subject="abc;URI=x"#,
                XfccError::UnterminatedQuote,
            ),
            (
                "quote swallowing the next element",
                r#"URI="a,By=gw;URI=b"#,
                XfccError::UnterminatedQuote,
            ),
            (
                "escape at the very end",
                r#"Subject="abc\"#,
                XfccError::UnterminatedQuote,
            ),
            (
                "quote inside unquoted value",
                r#"URI=a"b""#,
                XfccError::UnterminatedQuote,
            ),
            (
                "text after closing quote",
                r#"Subject="a"b;URI=x"#,
                XfccError::TextAfterQuote,
            ),
        ];
        for (label, header, err) in cases {
            assert_eq!(parse(header).as_ref().err(), Some(err), "{label}: {header}");
        }
    }

    #[test]
    fn too_many_elements_are_rejected() {
        let h = vec!["URI=spiffe://td/a"; MAX_ELEMENTS + 1].join(",");
        assert_eq!(parse(&h), Err(XfccError::TooManyElements));
        let h = vec!["URI=spiffe://td/a"; MAX_ELEMENTS].join(",");
        assert_eq!(parse(&h).unwrap().len(), MAX_ELEMENTS);
    }

    #[test]
    fn an_odd_quote_in_a_forged_prefix_invalidates_the_whole_header() {
        // The caller opens a quote; the proxy's appended element (which has
        // balanced quotes) cannot close it, so nothing is trusted.
        let forged = r#"URI="spiffe://td/ns/bank-a/sa/x"#;
        let real = format!(r#"By={GW};Subject="CN=gw";URI=spiffe://td/ns/bank-b/sa/y"#);
        assert!(parse(&format!("{forged},{real}")).is_err());
    }
}
