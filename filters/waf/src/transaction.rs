//! One HTTP exchange through the rule set: the variables rules read, and
//! phases 1–5 evaluated with ModSecurity's semantics (transformations,
//! operators, chains, `setvar`, `ctl`, `skipAfter`, disruptive actions).

use crate::body::{self, FilePart, MultipartFlags, Pair, Xml};
use crate::macros::{MacroString, Part};
use crate::rule::{AllowScope, Ctl, Disruptive, Effect, EngineMode, Processor, Rule, SetOp};
use crate::ruleset::{Item, LimitAction, RuleSet};
use crate::transform::Transform;
use crate::variable::{Selector, Target, Var};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::rc::Rc;

/// The peer and local addresses of the connection.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub remote_addr: String,
    pub remote_port: u16,
    pub server_addr: String,
    pub server_port: u16,
}

/// A disruptive action that the proxy must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub rule_id: u64,
    pub status: u16,
    pub phase: u8,
    /// `Location` for a redirect.
    pub redirect: Option<String>,
}

/// A rule whose whole chain matched, as it is logged.
#[derive(Debug, Clone)]
pub struct MatchedRule {
    pub id: u64,
    pub msg: String,
    /// The ModSecurity-style error-log line (`[id "942100"] [msg "…"] …`).
    pub log_line: Option<String>,
}

/// The rules a `ctl` removes (or removes a target from) for this transaction.
#[derive(Debug)]
enum RuleSelector {
    Ids(Vec<(u64, u64)>),
    /// The ids of the rules with a tag, looked up once in the rule set.
    Tagged(Rc<HashSet<u64>>),
}

impl RuleSelector {
    fn selects(&self, rule: &Rule) -> bool {
        match self {
            RuleSelector::Ids(ranges) => crate::rule::in_ranges(ranges, rule.id),
            RuleSelector::Tagged(ids) => ids.contains(&rule.id),
        }
    }
}

/// One value a target yields: where it came from and its bytes.
struct Value<'a> {
    var: Var,
    key: Option<&'a [u8]>,
    bytes: Cow<'a, [u8]>,
}

impl Value<'_> {
    /// `ARGS:q`, or `TX` for a count: built without the formatter, and
    /// without an allocation for a variable that has no key.
    fn name(&self) -> Cow<'static, str> {
        match self.key {
            Some(key) => {
                let var = self.var.name();
                let key = String::from_utf8_lossy(key);
                let mut name = String::with_capacity(var.len() + 1 + key.len());
                name.push_str(var);
                name.push(':');
                name.push_str(&key);
                Cow::Owned(name)
            }
            None => Cow::Borrowed(self.var.name()),
        }
    }
}

/// A value after a link's transformations.
enum Transformed<'a> {
    Unchanged(&'a [u8]),
    Cached(Rc<[u8]>),
    Fresh(Vec<u8>),
}

impl Transformed<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Transformed::Unchanged(b) => b,
            Transformed::Cached(b) => b,
            Transformed::Fresh(b) => b,
        }
    }

    fn into_vec(self) -> Vec<u8> {
        match self {
            Transformed::Fresh(v) => v,
            other => other.bytes().to_vec(),
        }
    }
}

/// CRS runs the same few transformation lists over the same request values in
/// rule after rule. Each result is kept for the transaction, by the value's
/// address and length and the list's id, for values that neither move nor
/// change until the transaction ends (see `stays_put`): an address then always
/// holds the bytes its entry was made from.
#[derive(Default)]
struct TransformCache {
    /// `None`: the list left the value as it was.
    results: FxHashMap<CacheKey, Option<Rc<[u8]>>>,
    bytes: usize,
}

/// A value's address and length, and a transformation list's id.
type CacheKey = (usize, usize, u32);

/// At most this many bytes of transformed values are kept per transaction:
/// a VM's linear memory never shrinks, so one large request must not grow it
/// for good. Past it, values are transformed afresh for each rule.
const TRANSFORM_CACHE_BYTES: usize = 1 << 20;

/// Variables whose values the transaction builds before the phase that reads
/// them and never changes or frees afterwards. Not TX or MATCHED_VARS (they
/// change), not the bodies (they grow while they arrive), not values made on
/// the fly (counts, numbers).
fn stays_put(var: Var) -> bool {
    matches!(
        var,
        Var::Args
            | Var::ArgsGet
            | Var::ArgsPost
            | Var::ArgsNames
            | Var::ArgsGetNames
            | Var::ArgsPostNames
            | Var::RequestHeaders
            | Var::RequestHeadersNames
            | Var::RequestCookies
            | Var::RequestCookiesNames
            | Var::RequestFilename
            | Var::RequestBasename
            | Var::RequestUri
            | Var::RequestUriRaw
            | Var::RequestLine
            | Var::QueryString
            | Var::Files
            | Var::FilesNames
            | Var::MultipartPartHeaders
            | Var::Xml
    )
}

/// `transforms` applied in order.
fn apply_all<'v>(transforms: &[Transform], input: &'v [u8]) -> Cow<'v, [u8]> {
    let mut current = Cow::Borrowed(input);
    for t in transforms {
        // A borrowed result is a sub-slice of the input (`trim`): it
        // changed only if it is shorter.
        let changed = match t.apply(&current) {
            Cow::Borrowed(v) if v.len() == current.len() => None,
            Cow::Borrowed(v) => Some(v.to_vec()),
            Cow::Owned(v) => Some(v),
        };
        if let Some(v) = changed {
            current = Cow::Owned(v);
        }
    }
    current
}

/// A match found while evaluating one rule link.
struct Match {
    name: Cow<'static, str>,
    value: Vec<u8>,
    captures: Option<Vec<Vec<u8>>>,
}

/// The state of one HTTP exchange.
pub struct Transaction {
    rules: Rc<RuleSet>,
    mode: EngineMode,
    connection: Connection,
    unique_id: String,
    time_epoch: u64,

    method: Vec<u8>,
    uri: Vec<u8>,
    protocol: Vec<u8>,
    request_line: Vec<u8>,
    filename: Vec<u8>,
    basename: Vec<u8>,
    query: Vec<u8>,
    request_headers: Vec<Pair>,
    cookies: Vec<Pair>,
    args_get: Vec<Pair>,
    args_post: Vec<Pair>,

