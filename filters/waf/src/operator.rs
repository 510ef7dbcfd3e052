//! SecLang operators (`@rx`, `@pm`, `@detectSQLi`, …) with ModSecurity v3 semantics.
//!
//! An [`Operator`] is compiled once from the rule text (`compile`) and then evaluated against
//! already transformed values (`evaluate`). Negation (`!@rx`) is the engine's business, as is
//! macro expansion: when an argument holds `%{…}` macros the engine expands it per transaction
//! and hands the expanded text to `evaluate`.
//!
//! What ModSecurity does and this module does not (each is also noted where it applies):
//! - `@rx` uses Rust's `regex` crate, not PCRE: no lookaround, no backreferences, no atomic
//!   groups or possessive quantifiers (compile error), linear-time matching with no match
//!   limit to hit, and `^` also matches after a final newline in multi-line mode.
//! - Operators that need the network, a database or external programs (`@rbl`, `@geoLookup`,
//!   `@gsbLookup`, `@inspectFile`, `@fuzzyHash`, `@validateDTD`/`@validateSchema`, …) and the
//!   rarely used `@verifyCC`/`@verifySSN`/… are refused at compile time with a clear message.
//! - Arguments ModSecurity silently half-accepts (a `@validateByteRange` piece that is not a
//!   number, an `@ipMatch` entry that is not an address) are load errors here.

use crate::transform::hex_value;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use memchr::memmem;

use regex_automata::nfa::thompson::pikevm::{self, PikeVM};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::syntax;
use regex_automata::{hybrid, Input, MatchKind};
use std::cell::RefCell;
use std::rc::Rc;

/// Upper bound of one compiled regex program (the `regex` crate's `size_limit`). The largest CRS
/// v4.28 regexes (the PHP-function and shell-command lists of 932/933) need 256–512 KiB;
/// 4 MiB leaves room for local rules while a pathological pattern (`(a{1000}){1000}`) is a load
/// error instead of a VM's worth of memory.
const REGEX_SIZE_LIMIT: usize = 4 << 20;

/// The cache of each regex's lazy DFA. It grows as inputs visit new states and is cleared when
/// full (the search goes on, slower), so it caps a regex's memory on any input; a regex whose
/// smallest workable cache is larger (the biggest CRS regex needs 168 KiB) gets that instead.
/// Measured with CRS at paranoia level 4 on its whole regression corpus (`meshward bench-waf`):
/// 24.5 MiB of linear memory per VM after 10 000 requests at 128 KiB (about 4 MiB more at
/// 256 KiB, for about 5% speed), 44 MiB with the regex crate's own engines and caches.
const REGEX_DFA_SIZE_LIMIT: usize = 128 << 10;

/// At most this many literal prefixes feed a regex's prefilter (regex-automata
/// allows 250); a prefilter with more is rarely fast enough to use.
const PREFIX_LITERALS_LIMIT: usize = 32;

/// How many regexes compiled from macro-expanded arguments one `@rx` keeps (least recently used
/// goes first). ModSecurity compiles them afresh on every evaluation.
const MACRO_REGEX_CACHE: usize = 8;

/// How many capture groups ModSecurity's `capture` action keeps (TX.0 … TX.9).
const MAX_CAPTURES: usize = 10;

/// A compiled SecLang operator.
///
/// ```text
/// let op = Operator::compile("rx", "(?i)^get$", &|_| Err("no data files".into()))?;
/// assert!(op.evaluate(b"GET", None, None));
/// ```
pub struct Operator {
    name: &'static str,
    argument: String,
    macros: bool,
    kind: Kind,
}

