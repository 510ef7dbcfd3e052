//! go-ftw test files: the YAML format of CRS's regression tests, as go-ftw v2.3.0 (the version
//! CRS v4.28.0's CI runs) reads it — schema v2.3.0 of
//! <https://github.com/coreruleset/ftw-tests-schema> (`spec/v2.3.0/waf-tests-schema-v2.3.0.json`).
//!
//! Every object rejects fields the schema does not define, so a typo in a test file is an
//! error naming the file and the field instead of an expectation silently dropped. Scalars are
//! read the way Go's YAML decoder fills a `string` field: `Content-Length: 0` is the text `0`.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// One test file: `meta`, `rule_id` and its tests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default)]
    pub meta: Meta,
    /// The rule the tests target. go-ftw falls back on the first number in the file name.
    #[serde(default)]
    pub rule_id: Option<u64>,
    #[serde(default)]
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub author: Option<String>,
    /// Deprecated in the schema and ignored by go-ftw (platform overrides replace it).
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub version: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One test: one or more stages, each a request and what to expect of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// Deprecated; go-ftw names tests `<rule_id>-<test_id>`.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub test_title: Option<String>,
    /// The test's number within its rule; go-ftw uses the position (from 1) when absent.
    #[serde(default)]
    pub test_id: Option<u64>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub desc: Option<String>,
    #[serde(default)]
    pub stages: Vec<Stage>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub description: Option<String>,
    #[serde(default)]
    pub input: Input,
    #[serde(default)]
    pub output: Output,
}

/// The request of a stage. Defaults (go-ftw's): `GET / HTTP/1.1` to `localhost:80` over `http`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    #[serde(default, deserialize_with = "opt_scalar")]
    pub dest_addr: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// `http` or `https`.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub protocol: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub uri: Option<String>,
    /// Send this stage to the `Location` of the previous stage's redirect.
    #[serde(default)]
    pub follow_redirect: Option<bool>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub method: Option<String>,
    /// A YAML map, kept in the order written and with repeated names (go-ftw itself sorts
    /// the names before sending; see [`super::request`]).
    #[serde(default, deserialize_with = "opt_header_map")]
    pub headers: Option<Vec<(String, String)>>,
    /// Headers sent exactly in this order; takes precedence over `headers`.
    #[serde(default)]
    pub ordered_headers: Option<Vec<HeaderTuple>>,
    /// The body; go-ftw evaluates it as a Go template first (`{{ "1" | repeat 64200 }}`).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub data: Option<String>,
    /// The body, base64-encoded (for bytes YAML cannot carry).
    #[serde(default, deserialize_with = "opt_scalar")]
    pub encoded_data: Option<String>,
    #[serde(default)]
    pub save_cookie: Option<bool>,
    /// Deprecated inverse of `autocomplete_headers`.
    #[serde(default)]
    pub stop_magic: Option<bool>,
    /// Whether go-ftw completes the request (`Content-Type`, `Content-Length`, `Connection`);
    /// default true.
    #[serde(default)]
    pub autocomplete_headers: Option<bool>,
    /// A whole raw request, base64-encoded, sent byte for byte; overrides every other field.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub encoded_request: Option<String>,
    /// The response the backend should send (albedo's reflection spec).
    #[serde(default)]
    pub response: Option<ResponseSpec>,
    /// Only changes the `Host` of go-ftw's log-marker requests, which this runner does not send.
    #[serde(default)]
    pub virtual_host_mode: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderTuple {
    #[serde(deserialize_with = "scalar")]
    pub name: String,
    #[serde(deserialize_with = "scalar")]
    pub value: String,
}

/// `input.response`: what the backend answers, in the test file's snake_case spelling of
/// albedo's reflection spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    #[serde(default, deserialize_with = "opt_header_map")]
    pub headers: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub encoded_body: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub log_message: Option<String>,
}

