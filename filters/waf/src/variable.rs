//! Rule targets: `ARGS`, `REQUEST_HEADERS:User-Agent`, `!ARGS:/^utm_/`,
//! `&TX:score`, `XML:/*`. What each variable holds is read by
//! [`crate::transaction`].

use regex::bytes::{Regex, RegexBuilder};

macro_rules! variables {
    ($($variant:ident => $name:literal, $collection:literal;)*) => {
        /// A SecLang variable (collections and single values).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Var { $($variant),* }

        impl Var {
            /// By its SecLang name, case-insensitively.
            pub fn from_name(name: &str) -> Option<Var> {
                $(if name.eq_ignore_ascii_case($name) { return Some(Var::$variant); })*
                None
            }

            pub fn name(self) -> &'static str {
                match self { $(Var::$variant => $name),* }
            }

            /// Collections take `:key` selectors; single values do not.
            pub fn is_collection(self) -> bool {
                match self { $(Var::$variant => $collection),* }
            }
        }
    };
}

variables! {
    Args => "ARGS", true;
    ArgsGet => "ARGS_GET", true;
    ArgsPost => "ARGS_POST", true;
    ArgsNames => "ARGS_NAMES", true;
    ArgsGetNames => "ARGS_GET_NAMES", true;
    ArgsPostNames => "ARGS_POST_NAMES", true;
    ArgsCombinedSize => "ARGS_COMBINED_SIZE", false;
    RequestHeaders => "REQUEST_HEADERS", true;
    RequestHeadersNames => "REQUEST_HEADERS_NAMES", true;
    RequestCookies => "REQUEST_COOKIES", true;
    RequestCookiesNames => "REQUEST_COOKIES_NAMES", true;
    RequestFilename => "REQUEST_FILENAME", false;
    RequestBasename => "REQUEST_BASENAME", false;
    RequestUri => "REQUEST_URI", false;
    RequestUriRaw => "REQUEST_URI_RAW", false;
    RequestLine => "REQUEST_LINE", false;
    RequestMethod => "REQUEST_METHOD", false;
    RequestProtocol => "REQUEST_PROTOCOL", false;
    QueryString => "QUERY_STRING", false;
    RequestBody => "REQUEST_BODY", false;
    RequestBodyLength => "REQUEST_BODY_LENGTH", false;
    ReqbodyProcessor => "REQBODY_PROCESSOR", false;
    ReqbodyError => "REQBODY_ERROR", false;
    ReqbodyErrorMsg => "REQBODY_ERROR_MSG", false;
    ReqbodyProcessorError => "REQBODY_PROCESSOR_ERROR", false;
    InboundDataError => "INBOUND_DATA_ERROR", false;
    OutboundDataError => "OUTBOUND_DATA_ERROR", false;
    Files => "FILES", true;
    FilesNames => "FILES_NAMES", true;
    FilesSizes => "FILES_SIZES", true;
    FilesCombinedSize => "FILES_COMBINED_SIZE", false;
    MultipartPartHeaders => "MULTIPART_PART_HEADERS", true;
    MultipartFilename => "MULTIPART_FILENAME", false;
    MultipartName => "MULTIPART_NAME", false;
    MultipartStrictError => "MULTIPART_STRICT_ERROR", false;
    MultipartUnmatchedBoundary => "MULTIPART_UNMATCHED_BOUNDARY", false;
    MultipartBoundaryQuoted => "MULTIPART_BOUNDARY_QUOTED", false;
    MultipartBoundaryWhitespace => "MULTIPART_BOUNDARY_WHITESPACE", false;
    MultipartDataBefore => "MULTIPART_DATA_BEFORE", false;
    MultipartDataAfter => "MULTIPART_DATA_AFTER", false;
    MultipartHeaderFolding => "MULTIPART_HEADER_FOLDING", false;
    MultipartLfLine => "MULTIPART_LF_LINE", false;
    MultipartCrlfLfLines => "MULTIPART_CRLF_LF_LINES", false;
    MultipartMissingSemicolon => "MULTIPART_MISSING_SEMICOLON", false;
    MultipartInvalidQuoting => "MULTIPART_INVALID_QUOTING", false;
    MultipartInvalidPart => "MULTIPART_INVALID_PART", false;
    MultipartInvalidHeaderFolding => "MULTIPART_INVALID_HEADER_FOLDING", false;
    MultipartFileLimitExceeded => "MULTIPART_FILE_LIMIT_EXCEEDED", false;
    Xml => "XML", true;
    Tx => "TX", true;
    Ip => "IP", true;
    Global => "GLOBAL", true;
    Session => "SESSION", true;
    User => "USER", true;
    Resource => "RESOURCE", true;
    Env => "ENV", true;
    MatchedVar => "MATCHED_VAR", false;
    MatchedVarName => "MATCHED_VAR_NAME", false;
    MatchedVars => "MATCHED_VARS", true;
    MatchedVarsNames => "MATCHED_VARS_NAMES", true;
    RemoteAddr => "REMOTE_ADDR", false;
    RemotePort => "REMOTE_PORT", false;
    ServerAddr => "SERVER_ADDR", false;
    ServerPort => "SERVER_PORT", false;
    ServerName => "SERVER_NAME", false;
    UniqueId => "UNIQUE_ID", false;
    ResponseStatus => "RESPONSE_STATUS", false;
    ResponseProtocol => "RESPONSE_PROTOCOL", false;
    ResponseHeaders => "RESPONSE_HEADERS", true;
    ResponseHeadersNames => "RESPONSE_HEADERS_NAMES", true;
    ResponseBody => "RESPONSE_BODY", false;
    ResponseContentType => "RESPONSE_CONTENT_TYPE", false;
    ResponseContentLength => "RESPONSE_CONTENT_LENGTH", false;
    HighestSeverity => "HIGHEST_SEVERITY", false;
    StatusLine => "STATUS_LINE", false;
    FullRequest => "FULL_REQUEST", false;
    FullRequestLength => "FULL_REQUEST_LENGTH", false;
    TimeEpoch => "TIME_EPOCH", false;
}

