//! What an audit record may hold: sensitive headers are replaced by
//! [`REDACTED`], configured patterns (card numbers, …) are masked, long values
//! are cut.

use regex::{Regex, RegexBuilder};
use std::borrow::Cow;

/// The value recorded in place of a sensitive header.
pub const REDACTED: &str = "[redacted]";
/// Appended to a value cut at `maxValueBytes`.
pub const TRUNCATED: &str = "...[truncated]";

/// A compiled masking pattern.
#[derive(Debug)]
pub struct MaskPattern {
    pub name: String,
    /// The pattern as configured (for the combined precheck).
    source: String,
    regex: Regex,
    replacement: String,
}

impl MaskPattern {
    /// Compiles `pattern`; the error is the regex crate's message.
    pub fn new(name: &str, pattern: &str, replacement: String) -> Result<Self, String> {
        let regex = bounded(pattern).map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string()
        })?;
        Ok(MaskPattern {
            name: name.to_string(),
            source: pattern.to_string(),
            regex,
            replacement,
        })
    }
}

/// Compiles `pattern` with bounded compiled size and lazy-DFA cache: patterns
/// come from config, but memory per VM must stay bounded (ARCHITECTURE §3).
fn bounded(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

#[derive(Debug)]
pub struct Redactor {
    /// Lower-case names of headers never recorded in clear.
    sensitive: Vec<String>,
    patterns: Vec<MaskPattern>,
    /// With two or more patterns: all of them as one alternation, so that a
    /// value no pattern matches (nearly every value) costs one scan, not one
    /// per pattern. `None` when there is nothing to gain, or the combination
    /// does not compile (e.g. two patterns name the same group): then every
    /// value gets the full treatment, which is always correct.
    any: Option<Regex>,
}

impl Redactor {
    pub fn new(sensitive: Vec<String>, patterns: Vec<MaskPattern>) -> Self {
        let any = if patterns.len() > 1 {
            let alternation = patterns
                .iter()
                .map(|p| format!("(?:{})", p.source))
                .collect::<Vec<_>>()
                .join("|");
            bounded(&alternation).ok()
        } else {
            None
        };
        Redactor {
            sensitive,
            patterns,
            any,
        }
    }

    pub fn is_sensitive(&self, name: &str) -> bool {
        self.sensitive.iter().any(|s| s.eq_ignore_ascii_case(name))
    }

    /// `text` with every pattern match replaced (pattern by pattern, in
    /// order, each over the previous one's output).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        // If no pattern matches `text`, the first leaves it unchanged, and so
        // does each next one: one combined scan decides that exactly.
        if let Some(any) = &self.any {
            if !any.is_match(text) {
                return out;
            }
        }
        for p in &self.patterns {
            if let Cow::Owned(s) = p.regex.replace_all(&out, regex::NoExpand(&p.replacement)) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// The value to record for a header: redacted, masked, cut to `max` bytes.
    pub fn header_value<'a>(&self, name: &str, value: &'a str, max: usize) -> Cow<'a, str> {
        if self.is_sensitive(name) {
            return Cow::Borrowed(REDACTED);
        }
        self.text(value, max)
    }

    /// Masked then cut to `max` bytes. Cutting happens after masking so a
    /// pattern never misses a match that straddles the cut. Borrows `value`
    /// when it is recorded as it is (the common case).
    pub fn text<'a>(&self, value: &'a str, max: usize) -> Cow<'a, str> {
        match self.mask(value) {
            Cow::Borrowed(s) => truncate(s, max),
            Cow::Owned(s) => Cow::Owned(truncate(&s, max).into_owned()),
        }
    }
}

