//! The probe's script: what to do in which callback. One line per event,
//! commands separated by `;`, words by spaces:
//!
//! ```text
//! request_headers: get_header HTTP_REQUEST_HEADERS x-missing; http_call upstream 500; pause
//! http_call_response: set_effective_context caller; continue HTTP_REQUEST
//! ```
//!
//! A word in double quotes may hold spaces and `;`, and the escapes `\"`, `\\`,
//! `\n`, `\0` and `\xNN`. Lines starting with `#` are comments. The same event
//! may appear on several lines: they run in order.

use std::collections::HashMap;

/// A command: its words.
pub type Command = Vec<String>;

#[derive(Default)]
pub struct Script {
    events: HashMap<String, Vec<Vec<Command>>>,
}

impl Script {
    /// Parses a script; a JSON object configuration carries it in `"script"`.
    pub fn parse(config: &[u8]) -> Script {
        let text = String::from_utf8_lossy(config);
        let text = if text.trim_start().starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("script").and_then(|s| s.as_str()).map(String::from))
                .unwrap_or_default()
        } else {
            text.into_owned()
        };
        let mut script = Script::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((event, rest)) = line.split_once(':') else {
                continue;
            };
            script
                .events
                .entry(event.trim().to_string())
                .or_default()
                .push(commands(rest));
        }
        script
    }

    pub fn extend(&mut self, other: Script) {
        for (event, lines) in other.events {
            self.events.entry(event).or_default().extend(lines);
        }
    }

    pub fn lines(&self, event: &str) -> Vec<Vec<Command>> {
        self.events.get(event).cloned().unwrap_or_default()
    }
}

/// Splits a line into commands (on `;` outside quotes) and words.
fn commands(line: &str) -> Vec<Command> {
    let mut out = Vec::new();
    let mut command: Command = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                if !command.is_empty() {
                    out.push(std::mem::take(&mut command));
                }
            }
            c if c.is_whitespace() => {}
            '"' => command.push(quoted(&mut chars)),
            c => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || n == ';' {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                command.push(word);
            }
        }
    }
    if !command.is_empty() {
        out.push(command);
    }
    out
}

fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut word = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => word.push('\n'),
                Some('0') => word.push('\0'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    if let Ok(b) = u8::from_str_radix(&hex, 16) {
                        word.push(char::from(b));
                    }
                }
                Some(other) => word.push(other),
                None => {}
            },
            c => word.push(c),
        }
    }
    word
}

/// How the probe prints bytes: printable ASCII as is, `\"`, `\\`, else `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}
