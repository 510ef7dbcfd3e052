//! Directives → a rule set: rules per phase in configuration order, markers,
//! defaults and engine settings. Every directive or construct that is not
//! understood is a load error naming file, line and construct.

use crate::macros::MacroString;
use crate::operator::Operator;
use crate::parser::{self, Directive, LoadError};
use crate::rule::{Actions, Disruptive, EngineMode, Rule};
use crate::transform::Transform;
use crate::variable::parse_targets;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Where `Include` and `@pmFromFile` find their files.
pub trait Sources {
    /// The files an `Include` pattern names, in order: `(name, text)`;
    /// built-in texts are borrowed, not copied (a VM's memory never shrinks).
    fn include(&self, pattern: &str) -> Result<Vec<(String, Cow<'_, str>)>, String>;
    /// A data file named by `@pmFromFile` / `@ipMatchFromFile`.
    fn data_file(&self, name: &str) -> Result<String, String>;
}

/// What happens to a body larger than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitAction {
    /// Deny with 413 (request) or 500 (response), as ModSecurity does.
    Reject,
    /// Inspect the part within the limit and let the rest through.
    ProcessPartial,
}

/// Engine-wide settings from `SecRuleEngine`, `SecRequestBodyLimit`, ….
#[derive(Debug, Clone)]
pub struct Settings {
    pub engine: EngineMode,
    pub request_body_access: bool,
    pub request_body_limit: usize,
    pub request_body_no_files_limit: usize,
    pub request_body_limit_action: LimitAction,
    pub response_body_access: bool,
    pub response_body_limit: usize,
    pub response_body_limit_action: LimitAction,
    pub response_body_mime_types: Vec<String>,
    pub json_depth_limit: usize,
    pub arguments_limit: usize,
    pub component_signatures: Vec<String>,
}

impl Default for Settings {
    /// ModSecurity's defaults when a directive is absent.
    fn default() -> Self {
        Settings {
            engine: EngineMode::On,
            request_body_access: false,
            request_body_limit: 134_217_728,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_action: LimitAction::Reject,
            response_body_access: false,
            response_body_limit: 524_288,
            response_body_limit_action: LimitAction::Reject,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            json_depth_limit: 10_000,
            arguments_limit: 1000,
            component_signatures: Vec::new(),
        }
    }
}

/// One entry of a phase's list.
#[derive(Debug)]
pub enum Item {
    Rule(Box<Rule>),
    Marker(String),
}

/// A loaded configuration, shared by every transaction of a VM.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Phases 1–5 at indexes 0–4.
    pub phases: [Vec<Item>; 5],
    pub settings: Settings,
    /// Rule id → (phase index, position), for updates by id.
    ids: HashMap<u64, (usize, usize)>,
    /// Tag (lower-cased) → the ids of the rules that carry it, for `ctl`s
    /// that select rules by tag on every request.
    tagged: HashMap<String, Rc<HashSet<u64>>>,
    /// Directives accepted without effect (web-server settings), one note
    /// each with its location, which the filter logs at configure.
    pub notes: Vec<String>,
    /// Per phase and position: where a matching rule's `skipAfter` resumes
    /// (just after its marker), resolved once at load.
    resume: [Vec<Option<usize>>; 5],
}

/// Directives that tune a web server's ModSecurity module and mean nothing
/// inside a proxy filter (no audit log, debug log, temp files or disk
/// collections); accepted so the recommended configuration loads as is.
const HOST_ONLY_DIRECTIVES: &[&str] = &[
    "SecAuditEngine",
    "SecAuditLog",
    "SecAuditLog2",
    "SecAuditLogParts",
    "SecAuditLogRelevantStatus",
    "SecAuditLogType",
    "SecAuditLogFormat",
    "SecAuditLogStorageDir",
    "SecAuditLogDirMode",
    "SecAuditLogFileMode",
    "SecDebugLog",
    "SecDebugLogLevel",
    "SecTmpDir",
    "SecDataDir",
    "SecUploadDir",
    "SecUploadKeepFiles",
    "SecUploadFileMode",
    "SecUploadFileLimit",
    "SecTmpSaveUploadedFiles",
    "SecUnicodeMapFile",
    "SecStatusEngine",
    "SecCollectionTimeout",
    "SecPcreMatchLimit",
    "SecPcreMatchLimitRecursion",
    "SecRequestBodyInMemoryLimit",
    "SecCookieFormat",
    "SecServerSignature",
    // Names for persistent collections and audit logs, which a proxy has none of.
    "SecWebAppId",
    "SecSensorId",
    // Apache and nginx module settings.
    "SecConnEngine",
    "SecRuleInheritance",
    "SecDisableBackendCompression",
    // The XML processor never resolves external entities, whatever this says.
    "SecXmlExternalEntity",
];

