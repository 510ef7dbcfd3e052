//! Istio-style matching of callers: principal and namespace patterns, and
//! trust domains with aliases (Istio AuthorizationPolicy semantics, §7).
//!
//! A pattern is exact (`cluster.local/ns/bank-a/sa/api`), a prefix
//! (`cluster.local/ns/bank-a/*`), a suffix (`*/sa/api`) or any (`*`).
//! Principals are written as in Istio, without `spiffe://`; a pattern that
//! starts with `spiffe://` is accepted and the scheme dropped. A trust-domain
//! alias makes a caller from `old.local` match a principal written for the
//! primary domain, as Istio's `trustDomainAliases` do.
//!
//! ```
//! use meshward_shared::principal::{PrincipalPattern, TrustDomains};
//! use meshward_shared::spiffe::SpiffeId;
//! let tds = TrustDomains::new("cluster.local", &["old.local"]).unwrap();
//! let p = PrincipalPattern::parse("cluster.local/ns/bank-a/*").unwrap();
//! let caller = SpiffeId::parse("spiffe://old.local/ns/bank-a/sa/api").unwrap();
//! assert!(p.matches(&caller, &tds));
//! ```

use crate::spiffe::{self, SpiffeId, SpiffeIdError, SCHEME_PREFIX};
use std::fmt;

/// Why a pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// The pattern is empty.
    Empty,
    /// `*` somewhere other than the start or the end, or at both ends.
    MisplacedWildcard,
    /// An exact principal that is not a valid SPIFFE ID (without scheme).
    InvalidSpiffeId(SpiffeIdError),
    /// A namespace that is not a valid SPIFFE path segment.
    InvalidNamespace,
    /// A trust domain that breaks the SPIFFE rules.
    InvalidTrustDomain(SpiffeIdError),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("pattern is empty"),
            PatternError::MisplacedWildcard => f.write_str(
                "`*` is allowed only as the whole pattern, its first or its last character",
            ),
            PatternError::InvalidSpiffeId(e) => write!(f, "not a valid SPIFFE ID: {e}"),
            PatternError::InvalidNamespace => {
                f.write_str("namespace characters are limited to letters, digits, `.`, `-` and `_`")
            }
            PatternError::InvalidTrustDomain(e) => write!(f, "not a valid trust domain: {e}"),
        }
    }
}

impl std::error::Error for PatternError {}

/// An exact / prefix / suffix / any string pattern, as Istio's StringMatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Any,
}

impl Pattern {
    /// Parses `exact`, `prefix*`, `*suffix` or `*`.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s == "*" {
            return Ok(Pattern::Any);
        }
        let stars = s.matches('*').count();
        if stars == 0 {
            return Ok(Pattern::Exact(s.to_string()));
        }
        if stars == 1 {
            if let Some(prefix) = s.strip_suffix('*') {
                return Ok(Pattern::Prefix(prefix.to_string()));
            }
            if let Some(suffix) = s.strip_prefix('*') {
                return Ok(Pattern::Suffix(suffix.to_string()));
            }
        }
        Err(PatternError::MisplacedWildcard)
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(e) => s == e,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
            Pattern::Suffix(p) => s.ends_with(p.as_str()),
            Pattern::Any => true,
        }
    }
}

/// The trust domains a mesh accepts: the primary and its aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomains {
    primary: String,
    aliases: Vec<String>,
}

impl TrustDomains {
    /// Validates each name per the SPIFFE rules (lowercase only).
    pub fn new(primary: &str, aliases: &[&str]) -> Result<TrustDomains, PatternError> {
        spiffe::validate_trust_domain(primary).map_err(PatternError::InvalidTrustDomain)?;
        for alias in aliases {
            spiffe::validate_trust_domain(alias).map_err(PatternError::InvalidTrustDomain)?;
        }
        Ok(TrustDomains {
            primary: primary.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        })
    }

    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// Whether `td` is the primary domain or one of its aliases. Exact,
    /// case-sensitive: a valid SPIFFE trust domain is lowercase already.
    pub fn contains(&self, td: &str) -> bool {
        self.primary == td || self.aliases.iter().any(|a| a == td)
    }
}

