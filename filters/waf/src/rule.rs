//! The compiled form of `SecRule` / `SecAction`: targets, operator,
//! transformations and actions, each parsed once at load.

use crate::macros::MacroString;
use crate::operator::Operator;
use crate::parser::{split_actions, Location};
use crate::transform::Transform;
use crate::variable::{Target, Var};
use std::rc::Rc;

/// What a matching rule does to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    /// The phase's default disruptive action (`SecDefaultAction`).
    Block,
    Deny,
    Drop,
    Redirect(MacroString),
    Allow(AllowScope),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    /// Skips every later rule of phases 1–4.
    All,
    /// Skips the rest of the current phase.
    Phase,
    /// Skips the rest of the request phases (1–2).
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// A request body processor (`ctl:requestBodyProcessor`, or chosen by content type).
pub enum Processor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

impl Processor {
    pub fn name(self) -> &'static str {
        match self {
            Processor::UrlEncoded => "URLENCODED",
            Processor::Multipart => "MULTIPART",
            Processor::Json => "JSON",
            Processor::Xml => "XML",
        }
    }

    /// `URLENCODED`, `MULTIPART`, `JSON` or `XML`, in any case.
    pub fn parse(name: &str) -> Option<Processor> {
        match name.to_ascii_uppercase().as_str() {
            "URLENCODED" => Some(Processor::UrlEncoded),
            "MULTIPART" => Some(Processor::Multipart),
            "JSON" => Some(Processor::Json),
            "XML" => Some(Processor::Xml),
            _ => None,
        }
    }
}

/// `SecRuleEngine` / `ctl:ruleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    On,
    DetectionOnly,
    Off,
}

impl EngineMode {
    pub fn parse(text: &str) -> Option<EngineMode> {
        match text.to_ascii_lowercase().as_str() {
            "on" => Some(EngineMode::On),
            "detectiononly" => Some(EngineMode::DetectionOnly),
            "off" => Some(EngineMode::Off),
            _ => None,
        }
    }
}

/// `setvar`: `tx.x=v`, `tx.x=+v`, `tx.x=-v`, `!tx.x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVar {
    pub collection: Var,
    pub key: MacroString,
    pub op: SetOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOp {
    Set(MacroString),
    Add(MacroString),
    Sub(MacroString),
    Delete,
}

/// `ctl:` — changes to this transaction only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctl {
    RuleEngine(EngineMode),
    RuleRemoveById(Vec<(u64, u64)>),
    RuleRemoveByTag(String),
    /// The targets are parsed at load, as exclusions (`!VAR:key`).
    RuleRemoveTargetById(Vec<(u64, u64)>, Vec<Target>),
    RuleRemoveTargetByTag(String, Vec<Target>),
    RequestBodyAccess(bool),
    ResponseBodyAccess(bool),
    ForceRequestBodyVariable(bool),
    RequestBodyProcessor(Processor),
    RequestBodyLimit(usize),
    /// Accepted for CRS compatibility; meshward writes no audit log.
    AuditEngine,
    AuditLogParts,
}

/// One action that runs when a rule link matches, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    SetVar(SetVar),
    Ctl(Ctl),
    /// `initcol`: persistent collections have no store in a proxy; the
    /// collection starts empty for each transaction.
    InitCol(Var),
}

/// Everything after the operator.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub id: Option<u64>,
    pub phase: Option<u8>,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    pub rev: Option<String>,
    pub maturity: Option<String>,
    pub accuracy: Option<String>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub log: Option<bool>,
    pub capture: bool,
    pub multi_match: bool,
    pub chain: bool,
    pub skip_after: Option<String>,
    pub skip: u32,
    /// `t:none` seen: inherited transformations are dropped.
    pub transforms_reset: bool,
    pub transforms: Vec<Transform>,
    pub effects: Vec<Effect>,
}