/// More files than this in one configuration is an error (CRS is about 30).
const MAX_INCLUDED_FILES: usize = 1024;

/// The loader's state while directives are read.
struct Loader<'s> {
    sources: &'s dyn Sources,
    set: RuleSet,
    defaults: [Option<Actions>; 5],
    /// A rule whose last link had `chain`: the next SecRule joins it.
    open_chain: Option<Rule>,
    depth: usize,
    /// Files included so far: nesting is capped, and so is the total, or a
    /// few kilobytes of files that include each other ten times over would
    /// load for minutes (found by fuzzing).
    included: usize,
    /// Compiled operators by (name, argument), shared between rules.
    operators: HashMap<(String, String), Rc<Operator>>,
}

impl RuleSet {
    /// Loads several chunks of SecLang in order as one configuration,
    /// resolving `Include`s through `sources`.
    pub fn load_all(
        chunks: &[(String, String)],
        sources: &dyn Sources,
    ) -> Result<RuleSet, LoadError> {
        let mut loader = Loader {
            sources,
            set: RuleSet::default(),
            defaults: Default::default(),
            open_chain: None,
            depth: 0,
            included: 0,
            operators: HashMap::new(),
        };
        for (name, text) in chunks {
            for directive in parser::parse(name, text)? {
                loader.directive(directive)?;
            }
        }
        if let Some(rule) = loader.open_chain.take() {
            return Err(LoadError::new(
                &rule.location,
                format!("rule {} ends with `chain` but no rule follows", rule.id),
            ));
        }
        let mut set = loader.set;
        set.resolve_skips();
        set.number_transform_lists();
        set.index_tags();
        Ok(set)
    }

    fn index_tags(&mut self) {
        let mut tagged: HashMap<String, HashSet<u64>> = HashMap::new();
        for item in self.phases.iter().flatten() {
            if let Item::Rule(rule) = item {
                for tag in &rule.actions.tags {
                    tagged
                        .entry(tag.to_ascii_lowercase())
                        .or_default()
                        .insert(rule.id);
                }
            }
        }
        self.tagged = tagged.into_iter().map(|(k, v)| (k, Rc::new(v))).collect();
    }

    /// Gives each distinct transformation list one id, shared by every rule
    /// link that applies it.
    fn number_transform_lists(&mut self) {
        let mut ids: HashMap<Vec<Transform>, u32> = HashMap::new();
        for item in self.phases.iter_mut().flatten() {
            let Item::Rule(rule) = item else { continue };
            let mut link: Option<&mut Rule> = Some(rule);
            while let Some(l) = link {
                let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                l.transforms_id = *ids.entry(l.actions.transforms.clone()).or_insert(next);
                link = l.chain.as_deref_mut();
            }
        }
    }