/// Cuts `s` to at most `max` bytes (on a char boundary) and marks the cut.
pub fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let keep = max.saturating_sub(TRUNCATED.len());
    let mut end = keep.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + TRUNCATED.len());
    out.push_str(s.get(..end).unwrap_or(""));
    out.push_str(TRUNCATED);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAN: &str = r"\b(?:\d[ -]?){12,18}\d\b";

    fn redactor() -> Redactor {
        Redactor::new(
            vec!["authorization".into(), "cookie".into()],
            vec![
                MaskPattern::new("pan", PAN, "[masked:pan]".into()).unwrap(),
                MaskPattern::new("iban", r"\bDE\d{20}\b", "****".into()).unwrap(),
            ],
        )
    }

    #[test]
    fn sensitive_headers_are_redacted_whatever_their_case() {
        let r = redactor();
        assert_eq!(r.header_value("Authorization", "Bearer abc", 100), REDACTED);
        assert_eq!(r.header_value("cookie", "session=1", 100), REDACTED);
        assert_eq!(r.header_value("user-agent", "curl", 100), "curl");
    }

    #[test]
    fn card_numbers_are_masked_in_paths_and_values() {
        let r = redactor();
        let rows = [
            (
                "/pay?card=4111111111111111&x=1",
                "/pay?card=[masked:pan]&x=1",
            ),
            ("4111 1111 1111 1111", "[masked:pan]"),
            ("acct DE89370400440532013000 ok", "acct **** ok"),
            ("order 12345", "order 12345"),
        ];
        for (input, want) in rows {
            assert_eq!(r.text(input, 1000), want, "{input}");
        }
    }

    #[test]
    fn replacement_is_literal() {
        let p = MaskPattern::new("x", "a", "$0$1".into()).unwrap();
        let r = Redactor::new(vec![], vec![p]);
        assert_eq!(r.text("aba", 100), "$0$1b$0$1");
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary_after_masking() {
        let r = redactor();
        let v = format!("{}4111111111111111", "é".repeat(20));
        let out = r.text(&v, 30);
        assert!(out.len() <= 30, "{out}");
        assert!(out.ends_with(TRUNCATED));
        assert!(!out.contains("4111"));
        assert_eq!(truncate("short", 30), "short");
    }

    #[test]
    fn the_combined_precheck_masks_exactly_like_pattern_by_pattern() {
        // The second pattern matches what the first one writes: the
        // precheck must not skip values where only a later pass matches.
        let chained = || {
            vec![
                MaskPattern::new("a", "secret", "TOKEN".into()).unwrap(),
                MaskPattern::new("b", "TOK", "***".into()).unwrap(),
                MaskPattern::new("pan", PAN, "[masked:pan]".into()).unwrap(),
            ]
        };
        let with = Redactor::new(vec![], chained());
        assert!(with.any.is_some());
        let mut without = Redactor::new(vec![], chained());
        without.any = None;
        for input in [
            "my secret",
            "TOK",
            "plain",
            "",
            "card 4111 1111 1111 1111 secret",
            "8b49c44c-bd28-4939-b15e-641e999bf7d9",
        ] {
            assert_eq!(with.mask(input), without.mask(input), "{input}");
        }
        assert_eq!(with.mask("my secret"), "my ***EN");
    }

    #[test]
    fn patterns_that_cannot_be_combined_still_mask() {
        // The same group name twice: the alternation does not compile.
        let r = Redactor::new(
            vec![],
            vec![
                MaskPattern::new("a", "(?P<n>a+)", "A".into()).unwrap(),
                MaskPattern::new("b", "(?P<n>b+)", "B".into()).unwrap(),
            ],
        );
        assert!(r.any.is_none());
        assert_eq!(r.text("xaabbx", 100), "xABx");
    }

    #[test]
    fn unchanged_values_are_borrowed_not_copied() {
        let r = redactor();
        assert!(matches!(r.text("order 12345", 100), Cow::Borrowed(_)));
        assert!(matches!(
            r.header_value("cookie", "a=1", 100),
            Cow::Borrowed(REDACTED)
        ));
        assert!(matches!(r.text("4111111111111111", 100), Cow::Owned(_)));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(MaskPattern::new("x", "(", "y".into()).is_err());
    }
}