/// A principal pattern (Istio `principals` / `notPrincipals` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalPattern {
    pattern: Pattern,
}

impl PrincipalPattern {
    /// Parses a pattern; an exact one must be a valid SPIFFE ID once
    /// `spiffe://` is put in front of it.
    pub fn parse(s: &str) -> Result<PrincipalPattern, PatternError> {
        let bare = s.strip_prefix(SCHEME_PREFIX).unwrap_or(s);
        let pattern = Pattern::parse(bare)?;
        if let Pattern::Exact(exact) = &pattern {
            SpiffeId::parse(&format!("{SCHEME_PREFIX}{exact}"))
                .map_err(PatternError::InvalidSpiffeId)?;
        }
        Ok(PrincipalPattern { pattern })
    }

    /// Whether `id` matches, directly or through a trust-domain alias: a
    /// caller from an alias domain is also matched as if it were in the
    /// primary domain, and a caller from the primary as if in each alias.
    pub fn matches(&self, id: &SpiffeId, tds: &TrustDomains) -> bool {
        let bare = id.without_scheme();
        if self.pattern.matches(bare) {
            return true;
        }
        let td = id.trust_domain();
        if !tds.contains(td) {
            return false;
        }
        let path = id.path();
        std::iter::once(tds.primary.as_str())
            .chain(tds.aliases.iter().map(String::as_str))
            .filter(|other| *other != td)
            .any(|other| {
                let mut s = String::with_capacity(other.len() + path.len());
                s.push_str(other);
                s.push_str(path);
                self.pattern.matches(&s)
            })
    }
}

/// A namespace pattern (Istio `namespaces` entry), matched against the
/// namespace of an Istio-style SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePattern {
    pattern: Pattern,
}