    /// The ids of the rules tagged `tag` (case-insensitive).
    pub fn ids_tagged(&self, tag: &str) -> Rc<HashSet<u64>> {
        self.tagged
            .get(&tag.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// For every rule with `skipAfter:<marker>`, the position after the next
    /// marker of that name in its phase.
    fn resolve_skips(&mut self) {
        for (phase, items) in self.phases.iter().enumerate() {
            let resume = items
                .iter()
                .enumerate()
                .map(|(position, item)| {
                    let Item::Rule(rule) = item else { return None };
                    let marker = rule.actions.skip_after.as_deref()?;
                    items[position..]
                        .iter()
                        .position(|i| matches!(i, Item::Marker(m) if m == marker))
                        .map(|offset| position + offset + 1)
                })
                .collect();
            self.resume[phase] = resume;
        }
    }

    /// Where a matching rule's `skipAfter` resumes in phase index `phase`:
    /// just after its marker, or `None` when the phase has no such marker
    /// after it.
    pub fn resume_after(&self, phase: usize, position: usize) -> Option<usize> {
        *self.resume.get(phase)?.get(position)?
    }

    /// The number of rules (chain starters and SecActions).
    pub fn rule_count(&self) -> usize {
        self.phases
            .iter()
            .flatten()
            .filter(|i| matches!(i, Item::Rule(_)))
            .count()
    }

    pub fn rule(&self, id: u64) -> Option<&Rule> {
        let (phase, index) = *self.ids.get(&id)?;
        match self.phases.get(phase)?.get(index)? {
            Item::Rule(rule) => Some(rule),
            Item::Marker(_) => None,
        }
    }

    fn rule_mut(&mut self, id: u64) -> Option<&mut Rule> {
        let (phase, index) = *self.ids.get(&id)?;
        match self.phases.get_mut(phase)?.get_mut(index)? {
            Item::Rule(rule) => Some(rule),
            Item::Marker(_) => None,
        }
    }

    fn remove_where(&mut self, keep: impl Fn(&Rule) -> bool) {
        for phase in &mut self.phases {
            phase.retain(|item| match item {
                Item::Rule(rule) => keep(rule),
                Item::Marker(_) => true,
            });
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.ids.clear();
        for (p, phase) in self.phases.iter().enumerate() {
            for (i, item) in phase.iter().enumerate() {
                if let Item::Rule(rule) = item {
                    self.ids.insert(rule.id, (p, i));
                }
            }
        }
    }
}

/// The rules a `SecRuleRemoveBy*` / `SecRuleUpdate*By*` directive names by
/// its first argument(s): ids and ranges, a tag, or a message.
enum Selection {
    Ids(Vec<(u64, u64)>),
    Tag(String),
    Msg(String),
}

impl Selection {
    fn parse(d: &Directive) -> Result<Selection, String> {
        let name = d.name.to_ascii_lowercase();
        let first = d
            .args
            .first()
            .ok_or_else(|| format!("{}: missing argument 1", d.name))?;
        if name.ends_with("bytag") {
            Ok(Selection::Tag(first.clone()))
        } else if name.ends_with("bymsg") {
            Ok(Selection::Msg(first.clone()))
        } else {
            // `SecRuleRemoveById` takes any number of id arguments; the
            // updates take one (which may list several ids and ranges).
            let args = if name == "secruleremovebyid" {
                &d.args[..]
            } else {
                &d.args[..1]
            };
            let mut ranges = Vec::new();
            for a in args {
                ranges.extend(
                    crate::rule::parse_id_ranges(a).map_err(|e| format!("{}: {e}", d.name))?,
                );
            }
            Ok(Selection::Ids(ranges))
        }
    }

    fn selects(&self, rule: &Rule) -> bool {
        match self {
            Selection::Ids(ranges) => crate::rule::in_ranges(ranges, rule.id),
            Selection::Tag(tag) => rule.has_tag(tag),
            Selection::Msg(msg) => rule.actions.msg.as_ref().map(|m| m.raw.as_str()) == Some(msg),
        }
    }
}

impl Loader<'_> {
    fn directive(&mut self, d: Directive) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&d.location, message);
        let name = d.name.as_str();
        if self.open_chain.is_some() && !name.eq_ignore_ascii_case("SecRule") {
            return Err(err(format!(
                "`{name}` follows a rule that ends with `chain`; a SecRule must come next"
            )));
        }
        let arg = |n: usize| -> Result<&str, LoadError> {
            d.args
                .get(n)
                .map(String::as_str)
                .ok_or_else(|| err(format!("{name}: missing argument {}", n + 1)))
        };
        let settings = &mut self.set.settings;
        match name.to_ascii_lowercase().as_str() {
            "secrule" => self.sec_rule(&d)?,
            "secaction" => self.sec_action(&d)?,
            "secmarker" => {
                let marker = arg(0)?.to_string();
                for phase in &mut self.set.phases {
                    phase.push(Item::Marker(marker.clone()));
                }
            }
            "secdefaultaction" => {
                let actions = Actions::parse(arg(0)?).map_err(|e| err(format!("{name}: {e}")))?;
                let phase = actions
                    .phase
                    .ok_or_else(|| err(format!("{name}: needs a phase")))?;
                if actions.id.is_some() || actions.chain || !actions.effects.is_empty() {
                    return Err(err(format!(
                        "{name}: only phase, disruptive, log and t: actions may be defaults"
                    )));
                }
                self.defaults[usize::from(phase - 1)] = Some(actions);
            }
            "include" => {
                if self.depth > 8 {
                    return Err(err("Include nested too deeply".into()));
                }
                let files = self
                    .sources
                    .include(arg(0)?)
                    .map_err(|e| err(format!("Include {}: {e}", arg(0).unwrap_or_default())))?;
                self.included += files.len();
                if self.included > MAX_INCLUDED_FILES {
                    return Err(err(format!(
                        "more than {MAX_INCLUDED_FILES} files included in one configuration"
                    )));
                }
                self.depth += 1;
                for (file, text) in files {
                    for directive in parser::parse(&file, &text)? {
                        self.directive(directive)?;
                    }
                }
                self.depth -= 1;
            }
            "secruleengine" => {
                settings.engine = EngineMode::parse(arg(0)?)
                    .ok_or_else(|| err(format!("{name}: expected On, Off or DetectionOnly")))?
            }
            "secrequestbodyaccess" => settings.request_body_access = on_off(&d, arg(0)?)?,
            "secresponsebodyaccess" => settings.response_body_access = on_off(&d, arg(0)?)?,
            "secrequestbodylimit" => settings.request_body_limit = number(&d, arg(0)?)?,
            "secrequestbodynofileslimit" => {
                settings.request_body_no_files_limit = number(&d, arg(0)?)?
            }
            "secresponsebodylimit" => settings.response_body_limit = number(&d, arg(0)?)?,
            "secrequestbodyjsondepthlimit" => settings.json_depth_limit = number(&d, arg(0)?)?,
            "secargumentslimit" => settings.arguments_limit = number(&d, arg(0)?)?,
            "secrequestbodylimitaction" => {
                settings.request_body_limit_action = limit_action(&d, arg(0)?)?
            }
            "secresponsebodylimitaction" => {
                settings.response_body_limit_action = limit_action(&d, arg(0)?)?
            }
            "secresponsebodymimetype" => settings.response_body_mime_types.extend(
                d.args
                    .iter()
                    .flat_map(|a| a.split_whitespace())
                    .map(|m| m.to_ascii_lowercase()),
            ),
            "secresponsebodymimetypesclear" => settings.response_body_mime_types.clear(),
            "secargumentseparator" => {
                if arg(0)? != "&" {
                    return Err(err(format!("{name}: only `&` is supported")));
                }
            }
            "seccomponentsignature" => settings.component_signatures.push(arg(0)?.to_string()),
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
                self.update_targets(&d)?
            }
            "secruleupdateactionbyid" => self.update_actions(&d)?,
            "secruleremovebyid" | "secruleremovebytag" | "secruleremovebymsg" => {
                let selection = Selection::parse(&d).map_err(&err)?;
                self.set.remove_where(|r| !selection.selects(r));
            }
            _ if HOST_ONLY_DIRECTIVES
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name)) =>
            {
                self.set.notes.push(format!(
                    "{}: {name} has no effect in a proxy filter (no disk, audit log or backtracking regexes)",
                    d.location
                ));
            }
            _ => return Err(err(format!("unsupported directive `{name}`"))),
        }
        Ok(())
    }

    /// `SecRuleUpdateTargetBy{Id,Tag,Msg} RULES TARGETS [REPLACED]`: adds
    /// the targets (`!VAR:key` adds an exclusion) to every rule selected;
    /// with a third argument they replace that target instead.
    fn update_targets(&mut self, d: &Directive) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&d.location, format!("{}: {message}", d.name));
        let (Some(targets), None) = (d.args.get(1), d.args.get(3)) else {
            return Err(err("expected RULES TARGETS [REPLACED_TARGET]".into()));
        };
        let targets = parse_targets(targets).map_err(&err)?;
        let replaced = match d.args.get(2) {
            Some(text) => parse_targets(text).map_err(&err)?,
            None => Vec::new(),
        };
        for id in self.selected_ids(d)? {
            let Some(rule) = self.set.rule_mut(id) else {
                continue;
            };
            for r in &replaced {
                let Some(at) = rule.targets.iter().position(|t| t == r) else {
                    return Err(err(format!("rule {id} has no target `{}`", d.args[2])));
                };
                rule.targets.remove(at);
            }
            for t in &targets {
                if !rule.targets.contains(t) {
                    rule.targets.push(t.clone());
                }
            }
        }
        Ok(())
    }

    /// `SecRuleUpdateActionById RULES ACTIONS` (see `Actions::update`).
    fn update_actions(&mut self, d: &Directive) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&d.location, format!("{}: {message}", d.name));
        let (Some(text), None) = (d.args.get(1), d.args.get(2)) else {
            return Err(err("expected RULES ACTIONS".into()));
        };
        for id in self.selected_ids(d)? {
            let mut update = Actions::parse(text).map_err(&err)?;
            let Some(rule) = self.set.rule_mut(id) else {
                continue;
            };
            if update.disruptive == Some(Disruptive::Block) {
                let defaults = self.defaults[usize::from(rule.phase - 1)].as_ref();
                update.disruptive = Some(default_disruptive(defaults));
            }
            rule.actions.update(update).map_err(&err)?;
        }
        Ok(())
    }

    /// The ids of the loaded rules a directive's first argument selects; an
    /// update that selects nothing is an error, so a mistyped exclusion
    /// cannot silently leave a false positive in place.
    fn selected_ids(&self, d: &Directive) -> Result<Vec<u64>, LoadError> {
        let selection =
            Selection::parse(d).map_err(|message| LoadError::new(&d.location, message))?;
        let ids: Vec<u64> = self
            .set
            .phases
            .iter()
            .flatten()
            .filter_map(|item| match item {
                Item::Rule(rule) if selection.selects(rule) => Some(rule.id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Err(LoadError::new(
                &d.location,
                format!(
                    "{}: no rule loaded before this line matches `{}`",
                    d.name,
                    d.args.first().map(String::as_str).unwrap_or_default()
                ),
            ));
        }
        Ok(ids)
    }

    fn sec_rule(&mut self, d: &Directive) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&d.location, message);
        if d.args.len() < 2 || d.args.len() > 3 {
            return Err(err(format!(
                "SecRule takes VARIABLES \"OPERATOR\" [\"ACTIONS\"], got {} arguments",
                d.args.len()
            )));
        }
        let targets = parse_targets(&d.args[0]).map_err(|e| err(format!("SecRule: {e}")))?;
        let (negated, operator, operator_arg) = self.operator(&d.args[1]).map_err(&err)?;
        let actions = match d.args.get(2) {
            Some(text) => Actions::parse(text).map_err(|e| err(format!("SecRule: {e}")))?,
            None => Actions::default(),
        };
        let rule = Rule {
            id: actions.id.unwrap_or(0),
            phase: 0,
            targets,
            operator,
            operator_arg,
            negated,
            actions,
            chain: None,
            location: d.location.clone(),
            unconditional: false,
            transforms_id: 0,
        };
        self.add(rule)
    }

    fn sec_action(&mut self, d: &Directive) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&d.location, message);
        let text = d
            .args
            .first()
            .ok_or_else(|| err("SecAction needs an action list".into()))?;
        if d.args.len() > 1 {
            return Err(err("SecAction takes one argument".into()));
        }
        let actions = Actions::parse(text).map_err(|e| err(format!("SecAction: {e}")))?;
        let (_, operator, _) = self.operator("@unconditionalMatch").map_err(err)?;
        let rule = Rule {
            id: actions.id.unwrap_or(0),
            phase: 0,
            targets: Vec::new(),
            operator,
            operator_arg: None,
            negated: false,
            actions,
            chain: None,
            location: d.location.clone(),
            unconditional: true,
            transforms_id: 0,
        };
        self.add(rule)
    }

    /// `"!@rx foo"` → (negated, operator, macro argument if any).
    fn operator(
        &mut self,
        text: &str,
    ) -> Result<(bool, Rc<Operator>, Option<MacroString>), String> {
        let text = text.trim_start();
        let (negated, text) = match text.strip_prefix('!') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, text),
        };
        let (name, argument) = match text.strip_prefix('@') {
            Some(rest) => match rest.find(char::is_whitespace) {
                Some(i) => (&rest[..i], rest[i..].trim_start()),
                None => (rest, ""),
            },
            None => ("rx", text),
        };
        // CRS repeats some patterns across rules: each is compiled once per VM.
        let key = (name.to_ascii_lowercase(), argument.to_string());
        let operator = match self.operators.get(&key) {
            Some(op) => Rc::clone(op),
            None => {
                let sources = self.sources;
                let op = Operator::compile(name, argument, &|file| sources.data_file(file))
                    .map_err(|e| {
                        // One log line: regex errors span several lines.
                        let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
                        if e.starts_with('@') {
                            e
                        } else {
                            format!("@{name}: {e}")
                        }
                    })?;
                let op = Rc::new(op);
                self.operators.insert(key, Rc::clone(&op));
                op
            }
        };
        let macro_arg = operator.has_macros().then(|| MacroString::parse(argument));
        Ok((negated, operator, macro_arg))
    }

    /// Adds a rule or chain link, applying the phase's default actions to a
    /// chain starter.
    fn add(&mut self, mut rule: Rule) -> Result<(), LoadError> {
        let err = |message: String| LoadError::new(&rule.location, message);
        if let Some(mut starter) = self.open_chain.take() {
            let a = &rule.actions;
            if a.id.is_some() || a.phase.is_some() {
                return Err(err("a chained rule cannot set id or phase".into()));
            }
            if a.disruptive.is_some() || a.skip_after.is_some() || a.skip > 0 {
                return Err(err(
                    "disruptive and flow actions belong on the chain's first rule".into(),
                ));
            }
            let continues = a.chain;
            rule.phase = starter.phase;
            rule.id = starter.id;
            let defaults = self.defaults[usize::from(starter.phase - 1)].as_ref();
            inherit_transforms(&mut rule.actions, defaults);
            let mut link = &mut starter.chain;
            while let Some(next) = link {
                link = &mut next.chain;
            }
            *link = Some(Box::new(rule));
            if continues {
                self.open_chain = Some(starter);
            } else {
                self.push(starter)?;
            }
            return Ok(());
        }
        let id = rule
            .actions
            .id
            .ok_or_else(|| err("a rule needs an `id` action".into()))?;
        if self.set.ids.contains_key(&id) {
            return Err(err(format!("rule id {id} is duplicated")));
        }
        let phase = rule.actions.phase.unwrap_or(2);
        rule.phase = phase;
        let defaults = self.defaults[usize::from(phase - 1)].as_ref();
        apply_defaults(&mut rule.actions, defaults);
        if rule.actions.chain {
            self.open_chain = Some(rule);
            Ok(())
        } else {
            self.push(rule)
        }
    }

    fn push(&mut self, rule: Rule) -> Result<(), LoadError> {
        let phase = usize::from(rule.phase - 1);
        let list = &mut self.set.phases[phase];
        self.set.ids.insert(rule.id, (phase, list.len()));
        list.push(Item::Rule(Box::new(rule)));
        Ok(())
    }
}

