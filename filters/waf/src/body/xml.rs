//! XML bodies: the values libmodsecurity's XML processor (libxml2) gives the two XPath
//! selectors CRS uses.
//!
//! - `XML:/*` selects the root element; ModSecurity's value for a node is libxml2's
//!   `xmlNodeGetContent`, so `/*` is ONE value: every text and CDATA node under the root,
//!   concatenated in document order, whitespace between elements included, comments and
//!   processing instructions left out.
//! - `XML://@*` selects every attribute in document order; each value is the attribute's
//!   normalised value (entity and character references expanded, literal tabs and newlines
//!   turned to spaces, as XML 1.0 §3.3.3 requires). Namespace declarations (`xmlns`,
//!   `xmlns:p`) are not attributes, in libxml2 as here.
//!
//! Parsing: `roxmltree` (a strict XML 1.0 parser) with DTDs allowed, internal entities
//! expanded, and external entities read as empty: libmodsecurity never loads them
//! (SecXMLExternalEntity Off), and a reference to an entity libxml2 does not load adds no text.
//! Input is UTF-8 (an optional BOM), UTF-16 with a BOM or a `<?xml` start, or the single-byte
//! encodings ISO-8859-1 / US-ASCII / windows-1252 when the XML declaration names them;
//! other encodings are an error (libxml2 would convert them with iconv).

use std::borrow::Cow;
use std::collections::HashMap;

/// What the XML selectors CRS uses see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xml {
    /// `XML:/*`: one value, the root element's text content (see the module documentation).
    pub text: Vec<Vec<u8>>,
    /// `XML://@*`: every attribute value, in document order.
    pub attributes: Vec<Vec<u8>>,
}

/// libxml2 refuses documents nested deeper than this (without XML_PARSE_HUGE, which
/// libmodsecurity does not set): "Excessive depth in document: 256".
const MAX_DEPTH: usize = 256;

const FAILED: &str = "XML: Failed parsing document.";

/// XML bodies → the values of `XML:/*` and `XML://@*`. Invalid or not well-formed XML (which
/// includes an empty body, and undeclared namespace prefixes, which libxml2 only warns about)
/// → `Err` with libmodsecurity's message and the parser's reason.
pub fn parse_xml(body: &[u8]) -> Result<Xml, String> {
    let text = decode(body)?;
    if entity_expansion(&text) > entity_budget(text.len()) {
        return Err(format!(
            "{FAILED} (entities expand beyond the output limit)"
        ));
    }
    // External entities resolve to nothing; `'static` is what roxmltree's resolver borrows.
    let resolver = |_public_id: Option<&str>, _uri: &str| Ok(Some(""));
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        entity_resolver: Some(&resolver),
        ..roxmltree::ParsingOptions::default()
    };
    let document = roxmltree::Document::parse_with_options(&text, options)
        .map_err(|e| format!("{FAILED} ({e})"))?;

    let mut content = Vec::new();
    let mut attributes = Vec::new();
    // The elements enclosing the current node, root first: descendants() is in document
    // order, so closing back to the node's parent is amortised O(1).
    let mut open: Vec<roxmltree::NodeId> = Vec::new();
    for node in document.root_element().descendants() {
        let parent = node.parent().map(|p| p.id());
        while open.last().is_some_and(|&id| Some(id) != parent) {
            open.pop();
        }
        if node.is_element() {
            open.push(node.id());
            if open.len() > MAX_DEPTH + 1 {
                return Err(format!(
                    "{FAILED} (excessive depth in document: {MAX_DEPTH})"
                ));
            }
            attributes.extend(node.attributes().map(|a| a.value().as_bytes().to_vec()));
        } else if node.is_text() {
            content.extend_from_slice(node.text().unwrap_or_default().as_bytes());
        }
    }
    Ok(Xml {
        text: vec![content],
        attributes,
    })
}