impl NamespacePattern {
    pub fn parse(s: &str) -> Result<NamespacePattern, PatternError> {
        let pattern = Pattern::parse(s)?;
        let literal = match &pattern {
            Pattern::Exact(t) | Pattern::Prefix(t) | Pattern::Suffix(t) => t.as_str(),
            Pattern::Any => "",
        };
        if !literal
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(PatternError::InvalidNamespace);
        }
        Ok(NamespacePattern { pattern })
    }

    /// An ID without an Istio namespace matches no namespace pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        id.namespace().is_some_and(|ns| self.pattern.matches(ns))
    }

    pub fn matches_name(&self, ns: &str) -> bool {
        self.pattern.matches(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn tds() -> TrustDomains {
        TrustDomains::new("cluster.local", &["old.local"]).unwrap()
    }

    #[test]
    fn string_patterns_match_as_istio_does() {
        let rows: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc", "ABC", false),
            ("ab*", "abcd", true),
            ("ab*", "ab", true),
            ("ab*", "a", false),
            ("*cd", "abcd", true),
            ("*cd", "cdx", false),
            ("*", "", true),
            ("*", "anything", true),
        ];
        for (pattern, s, want) in rows {
            assert_eq!(
                Pattern::parse(pattern).unwrap().matches(s),
                *want,
                "{pattern} vs {s}"
            );
        }
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        for bad in ["a*b", "*a*", "**", "a**", "**a"] {
            assert_eq!(
                Pattern::parse(bad),
                Err(PatternError::MisplacedWildcard),
                "{bad}"
            );
        }
    }

    #[test]
    fn principal_patterns_match_exact_prefix_suffix_and_any() {
        let t = tds();
        let api = id("spiffe://cluster.local/ns/bank-a/sa/api");
        let rows: &[(&str, bool)] = &[
            ("cluster.local/ns/bank-a/sa/api", true),
            ("spiffe://cluster.local/ns/bank-a/sa/api", true),
            ("cluster.local/ns/bank-a/sa/auth", false),
            ("cluster.local/ns/bank-a/*", true),
            ("cluster.local/ns/bank-b/*", false),
            ("*/sa/api", true),
            ("*/sa/auth", false),
            ("*", true),
        ];
        for (pattern, want) in rows {
            let p = PrincipalPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(&api, &t), *want, "{pattern}");
        }
    }

    #[test]
    fn a_prefix_pattern_does_not_match_a_longer_namespace_name_unless_written_so() {
        let t = tds();
        let p = PrincipalPattern::parse("cluster.local/ns/bank-a/*").unwrap();
        assert!(!p.matches(&id("spiffe://cluster.local/ns/bank-ab/sa/api"), &t));
        let loose = PrincipalPattern::parse("cluster.local/ns/bank-a*").unwrap();
        assert!(loose.matches(&id("spiffe://cluster.local/ns/bank-ab/sa/api"), &t));
    }

    #[test]
    fn trust_domain_aliases_match_both_ways() {
        let t = tds();
        let p = PrincipalPattern::parse("cluster.local/ns/bank-a/sa/api").unwrap();
        assert!(p.matches(&id("spiffe://old.local/ns/bank-a/sa/api"), &t));
        let p_old = PrincipalPattern::parse("old.local/ns/bank-a/sa/api").unwrap();
        assert!(p_old.matches(&id("spiffe://cluster.local/ns/bank-a/sa/api"), &t));
        // Not an alias: no match.
        assert!(!p.matches(&id("spiffe://evil.local/ns/bank-a/sa/api"), &t));
        // Case tricks cannot even form an ID; a pattern in upper case never matches.
        assert!(SpiffeId::parse("spiffe://Cluster.local/ns/bank-a/sa/api").is_err());
    }

    #[test]
    fn exact_principals_must_be_valid_spiffe_ids() {
        for (bad, rule) in [
            ("cluster.local/ns/../sa/api", "dot_segment"),
            ("cluster.local/ns//sa/api", "empty_segment"),
            ("Cluster.local/ns/a/sa/api", "trust_domain_char"),
            ("cluster.local/ns/a%2f/sa", "percent_encoding"),
        ] {
            match PrincipalPattern::parse(bad) {
                Err(PatternError::InvalidSpiffeId(e)) => assert_eq!(e.rule(), rule, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(
            PrincipalPattern::parse("a*b*"),
            Err(PatternError::MisplacedWildcard)
        );
    }

    #[test]
    fn namespace_patterns_match_the_istio_namespace() {
        let api = id("spiffe://cluster.local/ns/bank-a/sa/api");
        assert!(NamespacePattern::parse("bank-a").unwrap().matches(&api));
        assert!(NamespacePattern::parse("bank-*").unwrap().matches(&api));
        assert!(NamespacePattern::parse("*-a").unwrap().matches(&api));
        assert!(NamespacePattern::parse("*").unwrap().matches(&api));
        assert!(!NamespacePattern::parse("bank-b").unwrap().matches(&api));
        let no_ns = id("spiffe://cluster.local/workload");
        assert!(!NamespacePattern::parse("*").unwrap().matches(&no_ns));
        assert_eq!(
            NamespacePattern::parse("bank/a"),
            Err(PatternError::InvalidNamespace)
        );
        assert_eq!(NamespacePattern::parse(""), Err(PatternError::Empty));
    }

    #[test]
    fn trust_domains_reject_invalid_names_and_match_exactly() {
        assert!(TrustDomains::new("Cluster.local", &[]).is_err());
        assert!(TrustDomains::new("cluster.local", &["bad:1"]).is_err());
        let t = tds();
        assert!(t.contains("cluster.local"));
        assert!(t.contains("old.local"));
        assert!(!t.contains("CLUSTER.LOCAL"));
        assert!(!t.contains("cluster.local."));
    }
}