/// Merges `SecDefaultAction` into a chain starter: its disruptive action
/// stands in for `block` and for rules that name none; its `log` and `t:`
/// apply unless the rule says otherwise.
fn apply_defaults(actions: &mut Actions, defaults: Option<&Actions>) {
    actions.disruptive = match actions.disruptive.take() {
        None | Some(Disruptive::Block) => Some(default_disruptive(defaults)),
        other => other,
    };
    if actions.status.is_none() {
        actions.status = defaults.and_then(|d| d.status);
    }
    if actions.log.is_none() {
        actions.log = Some(defaults.and_then(|d| d.log).unwrap_or(true));
    }
    inherit_transforms(actions, defaults);
}

/// What `block` means in a phase: its `SecDefaultAction`'s disruptive
/// action, `pass` without one.
fn default_disruptive(defaults: Option<&Actions>) -> Disruptive {
    match defaults.and_then(|d| d.disruptive.clone()) {
        None | Some(Disruptive::Block) => Disruptive::Pass,
        Some(other) => other,
    }
}

fn inherit_transforms(actions: &mut Actions, defaults: Option<&Actions>) {
    if let Some(d) = defaults {
        if !actions.transforms_reset && !d.transforms.is_empty() {
            let mut all = d.transforms.clone();
            all.append(&mut actions.transforms);
            actions.transforms = all;
        }
    }
}

fn on_off(d: &Directive, v: &str) -> Result<bool, LoadError> {
    match v.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(LoadError::new(
            &d.location,
            format!("{}: expected On or Off, got `{v}`", d.name),
        )),
    }
}

fn number(d: &Directive, v: &str) -> Result<usize, LoadError> {
    v.trim().parse().map_err(|_| {
        LoadError::new(
            &d.location,
            format!("{}: expected a number, got `{v}`", d.name),
        )
    })
}

fn limit_action(d: &Directive, v: &str) -> Result<LimitAction, LoadError> {
    match v.to_ascii_lowercase().as_str() {
        "reject" => Ok(LimitAction::Reject),
        "processpartial" => Ok(LimitAction::ProcessPartial),
        _ => Err(LoadError::new(
            &d.location,
            format!("{}: expected Reject or ProcessPartial, got `{v}`", d.name),
        )),
    }
}