/// What a stage expects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The expected status: one code, or (ftw v1) a list of acceptable codes; empty: any.
    #[serde(default, deserialize_with = "status_list")]
    pub status: Vec<u16>,
    /// A regular expression the whole response (status line, headers, body) must match.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub response_contains: Option<String>,
    /// Deprecated form of `log.match_regex`.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub log_contains: Option<String>,
    /// Deprecated form of `log.no_match_regex`.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub no_log_contains: Option<String>,
    #[serde(default)]
    pub log: Log,
    /// The request is expected to fail (no response, a reset, a timeout).
    #[serde(default)]
    pub expect_error: Option<bool>,
    /// Run the stage a second time when it fails (a phase-5 log race in a real deployment).
    #[serde(default)]
    pub retry_once: Option<bool>,
    /// Exactly one rule (the one in `expect_ids`) may be logged.
    #[serde(default)]
    pub isolated: bool,
}

/// Expectations on the WAF's log lines for the stage's request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub expect_ids: Vec<u64>,
    #[serde(default)]
    pub no_expect_ids: Vec<u64>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub match_regex: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    pub no_match_regex: Option<String>,
}

impl Output {
    /// True when the output states at least one expectation.
    pub fn expects_anything(&self) -> bool {
        !self.status.is_empty()
            || self.response_contains.is_some()
            || self.log_contains.is_some()
            || self.no_log_contains.is_some()
            || self.log != Log::default()
            || self.expect_error.is_some()
            || self.isolated
    }

    /// go-ftw's post-load step: the deprecated `log_contains` / `no_log_contains` become the
    /// log regexes when those (and the id lists) are unset.
    pub fn effective_log(&self) -> Log {
        let mut log = self.log.clone();
        if let Some(regex) = &self.log_contains {
            if log.expect_ids.is_empty() && log.match_regex.is_none() {
                log.match_regex = Some(regex.clone());
            }
        }
        if let Some(regex) = &self.no_log_contains {
            if log.no_expect_ids.is_empty() && log.no_match_regex.is_none() {
                log.no_match_regex = Some(regex.clone());
            }
        }
        log
    }
}

/// A test file read like go-ftw reads it, with the fields the schema does not define.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: TestFile,
    /// Fields outside the schema, as `path.field` (`tests[0].stages[0].input.bogus`). go-ftw
    /// (YAML decoding without known-field checks) ignores them; so does the loaded `file`.
    pub unknown_fields: Vec<String>,
}

impl TestFile {
    /// Reads a test file: strictly first; when the only problem is fields outside the schema,
    /// again without them (as go-ftw does), naming each one in [`Loaded::unknown_fields`].
    pub fn load(text: &str) -> Result<Loaded, serde_yaml::Error> {
        let strict = match TestFile::parse(text) {
            Ok(file) => {
                return Ok(Loaded {
                    file,
                    unknown_fields: Vec::new(),
                })
            }
            Err(e) => e,
        };
        if !strict.to_string().contains("unknown field") {
            return Err(strict);
        }
        let Ok(mut value) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
            return Err(strict);
        };
        let mut unknown_fields = Vec::new();
        strip_unknown(&mut value, Shape::File, "", &mut unknown_fields);
        match serde_yaml::from_value::<TestFile>(value) {
            Ok(file) if !unknown_fields.is_empty() => Ok(Loaded {
                file,
                unknown_fields,
            }),
            _ => Err(strict),
        }
    }

    /// Parses one test file strictly; an empty document (a file of comments) has no tests.
    pub fn parse(text: &str) -> Result<TestFile, serde_yaml::Error> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
        {
            return Ok(TestFile {
                meta: Meta::default(),
                rule_id: None,
                tests: Vec::new(),
            });
        }
        serde_yaml::from_str(text)
    }

    /// `rule_id`, or go-ftw's fallback: the first run of digits in the file name.
    pub fn rule_id_or_from_name(&self, path: &Path) -> Option<u64> {
        if let Some(id) = self.rule_id.filter(|id| *id > 0) {
            return Some(id);
        }
        let name = path.file_name()?.to_string_lossy().into_owned();
        let digits: String = name
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    }
}

impl Test {
    /// `test_id`, or the test's position in the file counting from 1 (go-ftw).
    pub fn id_or_position(&self, index: usize) -> u64 {
        self.test_id
            .filter(|id| *id > 0)
            .unwrap_or(index as u64 + 1)
    }
}

/// The objects of the schema, for removing fields it does not define.
#[derive(Clone, Copy)]
enum Shape {
    File,
    Meta,
    Test,
    Stage,
    Input,
    HeaderTuple,
    Response,
    Output,
    Log,
}