impl Actions {
    /// Parses an action list such as `id:1,phase:2,t:lowercase,block`.
    pub fn parse(text: &str) -> Result<Actions, String> {
        let mut actions = Actions::default();
        for (name, value) in split_actions(text)? {
            actions.apply(&name, value)?;
        }
        Ok(actions)
    }

    fn apply(&mut self, name: &str, value: Option<String>) -> Result<(), String> {
        let lower = name.to_ascii_lowercase();
        let need = |value: Option<String>| value.ok_or_else(|| format!("`{name}` needs a value"));
        match lower.as_str() {
            "id" => {
                let v = need(value)?;
                let id = v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| format!("bad rule id `{v}`"))?;
                self.id = Some(id);
            }
            "phase" => self.phase = Some(parse_phase(&need(value)?)?),
            "msg" => self.msg = Some(MacroString::parse(&need(value)?)),
            "logdata" => self.logdata = Some(MacroString::parse(&need(value)?)),
            "tag" => self.tags.push(need(value)?),
            "severity" => self.severity = Some(parse_severity(&need(value)?)?),
            "ver" => self.ver = Some(need(value)?),
            "rev" => self.rev = Some(need(value)?),
            "maturity" => self.maturity = Some(need(value)?),
            "accuracy" => self.accuracy = Some(need(value)?),
            "pass" => self.disruptive = Some(Disruptive::Pass),
            "block" => self.disruptive = Some(Disruptive::Block),
            "deny" => self.disruptive = Some(Disruptive::Deny),
            "drop" => self.disruptive = Some(Disruptive::Drop),
            "redirect" => {
                self.disruptive = Some(Disruptive::Redirect(MacroString::parse(&need(value)?)))
            }
            "allow" => {
                let scope = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None => AllowScope::All,
                    Some("phase") => AllowScope::Phase,
                    Some("request") => AllowScope::Request,
                    Some(other) => return Err(format!("bad allow scope `{other}`")),
                };
                self.disruptive = Some(Disruptive::Allow(scope));
            }
            "status" => {
                let v = need(value)?;
                self.status = Some(
                    v.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (200..=599).contains(s))
                        .ok_or_else(|| format!("bad status `{v}`"))?,
                );
            }
            "log" => self.log = Some(true),
            "nolog" => self.log = Some(false),
            // There is no audit log in a proxy filter.
            "auditlog" | "noauditlog" => {}
            "capture" => self.capture = true,
            "multimatch" => self.multi_match = true,
            "chain" => self.chain = true,
            "skipafter" => self.skip_after = Some(need(value)?),
            "skip" => {
                let v = need(value)?;
                self.skip = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("bad skip count `{v}`"))?;
            }
            "t" => {
                let v = need(value)?;
                if v.eq_ignore_ascii_case("none") {
                    self.transforms_reset = true;
                    self.transforms.clear();
                } else {
                    let t = Transform::from_name(&v)
                        .ok_or_else(|| format!("unknown transformation `t:{v}`"))?;
                    self.transforms.push(t);
                }
            }
            "setvar" => self
                .effects
                .push(Effect::SetVar(parse_setvar(&need(value)?)?)),
            "ctl" => self.effects.push(Effect::Ctl(parse_ctl(&need(value)?)?)),
            "initcol" => {
                let v = need(value)?;
                let collection = v.split('=').next().unwrap_or_default();
                let var = Var::from_name(collection)
                    .filter(|var| {
                        matches!(
                            var,
                            Var::Ip | Var::Global | Var::Session | Var::User | Var::Resource
                        )
                    })
                    .ok_or_else(|| format!("initcol: unknown collection `{collection}`"))?;
                self.effects.push(Effect::InitCol(var));
            }
            other => return Err(format!("unsupported action `{other}`")),
        }
        Ok(())
    }

    /// `SecRuleUpdateActionById`, as ModSecurity defines it: the actions a
    /// rule may carry once (`msg`, `severity`, the disruptive action, …)
    /// replace the rule's; those it may repeat (`tag`, `t:`, `setvar`,
    /// `ctl`) are appended, and `t:none` first drops the rule's
    /// transformations. A rule's id, phase and chain cannot change.
    pub fn update(&mut self, with: Actions) -> Result<(), String> {
        // Destructured so that a new field cannot be forgotten here.
        let Actions {
            id,
            phase,
            msg,
            logdata,
            tags,
            severity,
            ver,
            rev,
            maturity,
            accuracy,
            disruptive,
            status,
            log,
            capture,
            multi_match,
            chain,
            skip_after,
            skip,
            transforms_reset,
            transforms,
            effects,
        } = with;
        if id.is_some() || phase.is_some() || chain {
            return Err("cannot change a rule's id, phase or chain".into());
        }
        fn replace<T>(slot: &mut Option<T>, new: Option<T>) {
            if new.is_some() {
                *slot = new;
            }
        }
        replace(&mut self.msg, msg);
        replace(&mut self.logdata, logdata);
        replace(&mut self.severity, severity);
        replace(&mut self.ver, ver);
        replace(&mut self.rev, rev);
        replace(&mut self.maturity, maturity);
        replace(&mut self.accuracy, accuracy);
        replace(&mut self.disruptive, disruptive);
        replace(&mut self.status, status);
        replace(&mut self.log, log);
        replace(&mut self.skip_after, skip_after);
        if skip > 0 {
            self.skip = skip;
        }
        self.capture |= capture;
        self.multi_match |= multi_match;
        self.tags.extend(tags);
        if transforms_reset {
            self.transforms_reset = true;
            self.transforms.clear();
        }
        self.transforms.extend(transforms);
        self.effects.extend(effects);
        Ok(())
    }
}

