//! SecLang text → directives: line continuations, comments and quoting, as
//! ModSecurity reads a configuration file. What each directive means is
//! decided by [`crate::ruleset`].

use std::fmt;
use std::rc::Rc;

/// Where a directive starts: file (or config chunk) name and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: Rc<str>,
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive: its name as written (`SecRule`) and its arguments with
/// quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub location: Location,
}

/// A load error: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub location: Location,
    pub message: String,
}

impl LoadError {
    pub fn new(location: &Location, message: impl Into<String>) -> Self {
        LoadError {
            location: location.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for LoadError {}

/// Splits `text` into directives. A line ending in `\` continues on the next
/// line; `#` starts a comment only at the beginning of a logical line.
pub fn parse(file: &str, text: &str) -> Result<Vec<Directive>, LoadError> {
    let file: Rc<str> = Rc::from(file);
    let mut directives = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0u32;
    for (index, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let line = raw.trim_end_matches('\r');
        if logical.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                // ModSecurity joins continued lines without inserting a space;
                // rules rely on the indentation of the next line for spacing.
            }
            None => {
                logical.push_str(line);
                let location = Location {
                    file: file.clone(),
                    line: start_line,
                };
                if let Some(directive) = split_directive(&logical, location)? {
                    directives.push(directive);
                }
                logical.clear();
            }
        }
    }
    if !logical.is_empty() {
        let location = Location {
            file: file.clone(),
            line: start_line,
        };
        if let Some(directive) = split_directive(&logical, location)? {
            directives.push(directive);
        }
    }
    Ok(directives)
}

fn split_directive(line: &str, location: Location) -> Result<Option<Directive>, LoadError> {
    let mut rest = line.trim();
    if rest.is_empty() {
        return Ok(None);
    }
    let name_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let name = rest[..name_end].to_string();
    rest = &rest[name_end..];
    let mut args = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (arg, tail) = if let Some(quoted) = rest.strip_prefix('"') {
            read_quoted(quoted, '"').ok_or_else(|| {
                LoadError::new(&location, format!("{name}: unterminated quoted argument"))
            })?
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            read_quoted(quoted, '\'').ok_or_else(|| {
                LoadError::new(&location, format!("{name}: unterminated quoted argument"))
            })?
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        args.push(arg);
        rest = tail;
    }
    Ok(Some(Directive {
        name,
        args,
        location,
    }))
}

/// Reads up to the closing `quote`; `\<quote>` is an escaped quote, every other
/// backslash is kept (regexes need theirs).
fn read_quoted(text: &str, quote: char) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.clone().next() {
                Some((_, next)) if next == quote => {
                    out.push(quote);
                    chars.next();
                }
                _ => out.push('\\'),
            }
        } else if c == quote {
            return Some((out, &text[i + c.len_utf8()..]));
        } else {
            out.push(c);
        }
    }
    None
}

/// Splits a rule's action list at commas outside single quotes and returns
/// `(name, value)` pairs; a value in single quotes is unquoted.
pub fn split_actions(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut actions = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote => {
                // `\'` inside a quoted value is a literal quote.
                if chars.peek() == Some(&'\'') {
                    current.push('\'');
                    chars.next();
                } else {
                    current.push('\\');
                }
            }
            '\'' => {
                in_quote = !in_quote;
                current.push(c);
            }
            ',' if !in_quote => {
                push_action(&mut actions, &current)?;
                current.clear();
            }
            _ => current.push(c),
        }
    }
    if in_quote {
        return Err(format!("unterminated quote in actions `{text}`"));
    }
    push_action(&mut actions, &current)?;
    Ok(actions)
}

fn push_action(actions: &mut Vec<(String, Option<String>)>, raw: &str) -> Result<(), String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(());
    }
    let (name, value) = match raw.find(':') {
        Some(i) => (raw[..i].trim(), Some(raw[i + 1..].trim())),
        None => (raw, None),
    };
    if name.is_empty() {
        return Err(format!("action without a name: `{raw}`"));
    }
    let value = value.map(|v| {
        v.strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(v)
            .to_string()
    });
    actions.push((name.to_string(), value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_into_one_directive_at_its_first_line() {
        let text =
            "# comment\n\nSecRule ARGS \"@rx a\" \\\n    \"id:1,\\\n    phase:2\"\nSecMarker END\n";
        let directives = parse("x.conf", text).unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(directives[0].name, "SecRule");
        assert_eq!(directives[0].args, ["ARGS", "@rx a", "id:1,    phase:2"]);
        assert_eq!(directives[0].location.line, 3);
        assert_eq!(directives[1].args, ["END"]);
        assert_eq!(directives[1].location.to_string(), "x.conf:6");
    }

    #[test]
    fn quoted_arguments_keep_backslashes_except_escaped_quotes() {
        let d = parse("x", r#"SecRule ARGS "@rx \d+\"x" "id:1""#).unwrap();
        assert_eq!(d[0].args[1], r#"@rx \d+"x"#);
    }

    #[test]
    fn unterminated_quote_is_an_error_with_location() {
        let err = parse("f.conf", "\nSecRule ARGS \"@rx a").unwrap_err();
        assert_eq!(err.location.line, 2);
        assert!(err.message.contains("unterminated"));
    }

    #[test]
    fn actions_split_outside_single_quotes_and_unquote_values() {
        let actions =
            split_actions("id:1, msg:'a, b', setvar:'tx.x=+%{tx.y}',t:none,  block").unwrap();
        let names: Vec<_> = actions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["id", "msg", "setvar", "t", "block"]);
        assert_eq!(actions[1].1.as_deref(), Some("a, b"));
        assert_eq!(actions[2].1.as_deref(), Some("tx.x=+%{tx.y}"));
        assert_eq!(actions[4].1, None);
    }

    #[test]
    fn escaped_quote_inside_an_action_value_is_literal() {
        let actions = split_actions(r"msg:'it\'s',id:2").unwrap();
        assert_eq!(actions[0].1.as_deref(), Some("it's"));
    }

    #[test]
    fn unterminated_action_quote_is_an_error() {
        assert!(split_actions("msg:'abc").is_err());
    }
}