enum Kind {
    Rx(Box<Rx>),
    Pm(PhraseSet),
    Str(StrOp, Option<Box<memmem::Finder<'static>>>),
    Num(NumOp, Option<i64>),
    Ip(IpSet),
    ByteRange([u64; 4]),
    UrlEncoding,
    Utf8Encoding,
    Sqli,
    Xss,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StrOp {
    StrEq,
    Contains,
    ContainsWord,
    BeginsWith,
    EndsWith,
    Within,
    StrMatch,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Operator {
    /// Compiles operator `name` (without `@`, case-insensitive) with `argument`, the rule text
    /// after the operator name and the whitespace that separates them. `data_file(name)` returns
    /// the contents of a data file named by `@pmFromFile`/`@ipMatchFromFile`; its error is
    /// returned as the load error. An unknown operator or a bad argument is an `Err` that names
    /// the operator.
    pub fn compile(
        name: &str,
        argument: &str,
        data_file: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<Operator, String> {
        let lower = name.to_ascii_lowercase();
        let has_macro_text = contains_macro(argument);
        let (canonical, kind, expands) = match lower.as_str() {
            "rx" => (
                "Rx",
                Kind::Rx(Box::new(Rx::new(argument, has_macro_text)?)),
                true,
            ),
            "pm" => (
                "Pm",
                Kind::Pm(PhraseSet::from_pm_argument(argument)?),
                false,
            ),
            "pmfromfile" | "pmf" => {
                let set = PhraseSet::from_files(name, argument, data_file)?;
                let canonical = if lower == "pmf" {
                    "PmFromF"
                } else {
                    "PmFromFile"
                };
                (canonical, Kind::Pm(set), false)
            }
            "streq" => str_op("StrEq", StrOp::StrEq, argument, has_macro_text),
            "contains" => str_op("Contains", StrOp::Contains, argument, has_macro_text),
            "containsword" => str_op(
                "ContainsWord",
                StrOp::ContainsWord,
                argument,
                has_macro_text,
            ),
            "beginswith" => str_op("BeginsWith", StrOp::BeginsWith, argument, has_macro_text),
            "endswith" => str_op("EndsWith", StrOp::EndsWith, argument, has_macro_text),
            "within" => str_op("Within", StrOp::Within, argument, has_macro_text),
            "strmatch" => str_op("StrMatch", StrOp::StrMatch, argument, has_macro_text),
            "eq" => num_op("Eq", NumOp::Eq, argument, has_macro_text),
            "ge" => num_op("Ge", NumOp::Ge, argument, has_macro_text),
            "gt" => num_op("Gt", NumOp::Gt, argument, has_macro_text),
            "le" => num_op("Le", NumOp::Le, argument, has_macro_text),
            "lt" => num_op("Lt", NumOp::Lt, argument, has_macro_text),
            "ipmatch" => {
                let mut set = IpSet::default();
                set.add_list(argument)
                    .map_err(|e| format!("@ipMatch: {e} in {argument:?}"))?;
                ("IpMatch", Kind::Ip(set), false)
            }
            "ipmatchfromfile" | "ipmatchf" => {
                if argument.trim().is_empty() {
                    return Err(format!("@{name}: needs a file name"));
                }
                let mut set = IpSet::default();
                for file in argument.split_ascii_whitespace() {
                    let text = data_file(file).map_err(|e| format!("@{name}: {file}: {e}"))?;
                    for (n, line) in text.lines().enumerate() {
                        let line = line.split('#').next().unwrap_or("");
                        set.add_list(line)
                            .map_err(|e| format!("@{name}: {file} line {}: {e}", n + 1))?;
                    }
                }
                ("IpMatchFromFile", Kind::Ip(set), false)
            }
            "validatebyterange" => (
                "ValidateByteRange",
                Kind::ByteRange(parse_byte_ranges(argument)?),
                false,
            ),
            "validateurlencoding" => ("ValidateUrlEncoding", Kind::UrlEncoding, false),
            "validateutf8encoding" => ("ValidateUtf8Encoding", Kind::Utf8Encoding, false),
            "detectsqli" => ("DetectSQLi", Kind::Sqli, false),
            "detectxss" => ("DetectXSS", Kind::Xss, false),
            "unconditionalmatch" => ("UnconditionalMatch", Kind::Always, false),
            "nomatch" => ("NoMatch", Kind::Never, false),
            "rxglobal" | "rsub" | "rbl" | "geolookup" | "gsblookup" | "inspectfile"
            | "fuzzyhash" | "validatedtd" | "validateschema" | "validatehash" | "verifycc"
            | "verifycpf" | "verifyssn" | "verifysvnr" => {
                return Err(format!("operator @{name} is not supported by meshward"));
            }
            _ => return Err(format!("unknown operator @{name}")),
        };
        Ok(Operator {
            name: canonical,
            argument: argument.to_owned(),
            macros: expands && has_macro_text,
            kind,
        })
    }

    /// True when the argument contains `%{...}` macros that this operator expands at run time:
    /// the engine then expands it per transaction and passes it to [`Operator::evaluate`].
    pub fn has_macros(&self) -> bool {
        self.macros
    }

    /// The argument as written in the rule (for logs).
    pub fn argument(&self) -> &str {
        &self.argument
    }

    /// The operator's name as ModSecurity prints it in logs (`Rx`, `Pm`, `DetectSQLi`, …).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Evaluates the operator against one (already transformed) value.
    ///
    /// `expanded` is the argument after macro expansion when [`Operator::has_macros`] (the
    /// argument as written is used when it is `None`). When `captures` is given (the rule has the
    /// `capture` action) it is cleared and, on a match, filled ModSecurity-style: for `@rx`
    /// `[0]` is the whole match and `[1..=9]` the groups (a group that did not take part is
    /// empty); for `@pm`/`@pmFromFile` `[0]` is the phrase that matched; for `@detectSQLi` the
    /// libinjection fingerprint; for `@detectXSS`, `@within` and `@streq` the input; for
    /// `@contains`, `@containsWord`, `@beginsWith`, `@endsWith` and `@strmatch` the argument.
    /// The numeric, `@ipMatch` and `@validate*` operators capture nothing.
    pub fn evaluate(
        &self,
        input: &[u8],
        expanded: Option<&[u8]>,
        mut captures: Option<&mut Vec<Vec<u8>>>,
    ) -> bool {
        if let Some(c) = captures.as_deref_mut() {
            c.clear();
        }
        let param = match expanded {
            Some(e) if self.macros => e,
            _ => self.argument.as_bytes(),
        };
        match &self.kind {
            Kind::Rx(rx) => rx.evaluate(input, self.macros.then_some(param), captures),
            Kind::Pm(set) => set.evaluate(input, captures),
            Kind::Str(op, finder) => {
                let finder = if self.macros { None } else { finder.as_deref() };
                let matched = str_evaluate(*op, input, param, finder);
                if matched {
                    if let Some(c) = captures {
                        let part = match op {
                            StrOp::StrEq | StrOp::Within => input,
                            _ => param,
                        };
                        c.push(part.to_vec());
                    }
                }
                matched
            }
            Kind::Num(op, fixed) => {
                let right = match fixed {
                    Some(v) if !self.macros => *v,
                    _ => parse_operand(*op, param),
                };
                let left = parse_operand(*op, input);
                match op {
                    NumOp::Eq => left == right,
                    NumOp::Ge => left >= right,
                    NumOp::Gt => left > right,
                    NumOp::Le => left <= right,
                    NumOp::Lt => left < right,
                }
            }
            Kind::Ip(set) => set.contains(input),
            Kind::ByteRange(table) => input.iter().any(|&b| {
                table
                    .get(usize::from(b >> 6))
                    .is_none_or(|word| word & (1u64 << (b & 63)) == 0)
            }),
            Kind::UrlEncoding => !input.is_empty() && !url_encoding_is_valid(input),
            Kind::Utf8Encoding => !utf8_is_valid_modsec(input),
            Kind::Sqli => {
                let mut state =
                    libinjectionrs::SqliState::new(input, libinjectionrs::SqliFlags::FLAG_NONE);
                let found = state.detect();
                if found {
                    if let Some(c) = captures {
                        c.push(state.fingerprint_string().into_bytes());
                    }
                }
                found
            }
            Kind::Xss => {
                let found = libinjectionrs::detect_xss(input).is_injection();
                if found {
                    if let Some(c) = captures {
                        c.push(input.to_vec());
                    }
                }
                found
            }
            Kind::Always => true,
            Kind::Never => false,
        }
    }
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("argument", &self.argument)
            .field("macros", &self.macros)
            .finish()
    }
}

/// ModSecurity's parser turns `%{collection.key}` into a run-time string; plain `%` or `{` is
/// literal text.
fn contains_macro(argument: &str) -> bool {
    match argument.find("%{") {
        Some(start) => argument
            .get(start + 2..)
            .is_some_and(|rest| rest.contains('}')),
        None => false,
    }
}

fn str_op(
    canonical: &'static str,
    op: StrOp,
    argument: &str,
    macros: bool,
) -> (&'static str, Kind, bool) {
    // A prebuilt searcher for the operators that look for the argument inside the input.
    let finder = match op {
        StrOp::Contains | StrOp::ContainsWord | StrOp::StrMatch if !macros => Some(Box::new(
            memmem::Finder::new(argument.as_bytes()).into_owned(),
        )),
        _ => None,
    };
    (canonical, Kind::Str(op, finder), true)
}

fn num_op(
    canonical: &'static str,
    op: NumOp,
    argument: &str,
    macros: bool,
) -> (&'static str, Kind, bool) {
    let fixed = (!macros).then(|| parse_operand(op, argument.as_bytes()));
    (canonical, Kind::Num(op, fixed), true)
}

// ---------------------------------------------------------------------------------------------
// String operators (libmodsecurity src/operators/{str_eq,contains,…}.cc)
// ---------------------------------------------------------------------------------------------

fn str_evaluate(op: StrOp, input: &[u8], param: &[u8], finder: Option<&memmem::Finder>) -> bool {
    match op {
        StrOp::StrEq => input == param,
        StrOp::Contains | StrOp::StrMatch => match finder {
            Some(f) => f.find(input).is_some(),
            None => memmem::find(input, param).is_some(),
        },
        StrOp::ContainsWord => contains_word(input, param, finder),
        StrOp::BeginsWith => input.starts_with(param),
        StrOp::EndsWith => input.ends_with(param),
        // The input is looked for inside the argument; an empty input is always "within".
        StrOp::Within => input.is_empty() || memmem::find(param, input).is_some(),
    }
}

/// `@containsWord` as libmodsecurity v3 does it: the word must be bounded on each side by the
/// start/end of the input or by a byte that is not an ASCII letter (digits and `_` are
/// boundaries in v3). Overlapping occurrences are tried in turn.
fn contains_word(input: &[u8], word: &[u8], finder: Option<&memmem::Finder>) -> bool {
    if word.is_empty() {
        return true;
    }
    if input.is_empty() {
        return false;
    }
    let is_letter = |b: Option<&u8>| b.is_some_and(|c| c.is_ascii_alphabetic());
    let mut start = 0;
    while let Some(rest) = input.get(start..) {
        let found = match finder {
            Some(f) => f.find(rest),
            None => memmem::find(rest, word),
        };
        let Some(offset) = found else {
            return false;
        };
        let pos = start + offset;
        let before = pos.checked_sub(1).and_then(|i| input.get(i));
        let after = input.get(pos + word.len());
        if !is_letter(before) && !is_letter(after) {
            return true;
        }
        start = pos + 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Numeric operators (libmodsecurity src/operators/{eq,ge,gt,le,lt}.cc)
// ---------------------------------------------------------------------------------------------

/// The integer a C library call reads from `s`: leading whitespace, an optional sign, then
/// decimal digits; anything else ends the number. `None` when there are no digits at all.
/// Saturates like `strtoll`.
fn c_integer(s: &[u8]) -> Option<i64> {
    let mut it = s
        .iter()
        .copied()
        .skip_while(|&b| crate::transform::is_c_space(b))
        .peekable();
    let negative = match it.peek() {
        Some(b'-') => {
            it.next();
            true
        }
        Some(b'+') => {
            it.next();
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    let mut digits = false;
    for b in it {
        if !b.is_ascii_digit() {
            break;
        }
        digits = true;
        let d = i64::from(b - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(d)
        } else {
            value.saturating_mul(10).saturating_add(d)
        };
    }
    digits.then_some(value)
}

/// `@eq` parses both sides with `std::stoi` (no digits or outside `int` → 0); the ordering
/// operators use `atoll` (no digits → 0, saturating).
fn parse_operand(op: NumOp, s: &[u8]) -> i64 {
    let v = c_integer(s).unwrap_or(0);
    if op == NumOp::Eq && i32::try_from(v).is_err() {
        return 0;
    }
    v
}

// ---------------------------------------------------------------------------------------------
// @rx (libmodsecurity src/operators/rx.cc, src/utils/regex.cc)
// ---------------------------------------------------------------------------------------------

struct Rx {
    /// `None` when the argument is empty (always matches) or has macros.
    regex: Option<Pattern>,
    cache: Mutex<Vec<(Vec<u8>, Option<Pattern>)>>,
}

impl Rx {
    fn new(argument: &str, macros: bool) -> Result<Rx, String> {
        let regex = if macros || argument.is_empty() {
            None
        } else {
            Some(Pattern::new(argument.as_bytes()).map_err(|e| format!("@rx: {e}"))?)
        };
        Ok(Rx {
            regex,
            cache: Mutex::new(Vec::new()),
        })
    }

    fn evaluate(
        &self,
        input: &[u8],
        expanded: Option<&[u8]>,
        captures: Option<&mut Vec<Vec<u8>>>,
    ) -> bool {
        let Some(pattern) = expanded else {
            return match &self.regex {
                Some(re) => re.matches(input, captures),
                None => true,
            };
        };
        // An empty expansion compiles to `.*` in ModSecurity: it matches everything.
        if pattern.is_empty() {
            return true;
        }
        let mut cache = lock(&self.cache);
        let index = match cache.iter().position(|(p, _)| p.as_slice() == pattern) {
            Some(i) => i,
            None => {
                if cache.len() >= MACRO_REGEX_CACHE {
                    cache.remove(0);
                }
                // A pattern that does not compile is remembered as such and never matches
                // (ModSecurity logs "Error with regular expression" and returns false).
                cache.push((pattern.to_vec(), Pattern::new(pattern).ok()));
                cache.len() - 1
            }
        };
        // Most recently used last, so eviction takes the least recently used.
        if index + 1 != cache.len() {
            let entry = cache.remove(index);
            cache.push(entry);
        }
        match cache.last() {
            Some((_, Some(re))) => re.matches(input, captures),
            _ => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic cannot leave the cache half-updated in a way that matters (panic = abort in the
    // filter anyway), so a poisoned lock is simply taken over.
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A compiled `@rx`. Most inputs do not match, so a lazy DFA with a bounded
/// cache answers "does it match?" on its own: no capture engine, and no
/// per-regex engine caches sized to the NFA (which is what made a VM's memory
/// grow with every regex traffic exercised). The full regex, with capture
/// groups, is built the first time a match needs them.
struct Pattern {
    /// Names this pattern's capture engine in `ENGINES`.
    id: u64,
    source: String,
    dfa: hybrid::dfa::DFA,
    cache: Mutex<hybrid::dfa::Cache>,
}

/// Capture engines (a PikeVM over the NFA with its groups) built for matches
/// that capture, most recently used last. Bounded, so a VM's memory does not
/// grow with every capturing rule that ever matched; one evicted is rebuilt
/// on its next capturing match.
const CAPTURE_ENGINES: usize = 32;

type CaptureEngine = Rc<(PikeVM, RefCell<pikevm::Cache>)>;

thread_local! {
    static ENGINES: RefCell<Vec<(u64, Option<CaptureEngine>)>> = const { RefCell::new(Vec::new()) };
}

/// Pattern ids: looking an engine up compares a number, not the regex text
/// (CRS's are kilobytes long), and no copy of the text is kept.
static NEXT_PATTERN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The literal prefixes every match starts with, as regex-automata extracts
/// them for its own prefilters, but giving up sooner: CRS's large
/// alternations would otherwise cost a third of the VM's start-up in
/// literal extraction, for prefilters too large to be fast.
fn prefix_literals(
    hir: &regex_syntax::hir::Hir,
) -> Option<Vec<regex_syntax::hir::literal::Literal>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let mut extractor = Extractor::new();
    extractor
        .kind(ExtractKind::Prefix)
        .limit_total(PREFIX_LITERALS_LIMIT);
    let mut prefixes = extractor.extract(hir);
    prefixes.optimize_for_prefix_by_preference();
    prefixes.literals().map(<[_]>::to_vec)
}

impl Pattern {
    /// Compiles a SecLang regex the way libmodsecurity does with PCRE: `DOTALL | MULTILINE`,
    /// no UTF mode (so `.`, `\w`, `\s`, `\d`, `\b` and `(?i)` work on ASCII bytes), over bytes.
    fn new(pattern: &[u8]) -> Result<Pattern, String> {
        let source = pcre_bytes_to_pattern(pattern);
        let invalid = |e: &dyn std::fmt::Display| format!("invalid regular expression: {e}");
        let hir = syntax::parse_with(&source, &syntax_config()).map_err(|e| invalid(&e))?;
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .utf8(false)
                    .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                    .which_captures(WhichCaptures::None),
            )
            .build_from_hir(&hir)
            .map_err(|e| invalid(&e))?;
        // Literal prefixes let the search skip ahead, when the prefilter is
        // fast enough to be worth it (the regex crate decides the same way).
        let prefilter = prefix_literals(&hir)
            .and_then(|literals| Prefilter::new(MatchKind::LeftmostFirst, &literals))
            .filter(Prefilter::is_fast);
        let dfa = hybrid::dfa::DFA::builder()
            .configure(
                hybrid::dfa::DFA::config()
                    .cache_capacity(REGEX_DFA_SIZE_LIMIT)
                    // A regex whose smallest cache is larger gets that size.
                    .skip_cache_capacity_check(true)
                    .prefilter(prefilter),
            )
            .build_from_nfa(nfa)
            .map_err(|e| invalid(&e))?;
        let cache = Mutex::new(dfa.create_cache());
        let id = NEXT_PATTERN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Pattern {
            id,
            source,
            dfa,
            cache,
        })
    }

    fn capture_engine(&self) -> Option<CaptureEngine> {
        ENGINES.with(|engines| {
            let mut engines = engines.borrow_mut();
            if let Some(i) = engines.iter().position(|(id, _)| *id == self.id) {
                let entry = engines.remove(i);
                let engine = entry.1.clone();
                engines.push(entry);
                return engine;
            }
            let engine = PikeVM::builder()
                .syntax(syntax_config())
                .thompson(
                    thompson::Config::new()
                        .utf8(false)
                        .nfa_size_limit(Some(REGEX_SIZE_LIMIT)),
                )
                .build(&self.source)
                .ok()
                .map(|vm| {
                    let cache = RefCell::new(vm.create_cache());
                    Rc::new((vm, cache))
                });
            if engines.len() >= CAPTURE_ENGINES {
                engines.remove(0);
            }
            engines.push((self.id, engine.clone()));
            engine
        })
    }

    fn is_match(&self, input: &[u8]) -> bool {
        let found = match self.cache.try_lock() {
            Ok(mut cache) => self
                .dfa
                .try_search_fwd(&mut cache, &Input::new(input).earliest(true))
                .map(|m| m.is_some()),
            Err(_) => return self.search_groups(input).is_some(),
        };
        match found {
            Ok(found) => found,
            // The lazy DFA never gives up as configured; should it, the
            // capture engine answers.
            Err(_) => self.search_groups(input).is_some(),
        }
    }

    /// The leftmost match's group spans (0 = the whole match), up to TX.9.
    fn search_groups(&self, input: &[u8]) -> Option<Vec<Option<(usize, usize)>>> {
        let engine = self.capture_engine()?;
        let (vm, cache) = &*engine;
        let mut cache = cache.try_borrow_mut().ok()?;
        let mut caps = vm.create_captures();
        vm.captures(&mut cache, input, &mut caps);
        if !caps.is_match() {
            return None;
        }
        let groups = caps.group_len().min(MAX_CAPTURES);
        Some(
            (0..groups)
                .map(|i| caps.get_group(i).map(|s| (s.start, s.end)))
                .collect(),
        )
    }

    fn matches(&self, input: &[u8], captures: Option<&mut Vec<Vec<u8>>>) -> bool {
        if !self.is_match(input) {
            return false;
        }
        let Some(out) = captures else {
            return true;
        };
        let Some(groups) = self.search_groups(input) else {
            return false;
        };
        // PCRE reports groups up to the highest one that took part; the ones before it that did
        // not take part are left empty.
        let last = groups.iter().rposition(Option::is_some).unwrap_or(0);
        for span in groups.iter().take(last + 1) {
            out.push(
                span.and_then(|(start, end)| input.get(start..end))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default(),
            );
        }
        true
    }
}

/// PCRE as libmodsecurity calls it: no UTF mode (ASCII classes over bytes), DOTALL, MULTILINE.
fn syntax_config() -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
}

/// Rewrites a PCRE pattern (as libmodsecurity compiles it: no UTF mode) into the same regex for
/// Rust's `regex` with Unicode off. PCRE without UTF mode reads the pattern byte by byte:
/// - a non-ASCII character stands for its bytes (inside a class too, and a quantifier after it
///   repeats only its last byte), so each such byte is written `\xHH`; `\` before one is a
///   literal escape and is dropped;
/// - `\x{HH}` up to 0xFF is a byte, which Rust only reads that way as `\xHH`;
/// - `\xH` (one hex digit), `\x` (none) and octal `\0`, `\0o`, `\0oo` are bytes too.
///
/// Everything else is passed through for the regex parser to accept or reject.
fn pcre_bytes_to_pattern(pattern: &[u8]) -> String {
    let needs_rewrite = !pattern.is_ascii()
        || memmem::find(pattern, b"\\x").is_some()
        || memmem::find(pattern, b"\\0").is_some();
    if !needs_rewrite {
        return String::from_utf8_lossy(pattern).into_owned();
    }
    let byte = |out: &mut String, b: u32| out.push_str(&format!("\\x{b:02X}"));
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    while let Some(&b) = pattern.get(i) {
        if b >= 0x80 {
            byte(&mut out, u32::from(b));
            i += 1;
            continue;
        }
        if b != b'\\' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let rest = pattern.get(i + 1..).unwrap_or_default();
        match rest.first() {
            None => {
                out.push('\\');
                i += 1;
            }
            Some(&n) if n >= 0x80 => {
                byte(&mut out, u32::from(n));
                i += 2;
            }
            Some(b'x') => {
                let after = rest.get(1..).unwrap_or_default();
                if after.first() == Some(&b'{') {
                    let digits = after.get(1..).unwrap_or_default();
                    let close = digits.iter().position(|&c| c == b'}');
                    let value = close.and_then(|c| hex_number(digits.get(..c)?));
                    match (close, value) {
                        (Some(c), Some(v)) if v <= 0xFF => {
                            byte(&mut out, v);
                            // `\x{` + digits + `}`
                            i += 3 + c + 1;
                        }
                        _ => {
                            out.push_str("\\x");
                            i += 2;
                        }
                    }
                } else {
                    let n = after
                        .iter()
                        .take(2)
                        .take_while(|c| c.is_ascii_hexdigit())
                        .count();
                    let v = after.get(..n).and_then(hex_number).unwrap_or(0);
                    byte(&mut out, v);
                    i += 2 + n;
                }
            }
            Some(b'0') => {
                let after = rest.get(1..).unwrap_or_default();
                let n = after
                    .iter()
                    .take(2)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .count();
                let v = after
                    .get(..n)
                    .unwrap_or_default()
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                byte(&mut out, v);
                i += 2 + n;
            }
            Some(&n) => {
                out.push('\\');
                out.push(char::from(n));
                i += 2;
            }
        }
    }
    out
}

/// A hex number of 1 to 6 digits.
fn hex_number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc * 16 + u32::from(hex_value(d)?)))
}

// ---------------------------------------------------------------------------------------------
// @pm / @pmFromFile (libmodsecurity src/operators/pm.cc, pm_from_file.cc)
// ---------------------------------------------------------------------------------------------

struct PhraseSet {
    /// `None` when there are no phrases (an empty data file): nothing matches.
    matcher: Option<AhoCorasick>,
    phrases: Vec<Vec<u8>>,
}

impl PhraseSet {
    fn new(phrases: Vec<Vec<u8>>, what: &str) -> Result<PhraseSet, String> {
        let matcher = if phrases.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    // The contiguous NFA is a fraction of a DFA's memory per
                    // VM and still scans with the same prefilters.
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(&phrases)
                    .map_err(|e| format!("{what}: {e}"))?,
            )
        };
        Ok(PhraseSet { matcher, phrases })
    }

    /// `@pm` phrases: the argument (optionally in double quotes) with Snort-style `|41 42|`
    /// hex bytes and `\:` `\;` `\\` `\"` escapes decoded, then split on whitespace.
    fn from_pm_argument(argument: &str) -> Result<PhraseSet, String> {
        let content = parse_pm_content(argument.as_bytes());
        let phrases: Vec<Vec<u8>> = content
            .split(|b| b.is_ascii_whitespace() || *b == b'\x0b')
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if phrases.is_empty() {
            return Err("@pm: needs at least one phrase".to_owned());
        }
        PhraseSet::new(phrases, "@pm")
    }

    /// `@pmFromFile` phrases: one per line of each named file (names separated by spaces, as in
    /// ModSecurity v2), taken as written; empty lines and lines whose first non-blank character
    /// is `#` are skipped.
    fn from_files(
        name: &str,
        argument: &str,
        data_file: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<PhraseSet, String> {
        let mut phrases = Vec::new();
        let mut files = 0;
        for file in argument.split_ascii_whitespace() {
            files += 1;
            let text = data_file(file).map_err(|e| format!("@{name}: {file}: {e}"))?;
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                phrases.push(line.as_bytes().to_vec());
            }
        }
        if files == 0 {
            return Err(format!("@{name}: needs a file name"));
        }
        PhraseSet::new(phrases, &format!("@{name}"))
    }

    fn evaluate(&self, input: &[u8], captures: Option<&mut Vec<Vec<u8>>>) -> bool {
        let Some(matcher) = &self.matcher else {
            return false;
        };
        let Some(out) = captures else {
            return matcher.is_match(input);
        };
        // The first phrase to end in the input, as ModSecurity's Aho-Corasick reports it; TX.0
        // is the phrase as written in the rule or file.
        match matcher.find(input) {
            Some(m) => {
                let phrase = self
                    .phrases
                    .get(m.pattern().as_usize())
                    .cloned()
                    .unwrap_or_default();
                out.push(phrase);
                true
            }
            None => false,
        }
    }
}

/// libmodsecurity's `parse_pm_content`: strips one pair of surrounding double quotes, decodes
/// `|hex|` runs and the escapes `\:` `\;` `\\` `\"`. Anything it cannot decode makes it fall
/// back to the argument as written.
fn parse_pm_content(argument: &[u8]) -> Vec<u8> {
    let Some(start) = argument.iter().position(|&b| b != b' ' && b != b'\t') else {
        return argument.to_vec();
    };
    let mut content = argument.get(start..).unwrap_or_default();
    if content.len() >= 2 && content.first() == Some(&b'"') && content.last() == Some(&b'"') {
        content = content.get(1..content.len() - 1).unwrap_or_default();
    }
    if content.is_empty() {
        return argument.to_vec();
    }
    let mut out = Vec::with_capacity(content.len());
    let mut binary = false;
    let mut escaped = false;
    let mut high: Option<u8> = None;
    for &b in content {
        if b == b'|' {
            binary = !binary;
        } else if !escaped && b == b'\\' {
            escaped = true;
        } else if binary {
            let Some(nibble) = hex_value(b) else {
                return argument.to_vec();
            };
            match high.take() {
                Some(h) => out.push((h << 4) | nibble),
                None => high = Some(nibble),
            }
        } else if escaped {
            if !matches!(b, b':' | b';' | b'\\' | b'"') {
                return argument.to_vec();
            }
            out.push(b);
            escaped = false;
        } else {
            out.push(b);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// @ipMatch / @ipMatchFromFile (libmodsecurity src/utils/msc_tree.cc)
// ---------------------------------------------------------------------------------------------

/// Networks grouped by prefix length: a lookup masks the address once per length present.
#[derive(Default)]
struct IpSet {
    v4: Vec<(u32, HashSet<u32>)>,
    v6: Vec<(u32, HashSet<u128>)>,
}

impl IpSet {
    /// Adds a comma-separated list of addresses and CIDR networks (`10.0.0.0/8`, `::1`,
    /// `2001:db8::/32`). Like ModSecurity, an entry with a `:` is IPv6. Blanks around entries
    /// and empty entries are ignored.
    fn add_list(&mut self, list: &str) -> Result<(), String> {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, prefix) = match entry.split_once('/') {
                Some((a, p)) => (a.trim(), Some(p.trim())),
                None => (entry, None),
            };
            let bad = || format!("invalid IP address or network {entry:?}");
            let prefix = match prefix {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    Some(p.parse::<u32>().map_err(|_| bad())?)
                }
                Some(_) => return Err(bad()),
                None => None,
            };
            if addr.contains(':') {
                let ip: Ipv6Addr = addr.parse().map_err(|_| bad())?;
                let len = prefix.unwrap_or(128);
                if len > 128 {
                    return Err(bad());
                }
                insert(&mut self.v6, len, u128::from(ip) & mask128(len));
            } else {
                let ip: Ipv4Addr = addr.parse().map_err(|_| bad())?;
                let len = prefix.unwrap_or(32);
                if len > 32 {
                    return Err(bad());
                }
                insert(&mut self.v4, len, u32::from(ip) & mask32(len));
            }
        }
        Ok(())
    }

    /// The input must be exactly an address (no port, no blanks); anything else is no match.
    fn contains(&self, input: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(input) else {
            return false;
        };
        if text.contains(':') {
            match text.parse::<Ipv6Addr>() {
                Ok(ip) => {
                    let ip = u128::from(ip);
                    self.v6
                        .iter()
                        .any(|(len, set)| set.contains(&(ip & mask128(*len))))
                }
                Err(_) => false,
            }
        } else {
            match text.parse::<Ipv4Addr>() {
                Ok(ip) => {
                    let ip = u32::from(ip);
                    self.v4
                        .iter()
                        .any(|(len, set)| set.contains(&(ip & mask32(*len))))
                }
                Err(_) => false,
            }
        }
    }
}

fn insert<T: std::hash::Hash + Eq>(groups: &mut Vec<(u32, HashSet<T>)>, len: u32, net: T) {
    match groups.iter_mut().find(|(l, _)| *l == len) {
        Some((_, set)) => {
            set.insert(net);
        }
        None => groups.push((len, HashSet::from([net]))),
    }
}

fn mask32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0)
}