fn parse_phase(v: &str) -> Result<u8, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "request_headers" => Ok(1),
        "2" | "request" => Ok(2),
        "3" | "response_headers" => Ok(3),
        "4" | "response" => Ok(4),
        "5" | "logging" => Ok(5),
        other => Err(format!("bad phase `{other}`")),
    }
}

fn parse_severity(v: &str) -> Result<u8, String> {
    const NAMES: [&str; 8] = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    let v = v.trim();
    if let Ok(n) = v.parse::<u8>() {
        if n < 8 {
            return Ok(n);
        }
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(v))
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| format!("bad severity `{v}`"))
}

fn parse_setvar(v: &str) -> Result<SetVar, String> {
    let v = v.trim();
    let (delete, v) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (name, value) = match v.find('=') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let (collection, key) = name
        .split_once('.')
        .ok_or_else(|| format!("setvar `{v}`: expected collection.key"))?;
    let collection = Var::from_name(collection)
        .filter(|var| {
            matches!(
                var,
                Var::Tx | Var::Ip | Var::Global | Var::Session | Var::User | Var::Resource
            )
        })
        .ok_or_else(|| format!("setvar `{v}`: `{collection}` is not a writable collection"))?;
    if key.is_empty() {
        return Err(format!("setvar `{v}`: empty key"));
    }
    let op = match (delete, value) {
        (true, _) => SetOp::Delete,
        (false, None) => SetOp::Set(MacroString::parse("1")),
        (false, Some(value)) => {
            if let Some(n) = value.strip_prefix('+') {
                SetOp::Add(MacroString::parse(n))
            } else if let Some(n) = value.strip_prefix('-') {
                SetOp::Sub(MacroString::parse(n))
            } else {
                SetOp::Set(MacroString::parse(value))
            }
        }
    };
    Ok(SetVar {
        collection,
        // TX keys are case-insensitive; macro names are upper-cased by the parse.
        key: MacroString::parse(&key.to_ascii_lowercase()),
        op,
    })
}