/// How a target narrows a collection.
#[derive(Debug, Clone)]
pub enum Selector {
    All,
    /// Case-insensitive key (stored lower-cased), or an XPath for `XML`.
    Key(String),
    Regex(Regex),
}

impl Selector {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => key.eq_ignore_ascii_case(k.as_bytes()),
            Selector::Regex(re) => re.is_match(key),
        }
    }
}

/// One entry of a rule's target list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub var: Var,
    pub selector: Selector,
    /// `&VAR`: the number of values instead of the values.
    pub count: bool,
    /// `!VAR:key`: removes matching values of `var` from the other targets.
    pub exclude: bool,
}

/// Selectors are equal when they select alike (a regex by its pattern).
impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, Selector::All) => true,
            (Selector::Key(a), Selector::Key(b)) => a == b,
            (Selector::Regex(a), Selector::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Selector {}

/// Parses a `|`-separated target list (`ARGS|!ARGS:foo|REQUEST_HEADERS:/^x-/`).
pub fn parse_targets(text: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for item in split_targets(text)? {
        targets.push(parse_target(&item)?);
    }
    if targets.is_empty() {
        return Err("no variables".to_string());
    }
    Ok(targets)
}

/// Splits at `|` outside `/regex/` and quoted selectors.
fn split_targets(text: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => {
                items.push(std::mem::take(&mut current));
            }
            ':' if current
                .trim_start_matches(['!', '&'])
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                current.push(':');
                let quote = match chars.peek() {
                    Some('\'') => Some('\''),
                    Some('/') if !current.starts_with("XML") && !current.starts_with("!XML") => {
                        Some('/')
                    }
                    _ => None,
                };
                if let Some(q) = quote {
                    current.push(q);
                    chars.next();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        current.push(c);
                        if c == '\\' {
                            if let Some(next) = chars.next() {
                                current.push(next);
                            }
                        } else if c == q {
                            closed = true;
                            break;
                        }
                    }
                    if !closed {
                        return Err(format!("unterminated selector in `{text}`"));
                    }
                }
            }
            _ => current.push(c),
        }
    }
    items.push(current);
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