impl Shape {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Shape::File => &["meta", "rule_id", "tests"],
            Shape::Meta => &[
                "author",
                "enabled",
                "name",
                "description",
                "version",
                "tags",
            ],
            Shape::Test => &["test_title", "test_id", "desc", "stages", "tags"],
            Shape::Stage => &["description", "input", "output"],
            Shape::Input => &[
                "dest_addr",
                "port",
                "protocol",
                "uri",
                "follow_redirect",
                "version",
                "method",
                "headers",
                "ordered_headers",
                "data",
                "encoded_data",
                "save_cookie",
                "stop_magic",
                "autocomplete_headers",
                "encoded_request",
                "response",
                "virtual_host_mode",
            ],
            Shape::HeaderTuple => &["name", "value"],
            Shape::Response => &["headers", "status", "body", "encoded_body", "log_message"],
            Shape::Output => &[
                "status",
                "response_contains",
                "log_contains",
                "no_log_contains",
                "log",
                "expect_error",
                "retry_once",
                "isolated",
            ],
            Shape::Log => &[
                "expect_ids",
                "no_expect_ids",
                "match_regex",
                "no_match_regex",
            ],
        }
    }

    /// The shape of a field's value, and whether it is a list of that shape.
    fn child(self, field: &str) -> Option<(Shape, bool)> {
        Some(match (self, field) {
            (Shape::File, "meta") => (Shape::Meta, false),
            (Shape::File, "tests") => (Shape::Test, true),
            (Shape::Test, "stages") => (Shape::Stage, true),
            (Shape::Stage, "input") => (Shape::Input, false),
            (Shape::Stage, "output") => (Shape::Output, false),
            (Shape::Input, "ordered_headers") => (Shape::HeaderTuple, true),
            (Shape::Input, "response") => (Shape::Response, false),
            (Shape::Output, "log") => (Shape::Log, false),
            _ => return None,
        })
    }
}

fn strip_unknown(value: &mut serde_yaml::Value, shape: Shape, path: &str, found: &mut Vec<String>) {
    let serde_yaml::Value::Mapping(map) = value else {
        return;
    };
    let fields = shape.fields();
    let unknown: Vec<serde_yaml::Value> = map
        .keys()
        .filter(|k| !k.as_str().is_some_and(|k| fields.contains(&k)))
        .cloned()
        .collect();
    for key in unknown {
        let name = scalar_text(key.clone()).unwrap_or_else(|_| "?".into());
        found.push(if path.is_empty() {
            name
        } else {
            format!("{path}.{name}")
        });
        map.remove(&key);
    }
    for (key, child) in map.iter_mut() {
        let Some(field) = key.as_str() else { continue };
        let Some((child_shape, is_list)) = shape.child(field) else {
            continue;
        };
        let child_path = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        match (is_list, child) {
            (true, serde_yaml::Value::Sequence(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    strip_unknown(item, child_shape, &format!("{child_path}[{i}]"), found);
                }
            }
            (false, child) => strip_unknown(child, child_shape, &child_path, found),
            _ => {}
        }
    }
}

/// A YAML scalar as the text Go's decoder would put in a string field.
fn scalar_text(value: serde_yaml::Value) -> Result<String, String> {
    match value {
        serde_yaml::Value::String(s) => Ok(s),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml::Value::Null => Ok(String::new()),
        serde_yaml::Value::Tagged(t) => scalar_text(t.value),
        serde_yaml::Value::Sequence(_) => Err("expected a string, found a list".into()),
        serde_yaml::Value::Mapping(_) => Err("expected a string, found a map".into()),
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    scalar_text(serde_yaml::Value::deserialize(d)?).map_err(de::Error::custom)
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scalar(d).map(Some)
}

fn status_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u16),
        Many(Vec<u16>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        // go-ftw: status 0 means "no expectation".
        Some(OneOrMany::One(0)) => Vec::new(),
        Some(OneOrMany::One(code)) => vec![code],
        Some(OneOrMany::Many(codes)) => codes,
    })
}