/// libxml2 (2.11 and later) lets entities expand to 1,000,000 bytes in any document
/// (`XML_PARSER_ALLOWED_EXPANSION`) and past that to 5 times the document
/// (`XML_MAX_AMPLIFICATION_DEFAULT`); beyond, it refuses the document. Everything an
/// entity expands to is text CRS inspects, so the bound is CPU as much as memory.
fn entity_budget(input_len: usize) -> usize {
    input_len.saturating_mul(5).max(1_000_000)
}

/// How deep roxmltree follows entity references inside entity values before failing.
const MAX_ENTITY_NESTING: usize = 10;

/// An upper bound of the text internal entities expand to in `text`.
///
/// roxmltree expands entities eagerly and limits references only inside entity values
/// (billion laughs), so one large entity referenced many times in the document (the
/// "quadratic blowup") would allocate without bound; libxml2 refuses such documents by its
/// amplification limits. This sums, over every `&name;` in the text, the size of the
/// entity's value with its own references expanded.
///
/// Declarations are found by a plain text search, so one in a comment, a processing
/// instruction or another entity's value counts too. Each name therefore takes the largest
/// expansion among all its declarations: a decoy `<!-- <!ENTITY a ""> -->` before the real
/// one cannot make the estimate small.
fn entity_expansion(text: &str) -> usize {
    let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("<!ENTITY") {
        rest = rest.get(at + "<!ENTITY".len()..).unwrap_or_default();
        let declaration = rest.trim_start_matches(is_xml_space);
        if declaration.starts_with('%') {
            continue; // a parameter entity: not referenced from the document
        }
        let name_end = declaration
            .find(|c: char| is_xml_space(c) || c == '"' || c == '\'')
            .unwrap_or(declaration.len());
        let (name, after) = declaration.split_at(name_end);
        let after = after.trim_start_matches(is_xml_space);
        let Some(quote) = after.chars().next().filter(|&c| c == '"' || c == '\'') else {
            continue; // an external entity: read as empty
        };
        let literal = after.get(1..).unwrap_or_default();
        let value = literal.find(quote).and_then(|end| literal.get(..end));
        values
            .entry(name)
            .or_default()
            .push(value.unwrap_or(literal));
    }
    if values.is_empty() {
        return 0;
    }
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    references(text)
        .map(|name| expanded_size(name, &values, &mut sizes, 0))
        .fold(0, usize::saturating_add)
}

/// The most `name` can expand to, over its declarations; `usize::MAX` past roxmltree's
/// nesting limit (which it rejects).
fn expanded_size<'t>(
    name: &'t str,
    values: &HashMap<&'t str, Vec<&'t str>>,
    sizes: &mut HashMap<&'t str, usize>,
    depth: usize,
) -> usize {
    let Some(declared) = values.get(name) else {
        return 0; // predefined, character or unknown (an error) reference
    };
    if let Some(&size) = sizes.get(name) {
        return size;
    }
    if depth > MAX_ENTITY_NESTING {
        return usize::MAX;
    }
    let size = declared
        .iter()
        .map(|value| {
            references(value)
                .map(|inner| expanded_size(inner, values, sizes, depth + 1))
                .fold(value.len(), usize::saturating_add)
        })
        .max()
        .unwrap_or(0);
    sizes.insert(name, size);
    size
}