/// `920000-920999` or `942100` lists (space or comma separated).
pub fn parse_id_ranges(v: &str) -> Result<Vec<(u64, u64)>, String> {
    let mut ranges = Vec::new();
    for part in v.split([' ', ',']).filter(|p| !p.is_empty()) {
        let bad = || format!("bad rule id or range `{part}`");
        let range = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let id = part.trim().parse().map_err(|_| bad())?;
                (id, id)
            }
        };
        if range.0 > range.1 {
            return Err(bad());
        }
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Err("no rule ids".to_string());
    }
    Ok(ranges)
}

/// Whether `id` falls in one of `ranges` (as `parse_id_ranges` gives them).
pub fn in_ranges(ranges: &[(u64, u64)], id: u64) -> bool {
    ranges.iter().any(|&(from, to)| (from..=to).contains(&id))
}

fn on_off(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("expected On or Off, got `{other}`")),
    }
}

fn parse_ctl(v: &str) -> Result<Ctl, String> {
    let (name, value) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl `{v}`: expected name=value"))?;
    let value = value.trim();
    let target = |value: &str| -> Result<(String, Vec<Target>), String> {
        let (left, target) = value
            .split_once(';')
            .ok_or_else(|| format!("ctl `{v}`: expected <id or tag>;<target>"))?;
        let targets = crate::variable::parse_targets(target)?
            .into_iter()
            .map(|t| Target { exclude: true, ..t })
            .collect();
        Ok((left.to_string(), targets))
    };
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(
            EngineMode::parse(value).ok_or_else(|| format!("ctl `{v}`: bad engine mode"))?,
        ),
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(value)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(value.to_string()),
        "ruleremovetargetbyid" => {
            let (ids, targets) = target(value)?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(&ids)?, targets)
        }
        "ruleremovetargetbytag" => {
            let (tag, targets) = target(value)?;
            Ctl::RuleRemoveTargetByTag(tag, targets)
        }
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(value)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on_off(value)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(value)?),
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(
            Processor::parse(value).ok_or_else(|| format!("ctl `{v}`: unknown body processor"))?,
        ),
        "requestbodylimit" => {
            Ctl::RequestBodyLimit(value.parse().map_err(|_| format!("ctl `{v}`: bad limit"))?)
        }
        "auditengine" => Ctl::AuditEngine,
        "auditlogparts" => Ctl::AuditLogParts,
        other => return Err(format!("unsupported ctl `{other}`")),
    })
}

/// A compiled `SecRule` (or `SecAction`, whose operator always matches).
#[derive(Debug)]
pub struct Rule {
    /// 0 for chain links after the first.
    pub id: u64,
    pub phase: u8,
    pub targets: Vec<Target>,
    pub operator: Rc<Operator>,
    pub operator_arg: Option<MacroString>,
    pub negated: bool,
    pub actions: Actions,
    pub chain: Option<Box<Rule>>,
    pub location: Location,
    /// Set for `SecAction`: no targets, always matches once.
    pub unconditional: bool,
    /// Links with the same transformation list share this id (numbered at
    /// load), so a transaction can reuse a value's transformed form.
    pub transforms_id: u32,
}