fn parse_target(item: &str) -> Result<Target, String> {
    let mut rest = item;
    let mut exclude = false;
    let mut count = false;
    if let Some(r) = rest.strip_prefix('!') {
        exclude = true;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('&') {
        count = true;
        rest = r;
    }
    let (name, selector) = match rest.find(':') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let var = Var::from_name(name).ok_or_else(|| format!("unknown variable `{name}`"))?;
    let selector = match selector {
        None | Some("") => Selector::All,
        Some(_) if !var.is_collection() => {
            return Err(format!("variable `{name}` takes no selector"));
        }
        Some(s) if var == Var::Xml => {
            if s != "/*" && s != "//@*" {
                return Err(format!(
                    "XML:{s}: only the XPath selectors /* (text) and //@* (attributes) are supported"
                ));
            }
            Selector::Key(s.to_string())
        }
        Some(s) => {
            let s = s
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .unwrap_or(s);
            match s.strip_prefix('/').and_then(|s| s.strip_suffix('/')) {
                Some(pattern) if s.len() >= 2 => Selector::Regex(selector_regex(pattern)?),
                _ => Selector::Key(s.to_ascii_lowercase()),
            }
        }
    };
    if exclude && count {
        return Err(format!("`{item}`: `!` and `&` cannot be combined"));
    }
    if exclude && matches!(selector, Selector::All) {
        return Err(format!("`{item}`: an exclusion needs a key or /regex/"));
    }
    Ok(Target {
        var,
        selector,
        count,
        exclude,
    })
}

/// Key selectors match case-insensitively, as ModSecurity's do.
fn selector_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad selector regex /{pattern}/: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(t: &Target) -> String {
        let sel = match &t.selector {
            Selector::All => String::new(),
            Selector::Key(k) => format!(":{k}"),
            Selector::Regex(r) => format!(":/{}/", r.as_str()),
        };
        format!(
            "{}{}{}{}",
            if t.exclude { "!" } else { "" },
            if t.count { "&" } else { "" },
            t.var.name(),
            sel
        )
    }

    #[test]
    fn parses_keys_regexes_counts_and_exclusions() {
        let targets = parse_targets(
            "REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|&ARGS:Foo|REQUEST_HEADERS:User-Agent|XML:/*|XML://@*",
        )
        .unwrap();
        let described: Vec<_> = targets.iter().map(describe).collect();
        assert_eq!(
            described,
            [
                "REQUEST_COOKIES",
                "!REQUEST_COOKIES:/__utm/",
                "&ARGS:foo",
                "REQUEST_HEADERS:user-agent",
                "XML:/*",
                "XML://@*"
            ]
        );
    }

    #[test]
    fn a_pipe_inside_a_regex_selector_does_not_split() {
        let targets = parse_targets("ARGS:/^(?:a|b)$/|ARGS_NAMES").unwrap();
        assert_eq!(targets.len(), 2);
        assert!(targets[0].selector.matches(b"B"));
        assert!(!targets[0].selector.matches(b"c"));
    }

    #[test]
    fn unknown_variables_and_selectors_on_scalars_are_errors() {
        assert!(parse_targets("ARGZ")
            .unwrap_err()
            .contains("unknown variable `ARGZ`"));
        assert!(parse_targets("REQUEST_METHOD:x")
            .unwrap_err()
            .contains("takes no selector"));
        assert!(parse_targets("!ARGS").is_err());
    }

    #[test]
    fn quoted_selector_is_unquoted() {
        let t = parse_targets("ARGS:'a|b'").unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0].selector.matches(b"A|B"));
    }
}