/// The names of the general entity references (`&name;`, not `&#…;`) in `text`.
fn references(text: &str) -> impl Iterator<Item = &str> {
    text.split('&').skip(1).filter_map(|after| {
        let name = after.get(..after.find(';')?)?;
        (!name.starts_with('#') && !name.is_empty()).then_some(name)
    })
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The body as UTF-8 text, converted from the encodings this processor reads.
/// The body as text: borrowed when it is UTF-8 already (the usual case), decoded otherwise.
fn decode(body: &[u8]) -> Result<Cow<'_, str>, String> {
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    if let Some(rest) = body.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes).map(Cow::Owned);
    }
    if let Some(rest) = body.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes).map(Cow::Owned);
    }
    // `<?` in UTF-16 without a byte order mark (XML 1.0 Appendix F).
    if body.starts_with(b"<\0?\0") {
        return utf16(body, u16::from_le_bytes).map(Cow::Owned);
    }
    if body.starts_with(b"\0<\0?") {
        return utf16(body, u16::from_be_bytes).map(Cow::Owned);
    }
    match declared_encoding(body).map(|e| e.to_ascii_lowercase()) {
        None => utf8(body),
        Some(e) if e == b"utf-8" || e == b"utf8" => utf8(body),
        Some(e) if e == b"iso-8859-1" || e == b"latin1" || e == b"iso_8859-1" || e == b"l1" => {
            Ok(Cow::Owned(body.iter().map(|&b| char::from(b)).collect()))
        }
        Some(e) if e == b"us-ascii" || e == b"ascii" => {
            if body.is_ascii() {
                utf8(body)
            } else {
                Err(format!("{FAILED} (a byte outside US-ASCII)"))
            }
        }
        Some(e) if e == b"windows-1252" || e == b"cp1252" => body
            .iter()
            .map(|&b| windows_1252(b))
            .collect::<Option<String>>()
            .map(Cow::Owned)
            .ok_or_else(|| format!("{FAILED} (a byte undefined in windows-1252)")),
        Some(e) => Err(format!(
            "{FAILED} (unsupported encoding {})",
            String::from_utf8_lossy(&e)
        )),
    }
}

fn utf8(body: &[u8]) -> Result<Cow<'_, str>, String> {
    std::str::from_utf8(body)
        .map(Cow::Borrowed)
        .map_err(|_| format!("{FAILED} (input is not valid UTF-8)"))
}