impl Rule {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.actions
            .tags
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tag))
    }

    /// `deny`/`block`/… only count on the chain starter.
    pub fn logs(&self) -> bool {
        self.actions.log.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actions_crs_uses() {
        let a = Actions::parse(
            "id:942100,phase:2,block,capture,t:none,t:urlDecodeUni,msg:'SQLi: %{TX.0}',\
             logdata:'Matched Data: %{TX.0}',tag:'attack-sqli',ver:'OWASP_CRS/4.28.0',\
             severity:'CRITICAL',multiMatch,setvar:'tx.sql_injection_score=+%{tx.critical_anomaly_score}',\
             ctl:ruleRemoveTargetById=942100;ARGS:foo,skipAfter:END,status:403,nolog,noauditlog",
        )
        .unwrap();
        assert_eq!(a.id, Some(942100));
        assert_eq!(a.phase, Some(2));
        assert_eq!(a.disruptive, Some(Disruptive::Block));
        assert!(a.capture && a.multi_match && a.transforms_reset);
        assert_eq!(
            a.transforms,
            vec![Transform::from_name("urlDecodeUni").unwrap()]
        );
        assert_eq!(a.severity, Some(2));
        assert_eq!(a.status, Some(403));
        assert_eq!(a.log, Some(false));
        assert_eq!(a.skip_after.as_deref(), Some("END"));
        assert_eq!(a.effects.len(), 2);
        match &a.effects[0] {
            Effect::SetVar(s) => {
                assert_eq!(s.collection, Var::Tx);
                assert!(matches!(&s.op, SetOp::Add(m) if m.raw == "%{tx.critical_anomaly_score}"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.effects[1],
            Effect::Ctl(Ctl::RuleRemoveTargetById(
                vec![(942100, 942100)],
                crate::variable::parse_targets("!ARGS:foo").unwrap()
            ))
        );
    }

    #[test]
    fn setvar_forms() {
        let del = parse_setvar("!tx.foo").unwrap();
        assert_eq!(del.op, SetOp::Delete);
        let bare = parse_setvar("tx.flag").unwrap();
        assert!(matches!(bare.op, SetOp::Set(m) if m.raw == "1"));
        let sub = parse_setvar("TX.score=-5").unwrap();
        assert!(matches!(sub.op, SetOp::Sub(m) if m.raw == "5"));
        assert!(parse_setvar("foo").is_err());
        assert!(parse_setvar("args.x=1").is_err());
    }

    #[test]
    fn unknown_actions_and_bad_values_are_errors() {
        assert!(Actions::parse("id:1,exec:/bin/sh")
            .unwrap_err()
            .contains("unsupported action `exec`"));
        assert!(Actions::parse("id:x").is_err());
        assert!(Actions::parse("id:1,phase:9").is_err());
        assert!(Actions::parse("id:1,t:rot13")
            .unwrap_err()
            .contains("t:rot13"));
        assert!(Actions::parse("id:1,ctl:fooBar=1").is_err());
        assert!(Actions::parse("id:1,status:99").is_err());
    }

    #[test]
    fn an_update_replaces_single_actions_and_appends_repeatable_ones() {
        let mut a = Actions::parse(
            "id:7,phase:1,deny,status:403,msg:'old',severity:2,tag:'a',t:lowercase,setvar:tx.x=1",
        )
        .unwrap();
        a.update(Actions::parse("pass,msg:'new',tag:'b',t:trim,setvar:tx.y=1").unwrap())
            .unwrap();
        assert_eq!(a.disruptive, Some(Disruptive::Pass));
        assert_eq!(a.msg.as_ref().map(|m| m.raw.as_str()), Some("new"));
        assert_eq!((a.status, a.severity), (Some(403), Some(2)), "untouched");
        assert_eq!(a.tags, vec!["a", "b"]);
        assert_eq!(
            a.transforms,
            vec![
                Transform::from_name("lowercase").unwrap(),
                Transform::from_name("trim").unwrap()
            ]
        );
        assert_eq!(a.effects.len(), 2);

        a.update(Actions::parse("t:none,t:urlDecode").unwrap())
            .unwrap();
        assert_eq!(
            a.transforms,
            vec![Transform::from_name("urlDecode").unwrap()]
        );
        assert!(a.transforms_reset);

        for fixed in ["id:8", "phase:2", "chain"] {
            assert!(a.update(Actions::parse(fixed).unwrap()).is_err(), "{fixed}");
        }
    }

    #[test]
    fn id_ranges() {
        assert_eq!(
            parse_id_ranges("920000-920999 942100").unwrap(),
            vec![(920000, 920999), (942100, 942100)]
        );
        assert!(parse_id_ranges("5-1").is_err());
    }
}