fn mask128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len.min(128)).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// @validateByteRange, @validateUrlEncoding, @validateUtf8Encoding
// ---------------------------------------------------------------------------------------------

/// `"9,10,13,32-126,128-255"`: comma-separated bytes and inclusive ranges, each 0–255.
fn parse_byte_ranges(argument: &str) -> Result<[u64; 4], String> {
    let mut table = [0u64; 4];
    let mut any = false;
    let number = |s: &str| -> Result<u8, String> {
        s.trim().parse::<u8>().map_err(|_| {
            format!(
                "@validateByteRange: {:?} is not a byte value (0-255) in {argument:?}",
                s.trim()
            )
        })
    };
    for piece in argument.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (start, end) = match piece.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let v = number(piece)?;
                (v, v)
            }
        };
        if start > end {
            return Err(format!(
                "@validateByteRange: invalid range {start}-{end} in {argument:?}"
            ));
        }
        for b in start..=end {
            if let Some(word) = table.get_mut(usize::from(b >> 6)) {
                *word |= 1u64 << (b & 63);
            }
        }
        any = true;
    }
    if !any {
        return Err("@validateByteRange: needs at least one byte range".to_owned());
    }
    Ok(table)
}

/// True when every `%` starts a `%XX` with two hex digits (libmodsecurity
/// `validate_url_encoding`).
fn url_encoding_is_valid(input: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            match (input.get(i + 1), input.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// libmodsecurity's `detect_utf8_character` loop: a sequence that is truncated, has a bad
/// continuation byte, starts with a byte that cannot start one, is overlong, encodes a
/// surrogate (U+D800–U+DFFF), or starts with 0xF5–0xF7 is invalid. As in ModSecurity, a
/// four-byte sequence from F4 90 80 80 (above U+10FFFF) is not rejected.
fn utf8_is_valid_modsec(input: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        let rest = input.get(i..).unwrap_or_default();
        let cont = |n: usize| rest.get(n).is_some_and(|b| b & 0xC0 == 0x80);
        let low = |n: usize| u32::from(rest.get(n).copied().unwrap_or(0) & 0x3F);
        let (len, min, code) = if c & 0x80 == 0 {
            i += 1;
            continue;
        } else if c & 0xE0 == 0xC0 {
            if rest.len() < 2 || !cont(1) {
                return false;
            }
            (2, 0x80, (u32::from(c & 0x1F) << 6) | low(1))
        } else if c & 0xF0 == 0xE0 {
            if rest.len() < 3 || !cont(1) || !cont(2) {
                return false;
            }
            (
                3,
                0x800,
                (u32::from(c & 0x0F) << 12) | (low(1) << 6) | low(2),
            )
        } else if c & 0xF8 == 0xF0 {
            if c >= 0xF5 || rest.len() < 4 || !cont(1) || !cont(2) || !cont(3) {
                return false;
            }
            let code = (u32::from(c & 0x07) << 18) | (low(1) << 12) | (low(2) << 6) | low(3);
            (4, 0x10000, code)
        } else {
            return false;
        };
        if (0xD800..=0xDFFF).contains(&code) || code < min {
            return false;
        }
        i += len;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rules are shared by every request the VM handles (and across threads natively).
    const _: () = {
        fn send_and_sync<T: Send + Sync>() {}
        let _ = send_and_sync::<Operator>;
    };

    fn no_files(name: &str) -> Result<String, String> {
        Err(format!("no data file {name} in this test"))
    }

    fn op(name: &str, arg: &str) -> Operator {
        match Operator::compile(name, arg, &no_files) {
            Ok(o) => o,
            Err(e) => panic!("@{name} {arg:?} should compile: {e}"),
        }
    }

    /// Rows of (label, operator, argument, input, expected match).
    fn check(rows: &[(&str, &str, &str, &[u8], bool)]) {
        for (label, name, arg, input, want) in rows {
            let got = op(name, arg).evaluate(input, None, None);
            assert_eq!(
                got,
                *want,
                "{label}: @{name} {arg:?} on {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    fn captured(name: &str, arg: &str, input: &[u8]) -> Option<Vec<String>> {
        let mut caps = vec![b"stale".to_vec()];
        let matched = op(name, arg).evaluate(input, None, Some(&mut caps));
        matched.then(|| {
            caps.iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        })
    }

    #[test]
    #[rustfmt::skip]
    fn operator_names_are_case_insensitive_and_printed_as_modsecurity_does() {
        let rows = [
            ("rx", "Rx"),
            ("RX", "Rx"),
            ("pm", "Pm"),
            ("streq", "StrEq"),
            ("strEq", "StrEq"),
            ("contains", "Contains"),
            ("containsWord", "ContainsWord"),
            ("beginsWith", "BeginsWith"),
            ("endsWith", "EndsWith"),
            ("within", "Within"),
            ("strmatch", "StrMatch"),
            ("eq", "Eq"),
            ("ge", "Ge"),
            ("gt", "Gt"),
            ("le", "Le"),
            ("lt", "Lt"),
            ("ipMatch", "IpMatch"),
            ("validateUrlEncoding", "ValidateUrlEncoding"),
            ("validateUtf8Encoding", "ValidateUtf8Encoding"),
            ("detectSQLi", "DetectSQLi"),
            ("detectXSS", "DetectXSS"),
            ("unconditionalMatch", "UnconditionalMatch"),
            ("noMatch", "NoMatch"),
        ];
        for (name, canonical) in rows {
            let arg = match name {
                "ipMatch" => "127.0.0.1",
                _ => "1",
            };
            let o = op(name, arg);
            assert_eq!(o.name(), canonical, "@{name}");
            assert_eq!(o.argument(), arg);
        }
        assert_eq!(op("validateByteRange", "1-255").name(), "ValidateByteRange");
    }

    #[test]
    #[rustfmt::skip]
    fn unknown_or_unsupported_operators_and_bad_arguments_are_errors_naming_the_operator() {
        // (label, operator, argument, text the error must contain)
        let rows: &[(&str, &str, &str, &str)] = &[
            ("unknown operator", "frobnicate", "x", "unknown operator @frobnicate"),
            ("network operator", "rbl", "x", "@rbl is not supported"),
            ("credit cards", "verifyCC", "x", "@verifyCC is not supported"),
            ("lookbehind is not in Rust's regex", "rx", "(?<=a)b", "@rx: invalid regular expression"),
            ("unbalanced group", "rx", "(ab", "@rx: invalid regular expression"),
            ("regex over the size limit", "rx", "(a{1000}){1000}", "exceeded limit"),
            ("backreference", "rx", r"(a)\1", "@rx: invalid regular expression"),
            ("@pm without phrases", "pm", "   ", "@pm: needs at least one phrase"),
            ("address that is not one", "ipMatch", "10.0.0.300", "@ipMatch: invalid IP address"),
            ("IPv4 prefix over 32", "ipMatch", "10.0.0.0/100", "@ipMatch: invalid IP address"),
            ("byte over 255", "validateByteRange", "1-256", "@validateByteRange: \"256\" is not a byte"),
            ("reversed range", "validateByteRange", "50-40", "@validateByteRange: invalid range 50-40"),
            ("not a number", "validateByteRange", "xxx", "@validateByteRange: \"xxx\" is not a byte"),
            ("no ranges", "validateByteRange", ",", "@validateByteRange: needs at least one"),
            ("file that cannot be read", "pmFromFile", "missing.data", "@pmFromFile: missing.data: no data file"),
            ("no file named", "pmFromFile", "", "@pmFromFile: needs a file name"),
            ("ip file that cannot be read", "ipMatchFromFile", "missing.data", "@ipMatchFromFile: missing.data"),
        ];
        for (label, name, arg, needle) in rows {
            match Operator::compile(name, arg, &no_files) {
                Ok(_) => panic!("{label}: @{name} {arg:?} should not compile"),
                Err(e) => assert!(e.contains(needle), "{label}: error {e:?} should contain {needle:?}"),
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn rx_follows_modsecurity_reference_and_unit_tests() {
        check(&[
            ("substring", "rx", "test", b"qqtestqq", true),
            ("empty pattern matches empty input", "rx", "", b"", true),
            ("empty pattern matches anything", "rx", "", b"TestCase", true),
            ("no match on empty input", "rx", "TestCase", b"", false),
            ("absent", "rx", "ghij", b"abcdefghi", false),
            ("case-insensitive group with lazy quantifiers", "rx", r"(?i:(sleep\((\s*?)(\d*?)(\s*?)\)|benchmark\((.*?)\,(.*?)\)))", b"SELECT pg_sleep(10);", true),
            ("literal newline in pattern", "rx", "abc\ndef", b"abc\ndef", true),
            ("star matches empty", "rx", "([a-z]*)", b"", true),
            ("case-sensitive by default", "rx", "^get$", b"GET", false),
            ("inline (?i)", "rx", "(?i)^get$", b"GET", true),
            ("DOTALL: dot matches newline", "rx", "a.b", b"a\nb", true),
            ("MULTILINE: ^ after newline", "rx", "^b", b"a\nb", true),
            ("MULTILINE: $ before newline", "rx", "a$", b"a\nb", true),
            ("\\d is ASCII only", "rx", r"^\d$", "٣".as_bytes(), false),
            ("\\w is ASCII only", "rx", r"^\w+$", "é".as_bytes(), false),
            ("\\s is ASCII only", "rx", r"\s", "\u{a0}".as_bytes(), false),
            ("\\b at ASCII word edge", "rx", r"\bor\b", b"1 or 1", true),
            ("dot matches a non-UTF-8 byte", "rx", "^.$", b"\xff", true),
            ("byte escape matches raw byte", "rx", r"\xff", b"a\xffb", true),
            ("class of bytes", "rx", r"[\x80-\xff]", b"abc\xc3", true),
            ("(?i) is ASCII only", "rx", "(?i)é", "É".as_bytes(), false),
            ("non-ASCII literal is its bytes", "rx", "é", "café".as_bytes(), true),
            ("non-ASCII in a class is a set of bytes, as PCRE without UTF", "rx", "^[é]$", b"\xa9", true),
            ("escaped non-ASCII literal", "rx", "\\é", "é".as_bytes(), true),
            ("quoted escape", "rx", r#"\"a"#, b"\"a", true),
            ("braced byte escape (CRS 941 style)", "rx", r"[\x{bc}]", b"\xbc", true),
            ("braced byte range", "rx", r"^[\x7f-\x{ff}]+$", b"\x7f\xff", true),
            ("braced byte is not a code point", "rx", r"\x{e9}", "é".as_bytes(), false),
            ("one-digit hex escape", "rx", r"a\x9z", b"a\tz", true),
            ("octal NUL", "rx", r"a\0b", b"a\0b", true),
            ("octal escape", "rx", r"\012", b"\n", true),
            ("escaped backslash before x", "rx", r"\\x41", b"\\x41", true),
        ]);
    }

    /// (label, pattern, input, expected captures or `None` for no match)
    type CaptureRow<'a> = (&'a str, &'a str, &'a [u8], Option<&'a [&'a str]>);

    #[test]
    #[rustfmt::skip]
    fn rx_captures_whole_match_and_groups_like_tx_0_to_9() {
        let rows: &[CaptureRow] = &[
            ("two groups", "(abc)(def)", b"xabcdefx", Some(&["abcdef", "abc", "def"])),
            ("no groups", "b+", b"abbbc", Some(&["bbb"])),
            ("unset middle group is empty", "(a)(b?)(x)?(c)", b"ac", Some(&["ac", "a", "", "", "c"])),
            ("unset trailing groups are left out", "(a)(x)?", b"a", Some(&["a", "a"])),
            ("no match leaves captures empty", "z", b"abc", None),
            ("only TX.0-TX.9 are kept", "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)", b"abcdefghijk", Some(&["abcdefghijk", "a", "b", "c", "d", "e", "f", "g", "h", "i"])),
        ];
        for (label, pattern, input, want) in rows {
            let got = captured("rx", pattern, input);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{label}");
        }
        // A non-match clears what a previous rule left.
        let mut caps = vec![b"old".to_vec()];
        assert!(!op("rx", "z").evaluate(b"abc", None, Some(&mut caps)));
        assert!(caps.is_empty());
    }

    #[test]
    fn rx_with_macros_compiles_the_expanded_pattern_and_caches_it() {
        let o = op("rx", "^%{tx.allowed}$");
        assert!(o.has_macros());
        assert!(o.evaluate(b"GET", Some(b"(?:GET|POST)"), None));
        assert!(!o.evaluate(b"PUT", Some(b"(?:GET|POST)"), None));
        // Many distinct expansions: the cache stays bounded and results stay right.
        for i in 0..50 {
            let pattern = format!("^v{i}$");
            assert!(o.evaluate(format!("v{i}").as_bytes(), Some(pattern.as_bytes()), None));
            assert!(!o.evaluate(b"other", Some(pattern.as_bytes()), None));
        }
        assert!(
            lock(match &o.kind {
                Kind::Rx(rx) => &rx.cache,
                _ => unreachable!(),
            })
            .len()
                <= MACRO_REGEX_CACHE
        );
        // An expansion that is not a valid regex never matches; an empty one matches all.
        assert!(!o.evaluate(b"(", Some(b"("), None));
        assert!(o.evaluate(b"anything", Some(b""), None));
        // Non-UTF-8 bytes in the expansion are literal bytes.
        assert!(o.evaluate(b"a\xffb", Some(b"a\xffb"), None));
        let mut caps = Vec::new();
        assert!(o.evaluate(b"k=v", Some(b"(\\w)=(\\w)"), Some(&mut caps)));
        assert_eq!(caps, vec![b"k=v".to_vec(), b"k".to_vec(), b"v".to_vec()]);
    }

    #[test]
    #[rustfmt::skip]
    fn pm_matches_any_phrase_case_insensitively() {
        check(&[
            ("no match on empty input", "pm", "TestCase", b"", false),
            ("phrase at start", "pm", "abc", b"abcdefghi", true),
            ("phrase in middle", "pm", "def", b"abcdefghi", true),
            ("longer than input tail", "pm", "ghij", b"abcdefghi", false),
            ("any of several, start", "pm", "abc def ghi", b"abcxxxyyy", true),
            ("any of several, middle", "pm", "abc def ghi", b"xxxdefyyy", true),
            ("any of several, end", "pm", "abc def ghi", b"xxxyyyghi", true),
            ("none of several", "pm", "abc def ghi", b"xxxyyyzzz", false),
            ("ASCII case-insensitive", "pm", "gzip deflate", b"GZip", true),
            ("input case-insensitive", "pm", "DEFLATE", b"x-deflate", true),
            ("CRS 921-style punctuation phrases", "pm", "( )", b"a)", true),
            ("quoted argument", "pm", "\"abc def\"", b"xdefx", true),
            ("Snort hex bytes", "pm", "A|42|C", b"xabcx", true),
            ("hex byte NUL", "pm", "a|00|b", b"a\0b", true),
            ("escaped semicolon", "pm", "a\\;b", b"a;b", true),
            ("tabs separate phrases", "pm", "abc\tdef", b"def", true),
        ]);
    }

    #[test]
    fn pm_captures_the_phrase_that_ended_first_as_written() {
        assert_eq!(
            captured("pm", "Foo bar", b"xxBARxxfoo"),
            Some(vec!["bar".into()])
        );
        assert_eq!(
            captured("pm", "document.cookie", b"DOCUMENT.COOKIE"),
            Some(vec!["document.cookie".into()])
        );
        assert_eq!(captured("pm", "abc", b"xyz"), None);
    }

    #[test]
    #[rustfmt::skip]
    fn pm_from_file_reads_one_phrase_per_line_skipping_comments_and_blanks() {
        let files = |name: &str| -> Result<String, String> {
            match name {
                "words.data" => Ok(
                    "# comment\nabc\n\n  # indented comment\ndef\r\nghi\nxxx yyy zzz\n \n".into(),
                ),
                "more.data" => Ok("jkl".into()),
                "empty.data" => Ok("# nothing here\n".into()),
                other => Err(format!("{other}: not found")),
            }
        };
        let o = Operator::compile("pmFromFile", "words.data", &files).expect("compiles");
        assert_eq!(o.name(), "PmFromFile");
        let rows: &[(&str, &[u8], bool)] = &[
            ("no phrase", b"xxxyyyzzz", false),
            ("phrase at start", b"defxxxyyy", true),
            ("phrase in middle", b"xxxdefyyy", true),
            ("CRLF line end is not part of the phrase", b"xxxdef", true),
            ("phrase with spaces is one phrase", b"xxx yyy zzz", true),
            ("part of the phrase with spaces", b"xxx yyy", false),
            ("comment text is not a phrase", b"comment", false),
            ("case-insensitive", b"GHI", true),
        ];
        for (label, input, want) in rows {
            assert_eq!(o.evaluate(input, None, None), *want, "{label}");
        }
        let both = Operator::compile("pmf", "words.data more.data", &files).expect("compiles");
        assert_eq!(both.name(), "PmFromF");
        assert!(both.evaluate(b"JKL", None, None));
        let mut caps = Vec::new();
        assert!(both.evaluate(b"--XXX YYY ZZZ--", None, Some(&mut caps)));
        assert_eq!(caps, vec![b"xxx yyy zzz".to_vec()]);
        let empty = Operator::compile("pmFromFile", "empty.data", &files).expect("compiles");
        assert!(!empty.evaluate(b"anything", None, None));
        let err = Operator::compile("pmFromFile", "nope.data", &files).expect_err("load error");
        assert!(err.contains("nope.data: not found"), "{err}");
    }

    #[test]
    #[rustfmt::skip]
    fn string_operators_follow_modsecurity_unit_tests() {
        check(&[
            ("streq: empty equals empty", "streq", "", b"", true),
            ("streq: argument vs empty input", "streq", "TestCase", b"", false),
            ("streq: empty argument vs input", "streq", "", b"TestCase", false),
            ("streq: prefix is not equal", "streq", "abc", b"abcdefghi", false),
            ("streq: equal", "streq", "abcdefghi", b"abcdefghi", true),
            ("streq: case-sensitive", "streq", "POST", b"post", false),
            ("contains: empty in empty", "contains", "", b"", true),
            ("contains: not in empty", "contains", "TestCase", b"", false),
            ("contains: empty in anything", "contains", "", b"TestCase", true),
            ("contains: at end", "contains", "ghi", b"abcdefghi", true),
            ("contains: absent", "contains", "ghij", b"abcdefghi", false),
            ("contains: later occurrence", "contains", "hiding", b"hidinX<-not quite->hiding", true),
            ("containsWord: empty word", "containsWord", "", b"TestCase", true),
            ("containsWord: empty input", "containsWord", "TestCase", b"", false),
            ("containsWord: inside a word", "containsWord", "def", b"abcdefghi", false),
            ("containsWord: first word", "containsWord", "abc", b"abc def ghi", true),
            ("containsWord: middle word", "containsWord", "def", b"abc def ghi", true),
            ("containsWord: last word", "containsWord", "ghi", b"abc def ghi", true),
            ("containsWord: NUL is a boundary", "containsWord", "def", b"abc\0def ghi", true),
            ("containsWord: whole input", "containsWord", "x", b"x", true),
            ("containsWord: spaces around", "containsWord", "x", b" x ", true),
            ("containsWord: inside xyz", "containsWord", "y", b"xyz", false),
            ("containsWord: later occurrence", "containsWord", "hiding", b"hidingX<-no->hiding", true),
            ("containsWord: digits bound words in v3", "containsWord", "abc", b"1abc2", true),
            ("containsWord: an overlapping later occurrence is tried", "containsWord", "a-a", b"xa-a-a", true),
            ("beginsWith: empty/empty", "beginsWith", "", b"", true),
            ("beginsWith: longer than input", "beginsWith", "TestCase", b"", false),
            ("beginsWith: empty argument", "beginsWith", "", b"TestCase", true),
            ("beginsWith: equal", "beginsWith", "abcdef", b"abcdef", true),
            ("beginsWith: prefix", "beginsWith", "abcdef", b"abcdefghi", true),
            ("beginsWith: input too short", "beginsWith", "abcdef", b"abc", false),
            ("endsWith: empty/empty", "endsWith", "", b"", true),
            ("endsWith: not in empty", "endsWith", "TestCase", b"", false),
            ("endsWith: empty argument", "endsWith", "", b"TestCase", true),
            ("endsWith: start is not end", "endsWith", "abc", b"abcdefghi", false),
            ("endsWith: suffix", "endsWith", "ghi", b"abcdefghi", true),
            ("endsWith: after NUL", "endsWith", "ghi", b"abcdef\0ghi", true),
            ("within: empty/empty", "within", "", b"", true),
            ("within: empty input is always within", "within", "TestCase", b"", true),
            ("within: input not in empty argument", "within", "", b"TestCase", false),
            ("within: start", "within", "abcdefghi", b"abc", true),
            ("within: end", "within", "abcdefghi", b"ghi", true),
            ("within: overhang", "within", "abcdefghi", b"ghij", false),
            ("within: CRS methods list", "within", "GET HEAD POST OPTIONS", b"POST", true),
            ("within: substring of a list item", "within", "GET HEAD POST OPTIONS", b"GE", true),
            ("within: method not listed", "within", "GET HEAD POST OPTIONS", b"DELETE", false),
            ("strmatch: not in empty", "strmatch", "TestCase", b"", false),
            ("strmatch: start", "strmatch", "abc", b"abcdefghi", true),
            ("strmatch: end", "strmatch", "ghi", b"abcdefghi", true),
            ("strmatch: absent", "strmatch", "ghij", b"abcdefghi", false),
        ]);
    }

    #[test]
    fn string_operators_capture_the_matched_part() {
        assert_eq!(
            captured("contains", "-->", b"a-->b"),
            Some(vec!["-->".into()])
        );
        assert_eq!(
            captured("beginsWith", "GET", b"GET /"),
            Some(vec!["GET".into()])
        );
        assert_eq!(
            captured("endsWith", ".pdf", b"a.pdf"),
            Some(vec![".pdf".into()])
        );
        assert_eq!(
            captured("streq", "POST", b"POST"),
            Some(vec!["POST".into()])
        );
        assert_eq!(
            captured("within", "GET POST", b"POST"),
            Some(vec!["POST".into()])
        );
        assert_eq!(
            captured("containsWord", "or", b"1 or 1"),
            Some(vec!["or".into()])
        );
        assert_eq!(captured("contains", "z", b"abc"), None);
    }

    #[test]
    fn string_operators_with_macros_use_the_expanded_argument() {
        let within = op("within", "%{tx.allowed_methods}");
        assert!(within.has_macros());
        assert!(within.evaluate(b"PUT", Some(b"GET PUT"), None));
        assert!(!within.evaluate(b"PUT", Some(b"GET POST"), None));
        let ends = op("endsWith", ".%{request_headers.host}");
        assert!(ends.evaluate(b"www.example.com", Some(b".example.com"), None));
        assert!(!ends.evaluate(b"www.example.org", Some(b".example.com"), None));
        let streq = op("streq", "%{TX.2}");
        assert!(streq.evaluate(b"abc", Some(b"abc"), None));
        let contains = op("contains", "%{tx.x}");
        assert!(contains.evaluate(b"--abc--", Some(b"abc"), None));
        let word = op("containsWord", "%{tx.x}");
        assert!(word.evaluate(b"a abc b", Some(b"abc"), None));
        assert!(!word.evaluate(b"aabcb", Some(b"abc"), None));
        // Text that only looks like a macro is literal.
        for literal in ["100%", "{a}", "%{ no close", "50% {x}"] {
            assert!(!op("contains", literal).has_macros(), "{literal}");
        }
        // Operators that read their argument only at load never expand it.
        assert!(!op("pm", "%{tx.a}").has_macros());
        assert!(!op("detectSQLi", "%{tx.a}").has_macros());
    }

    #[test]
    #[rustfmt::skip]
    fn numeric_operators_parse_both_sides_like_c_atoi() {
        let rows: &[(&str, &str, &[u8], [bool; 5])] = &[
            // (label, argument, input, [eq, ge, gt, le, lt])
            ("empty input is 0 vs 0", "0", b"", [true, true, false, true, false]),
            ("empty input is 0 vs 5", "5", b"", [false, false, false, true, true]),
            ("non-numeric argument is 0 (input 5)", "xxx", b"5", [false, true, true, false, false]),
            ("non-numeric argument is 0 (input -1)", "xxx", b"-1", [false, false, false, true, true]),
            ("non-numeric input is 0", "0", b"xxx", [true, true, false, true, false]),
            ("negative input", "0", b"-5", [false, false, false, true, true]),
            ("equal", "5", b"5", [true, true, false, true, false]),
            ("greater", "5", b"10", [false, true, true, false, false]),
            ("less", "5", b"0", [false, false, false, true, true]),
            ("leading blanks and sign", "+7", b" \t7", [true, true, false, true, false]),
            ("digits then text", "12", b"12abc", [true, true, false, true, false]),
            ("a sign alone is 0", "0", b"-", [true, true, false, true, false]),
        ];
        let names = ["eq", "ge", "gt", "le", "lt"];
        for (label, arg, input, want) in rows {
            for (name, want) in names.iter().zip(want) {
                let got = op(name, arg).evaluate(input, None, None);
                assert_eq!(
                    got,
                    *want,
                    "{label}: @{name} {arg:?} on {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        // stoi throws on values outside int, which ModSecurity turns into 0; atoll saturates.
        assert!(op("eq", "0").evaluate(b"99999999999", None, None));
        assert!(op("gt", "2147483647").evaluate(b"99999999999", None, None));
        assert!(op("gt", "0").evaluate(b"999999999999999999999999", None, None));
        // Macros: the expanded argument is parsed per evaluation.
        let ge = op("ge", "%{tx.inbound_anomaly_score_threshold}");
        assert!(ge.has_macros());
        assert!(ge.evaluate(b"5", Some(b"5"), None));
        assert!(!ge.evaluate(b"4", Some(b"5"), None));
        // Numeric operators capture nothing.
        assert_eq!(captured("eq", "1", b"1"), Some(vec![]));
    }

    #[test]
    #[rustfmt::skip]
    fn ip_match_accepts_addresses_and_networks_of_both_families() {
        check(&[
            ("same IPv4", "ipMatch", "10.10.10.10", b"10.10.10.10", true),
            ("other IPv4", "ipMatch", "10.10.10.10", b"10.10.10.11", false),
            ("/21 inside", "ipMatch", "10.10.10.0/21", b"10.10.10.11", true),
            ("/21 below", "ipMatch", "10.10.10.0/21", b"10.10.7.254", false),
            ("/21 low edge", "ipMatch", "10.10.10.0/21", b"10.10.8.1", true),
            ("/21 above", "ipMatch", "10.10.10.0/21", b"10.10.16.1", false),
            ("/21 high edge", "ipMatch", "10.10.10.0/21", b"10.10.15.254", true),
            ("host bits in the network are ignored", "ipMatch", "156.149.249.1/8", b"156.149.152.152", true),
            ("/8 other network", "ipMatch", "156.149.249.1/8", b"10.10.10.11", false),
            ("/2", "ipMatch", "10.0.0.0/2", b"10.10.10.11", true),
            ("/0 matches every IPv4", "ipMatch", "0.0.0.0/0", b"203.0.113.9", true),
            ("IPv6 /32", "ipMatch", "2001:db8::/32", b"2001:0db8:ffff:ffff:ffff:ffff:ff00:00ff", true),
            ("IPv6 /63", "ipMatch", "2001:db8::/63", b"2001:0db8:ffff:ffff:ffff:ffff:ff00:00ff", false),
            ("::1 long form", "ipMatch", "::1", b"0000:0000:0000:0000:0000:0000:0000:0001", true),
            ("long form vs ::1", "ipMatch", "0:0:0:0:0:0:0:1", b"::1", true),
            ("::/43 inside", "ipMatch", "::/43", b"0000:0000:001f:ffff:ffff:ffff:ffff:ffff", true),
            ("::/43 outside", "ipMatch", "::/43", b"0000:0000:0020:0000:0000:0000:0000:0000", false),
            ("::/71 outside", "ipMatch", "::/71", b"0000:0000:0000:0000:0200:0000:0000:0000", false),
            ("case of hex digits", "ipMatch", "2001:DB8::8:800:200C:417A", b"2001:0db8:0000:0000:0008:0800:200c:417a", true),
            ("link-local", "ipMatch", "fe80::217:f2ff:fe07:ed62", b"fe80:0000:0000:0000:0217:f2ff:fe07:ed62", true),
            ("CRS list, IPv4 loopback", "ipMatch", "127.0.0.1,::1", b"127.0.0.1", true),
            ("CRS list, IPv6 loopback", "ipMatch", "127.0.0.1,::1", b"::1", true),
            ("CRS list, other", "ipMatch", "127.0.0.1,::1", b"10.0.0.1", false),
            ("blanks around entries", "ipMatch", "10.0.0.1 , 10.0.0.2", b"10.0.0.2", true),
            ("IPv4 address vs IPv6 list", "ipMatch", "::/0", b"10.0.0.1", false),
            ("not an address", "ipMatch", "127.0.0.1", b"localhost", false),
            ("address with port", "ipMatch", "127.0.0.1", b"127.0.0.1:80", false),
            ("empty input", "ipMatch", "127.0.0.1", b"", false),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn ip_match_from_file_reads_lists_with_comments() {
        let files = |name: &str| -> Result<String, String> {
            match name {
                "ips.data" => Ok(
                    "# blocked\n192.168.0.0/16 # lab\n\n2001:db8::/32\r\n10.0.0.1,10.0.0.2\n"
                        .into(),
                ),
                "bad.data" => Ok("10.0.0.1\nnot-an-ip\n".into()),
                other => Err(format!("{other}: not found")),
            }
        };
        for name in ["ipMatchFromFile", "ipMatchF"] {
            let o = Operator::compile(name, "ips.data", &files).expect("compiles");
            assert_eq!(o.name(), "IpMatchFromFile");
            assert!(o.evaluate(b"192.168.3.4", None, None));
            assert!(o.evaluate(b"2001:db8::1", None, None));
            assert!(o.evaluate(b"10.0.0.2", None, None));
            assert!(!o.evaluate(b"10.0.0.3", None, None));
        }
        let err = Operator::compile("ipMatchFromFile", "bad.data", &files).expect_err("bad line");
        assert!(err.contains("bad.data line 2"), "{err}");
    }

    #[test]
    #[rustfmt::skip]
    fn validate_byte_range_matches_when_a_byte_is_outside_the_ranges() {
        check(&[
            ("empty input never matches", "validateByteRange", "0-255", b"", false),
            ("all bytes allowed", "validateByteRange", "0-255", b"abcdefghi", false),
            ("all inside a-i", "validateByteRange", "97-105", b"abcdefghi", false),
            ("j is outside a-i", "validateByteRange", "97-105", b"abcdefghij", true),
            ("all bytes allowed, UTF-8", "validateByteRange", "0-255", "А".as_bytes(), false),
            ("CRS 920270: NUL outside 1-255", "validateByteRange", "1-255", b"a\0b", true),
            ("CRS 920270: high bytes inside 1-255", "validateByteRange", "1-255", b"\x01\xff", false),
            ("CRS 920272: tab allowed", "validateByteRange", "9,10,13,32-126,128-255", b"a\tb", false),
            ("CRS 920272: DEL is outside", "validateByteRange", "9,10,13,32-126,128-255", b"a\x7fb", true),
            ("single values and blanks", "validateByteRange", " 65 , 66 ", b"ABBA", false),
            ("single values, other byte", "validateByteRange", "65,66", b"ABC", true),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn validate_url_encoding_matches_invalid_percent_escapes() {
        check(&[
            ("empty input", "validateUrlEncoding", "", b"", false),
            ("valid escape", "validateUrlEncoding", "", b"Hello%20World!", false),
            ("plus", "validateUrlEncoding", "", b"Hello+World!", false),
            ("no escape", "validateUrlEncoding", "", b"HelloWorld!", false),
            ("NUL escape first", "validateUrlEncoding", "", b"%00Hello%20World!", false),
            ("NUL escape last", "validateUrlEncoding", "", b"Hello%20World!%00", false),
            ("%ff", "validateUrlEncoding", "", b"%ff", false),
            ("one digit", "validateUrlEncoding", "", b"%0", true),
            ("one hex letter", "validateUrlEncoding", "", b"%f", true),
            ("bare percent", "validateUrlEncoding", "", b"%", true),
            ("second not hex", "validateUrlEncoding", "", b"%0z", true),
            ("first not hex", "validateUrlEncoding", "", b"%z0", true),
            ("percent after digit", "validateUrlEncoding", "", b"%0%", true),
            ("valid then truncated", "validateUrlEncoding", "", b"%41%4", true),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn validate_utf8_encoding_matches_invalid_overlong_and_restricted_sequences() {
        check(&[
            ("empty input", "validateUtf8Encoding", "", b"", false),
            ("ASCII", "validateUtf8Encoding", "", b"Je peux manger du verre", false),
            ("two-byte", "validateUtf8Encoding", "", "ça ne me fait pas de mal".as_bytes(), false),
            ("three-byte", "validateUtf8Encoding", "", "私はガラスを食べられます".as_bytes(), false),
            ("four-byte", "validateUtf8Encoding", "", "𝄞".as_bytes(), false),
            ("NUL then truncated 3-byte", "validateUtf8Encoding", "", b"\0\xe4", true),
            ("truncated 3-byte", "validateUtf8Encoding", "", b"\xe4", true),
            ("stray continuation byte", "validateUtf8Encoding", "", b"\x03\xbf", true),
            ("bad continuation", "validateUtf8Encoding", "", b"\xc9\x3b", true),
            ("0xFF never starts a sequence", "validateUtf8Encoding", "", b"\xff\0", true),
            ("overlong '/' (2 bytes)", "validateUtf8Encoding", "", b"\xc0\xaf", true),
            ("overlong (3 bytes)", "validateUtf8Encoding", "", b"\xe0\x80\xaf", true),
            ("overlong (4 bytes)", "validateUtf8Encoding", "", b"\xf0\x80\x80\xaf", true),
            ("surrogate U+D800", "validateUtf8Encoding", "", b"\xed\xa0\x80", true),
            ("0xF5 is out of range", "validateUtf8Encoding", "", b"\xf5\x80\x80\x80", true),
            ("largest code point", "validateUtf8Encoding", "", b"\xf4\x8f\xbf\xbf", false),
            ("above U+10FFFF passes, as in ModSecurity", "validateUtf8Encoding", "", b"\xf4\x90\x80\x80", false),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn detect_sqli_returns_libinjection_fingerprints() {
        // Inputs and fingerprints from libinjection's own tests (tests/test-sqli-*.txt) and
        // ModSecurity's unit tests; an empty fingerprint means "not SQLi".
        let rows: &[(&str, &str)] = &[
            ("foo 'bar' \"zap\"", ""),
            ("this is not isqli", ""),
            ("", ""),
            ("ascii(substring(version() from 1 for 1))", "f(f(f"),
            ("1 = '1' OR 1", "1os&1"),
            ("1 /* /* */ */ 2", "X"),
            ("foo - (bar) UNION SELECT 1", "nUE1"),
            ("1\" UNION ALL SELECT * FROM FOO", "sUEok"),
            ("foo\" and 1=1 `", "s&1c"),
            ("--1 UNION ALL SELECT * FROM FOO", "1UEok"),
            ("1 and @version < 1", "1&v"),
            ("1--sp_password", "1c"),
            ("foo' OR 'BAR", "s&s"),
            ("1),(1)) UNION SELECT 1;", "1)UE1"),
            ("1' OR '1'='1", "s&sos"),
        ];
        let sqli = op("detectSQLi", "");
        for (input, fingerprint) in rows {
            let mut caps = Vec::new();
            let found = sqli.evaluate(input.as_bytes(), None, Some(&mut caps));
            assert_eq!(found, !fingerprint.is_empty(), "{input:?}");
            if found {
                assert_eq!(caps, vec![fingerprint.as_bytes().to_vec()], "{input:?}");
                // The same fingerprint the crate's one-shot API reports.
                let one_shot = libinjectionrs::detect_sqli(input.as_bytes());
                assert_eq!(
                    one_shot.fingerprint.map(|f| f.as_str().to_owned()),
                    Some(fingerprint.to_string())
                );
            } else {
                assert!(caps.is_empty());
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn detect_xss_matches_script_vectors_and_captures_the_input() {
        let rows: &[(&[u8], bool)] = &[
            (b"", false),
            (b"this is not an XSS", false),
            (b"<a href=\"javascript:alert(1)\">)", true),
            (b"<script>alert(1)</script>", true),
            (b"<img src=x onerror=alert(1)>", true),
            // libinjection also tries the unquoted-attribute context.
            (b"x onmouseover=alert(1)", true),
            (b"2 < 3 and 4 > 1", false),
        ];
        for (input, want) in rows {
            assert_eq!(
                op("detectXSS", "").evaluate(input, None, None),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            captured("detectXSS", "", b"<script>alert(1)</script>"),
            Some(vec!["<script>alert(1)</script>".into()])
        );
    }

    #[test]
    #[rustfmt::skip]
    fn unconditional_match_and_no_match_ignore_input_and_argument() {
        check(&[
            ("always, empty", "unconditionalMatch", "", b"", true),
            ("always, argument", "unconditionalMatch", "TestCase", b"", true),
            ("always, input", "unconditionalMatch", "", b"TestCase", true),
            ("never, empty", "noMatch", "", b"", false),
            ("never, argument", "noMatch", "TestCase", b"", false),
            ("never, input", "noMatch", "", b"TestCase", false),
        ]);
    }

    #[test]
    fn no_operator_panics_on_hostile_input() {
        let ops = [
            op("rx", r"(?i)(a+)+$"),
            op("pm", "a b c"),
            op("containsWord", "ab"),
            op("within", "abc"),
            op("eq", "1"),
            op("ipMatch", "10.0.0.0/8,::/0"),
            op("validateByteRange", "32-126"),
            op("validateUrlEncoding", ""),
            op("validateUtf8Encoding", ""),
            op("detectSQLi", ""),
            op("detectXSS", ""),
        ];
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0xff; 3],
            b"%".to_vec(),
            b"%%%%".to_vec(),
            b"\xf0\x9f".to_vec(),
            b"-9223372036854775809".to_vec(),
            b":::".to_vec(),
            b"1.2.3.4/33".to_vec(),
            "a".repeat(20_000).into_bytes(),
        ];
        for b in 0..=255u8 {
            inputs.push(vec![b]);
            inputs.push(vec![b, b'%', b]);
        }
        for o in &ops {
            for input in &inputs {
                let mut caps = Vec::new();
                o.evaluate(input, Some(b"%{x}"), Some(&mut caps));
                o.evaluate(input, None, None);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // CRS: every operator argument of the ruleset must load.
    // -----------------------------------------------------------------------------------------

    /// The CRS `rules/` directory: `$MESHWARD_CRS_DIR/rules` (which must exist when the variable
    /// is set), else `shared/crs/rules` beside the repository checkout (`None` when absent).
    fn crs_rules_dir() -> Option<std::path::PathBuf> {
        if let Some(dir) = std::env::var_os("MESHWARD_CRS_DIR") {
            let rules = std::path::PathBuf::from(dir).join("rules");
            assert!(
                rules.is_dir(),
                "MESHWARD_CRS_DIR has no rules/: {}",
                rules.display()
            );
            return Some(rules);
        }
        let rules =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/rules");
        rules.is_dir().then_some(rules)
    }

    /// Every `"@op argument"` (optionally negated) in the CRS rule files, continuation lines
    /// joined and `\"` unescaped as a SecLang parser does.
    fn crs_operators(rules: &std::path::Path) -> Vec<(String, String, String)> {
        let quoted = regex::bytes::Regex::new(r#""!?@([A-Za-z0-9]+)(?: ((?:[^"\\]|\\.)*))?""#)
            .expect("regex");
        let mut files: Vec<_> = std::fs::read_dir(rules)
            .expect("read CRS rules dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read conf");
            let joined = text.replace("\\\n", " ");
            for line in joined.lines() {
                let trimmed = line.trim_start();
                if trimmed.starts_with('#') {
                    continue;
                }
                for caps in quoted.captures_iter(trimmed.as_bytes()) {
                    let name = String::from_utf8_lossy(&caps[1]).into_owned();
                    let arg = caps
                        .get(2)
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).replace("\\\"", "\""))
                        .unwrap_or_default();
                    out.push((file.display().to_string(), name, arg));
                }
            }
        }
        out
    }

    #[test]
    fn every_crs_operator_argument_compiles() {
        let Some(rules) = crs_rules_dir() else {
            eprintln!(
                "SKIPPED every_crs_operator_argument_compiles: no ../shared/crs/rules beside the \
                 checkout (set MESHWARD_CRS_DIR to the CRS directory that has rules/)"
            );
            return;
        };
        let data_file = |name: &str| {
            std::fs::read_to_string(rules.join(name)).map_err(|e| format!("{name}: {e}"))
        };
        let found = crs_operators(&rules);
        let mut rx = std::collections::BTreeSet::new();
        let mut pm_files = 0;
        let mut failures = Vec::new();
        let started = std::time::Instant::now();
        for (file, name, arg) in &found {
            match Operator::compile(name, arg, &data_file) {
                Ok(o) => {
                    if o.name() == "Rx" && !o.has_macros() {
                        rx.insert(arg.clone());
                    }
                    if o.name() == "PmFromFile" {
                        pm_files += 1;
                    }
                }
                Err(e) => failures.push(format!("{file}: @{name} {arg:?}: {e}")),
            }
        }
        let elapsed = started.elapsed();
        assert!(
            failures.is_empty(),
            "CRS operators that do not compile:\n{}",
            failures.join("\n")
        );
        // CRS v4.28 has 318 @rx (294 distinct regexes) and 21 @pmFromFile; fewer means the scan
        // above stopped finding them, not that they compile.
        assert!(rx.len() >= 290, "found only {} distinct @rx", rx.len());
        assert!(pm_files >= 20, "found only {pm_files} @pmFromFile");
        eprintln!(
            "compiled {} CRS operators ({} distinct @rx, {} @pmFromFile) in {:?}",
            found.len(),
            rx.len(),
            pm_files,
            elapsed
        );
    }
}