fn utf16(body: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, String> {
    let units = body.chunks(2).map(|pair| match *pair {
        [a, b] => unit([a, b]),
        // An odd trailing byte cannot be a UTF-16 unit: a lone surrogate fails the decode.
        _ => 0xD800,
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| format!("{FAILED} (input is not valid UTF-16)"))
}

/// The `encoding` of an ASCII XML declaration, if the body starts with one.
fn declared_encoding(body: &[u8]) -> Option<&[u8]> {
    let rest = body.strip_prefix(b"<?xml")?;
    let end = rest.windows(2).position(|w| w == b"?>")?;
    let declaration = rest.get(..end)?;
    let at = declaration
        .windows(b"encoding".len())
        .position(|w| w == b"encoding")?;
    let after = declaration.get(at + b"encoding".len()..)?;
    let after = trim_start(after).strip_prefix(b"=")?;
    let after = trim_start(after);
    let quote = *after.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let value = after.get(1..)?;
    let close = value.iter().position(|&c| c == quote)?;
    value.get(..close)
}

fn trim_start(s: &[u8]) -> &[u8] {
    let spaces = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    s.get(spaces..).unwrap_or_default()
}

/// windows-1252 differs from ISO-8859-1 only in 0x80..=0x9F; five of those are undefined.
fn windows_1252(b: u8) -> Option<char> {
    const HIGH: [u16; 32] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
        0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC,
        0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => {
            let code = *HIGH.get(usize::from(b - 0x80))?;
            if code == 0 {
                None
            } else {
                char::from_u32(u32::from(code))
            }
        }
        _ => Some(char::from(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &[u8]) -> (Vec<String>, Vec<String>) {
        match parse_xml(body) {
            Ok(xml) => (strings(xml.text), strings(xml.attributes)),
            Err(e) => panic!("{}: {e}", String::from_utf8_lossy(body)),
        }
    }

    fn strings(values: Vec<Vec<u8>>) -> Vec<String> {
        values
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect()
    }

    #[test]
    fn text_and_attributes_follow_libxml2() {
        // (label, document, XML:/* value, XML://@* values)
        let cases: &[(&str, &str, &str, &[&str])] = &[
            (
                "CRS test shape: one element with an attribute",
                r#"<?xml version="1.0"?><xml><element attribute_name="attribute_value">Cs7QAF</element></xml>"#,
                "Cs7QAF",
                &["attribute_value"],
            ),
            (
                "all text under the root is one value, whitespace included",
                "<r>\n  <a>one</a>\n  <b>two</b>\n</r>",
                "\n  one\n  two\n",
                &[],
            ),
            (
                "attributes in document order, namespace declarations excluded",
                r#"<r xmlns="urn:d" xmlns:p="urn:p" a="1" p:b="2"><c d="3"/></r>"#,
                "",
                &["1", "2", "3"],
            ),
            (
                "predefined entities and character references are decoded",
                "<r a=\"&quot;&#x7B;&amp;&#10;\">&lt;script&gt;&#65;&#x42;</r>",
                "<script>AB",
                &["\"{&\n"],
            ),
            (
                "attribute whitespace is normalised, character references are not",
                "<r a=\"x\ny\tz&#9;\"/>",
                "",
                &["x y z\t"],
            ),
            (
                "CDATA is text",
                "<r>a<![CDATA[<b>&amp;</b>]]>c</r>",
                "a<b>&amp;</b>c",
                &[],
            ),
            (
                "comments and processing instructions are not text",
                "<r>a<!-- x --><?pi y?>b</r>",
                "ab",
                &[],
            ),
            ("CRLF in text reads as LF", "<r>a\r\nb</r>", "a\nb", &[]),
            ("an empty root gives an empty value", "<r/>", "", &[]),
            (
                "text outside the root is not included",
                "<!-- c -->\n<r>in</r>\n",
                "in",
                &[],
            ),
            (
                "internal DTD entities are expanded",
                r#"<!DOCTYPE r [<!ENTITY e "expanded&#65;">]><r a="&e;">&e;</r>"#,
                "expandedA",
                &["expandedA"],
            ),
            (
                "external entities read as nothing (never loaded)",
                r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>[&x;]</r>"#,
                "[]",
                &[],
            ),
        ];
        for (label, document, text, attributes) in cases {
            let (got_text, got_attributes) = parse(document.as_bytes());
            assert_eq!(got_text, vec![text.to_string()], "{label}");
            assert_eq!(got_attributes, *attributes, "{label}");
        }
    }

    #[test]
    fn declared_and_marked_encodings_are_read() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("UTF-8 BOM", b"\xEF\xBB\xBF<r>caf\xC3\xA9</r>", "café"),
            (
                "ISO-8859-1 declaration",
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>caf\xE9</r>",
                "café",
            ),
            (
                "windows-1252 declaration",
                b"<?xml version='1.0' encoding='windows-1252'?><r>\x80</r>",
                "€",
            ),
            ("UTF-16LE BOM", b"\xFF\xFE<\0r\0>\0\xE9\0<\0/\0r\0>\0", "é"),
            ("UTF-16BE BOM", b"\xFE\xFF\0<\0r\0>\0\xE9\0<\0/\0r\0>", "é"),
            (
                "UTF-16LE without BOM",
                b"<\0?\0x\0m\0l\0 \0v\0e\0r\0s\0i\0o\0n\0=\0'\x001\0.\x000\0'\0?\0>\0<\0r\0/\0>\0",
                "",
            ),
        ];
        for (label, body, text) in cases {
            assert_eq!(parse(body).0, vec![text.to_string()], "{label}");
        }
    }

    #[test]
    fn invalid_documents_are_errors() {
        let cases: &[(&str, &[u8])] = &[
            ("empty body", b""),
            ("plain text", b"test"),
            ("unclosed element", b"<r><a></r>"),
            ("mismatched end tag", b"<r></a>"),
            ("two root elements", b"<a/><b/>"),
            ("undeclared entity", b"<r>&nbsp;</r>"),
            ("duplicate attribute", b"<r a='1' a='2'/>"),
            ("unquoted attribute", b"<r a=1/>"),
            ("backslash-escaped quotes (CRS 920240-4)", b"<r a=\\\"x\\\"/>"),
            ("raw < in text", b"<r>a < b</r>"),
            ("undeclared namespace prefix", b"<p:r/>"),
            ("invalid UTF-8", b"<r>\xff</r>"),
            ("byte outside a declared US-ASCII", b"<?xml version='1.0' encoding='us-ascii'?><r>\xe9</r>"),
            ("unsupported declared encoding", b"<?xml version='1.0' encoding='Shift_JIS'?><r/>"),
            ("truncated UTF-16", b"\xFF\xFE<\0r\0/\0>"),
            (
                "entity expansion bomb",
                b"<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]><r>&d;</r>",
            ),
        ];
        for (label, body) in cases {
            let result = parse_xml(body);
            match result {
                Err(message) => assert!(message.starts_with(FAILED), "{label}: {message}"),
                Ok(xml) => panic!("{label}: parsed {xml:?}"),
            }
        }
    }

    #[test]
    fn one_large_entity_referenced_many_times_is_refused() {
        let value = "x".repeat(10_000);
        let references = "&e;".repeat(10_000);
        let body = format!(r#"<!DOCTYPE r [<!ENTITY e "{value}">]><r>{references}</r>"#);
        let message = parse_xml(body.as_bytes()).err().unwrap_or_default();
        assert!(message.contains("output limit"), "{message}");
        // The same entity referenced a few times is fine.
        let body = format!(r#"<!DOCTYPE r [<!ENTITY e "{value}">]><r>&e;&e;</r>"#);
        assert_eq!(parse(body.as_bytes()).0, vec![value.repeat(2)]);
    }

    #[test]
    fn a_decoy_declaration_cannot_shrink_the_expansion_estimate() {
        // Found by fuzzing: a small `<!ENTITY e ...>` where roxmltree does not read it made
        // the estimate take that one, while the real declaration expands.
        let value = "x".repeat(10_000);
        let references = "&e;".repeat(10_000);
        for decoy in [
            "<!-- <!ENTITY e \"\"> -->",
            "<?pi <!ENTITY e ''> ?>",
            "<!ENTITY d \"<!ENTITY e ''>\">",
        ] {
            let body = format!(r#"<!DOCTYPE r [{decoy}<!ENTITY e "{value}">]><r>{references}</r>"#);
            let message = parse_xml(body.as_bytes()).err().unwrap_or_default();
            assert!(message.contains("output limit"), "{decoy}: {message}");
        }
    }

    #[test]
    fn entity_expansion_bound_counts_nested_references() {
        let text = r#"<!DOCTYPE r [<!ENTITY a "12345"><!ENTITY b '&a;&a;>'><!ENTITY % p "x">]><r>&b;&amp;&#65;&b;</r>"#;
        // b = "&a;&a;>" (7 bytes) + 2 × 5; referenced twice in the document, once in b itself.
        assert_eq!(entity_expansion(text), 2 * (7 + 10) + 10);
        assert_eq!(entity_expansion("<r>&amp;&lt;</r>"), 0);
        let looping = r#"<!DOCTYPE r [<!ENTITY a "&b;"><!ENTITY b "&a;">]><r>&a;</r>"#;
        assert_eq!(entity_expansion(looping), usize::MAX);
    }

    #[test]
    fn nesting_deeper_than_libxml2_allows_is_an_error() {
        let nested = |n: usize| "<a>".repeat(n) + &"</a>".repeat(n);
        assert!(parse_xml(nested(MAX_DEPTH + 1).as_bytes()).is_ok());
        assert!(parse_xml(nested(MAX_DEPTH + 2).as_bytes()).is_err());
        // Far deeper: still an error, without exhausting the stack.
        assert!(parse_xml(nested(100_000).as_bytes()).is_err());
    }

    #[test]
    fn no_panic_on_any_prefix_of_a_valid_body() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE r [<!ENTITY e \"v\">]>\n<r xmlns:p=\"urn:p\" p:a=\"&e;&#10;\"><![CDATA[x]]><!--c--><b>&lt;é&e;</b></r>\n";
        assert!(parse_xml(body.as_bytes()).is_ok());
        for prefix in super::super::every_prefix(body.as_bytes()) {
            let _ = parse_xml(prefix);
        }
    }
}