    request_body_access: bool,
    response_body_access: bool,
    force_body_variable: bool,
    processor: Option<Processor>,
    request_body_limit: usize,
    body: Vec<u8>,
    body_error: Option<String>,
    inbound_data_error: bool,
    exceeded_request_limit: Option<usize>,
    files: Vec<FilePart>,
    part_headers: Vec<Pair>,
    multipart: Option<MultipartFlags>,
    xml: Option<Xml>,

    response_status: u16,
    response_protocol: Vec<u8>,
    response_headers: Vec<Pair>,
    response_body: Vec<u8>,
    outbound_data_error: bool,

    tx: BTreeMap<String, Vec<u8>>,
    persistent: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
    matched_var: Option<(Cow<'static, str>, Vec<u8>)>,
    matched_vars: Vec<(Cow<'static, str>, Vec<u8>)>,

    removed_rules: Vec<RuleSelector>,
    removed_targets: Vec<(RuleSelector, Target)>,
    allow: Option<AllowScope>,
    allow_phase: u8,
    interruption: Option<Interruption>,
    /// The first interruption DetectionOnly did not carry out.
    detected: Option<Interruption>,
    matched: Vec<MatchedRule>,
    highest_severity: u8,
    transformed: RefCell<TransformCache>,
}

impl Transaction {
    pub fn new(rules: Rc<RuleSet>, connection: Connection, unique_id: String) -> Self {
        let s = &rules.settings;
        Transaction {
            mode: s.engine,
            request_body_access: s.request_body_access,
            response_body_access: s.response_body_access,
            request_body_limit: s.request_body_limit,
            rules: Rc::clone(&rules),
            connection,
            unique_id,
            time_epoch: 0,
            method: Vec::new(),
            uri: Vec::new(),
            protocol: Vec::new(),
            request_line: Vec::new(),
            filename: Vec::new(),
            basename: Vec::new(),
            query: Vec::new(),
            request_headers: Vec::new(),
            cookies: Vec::new(),
            args_get: Vec::new(),
            args_post: Vec::new(),
            force_body_variable: false,
            processor: None,
            body: Vec::new(),
            body_error: None,
            inbound_data_error: false,
            exceeded_request_limit: None,
            files: Vec::new(),
            part_headers: Vec::new(),
            multipart: None,
            xml: None,
            response_status: 0,
            response_protocol: Vec::new(),
            response_headers: Vec::new(),
            response_body: Vec::new(),
            outbound_data_error: false,
            tx: BTreeMap::new(),
            persistent: BTreeMap::new(),
            matched_var: None,
            matched_vars: Vec::new(),
            removed_rules: Vec::new(),
            removed_targets: Vec::new(),
            allow: None,
            allow_phase: 0,
            interruption: None,
            detected: None,
            matched: Vec::new(),
            highest_severity: 255,
            transformed: RefCell::default(),
        }
    }

    pub fn set_time_epoch(&mut self, seconds: u64) {
        self.time_epoch = seconds;
    }

    // ---- inputs ----------------------------------------------------------

    /// The request line: method, URI as sent (path and query) and protocol.
    pub fn set_request_line(&mut self, method: &[u8], uri: &[u8], protocol: &[u8]) {
        self.method = method.to_vec();
        self.uri = uri.to_vec();
        self.protocol = protocol.to_vec();
        // REQUEST_LINE is read by several rules per request: built once.
        self.request_line = [method, uri, protocol].join(&b' ');
        let (path, query) = match uri.iter().position(|&b| b == b'?') {
            Some(i) => (&uri[..i], &uri[i + 1..]),
            None => (uri, &b""[..]),
        };
        // An absolute URI (`GET http://host/x`) names the file by its path.
        let path = strip_scheme_authority(path);
        self.filename = body::percent_decode(path);
        let base_start = self
            .filename
            .iter()
            .rposition(|&b| b == b'/' || b == b'\\')
            .map_or(0, |i| i + 1);
        self.basename = self.filename[base_start..].to_vec();
        self.query = query.to_vec();
        self.args_get = body::parse_urlencoded(query);
    }

    /// Takes owned bytes (or copies borrowed ones): the proxy hands headers over owned.
    pub fn add_request_header(&mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (name, value) = (name.into(), value.into());
        if name.eq_ignore_ascii_case(b"cookie") {
            self.cookies.extend(parse_cookies(&value));
        }
        self.request_headers.push((name, value));
    }

    pub fn set_response_status(&mut self, status: u16, protocol: &[u8]) {
        self.response_status = status;
        self.response_protocol = protocol.to_vec();
    }

    pub fn add_response_header(&mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.response_headers.push((name.into(), value.into()));
    }

    /// Whether phase 2 needs the request body.
    pub fn wants_request_body(&self) -> bool {
        self.request_body_access && self.mode != EngineMode::Off
    }

    /// Adds request body bytes, honouring `SecRequestBodyLimit`.
    /// True when the body passed its limit and must be rejected (`Reject`,
    /// engine On); with `ProcessPartial` the part within the limit is kept.
    pub fn append_request_body(&mut self, chunk: &[u8]) -> bool {
        let limit = self.request_body_limit();
        let room = limit.saturating_sub(self.body.len());
        if chunk.len() <= room {
            self.body.extend_from_slice(chunk);
            return false;
        }
        self.body.extend_from_slice(&chunk[..room]);
        self.inbound_data_error = true;
        self.exceeded_request_limit = Some(limit);
        self.must_reject(self.rules.settings.request_body_limit_action)
    }

    /// Whether phase 4 needs the response body (access on, inspectable type).
    pub fn wants_response_body(&self) -> bool {
        if !self.response_body_access || self.mode == EngineMode::Off {
            return false;
        }
        let content_type = header(&self.response_headers, b"content-type")
            .map(|v| {
                let v = v.split(|&b| b == b';').next().unwrap_or_default();
                String::from_utf8_lossy(v).trim().to_ascii_lowercase()
            })
            .unwrap_or_default();
        self.rules
            .settings
            .response_body_mime_types
            .contains(&content_type)
    }

    /// As `append_request_body`, for `SecResponseBodyLimit`.
    pub fn append_response_body(&mut self, chunk: &[u8]) -> bool {
        let limit = self.rules.settings.response_body_limit;
        let room = limit.saturating_sub(self.response_body.len());
        if chunk.len() <= room {
            self.response_body.extend_from_slice(chunk);
            return false;
        }
        self.response_body.extend_from_slice(&chunk[..room]);
        self.outbound_data_error = true;
        self.must_reject(self.rules.settings.response_body_limit_action)
    }

    /// A body past its limit is rejected with `Reject`, and only when the
    /// engine is On (DetectionOnly never blocks).
    fn must_reject(&self, action: LimitAction) -> bool {
        action == LimitAction::Reject && self.mode == EngineMode::On
    }

    // ---- phases ----------------------------------------------------------

    /// Phase 1. Call after the request line and headers are set.
    pub fn process_request_headers(&mut self) -> Option<Interruption> {
        self.processor = self.default_processor();
        self.run_phase(1)
    }

    /// Phase 2: parses the body with the selected processor, then runs.
    pub fn process_request_body(&mut self) -> Option<Interruption> {
        if self.request_body_access {
            self.parse_request_body();
            if self.multipart_fields_over_limit() {
                // Answered like any body past its limit: rule 0, 413.
                self.interruption = Some(Interruption {
                    rule_id: 0,
                    status: 413,
                    phase: 2,
                    redirect: None,
                });
                return self.interruption.clone();
            }
        }
        self.run_phase(2)
    }

    /// ModSecurity holds everything in a multipart body but the files' contents
    /// (fields, part headers, boundaries) to `SecRequestBodyNoFilesLimit`; only
    /// files may use `SecRequestBodyLimit`. Past it, `Reject` answers 413 and
    /// `ProcessPartial` inspects the fields that fit. True when the body must be
    /// rejected.
    fn multipart_fields_over_limit(&mut self) -> bool {
        if self.multipart.is_none() {
            return false;
        }
        let limit = self.rules.settings.request_body_no_files_limit;
        let file_bytes: usize = self.files.iter().map(|f| f.size).sum();
        if self.body.len().saturating_sub(file_bytes) <= limit {
            return false;
        }
        self.inbound_data_error = true;
        self.exceeded_request_limit = Some(limit);
        let action = self.rules.settings.request_body_limit_action;
        if action == LimitAction::Reject {
            return self.must_reject(action);
        }
        let mut used = 0usize;
        self.args_post.retain(|(k, v)| {
            used = used.saturating_add(k.len() + v.len());
            used <= limit
        });
        false
    }

    /// The request body limit that was passed, if one was: `SecRequestBodyLimit`
    /// (or the no-files limit for a body without files), or the no-files limit
    /// for a multipart body's fields.
    pub fn exceeded_request_limit(&self) -> Option<usize> {
        self.exceeded_request_limit
    }

    pub fn process_response_headers(&mut self) -> Option<Interruption> {
        self.run_phase(3)
    }

    pub fn process_response_body(&mut self) -> Option<Interruption> {
        self.run_phase(4)
    }

    /// Phase 5 runs even after an interruption.
    pub fn process_logging(&mut self) {
        let interruption = self.interruption.take();
        self.run_phase(5);
        if interruption.is_some() {
            self.interruption = interruption;
        }
    }

    // ---- results ---------------------------------------------------------

    pub fn interruption(&self) -> Option<&Interruption> {
        self.interruption.as_ref()
    }

    /// What DetectionOnly would have done (the first disruptive match).
    pub fn detected(&self) -> Option<&Interruption> {
        self.detected.as_ref()
    }

    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.matched
    }

    /// A TX variable (`tx.blocking_inbound_anomaly_score`).
    pub fn tx(&self, key: &str) -> Option<&[u8]> {
        self.tx.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The limit the request body is held to (the no-files limit unless multipart).
    pub fn request_body_limit(&self) -> usize {
        if self.processor == Some(Processor::Multipart) {
            self.request_body_limit
        } else {
            self.request_body_limit
                .min(self.rules.settings.request_body_no_files_limit)
        }
    }

    pub fn response_body_limit(&self) -> usize {
        self.rules.settings.response_body_limit
    }

    // ---- evaluation ------------------------------------------------------

    fn default_processor(&self) -> Option<Processor> {
        let ct = header(&self.request_headers, b"content-type")?;
        let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media {
            "application/x-www-form-urlencoded" => Some(Processor::UrlEncoded),
            "multipart/form-data" => Some(Processor::Multipart),
            _ => None,
        }
    }

    fn parse_request_body(&mut self) {
        // A body nothing claimed is read as URL-encoded when a rule forced the
        // body variable (CRS 901340 does for unknown types), as Coraza does.
        if self.processor.is_none() && self.force_body_variable {
            self.processor = Some(Processor::UrlEncoded);
        }
        // No body, nothing to parse: a bodiless GET that names an XML or JSON
        // type is not a parse error.
        if self.body.is_empty() {
            return;
        }
        match self.processor {
            Some(Processor::UrlEncoded) => {
                self.args_post = body::parse_urlencoded(&self.body);
            }
            Some(Processor::Multipart) => {
                let content_type = header(&self.request_headers, b"content-type")
                    .unwrap_or_default()
                    .to_vec();
                let parsed = match body::parse_multipart(&content_type, &self.body) {
                    Ok(m) => m,
                    Err((m, message)) => {
                        self.body_error = Some(format!("Multipart parsing error: {message}"));
                        m
                    }
                };
                self.args_post = parsed.args;
                self.files = parsed.files;
                self.part_headers = parsed.part_headers;
                self.multipart = Some(parsed.flags);
            }
            Some(Processor::Json) => {
                match body::parse_json(&self.body, self.rules.settings.json_depth_limit) {
                    Ok(args) => self.args_post = args,
                    Err(message) => {
                        self.body_error = Some(format!("JSON parsing error: {message}"))
                    }
                }
            }
            Some(Processor::Xml) => match body::parse_xml(&self.body) {
                Ok(xml) => self.xml = Some(xml),
                Err(message) => self.body_error = Some(format!("XML parsing error: {message}")),
            },
            None => {}
        }
        let limit = self.rules.settings.arguments_limit;
        if self.args_get.len() + self.args_post.len() > limit {
            self.body_error
                .get_or_insert_with(|| format!("more than {limit} arguments"));
            let room = limit.saturating_sub(self.args_get.len());
            self.args_post.truncate(room);
        }
    }

    fn run_phase(&mut self, phase: u8) -> Option<Interruption> {
        if self.mode == EngineMode::Off || self.interruption.is_some() {
            return self.interruption.clone();
        }
        match self.allow {
            Some(AllowScope::All) if phase < 5 => return None,
            Some(AllowScope::Request) if phase <= 2 => return None,
            Some(AllowScope::Phase) if phase == self.allow_phase => return None,
            _ => {}
        }
        let rules = Rc::clone(&self.rules);
        let phase_index = usize::from(phase) - 1;
        let items = rules.phases.get(phase_index)?;
        // `skipAfter` a rule id (not a marker): skip until that rule has passed.
        let mut skip_past_rule: Option<u64> = None;
        let mut skip = 0u32;
        let mut next = 0;
        while let Some(item) = items.get(next) {
            let position = next;
            next += 1;
            let Item::Rule(rule) = item else {
                continue;
            };
            if let Some(id) = skip_past_rule {
                if id == rule.id {
                    skip_past_rule = None;
                }
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if self.removed_rules.iter().any(|s| s.selects(rule)) {
                continue;
            }
            if !self.evaluate(rule) {
                continue;
            }
            if let Some(marker) = &rule.actions.skip_after {
                match rules.resume_after(phase_index, position) {
                    Some(resume) => next = resume,
                    None => match marker.parse::<u64>() {
                        Ok(id) => skip_past_rule = Some(id),
                        // ModSecurity: a marker missing from this phase skips the rest.
                        Err(_) => next = items.len(),
                    },
                }
            }
            skip = rule.actions.skip;
            match &rule.actions.disruptive {
                Some(Disruptive::Deny | Disruptive::Drop) if self.interrupt(rule, phase, None) => {
                    return self.interruption.clone();
                }
                Some(Disruptive::Redirect(url)) => {
                    let url = String::from_utf8_lossy(&self.expand(url, Some(rule))).into_owned();
                    if self.interrupt(rule, phase, Some(url)) {
                        return self.interruption.clone();
                    }
                }
                Some(Disruptive::Allow(scope)) if self.mode == EngineMode::On => {
                    self.allow = Some(*scope);
                    self.allow_phase = phase;
                    return None;
                }
                _ => {}
            }
            if self.mode == EngineMode::Off {
                return None;
            }
        }
        None
    }

    /// Records an interruption when the engine is On; DetectionOnly only logs.
    fn interrupt(&mut self, rule: &Rule, phase: u8, redirect: Option<String>) -> bool {
        let status = match (&redirect, rule.actions.status) {
            (_, Some(status)) => status,
            (Some(_), None) => 302,
            (None, None) => 403,
        };
        let interruption = Interruption {
            rule_id: rule.id,
            status,
            phase,
            redirect,
        };
        if self.mode != EngineMode::On {
            self.detected.get_or_insert(interruption);
            return false;
        }
        self.interruption = Some(interruption);
        true
    }

    /// Evaluates a rule and its chain; on a full match logs it. Returns
    /// whether the whole chain matched.
    fn evaluate(&mut self, rule: &Rule) -> bool {
        // MATCHED_VAR outlives the rule that set it; MATCHED_VARS does not.
        if let Some(last) = self.matched_vars.pop() {
            self.matched_var = Some(last);
        }
        self.matched_vars.clear();
        let mut link = Some(rule);
        while let Some(current) = link {
            if !self.evaluate_link(current, rule) {
                return false;
            }
            link = current.chain.as_deref();
        }
        self.record_match(rule);
        true
    }

    /// One link: every target value through the transformations and the
    /// operator; each match runs the link's effects.
    fn evaluate_link(&mut self, link: &Rule, starter: &Rule) -> bool {
        if link.unconditional {
            self.run_effects(link, starter);
            return true;
        }
        let matches = self.find_matches(link, starter);
        if matches.is_empty() {
            return false;
        }
        for m in matches {
            if let Some(captures) = m.captures {
                for (i, c) in captures.into_iter().enumerate().take(10) {
                    self.tx.insert(i.to_string(), c);
                }
            }
            self.matched_vars.push((m.name, m.value));
            self.run_effects(link, starter);
        }
        true
    }

    fn find_matches(&self, link: &Rule, starter: &Rule) -> Vec<Match> {
        let expanded = link
            .operator_arg
            .as_ref()
            .map(|m| self.expand(m, Some(starter)).into_owned());
        let capture = link.actions.capture;
        let evaluate = |input: &[u8], captures: &mut Option<Vec<Vec<u8>>>| {
            link.operator
                .evaluate(input, expanded.as_deref(), captures.as_mut())
                != link.negated
        };
        let mut matches = Vec::new();
        for value in self.values(link, starter) {
            let mut captures = capture.then(Vec::new);
            let (matched, current) = if link.actions.multi_match {
                // The operator sees the value before and after each
                // transformation that changes it.
                let mut matched = evaluate(&value.bytes, &mut captures);
                let mut current: Cow<'_, [u8]> = Cow::Borrowed(&value.bytes);
                for t in &link.actions.transforms {
                    if let Cow::Owned(v) = apply_all(std::slice::from_ref(t), &current) {
                        current = Cow::Owned(v);
                        matched = matched || evaluate(&current, &mut captures);
                    }
                }
                (matched, Transformed::Fresh(current.into_owned()))
            } else {
                let current = self.transformed(&value, link);
                (evaluate(current.bytes(), &mut captures), current)
            };
            if matched {
                matches.push(Match {
                    name: value.name(),
                    value: current.into_vec(),
                    captures: captures.filter(|c| !c.is_empty()),
                });
            }
        }
        matches
    }

    /// A value through a link's transformations: from the transaction's
    /// cache when the same list already ran over the same value.
    fn transformed<'v>(&self, value: &'v Value<'_>, link: &Rule) -> Transformed<'v> {
        let transforms = &link.actions.transforms;
        if transforms.is_empty() {
            return Transformed::Unchanged(&value.bytes);
        }
        let key = match &value.bytes {
            Cow::Borrowed(b) if stays_put(value.var) => {
                Some((b.as_ptr() as usize, b.len(), link.transforms_id))
            }
            _ => None,
        };
        if let Some(hit) = key.and_then(|k| self.transformed.borrow().results.get(&k).cloned()) {
            return match hit {
                Some(bytes) => Transformed::Cached(bytes),
                None => Transformed::Unchanged(&value.bytes),
            };
        }
        let result = apply_all(transforms, &value.bytes);
        let Some(key) = key else {
            return match result {
                Cow::Borrowed(b) => Transformed::Unchanged(b),
                Cow::Owned(v) => Transformed::Fresh(v),
            };
        };
        let mut cache = self.transformed.borrow_mut();
        match result {
            Cow::Borrowed(b) => {
                cache.results.insert(key, None);
                Transformed::Unchanged(b)
            }
            Cow::Owned(v) if cache.bytes + v.len() <= TRANSFORM_CACHE_BYTES => {
                cache.bytes += v.len();
                let shared: Rc<[u8]> = Rc::from(v);
                cache.results.insert(key, Some(Rc::clone(&shared)));
                Transformed::Cached(shared)
            }
            Cow::Owned(v) => Transformed::Fresh(v),
        }
    }

    /// The values a link's targets yield, minus exclusions.
    fn values<'a>(&'a self, link: &'a Rule, starter: &Rule) -> Vec<Value<'a>> {
        // Checked in place, not collected: CRS rules often carry `!` targets
        // (`!REQUEST_COOKIES:/__utm/`), and ctl removals are rare.
        let removed: Vec<&Target> = if self.removed_targets.is_empty() {
            Vec::new()
        } else {
            self.removed_targets
                .iter()
                .filter(|(s, _)| s.selects(starter))
                .map(|(_, t)| t)
                .collect()
        };
        let exclusions = || {
            link.targets
                .iter()
                .filter(|t| t.exclude)
                .chain(removed.iter().copied())
        };
        let any_exclusion = exclusions().next().is_some();
        let mut out = Vec::new();
        for target in link.targets.iter().filter(|t| !t.exclude) {
            let start = out.len();
            self.target_values(target, &mut out);
            if any_exclusion {
                let mut kept = start;
                for i in start..out.len() {
                    let v = &out[i];
                    let excluded = exclusions().any(|x| {
                        x.var == v.var
                            && match (&x.selector, v.key) {
                                (Selector::All, _) => true,
                                (selector, Some(k)) => selector.matches(k),
                                (_, None) => false,
                            }
                    });
                    if !excluded {
                        out.swap(kept, i);
                        kept += 1;
                    }
                }
                out.truncate(kept);
            }
            if target.count {
                let n = out.len() - start;
                out.truncate(start);
                out.push(Value {
                    var: target.var,
                    key: None,
                    bytes: number(n),
                });
            }
        }
        out
    }

    fn target_values<'a>(&'a self, target: &'a Target, out: &mut Vec<Value<'a>>) {
        let start = out.len();
        self.collect_values(target, out);
        // A single-value variable always yields one value, empty when unset
        // (`!@rx` on REQBODY_PROCESSOR must see "" without a processor).
        if !target.var.is_collection() && out.len() == start {
            out.push(Value {
                var: target.var,
                key: None,
                bytes: Cow::Borrowed(b""),
            });
        }
    }

    fn collect_values<'a>(&'a self, target: &'a Target, out: &mut Vec<Value<'a>>) {
        let var = target.var;
        let sel = &target.selector;
        let pairs = |pairs: &'a [Pair], out: &mut Vec<Value<'a>>| {
            for (k, v) in pairs {
                if sel.matches(k) {
                    out.push(Value {
                        var,
                        key: Some(k),
                        bytes: Cow::Borrowed(v),
                    });
                }
            }
        };
        let names = |pairs: &'a [Pair], out: &mut Vec<Value<'a>>| {
            for (k, _) in pairs {
                if sel.matches(k) {
                    out.push(Value {
                        var,
                        key: Some(k),
                        bytes: Cow::Borrowed(k),
                    });
                }
            }
        };
        let map = |map: &'a BTreeMap<String, Vec<u8>>, out: &mut Vec<Value<'a>>| {
            if let Selector::Key(k) = sel {
                if let Some((key, v)) = map.get_key_value(k.as_str()) {
                    out.push(Value {
                        var,
                        key: Some(key.as_bytes()),
                        bytes: Cow::Borrowed(v),
                    });
                }
                return;
            }
            for (k, v) in map {
                if sel.matches(k.as_bytes()) {
                    out.push(Value {
                        var,
                        key: Some(k.as_bytes()),
                        bytes: Cow::Borrowed(v),
                    });
                }
            }
        };
        let mut scalar = |bytes: Cow<'a, [u8]>| {
            out.push(Value {
                var,
                key: None,
                bytes,
            })
        };
        let flag = |on: bool| Cow::Borrowed(if on { &b"1"[..] } else { &b"0"[..] });
        let multipart = |f: fn(&MultipartFlags) -> bool| self.multipart.as_ref().map(f);
        match var {
            Var::Args => {
                pairs(&self.args_get, out);
                pairs(&self.args_post, out);
            }
            Var::ArgsGet => pairs(&self.args_get, out),
            Var::ArgsPost => pairs(&self.args_post, out),
            Var::ArgsNames => {
                names(&self.args_get, out);
                names(&self.args_post, out);
            }
            Var::ArgsGetNames => names(&self.args_get, out),
            Var::ArgsPostNames => names(&self.args_post, out),
            Var::RequestHeaders => pairs(&self.request_headers, out),
            Var::RequestHeadersNames => names(&self.request_headers, out),
            Var::RequestCookies => pairs(&self.cookies, out),
            Var::RequestCookiesNames => names(&self.cookies, out),
            Var::ResponseHeaders => pairs(&self.response_headers, out),
            Var::ResponseHeadersNames => names(&self.response_headers, out),
            Var::MultipartPartHeaders => pairs(&self.part_headers, out),
            Var::Tx => map(&self.tx, out),
            Var::Ip | Var::Global | Var::Session | Var::User | Var::Resource => {
                if let Some(m) = self.persistent.get(var.name()) {
                    map(m, out)
                }
            }
            Var::Env => {}
            Var::MatchedVars | Var::MatchedVarsNames => {
                for (name, value) in &self.matched_vars {
                    if sel.matches(name.as_bytes()) {
                        out.push(Value {
                            var,
                            key: Some(name.as_bytes()),
                            bytes: Cow::Borrowed(if var == Var::MatchedVars {
                                value
                            } else {
                                name.as_bytes()
                            }),
                        });
                    }
                }
            }
            Var::Files | Var::FilesNames | Var::FilesSizes => {
                for f in &self.files {
                    if sel.matches(&f.field) {
                        let bytes = match var {
                            Var::Files => Cow::Borrowed(f.filename.as_slice()),
                            Var::FilesNames => Cow::Borrowed(f.field.as_slice()),
                            _ => Cow::Owned(f.size.to_string().into_bytes()),
                        };
                        out.push(Value {
                            var,
                            key: Some(&f.field),
                            bytes,
                        });
                    }
                }
            }
            Var::Xml => {
                if let Some(xml) = &self.xml {
                    let list = match sel {
                        Selector::Key(k) if k == "//@*" => &xml.attributes,
                        _ => &xml.text,
                    };
                    for v in list {
                        out.push(Value {
                            var,
                            key: None,
                            bytes: Cow::Borrowed(v),
                        });
                    }
                }
            }
            Var::ArgsCombinedSize => {
                let n: usize = self
                    .args_get
                    .iter()
                    .chain(&self.args_post)
                    .map(|(k, v)| k.len() + v.len())
                    .sum();
                scalar(Cow::Owned(n.to_string().into_bytes()))
            }
            Var::RequestFilename => scalar(Cow::Borrowed(&self.filename)),
            Var::RequestBasename => scalar(Cow::Borrowed(&self.basename)),
            Var::RequestUri | Var::RequestUriRaw => scalar(Cow::Borrowed(&self.uri)),
            Var::RequestLine => scalar(Cow::Borrowed(&self.request_line)),
            Var::RequestMethod => scalar(Cow::Borrowed(&self.method)),
            Var::RequestProtocol => scalar(Cow::Borrowed(&self.protocol)),
            Var::QueryString => scalar(Cow::Borrowed(&self.query)),
            // The raw body, except for XML, whose markup rules see through
            // XML:/* instead (as Coraza, whose results CRS's tests encode;
            // CRS 934210 finds JSON keys in it).
            Var::RequestBody => {
                if self.processor != Some(Processor::Xml) || self.force_body_variable {
                    scalar(Cow::Borrowed(&self.body))
                }
            }
            Var::RequestBodyLength => scalar(Cow::Owned(self.body.len().to_string().into_bytes())),
            Var::ReqbodyProcessor => {
                if let Some(p) = self.processor {
                    scalar(Cow::Borrowed(p.name().as_bytes()))
                }
            }
            Var::ReqbodyError | Var::ReqbodyProcessorError => {
                scalar(flag(self.body_error.is_some()))
            }
            Var::ReqbodyErrorMsg => scalar(Cow::Borrowed(
                self.body_error.as_deref().unwrap_or("").as_bytes(),
            )),
            Var::InboundDataError => scalar(flag(self.inbound_data_error)),
            Var::OutboundDataError => scalar(flag(self.outbound_data_error)),
            Var::FilesCombinedSize => {
                let n: usize = self.files.iter().map(|f| f.size).sum();
                scalar(Cow::Owned(n.to_string().into_bytes()))
            }
            Var::MultipartFilename | Var::MultipartName => {}
            Var::MultipartStrictError => {
                if let Some(on) = multipart(MultipartFlags::strict_error) {
                    scalar(flag(on))
                }
            }
            Var::MultipartUnmatchedBoundary => {
                if let Some(on) = multipart(|f| f.unmatched_boundary) {
                    scalar(flag(on))
                }
            }
            Var::MultipartBoundaryQuoted => {
                if let Some(on) = multipart(|f| f.boundary_quoted) {
                    scalar(flag(on))
                }
            }
            Var::MultipartBoundaryWhitespace => {
                if let Some(on) = multipart(|f| f.boundary_whitespace) {
                    scalar(flag(on))
                }
            }
            Var::MultipartDataBefore => {
                if let Some(on) = multipart(|f| f.data_before) {
                    scalar(flag(on))
                }
            }
            Var::MultipartDataAfter => {
                if let Some(on) = multipart(|f| f.data_after) {
                    scalar(flag(on))
                }
            }
            Var::MultipartHeaderFolding => {
                if let Some(on) = multipart(|f| f.header_folding) {
                    scalar(flag(on))
                }
            }
            Var::MultipartLfLine => {
                if let Some(on) = multipart(|f| f.lf_line) {
                    scalar(flag(on))
                }
            }
            Var::MultipartCrlfLfLines => {
                if let Some(on) = multipart(|f| f.crlf_lf_lines) {
                    scalar(flag(on))
                }
            }
            Var::MultipartMissingSemicolon => {
                if let Some(on) = multipart(|f| f.missing_semicolon) {
                    scalar(flag(on))
                }
            }
            Var::MultipartInvalidQuoting => {
                if let Some(on) = multipart(|f| f.invalid_quoting) {
                    scalar(flag(on))
                }
            }
            Var::MultipartInvalidPart => {
                if let Some(on) = multipart(|f| f.invalid_part) {
                    scalar(flag(on))
                }
            }
            Var::MultipartInvalidHeaderFolding => {
                if let Some(on) = multipart(|f| f.invalid_header_folding) {
                    scalar(flag(on))
                }
            }
            Var::MultipartFileLimitExceeded => {
                if let Some(on) = multipart(|f| f.file_limit_exceeded) {
                    scalar(flag(on))
                }
            }
            Var::MatchedVar => {
                if let Some((_, v)) = self.last_match() {
                    scalar(Cow::Borrowed(v))
                }
            }
            Var::MatchedVarName => {
                if let Some((n, _)) = self.last_match() {
                    scalar(Cow::Borrowed(n.as_bytes()))
                }
            }
            Var::RemoteAddr => scalar(Cow::Borrowed(self.connection.remote_addr.as_bytes())),
            Var::RemotePort => scalar(Cow::Owned(
                self.connection.remote_port.to_string().into_bytes(),
            )),
            Var::ServerAddr => scalar(Cow::Borrowed(self.connection.server_addr.as_bytes())),
            Var::ServerPort => scalar(Cow::Owned(
                self.connection.server_port.to_string().into_bytes(),
            )),
            Var::ServerName => {
                let host = header(&self.request_headers, b"host").unwrap_or_default();
                let end = host.iter().position(|&b| b == b':').unwrap_or(host.len());
                scalar(Cow::Borrowed(&host[..end]))
            }
            Var::UniqueId => scalar(Cow::Borrowed(self.unique_id.as_bytes())),
            Var::ResponseStatus => {
                scalar(Cow::Owned(self.response_status.to_string().into_bytes()))
            }
            Var::ResponseProtocol => scalar(Cow::Borrowed(&self.response_protocol)),
            Var::ResponseBody => scalar(Cow::Borrowed(&self.response_body)),
            Var::ResponseContentType => {
                if let Some(v) = header(&self.response_headers, b"content-type") {
                    scalar(Cow::Borrowed(v))
                }
            }
            Var::ResponseContentLength => {
                if let Some(v) = header(&self.response_headers, b"content-length") {
                    scalar(Cow::Borrowed(v))
                }
            }
            Var::HighestSeverity => {
                scalar(Cow::Owned(self.highest_severity.to_string().into_bytes()))
            }
            Var::StatusLine => {
                let mut line = self.response_protocol.clone();
                line.extend_from_slice(format!(" {}", self.response_status).as_bytes());
                scalar(Cow::Owned(line))
            }
            Var::FullRequest => scalar(Cow::Owned(self.full_request())),
            Var::FullRequestLength => scalar(Cow::Owned(
                self.full_request().len().to_string().into_bytes(),
            )),
            Var::TimeEpoch => scalar(Cow::Owned(self.time_epoch.to_string().into_bytes())),
        }
    }