/// A YAML map read as ordered (name, value) pairs, repeated names kept.
fn opt_header_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Option<Vec<(String, String)>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of header names to values")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some((name, value)) =
                map.next_entry::<serde_yaml::Value, serde_yaml::Value>()?
            {
                let name = scalar_text(name).map_err(de::Error::custom)?;
                let value = scalar_text(value)
                    .map_err(|e| de::Error::custom(format!("header {name}: {e}")))?;
                pairs.push((name, value));
            }
            Ok(Some(pairs))
        }
    }
    d.deserialize_any(Pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
meta:
  author: "someone"
  enabled: true
  name: "942100.yaml"
  description: "SQLi"
  version: "v2"
  tags: [sqli]
rule_id: 942100
tests:
  - test_title: "942100-1"
    test_id: 7
    desc: "a description"
    tags: [a, b]
    stages:
      - description: "first"
        input:
          dest_addr: 127.0.0.1
          port: 80
          protocol: http
          uri: "/get?x=1"
          follow_redirect: false
          version: "HTTP/1.0"
          method: POST
          headers:
            Host: localhost
            Content-Length: 0
            X-Dup: one
            X-Dup: two
          data: "a=b"
          encoded_data: "YWJj"
          save_cookie: true
          stop_magic: false
          autocomplete_headers: false
          encoded_request: "R0VUIC8gSFRUUC8xLjENCg0K"
          virtual_host_mode: true
          response:
            status: 302
            headers: {Location: /x}
            body: hello
            encoded_body: aGk=
            log_message: msg
        output:
          status: [200, 403]
          response_contains: "ok"
          log_contains: "id 1"
          no_log_contains: "id 2"
          expect_error: false
          retry_once: true
          isolated: true
          log:
            expect_ids: [942100]
            no_expect_ids: [942101, 942102]
            match_regex: 'a'
            no_match_regex: 'b'
      - input:
          ordered_headers:
            - name: B
              value: "2"
            - name: A
              value: "1"
        output:
          status: 403
"#;

    #[test]
    fn every_schema_field_is_read() {
        let file = TestFile::parse(FULL).unwrap();
        assert_eq!(file.rule_id, Some(942100));
        assert_eq!(file.meta.author.as_deref(), Some("someone"));
        assert_eq!(file.meta.enabled, Some(true));
        assert_eq!(file.meta.tags, vec!["sqli"]);
        let test = &file.tests[0];
        assert_eq!(test.id_or_position(0), 7);
        assert_eq!(test.desc.as_deref(), Some("a description"));
        assert_eq!(test.tags, vec!["a", "b"]);
        let input = &test.stages[0].input;
        assert_eq!(input.dest_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(input.port, Some(80));
        assert_eq!(input.protocol.as_deref(), Some("http"));
        assert_eq!(input.uri.as_deref(), Some("/get?x=1"));
        assert_eq!(input.follow_redirect, Some(false));
        assert_eq!(input.version.as_deref(), Some("HTTP/1.0"));
        assert_eq!(input.method.as_deref(), Some("POST"));
        assert_eq!(
            input.headers.as_deref().unwrap(),
            &[
                ("Host".to_string(), "localhost".to_string()),
                ("Content-Length".to_string(), "0".to_string()),
                ("X-Dup".to_string(), "one".to_string()),
                ("X-Dup".to_string(), "two".to_string()),
            ]
        );
        assert_eq!(input.data.as_deref(), Some("a=b"));
        assert_eq!(input.encoded_data.as_deref(), Some("YWJj"));
        assert_eq!(input.save_cookie, Some(true));
        assert_eq!(input.stop_magic, Some(false));
        assert_eq!(input.autocomplete_headers, Some(false));
        assert_eq!(
            input.encoded_request.as_deref(),
            Some("R0VUIC8gSFRUUC8xLjENCg0K")
        );
        assert_eq!(input.virtual_host_mode, Some(true));
        let response = input.response.as_ref().unwrap();
        assert_eq!(response.status, Some(302));
        assert_eq!(
            response.headers.as_deref().unwrap(),
            &[("Location".to_string(), "/x".to_string())]
        );
        assert_eq!(response.body.as_deref(), Some("hello"));
        assert_eq!(response.encoded_body.as_deref(), Some("aGk="));
        assert_eq!(response.log_message.as_deref(), Some("msg"));
        let output = &test.stages[0].output;
        assert_eq!(output.status, vec![200, 403]);
        assert_eq!(output.response_contains.as_deref(), Some("ok"));
        assert_eq!(output.expect_error, Some(false));
        assert_eq!(output.retry_once, Some(true));
        assert!(output.isolated);
        assert_eq!(output.log.expect_ids, vec![942100]);
        assert_eq!(output.log.no_expect_ids, vec![942101, 942102]);
        assert_eq!(output.log.match_regex.as_deref(), Some("a"));
        assert_eq!(output.log.no_match_regex.as_deref(), Some("b"));
        let second = &test.stages[1];
        assert_eq!(
            second.input.ordered_headers.as_deref().unwrap(),
            &[
                HeaderTuple {
                    name: "B".into(),
                    value: "2".into()
                },
                HeaderTuple {
                    name: "A".into(),
                    value: "1".into()
                },
            ]
        );
        assert_eq!(second.output.status, vec![403]);
    }

    #[test]
    fn an_unknown_field_is_an_error_that_names_it() {
        let text = "meta: {}\nrule_id: 1\ntests:\n  - test_id: 1\n    stages:\n      - input:\n          uri: /\n          bogus_field: 1\n        output: {}\n";
        let err = TestFile::parse(text).unwrap_err().to_string();
        assert!(err.contains("bogus_field"), "{err}");
        assert!(err.contains("tests[0].stages[0].input"), "{err}");
    }

    #[test]
    fn fields_outside_the_schema_are_named_and_the_tests_still_load() {
        let text = "meta: {}\nauthor: x\nrule_id: 1\ntests:\n  - test_id: 1\n    stages:\n      - input:\n          uri: /a\n          bogus: 1\n        output: {log: {expect_ids: [1], extra: 2}}\n";
        let loaded = TestFile::load(text).unwrap();
        assert_eq!(
            loaded.unknown_fields,
            vec![
                "author",
                "tests[0].stages[0].input.bogus",
                "tests[0].stages[0].output.log.extra"
            ]
        );
        assert_eq!(
            loaded.file.tests[0].stages[0].input.uri.as_deref(),
            Some("/a")
        );
        assert_eq!(
            loaded.file.tests[0].stages[0].output.log.expect_ids,
            vec![1]
        );
    }

    #[test]
    fn every_schema_field_is_known_to_the_lenient_reader() {
        let loaded = TestFile::load(FULL).unwrap();
        assert!(loaded.unknown_fields.is_empty());
        // (serde_yaml's own maps reject the repeated header name FULL uses.)
        let unique = FULL.replace("            X-Dup: two\n", "");
        let mut value: serde_yaml::Value = serde_yaml::from_str(&unique).unwrap();
        let mut found = Vec::new();
        strip_unknown(&mut value, Shape::File, "", &mut found);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_type_error_is_still_an_error() {
        assert!(TestFile::load("meta: {}\nrule_id: x\ntests: []\n").is_err());
        assert!(TestFile::load("meta: {}\nrule_id: 1\nbogus: 1\ntests: 3\n").is_err());
    }

    #[test]
    fn log_contains_becomes_the_match_regex_only_when_nothing_else_is_set() {
        let output = Output {
            log_contains: Some("x".into()),
            no_log_contains: Some("y".into()),
            ..Default::default()
        };
        let log = output.effective_log();
        assert_eq!(log.match_regex.as_deref(), Some("x"));
        assert_eq!(log.no_match_regex.as_deref(), Some("y"));
        let output = Output {
            log_contains: Some("x".into()),
            log: Log {
                expect_ids: vec![1],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(output.effective_log().match_regex, None);
    }

    #[test]
    fn missing_ids_fall_back_like_go_ftw() {
        let file = TestFile::parse("meta: {}\ntests:\n  - stages: []\n  - stages: []\n").unwrap();
        assert_eq!(
            file.rule_id_or_from_name(Path::new("dir/REQUEST-920-x/920100.yaml")),
            Some(920100)
        );
        assert_eq!(file.tests[1].id_or_position(1), 2);
    }

    #[test]
    fn a_file_of_comments_has_no_tests() {
        let file = TestFile::parse("# nothing here\n# ---\n").unwrap();
        assert!(file.tests.is_empty());
    }

    #[test]
    fn status_zero_means_no_expectation() {
        let out: Output = serde_yaml::from_str("status: 0").unwrap();
        assert!(out.status.is_empty());
        assert!(!out.expects_anything());
    }
}