    /// MATCHED_VAR / MATCHED_VAR_NAME: the latest match of this or an earlier rule.
    fn last_match(&self) -> Option<&(Cow<'static, str>, Vec<u8>)> {
        self.matched_vars.last().or(self.matched_var.as_ref())
    }

    fn full_request(&self) -> Vec<u8> {
        let mut out = self.request_line.clone();
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.request_headers {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Expands `%{…}` macros. Unknown variables expand to nothing.
    fn expand<'m>(&self, m: &'m MacroString, rule: Option<&Rule>) -> Cow<'m, [u8]> {
        if !m.has_macros() {
            return Cow::Borrowed(m.raw.as_bytes());
        }
        let mut out = Vec::new();
        for part in &m.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Rule(key) => {
                    if let Some(rule) = rule {
                        out.extend_from_slice(self.rule_field(rule, key).as_bytes());
                    }
                }
                Part::Var(target) => {
                    let mut values = Vec::new();
                    self.target_values(target, &mut values);
                    if let Some(v) = values.first() {
                        out.extend_from_slice(&v.bytes);
                    }
                }
                Part::Unknown(_) => {}
            }
        }
        Cow::Owned(out)
    }

    /// `key` is lower-cased at load.
    fn rule_field(&self, rule: &Rule, key: &str) -> String {
        match key {
            "id" => rule.id.to_string(),
            "msg" => rule
                .actions
                .msg
                .as_ref()
                .map(|m| String::from_utf8_lossy(&self.expand(m, None)).into_owned())
                .unwrap_or_default(),
            "severity" => rule
                .actions
                .severity
                .map(|s| s.to_string())
                .unwrap_or_default(),
            "ver" => rule.actions.ver.clone().unwrap_or_default(),
            "rev" => rule.actions.rev.clone().unwrap_or_default(),
            "phase" => rule.phase.to_string(),
            _ => String::new(),
        }
    }

    fn run_effects(&mut self, link: &Rule, starter: &Rule) {
        for effect in &link.actions.effects {
            match effect {
                Effect::SetVar(set) => {
                    // Keys are lower-cased when parsed; only macros need work here.
                    let key: Cow<'_, str> = if set.key.has_macros() {
                        let key = self.expand(&set.key, Some(starter));
                        Cow::Owned(String::from_utf8_lossy(&key).to_ascii_lowercase())
                    } else {
                        Cow::Borrowed(&set.key.raw)
                    };
                    let new = match &set.op {
                        SetOp::Delete => None,
                        SetOp::Set(v) => Some(self.expand(v, Some(starter)).into_owned()),
                        SetOp::Add(v) | SetOp::Sub(v) => {
                            let delta = atoi(&self.expand(v, Some(starter)));
                            let current = self.collection(set.collection).get(key.as_ref());
                            let current = current.map_or(0, |c| atoi(c));
                            let sum = if matches!(set.op, SetOp::Add(_)) {
                                current.saturating_add(delta)
                            } else {
                                current.saturating_sub(delta)
                            };
                            Some(sum.to_string().into_bytes())
                        }
                    };
                    let collection = self.collection_mut(set.collection);
                    // Scores are updated many times a request: reuse the key.
                    match (new, collection.get_mut(key.as_ref())) {
                        (Some(v), Some(slot)) => *slot = v,
                        (Some(v), None) => {
                            collection.insert(key.into_owned(), v);
                        }
                        (None, _) => {
                            collection.remove(key.as_ref());
                        }
                    }
                }
                Effect::Ctl(ctl) => self.ctl(ctl),
                Effect::InitCol(var) => {
                    self.persistent.entry(var.name()).or_default();
                }
            }
        }
    }

    fn collection(&self, var: Var) -> &BTreeMap<String, Vec<u8>> {
        static EMPTY: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if var == Var::Tx {
            return &self.tx;
        }
        self.persistent.get(var.name()).unwrap_or(&EMPTY)
    }

    fn collection_mut(&mut self, var: Var) -> &mut BTreeMap<String, Vec<u8>> {
        if var == Var::Tx {
            return &mut self.tx;
        }
        self.persistent.entry(var.name()).or_default()
    }

    fn ctl(&mut self, ctl: &Ctl) {
        match ctl {
            Ctl::RuleEngine(mode) => self.mode = *mode,
            Ctl::RuleRemoveById(ranges) => {
                self.removed_rules.push(RuleSelector::Ids(ranges.clone()))
            }
            Ctl::RuleRemoveByTag(tag) => self
                .removed_rules
                .push(RuleSelector::Tagged(self.rules.ids_tagged(tag))),
            Ctl::RuleRemoveTargetById(ranges, targets) => {
                for t in targets {
                    self.removed_targets
                        .push((RuleSelector::Ids(ranges.clone()), t.clone()));
                }
            }
            Ctl::RuleRemoveTargetByTag(tag, targets) => {
                let ids = self.rules.ids_tagged(tag);
                for t in targets {
                    self.removed_targets
                        .push((RuleSelector::Tagged(Rc::clone(&ids)), t.clone()));
                }
            }
            Ctl::RequestBodyAccess(on) => self.request_body_access = *on,
            Ctl::ResponseBodyAccess(on) => self.response_body_access = *on,
            Ctl::ForceRequestBodyVariable(on) => self.force_body_variable = *on,
            Ctl::RequestBodyProcessor(p) => self.processor = Some(*p),
            Ctl::RequestBodyLimit(limit) => self.request_body_limit = *limit,
            Ctl::AuditEngine | Ctl::AuditLogParts => {}
        }
    }

    /// A full match: remember it, and write its log line unless `nolog`.
    fn record_match(&mut self, rule: &Rule) {
        let a = &rule.actions;
        if let Some(s) = a.severity {
            self.highest_severity = self.highest_severity.min(s);
        }
        // Only what is logged is worth expanding (most matches are `nolog`
        // flow control: paranoia-level skips, setup).
        let logs = rule.logs();
        let text = |m: &Option<MacroString>| match m {
            Some(m) if logs => String::from_utf8_lossy(&self.expand(m, Some(rule))).into_owned(),
            _ => String::new(),
        };
        let msg = text(&a.msg);
        let data = text(&a.logdata);
        let log_line = logs.then(|| self.log_line(rule, &msg, &data));
        self.matched.push(MatchedRule {
            id: rule.id,
            msg,
            log_line,
        });
    }

    /// ModSecurity's error-log format, which go-ftw and log pipelines read.
    /// Values a client controls are escaped so they cannot forge fields.
    fn log_line(&self, rule: &Rule, msg: &str, data: &str) -> String {
        let a = &rule.actions;
        let mut line = String::from("ModSecurity: Warning. ");
        if let Some((name, value)) = self.last_match() {
            let _ = write!(
                line,
                "Matched \"Operator `{}' with parameter `{}' against variable `{}' (Value: `{}' )\" ",
                rule.operator.name(),
                escape(truncate(rule.operator.argument().as_bytes(), 200)),
                escape(name.as_bytes()),
                escape(truncate(value, 200)),
            );
        }
        let _ = write!(
            line,
            "[file \"{}\"] [line \"{}\"] [id \"{}\"] [rev \"{}\"] [msg \"{}\"] [data \"{}\"] [severity \"{}\"] [ver \"{}\"] [maturity \"{}\"] [accuracy \"{}\"]",
            rule.location.file,
            rule.location.line,
            rule.id,
            a.rev.as_deref().unwrap_or(""),
            escape(msg.as_bytes()),
            escape(truncate(data.as_bytes(), 512)),
            a.severity.unwrap_or(0),
            a.ver.as_deref().unwrap_or(""),
            a.maturity.as_deref().unwrap_or("0"),
            a.accuracy.as_deref().unwrap_or("0"),
        );
        for tag in &a.tags {
            let _ = write!(line, " [tag \"{}\"]", escape(tag.as_bytes()));
        }
        let host = header(&self.request_headers, b"host").unwrap_or_default();
        let _ = write!(
            line,
            " [hostname \"{}\"] [uri \"{}\"] [unique_id \"{}\"]",
            escape(host),
            escape(truncate(&self.uri, 512)),
            escape(self.unique_id.as_bytes()),
        );
        line
    }
}

/// A count as text; the usual small ones without allocating.
fn number(n: usize) -> Cow<'static, [u8]> {
    const DIGITS: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    match DIGITS.get(n) {
        Some(d) => Cow::Borrowed(d),
        None => Cow::Owned(n.to_string().into_bytes()),
    }
}

fn header<'a>(headers: &'a [Pair], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

fn truncate(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

/// Printable ASCII stays; `"` and `\` are escaped; everything else is `\xHH`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// ModSecurity's number parsing: optional sign and leading digits, else 0.
pub fn atoi(bytes: &[u8]) -> i64 {
    let text = bytes.trim_ascii_start();
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut n: i64 = 0;
    for &b in digits.iter().take_while(|b| b.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative {
        -n
    } else {
        n
    }
}

fn strip_scheme_authority(path: &[u8]) -> &[u8] {
    let Some(i) = path.windows(3).position(|w| w == b"://") else {
        return path;
    };
    if !path[..i].iter().all(|b| b.is_ascii_alphabetic()) || i == 0 {
        return path;
    }
    let rest = &path[i + 3..];
    match rest.iter().position(|&b| b == b'/') {
        Some(j) => &rest[j..],
        None => b"/",
    }
}

/// `Cookie: a=1; b=2` → pairs; ModSecurity keeps values undecoded.
fn parse_cookies(value: &[u8]) -> Vec<Pair> {
    value
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .map(|c| match c.iter().position(|&b| b == b'=') {
            Some(i) => (c[..i].trim_ascii().to_vec(), c[i + 1..].to_vec()),
            None => (c.to_vec(), Vec::new()),
        })
        .collect()
}
