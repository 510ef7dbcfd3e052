//! `multipart/form-data` bodies, following libmodsecurity's `Multipart` processor
//! (src/request_body_processor/multipart.cc) step by step, so the MULTIPART_* flags, the
//! REQBODY_ERROR message and what reaches ARGS_POST / FILES match what CRS was written against.
//!
//! How ModSecurity reads a body, and so how this module does:
//! - The body is cut into buffers that end after each `\n`, or after 4096 bytes (a `\r` is never
//!   the 4096th byte). Only a buffer that starts a line can be a boundary.
//! - A boundary line is `--` + boundary, optionally `--`, then exactly `\r\n` or `\n`. The line
//!   ending before it belongs to the boundary, not to the part.
//! - Part headers end at an empty line; the part then needs a `Content-Disposition: form-data`
//!   header with a non-empty `name`. A part with a `filename` is a file (FILES), others are
//!   ARGS_POST.
//! - Most part-header problems record an error message and parsing goes on (libmodsecurity
//!   compares their `false` return with `< 0`); boundary problems stop parsing. Either way the
//!   parts completed before are still returned, next to the message.

use std::collections::HashMap;

use super::Pair;
use crate::transform::is_c_space;
use memchr::memmem;

/// ModSecurity's MULTIPART_BUF_SIZE: the longest line it handles as one buffer, and the
/// longest part header line it accepts.
const BUF_SIZE: usize = 4096;
/// libmodsecurity rejects a Content-Type header longer than this.
const MAX_CONTENT_TYPE_LEN: usize = 1024;

/// What a `multipart/form-data` body gives the rule engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Non-file parts: (field name, value) → ARGS_POST (and ARGS), in body order.
    pub args: Vec<Pair>,
    /// File parts → FILES (filename), FILES_NAMES (field name), FILES_SIZES,
    /// FILES_COMBINED_SIZE (the sum of `size`), in body order.
    pub files: Vec<FilePart>,
    /// MULTIPART_PART_HEADERS: (part field name, `Header-Name: value` line as received). A
    /// folded header is one line, `Name: value continuation`. Parts without a name are listed
    /// under an empty key, as ModSecurity does.
    pub part_headers: Vec<Pair>,
    /// The MULTIPART_* variables.
    pub flags: MultipartFlags,
}

/// One file part of a multipart body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePart {
    /// The part's `name` (FILES_NAMES; the key of FILES and FILES_SIZES).
    pub field: Vec<u8>,
    /// The part's `filename` as sent (FILES).
    pub filename: Vec<u8>,
    /// Content length in bytes, without the line ending that precedes the next boundary.
    pub size: usize,
    /// The part's `Content-Type` header value, if it has one.
    pub content_type: Option<Vec<u8>>,
}

/// The MULTIPART_* flag variables, each 0 or 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MultipartFlags {
    /// MULTIPART_BOUNDARY_QUOTED: `boundary="..."` in the Content-Type header.
    pub boundary_quoted: bool,
    /// MULTIPART_BOUNDARY_WHITESPACE: whitespace around `=` of the boundary parameter.
    pub boundary_whitespace: bool,
    /// MULTIPART_DATA_BEFORE: bytes before the first boundary.
    pub data_before: bool,
    /// MULTIPART_DATA_AFTER: bytes after the final boundary line.
    pub data_after: bool,
    /// MULTIPART_HEADER_FOLDING: a part header continued on a line starting with whitespace.
    pub header_folding: bool,
    /// MULTIPART_LF_LINE: a line ended by a bare `\n`.
    pub lf_line: bool,
    /// MULTIPART_CRLF_LF_LINES: both `\r\n` and bare `\n` line endings.
    pub crlf_lf_lines: bool,
    /// MULTIPART_MISSING_SEMICOLON (MULTIPART_SEMICOLON_MISSING in v2): no `;` before
    /// `boundary` in the Content-Type header.
    pub missing_semicolon: bool,
    /// MULTIPART_INVALID_QUOTING: single quotes, or a quote where a `;` should be, in
    /// Content-Disposition.
    pub invalid_quoting: bool,
    /// MULTIPART_INVALID_PART: a part without a name, or a boundary where part data should start.
    pub invalid_part: bool,
    /// MULTIPART_INVALID_HEADER_FOLDING: folding with whitespace other than SP / HTAB.
    pub invalid_header_folding: bool,
    /// MULTIPART_FILE_LIMIT_EXCEEDED: libmodsecurity sets it only while extracting files to
    /// disk (SecUploadKeepFiles / SecTmpSaveUploadedFiles), which a filter never does, so it
    /// stays false.
    pub file_limit_exceeded: bool,
    /// MULTIPART_UNMATCHED_BOUNDARY = 1: a line that looks like a boundary but is not ours,
    /// with no real boundary after it. (libmodsecurity reports 2 when a real boundary follows;
    /// that is false here, as `MULTIPART_UNMATCHED_BOUNDARY "@eq 1"` in its recommended
    /// configuration treats it.)
    pub unmatched_boundary: bool,
    /// libmodsecurity's internal `m_flag_error`: the Content-Type was rejected or parsing
    /// stopped at a malformed boundary. Not a variable of its own, but part of
    /// MULTIPART_STRICT_ERROR.
    pub error: bool,
}

impl MultipartFlags {
    /// MULTIPART_STRICT_ERROR: any of the above set (as ModSecurity computes it: the internal
    /// error flag and every flag except MULTIPART_UNMATCHED_BOUNDARY and
    /// MULTIPART_CRLF_LF_LINES, which implies MULTIPART_LF_LINE).
    pub fn strict_error(&self) -> bool {
        self.error
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
    }
}

/// Parses a `multipart/form-data` body. `content_type` is the whole Content-Type header value
/// (the boundary is read from it).
///
/// `Err` carries the REQBODY_ERROR message (libmodsecurity's text, e.g.
/// `Multipart: Invalid boundary in C-T (characters).`, `Multipart: Final boundary missing.`;
/// when several problems occur the last one wins, as there) together with everything parsed:
/// the parts completed before the problem, the part headers and the flags.
///
/// An empty body is `Ok` with nothing in it, as in libmodsecurity.
pub fn parse_multipart(content_type: &[u8], body: &[u8]) -> Result<Multipart, (Multipart, String)> {
    let mut flags = MultipartFlags::default();
    let boundary = match boundary_from_content_type(content_type, &mut flags) {
        Ok(boundary) => boundary,
        Err(message) => {
            flags.error = true;
            let out = Multipart {
                flags,
                ..Multipart::default()
            };
            return Err((out, message.to_owned()));
        }
    };
    let mut parser = Parser::new(boundary, flags, super::output_budget(body.len()));
    parser.process(body);
    parser.complete();
    parser.finish()
}

/// libmodsecurity's `Multipart::init`: validates the Content-Type header and extracts the
/// boundary, setting the header's flags on the way.
fn boundary_from_content_type(
    header: &[u8],
    flags: &mut MultipartFlags,
) -> Result<Vec<u8>, &'static str> {
    if header.is_empty() {
        return Err("Multipart: Content-Type header not available.");
    }
    if header.len() > MAX_CONTENT_TYPE_LEN {
        return Err("Multipart: Invalid boundary in C-T (length).");
    }
    // libmodsecurity works on the C string: a NUL byte ends the header.
    let header = c_str(header);
    const MIME: &[u8] = b"multipart/form-data";
    let after_mime = match header.get(..MIME.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(MIME) => header.get(MIME.len()..),
        _ => None,
    };
    let Some(after_mime) = after_mime else {
        return Err("Multipart: Invalid MIME type.");
    };
    if count_boundary_params(header) > 1 {
        return Err("Multipart: Multiple boundary parameters in C-T.");
    }
    let Some(at) = memmem::find(after_mime, b"boundary") else {
        // `boundary` is matched case-sensitively; a differently cased one is named in the error.
        if count_boundary_params(header) > 0 {
            return Err("Multipart: Invalid boundary in C-T (case sensitivity).");
        }
        return Err("Multipart: Boundary not found in C-T.");
    };
    let (before, param) = after_mime.split_at(at);
    let mut seen_semicolon = false;
    for &c in before {
        if is_c_space(c) {
            continue;
        }
        if c == b';' && !seen_semicolon {
            seen_semicolon = true;
        } else {
            return Err("Multipart: Invalid boundary in C-T (malformed).");
        }
    }
    if !seen_semicolon {
        flags.missing_semicolon = true;
    }
    let after_name = param.get(b"boundary".len()..).unwrap_or_default();
    let Some(eq) = after_name.iter().position(|&c| c == b'=') else {
        return Err("Multipart: Invalid boundary in C-T (malformed).");
    };
    let (between, value) = after_name.split_at(eq);
    for &c in between {
        if is_c_space(c) {
            flags.boundary_whitespace = true;
        } else {
            return Err("Multipart: Invalid boundary in C-T (parameter name).");
        }
    }
    // The value is the rest of the header, as in libmodsecurity.
    let value = value.get(1..).unwrap_or_default();
    if value.first().copied().is_some_and(is_c_space) {
        flags.boundary_whitespace = true;
    }
    let quoted = value.len() >= 2 && value.starts_with(b"\"") && value.ends_with(b"\"");
    let mut boundary = if quoted {
        value.get(1..value.len() - 1).unwrap_or_default()
    } else {
        if value.starts_with(b"\"") || (value.len() >= 2 && value.ends_with(b"\"")) {
            return Err("Multipart: Invalid boundary in C-T (quote).");
        }
        value
    };
    // libmodsecurity returns false here without a message (and so without REQBODY_ERROR),
    // leaving the body unparsed; an unparsed body must not pass silently, so it is an error.
    if boundary.is_empty() {
        return Err("Multipart: Invalid boundary in C-T (empty).");
    }
    if quoted {
        flags.boundary_quoted = true;
    }
    if count_boundary_params(boundary) != 0 {
        return Err("Multipart: Invalid boundary in C-T (content).");
    }
    // Tolerated, as in libmodsecurity: a parameter after the boundary (`; charset=...`).
    if !boundary_characters_valid(boundary) {
        if let Some(semicolon) = boundary.iter().position(|&c| c == b';') {
            boundary = boundary.get(..semicolon).unwrap_or_default();
        }
    }
    if !boundary_characters_valid(boundary) {
        return Err("Multipart: Invalid boundary in C-T (characters).");
    }
    if boundary.is_empty() {
        return Err("Multipart: Invalid boundary in C-T (empty).");
    }
    Ok(boundary.to_vec())
}

/// How many times `boundary` (any case) appears with a `=` somewhere after it.
fn count_boundary_params(s: &[u8]) -> usize {
    let lower = s.to_ascii_lowercase();
    let mut rest: &[u8] = &lower;
    let mut count = 0;
    while let Some(at) = memmem::find(rest, b"boundary") {
        rest = rest.get(at + b"boundary".len()..).unwrap_or_default();
        if rest.contains(&b'=') {
            count += 1;
        }
    }
    count
}

/// RFC 2046 boundary characters; a space is allowed but not as the last character.
fn boundary_characters_valid(boundary: &[u8]) -> bool {
    boundary.iter().enumerate().all(|(i, &c)| {
        c.is_ascii_alphanumeric()
            || b"'()+_,-./:=?".contains(&c)
            || (c == b' ' && i + 1 < boundary.len())
    })
}

/// One part while it is being read.
#[derive(Default)]
struct Part {
    /// `name` from Content-Disposition; empty means none (as in libmodsecurity).
    name: Vec<u8>,
    /// `filename` from Content-Disposition; empty means none.
    filename: Vec<u8>,
    is_file: bool,
    /// Part headers, first occurrence of each name only.
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Lowercased header name → index in `headers` (names compare case-insensitively).
    header_index: HashMap<Vec<u8>, usize>,
    /// The header a folded line continues.
    last_header: Option<usize>,
    /// The current header line, recorded in `header_lines` once the next line shows it is done.
    last_header_line: Vec<u8>,
    header_lines: Vec<Vec<u8>>,
    /// Value of a non-file part.
    value: Vec<u8>,
    /// Size of a file part.
    size: usize,
    /// The line ending of the last data line, held back: it belongs to the next boundary if
    /// one follows, to the data otherwise.
    reserve: &'static [u8],
}

impl Part {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        let index = *self.header_index.get(&name.to_ascii_lowercase())?;
        self.headers.get(index).map(|(_, v)| v.as_slice())
    }

    fn add_header(&mut self, name: &[u8], value: &[u8]) {
        self.header_index
            .insert(name.to_ascii_lowercase(), self.headers.len());
        self.last_header = Some(self.headers.len());
        self.headers.push((name.to_vec(), value.to_vec()));
    }

    fn record_last_header_line(&mut self) {
        if !self.last_header_line.is_empty() {
            let line = std::mem::take(&mut self.last_header_line);
            self.header_lines.push(line);
        }
    }
}

/// Parsing stopped (libmodsecurity's `process` returned false).
struct Stop;

struct Parser<'b> {
    boundary: Vec<u8>,
    /// `--` and the boundary, searched for in lines that are not boundaries.
    dashed_boundary: memmem::Finder<'static>,
    flags: MultipartFlags,
    crlf_line: bool,
    /// MULTIPART_UNMATCHED_BOUNDARY as libmodsecurity counts it: 0, 1 or 2.
    unmatched: u8,
    /// The REQBODY_ERROR message; a later error replaces an earlier one.
    error: Option<String>,
    done: Vec<Part>,
    part_headers: Vec<Pair>,
    /// Bytes MULTIPART_PART_HEADERS may still take (see `output_budget`): each header line
    /// repeats its part's name.
    budget: usize,
    /// The part being read (libmodsecurity's `m_mpp`); none before the first boundary.
    part: Option<Part>,
    /// Reading part data (true) or part headers (false).
    in_data: bool,
    /// Some data line of the current part has been read.
    data_read: bool,
    boundary_count: usize,
    complete: bool,
    seen_data: bool,
    /// The buffer being looked at starts a line.
    line_start: bool,
    /// The previous buffer ended with a `\n` not preceded by `\r`.
    prev_bare_lf: bool,
    /// The buffer left unprocessed when the input ended or parsing stopped.
    pending: &'b [u8],
}

impl<'b> Parser<'b> {
    fn new(boundary: Vec<u8>, flags: MultipartFlags, budget: usize) -> Self {
        let dashed: Vec<u8> = [&b"--"[..], &boundary].concat();
        Parser {
            budget,
            dashed_boundary: memmem::Finder::new(&dashed).into_owned(),
            boundary,
            flags,
            crlf_line: false,
            unmatched: 0,
            error: None,
            done: Vec::new(),
            part_headers: Vec::new(),
            part: None,
            in_data: false,
            data_read: false,
            boundary_count: 0,
            complete: false,
            seen_data: false,
            line_start: true,
            prev_bare_lf: false,
            pending: &[],
        }
    }

    fn fail(&mut self, message: String) {
        self.error = Some(message);
    }

    fn process(&mut self, body: &'b [u8]) {
        if body.is_empty() {
            return;
        }
        self.seen_data = true;
        let mut rest = body;
        while !rest.is_empty() {
            let Some(len) = buffer_len(rest) else {
                self.pending = rest;
                return;
            };
            let (buf, after) = rest.split_at(len);
            if self.process_buffer(buf).is_err() {
                self.pending = buf;
                return;
            }
            let ends_line = buf.ends_with(b"\n");
            self.line_start = ends_line;
            self.prev_bare_lf = ends_line && !buf.ends_with(b"\r\n");
            rest = after;
            if self.complete && !rest.is_empty() {
                self.flags.data_after = true;
                return;
            }
        }
    }

    fn process_buffer(&mut self, buf: &[u8]) -> Result<(), Stop> {
        let mut was_boundary = false;
        let blen = self.boundary.len();
        let c_len = c_str(buf).len();
        let after_dashes = buf.get(2..).unwrap_or_default();
        if self.line_start && c_len > 3 && buf.starts_with(b"--") {
            if c_len >= blen + 2 && after_dashes.starts_with(&self.boundary) {
                if self.prev_bare_lf {
                    self.flags.lf_line = true;
                }
                if !self.data_read && self.boundary_count > 0 {
                    // Our boundary where part data should begin: not taken as a boundary.
                    self.flags.invalid_part = true;
                } else {
                    if self.boundary_count > 0 {
                        self.unmatched = 2;
                    }
                    let mut end = after_dashes.get(blen..).unwrap_or_default();
                    let is_final = end.starts_with(b"--");
                    if is_final {
                        end = end.get(2..).unwrap_or_default();
                    }
                    if end == b"\r\n" || end == b"\n" {
                        if end == b"\n" {
                            self.flags.lf_line = true;
                        } else {
                            self.crlf_line = true;
                        }
                        self.process_boundary(is_final);
                        if is_final {
                            self.complete = true;
                        }
                        was_boundary = true;
                        self.boundary_count += 1;
                    } else {
                        self.flags.error = true;
                        let message = format!("Multipart: Invalid boundary: {}", show(buf));
                        self.fail(message);
                        return Err(Stop);
                    }
                }
            } else {
                if self.flags.boundary_quoted
                    && c_len >= blen + 3
                    && after_dashes.starts_with(b"\"")
                    && after_dashes
                        .get(1..)
                        .is_some_and(|s| s.starts_with(&self.boundary))
                {
                    self.flags.error = true;
                    self.fail("Multipart: Invalid boundary (quotes).".to_owned());
                    return Err(Stop);
                }
                let spaces = after_dashes.iter().take_while(|&&c| is_c_space(c)).count();
                if spaces > 0
                    && after_dashes
                        .get(spaces..)
                        .is_some_and(|s| s.starts_with(&self.boundary))
                {
                    self.flags.error = true;
                    self.fail("Multipart: Invalid boundary (whitespace).".to_owned());
                    return Err(Stop);
                }
                self.unmatched = 1;
            }
        } else if self.line_start && self.dashed_boundary.find(buf).is_some() {
            self.unmatched = 1;
        }

        if !was_boundary {
            if self.part.is_none() {
                self.flags.data_before = true;
            } else if !self.in_data {
                if !buf.ends_with(b"\n") {
                    self.flags.error = true;
                    self.fail(format!(
                        "Multipart: Part header line over {BUF_SIZE} bytes long"
                    ));
                    return Err(Stop);
                }
                self.process_part_header(buf);
            } else {
                self.process_part_data(buf);
            }
        }
        Ok(())
    }

    /// One part header line (ending with `\n`), or the empty line that ends the headers.
    fn process_part_header(&mut self, buf: &[u8]) {
        let Some(part) = self.part.as_mut() else {
            return;
        };
        if buf.contains(&0) {
            self.error = Some("Multipart: Nul byte in part headers.".to_owned());
            return;
        }
        let line = if let Some(line) = buf.strip_suffix(b"\r\n") {
            self.crlf_line = true;
            line
        } else {
            self.flags.lf_line = true;
            buf.strip_suffix(b"\n").unwrap_or(buf)
        };

        if line.is_empty() {
            part.record_last_header_line();
            let Some(disposition) = part.header(b"Content-Disposition").map(<[u8]>::to_vec) else {
                self.error = Some("Multipart: Part missing Content-Disposition header.".into());
                return;
            };
            if let Err(rc) = parse_content_disposition(&disposition, part, &mut self.flags) {
                self.error = Some(format!(
                    "Multipart: Invalid Content-Disposition header ({rc}): {}",
                    show(&disposition)
                ));
                return;
            }
            if part.name.is_empty() {
                self.error =
                    Some("Multipart: Content-Disposition header missing name field.".into());
                return;
            }
            if !part.filename.is_empty() {
                // A backend that finds the file name by searching for `filename=` would not
                // see this one (`filename = "x"`): refuse what the two would read differently.
                if memmem::find(&disposition, b"filename=").is_none() {
                    self.error =
                        Some("Multipart: Invalid Content-Disposition header (filename).".into());
                    return;
                }
                part.is_file = true;
            } else {
                part.is_file = false;
            }
            self.in_data = true;
            self.data_read = false;
            part.last_header = None;
            return;
        }

        let first = line.first().copied().unwrap_or_default();
        if is_c_space(first) {
            // Folding: RFC 2557 allows SP / HTAB; any other whitespace is accepted but flagged.
            self.flags.header_folding = true;
            if first != b' ' && first != b'\t' {
                self.flags.invalid_header_folding = true;
            }
            let Some(index) = part.last_header else {
                self.error = Some("Multipart: Invalid part header (folding error).".into());
                return;
            };
            let spaces = buf.iter().take_while(|&&c| is_c_space(c)).count();
            if buf.iter().take(spaces).any(|&c| c != b' ' && c != b'\t') {
                self.flags.invalid_header_folding = true;
            }
            let continuation = chomp(buf.get(spaces..).unwrap_or_default());
            let Some((name, value)) = part.headers.get_mut(index) else {
                return;
            };
            value.push(b' ');
            value.extend_from_slice(continuation);
            if value.len() > BUF_SIZE {
                self.error = Some("Multipart: Part header too long.".into());
                return;
            }
            let mut joined = name.clone();
            joined.extend_from_slice(b": ");
            joined.extend_from_slice(value);
            part.last_header_line = joined;
            return;
        }

        part.record_last_header_line();
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            self.error = Some(format!(
                "Multipart: Invalid part header (colon missing): {}",
                show(buf)
            ));
            return;
        };
        let name = line.get(..colon).unwrap_or_default();
        if name.is_empty() {
            self.error = Some("Multipart: Invalid part header (header name missing).".into());
            return;
        }
        if name.iter().any(|&c| !(33..=126).contains(&c)) {
            self.error =
                Some("Multipart: Invalid part header (contains invalid character).".into());
            return;
        }
        // Value: after the colon and any SP / HTAB, to the end of the line (`buf`, so a lone
        // `\r` left by chomp's rules stays as in libmodsecurity).
        let value_start = colon + 1;
        let raw_value = buf.get(value_start..).unwrap_or_default();
        let spaces = raw_value
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let value = chomp(raw_value.get(spaces..).unwrap_or_default());
        if part.header(name).is_some() {
            // libmodsecurity ignores a repeated part header without an error.
            return;
        }
        part.add_header(name, value);
        part.last_header_line = line.to_vec();
    }

    fn process_part_data(&mut self, buf: &[u8]) {
        let Some(part) = self.part.as_mut() else {
            return;
        };
        self.data_read = true;
        let (content, reserve): (&[u8], &'static [u8]) =
            if let Some(content) = buf.strip_suffix(b"\r\n") {
                (content, b"\r\n")
            } else if let Some(content) = buf.strip_suffix(b"\n") {
                (content, b"\n")
            } else {
                (buf, b"")
            };
        if part.is_file {
            part.size = part
                .size
                .saturating_add(part.reserve.len())
                .saturating_add(content.len());
        } else {
            // libmodsecurity v3 drops the held-back line ending here (it assigns the reserve
            // and then overwrites it), joining the lines of a multi-line value; v2 and Coraza
            // keep it, and so does this.
            part.value.extend_from_slice(part.reserve);
            part.value.extend_from_slice(content);
        }
        part.reserve = reserve;
    }

    /// A boundary line: finish the current part, start a new one unless it is the final one.
    fn process_boundary(&mut self, last: bool) {
        if let Some(mut part) = self.part.take() {
            for line in std::mem::take(&mut part.header_lines) {
                let size = part.name.len().saturating_add(line.len());
                match self.budget.checked_sub(size) {
                    Some(left) => self.budget = left,
                    None => {
                        self.flags.error = true;
                        self.fail("Multipart: Part headers exceed the output limit.".to_owned());
                        break;
                    }
                }
                self.part_headers.push((part.name.clone(), line));
            }
            if part.name.is_empty() {
                self.flags.invalid_part = true;
            } else {
                self.done.push(part);
            }
        }
        if !last {
            self.part = Some(Part::default());
            self.in_data = false;
            self.data_read = false;
        }
    }

    /// libmodsecurity's `multipart_complete`: the input has ended.
    fn complete(&mut self) {
        if !self.seen_data || self.complete {
            return;
        }
        if self.boundary_count == 0 {
            self.fail("Multipart: No boundaries found in payload.".to_owned());
            return;
        }
        // A final boundary without a line ending is still in the buffer.
        let pending = self.pending;
        let blen = self.boundary.len();
        if self.line_start
            && pending.len() == blen + 4
            && pending.starts_with(b"--")
            && pending.ends_with(b"--")
            && pending
                .get(2..)
                .is_some_and(|s| s.starts_with(&self.boundary))
        {
            if self.prev_bare_lf {
                self.flags.lf_line = true;
            }
            if !self.data_read {
                self.flags.invalid_part = true;
            }
            self.process_boundary(true);
            self.complete = true;
        }
        if !self.complete {
            self.fail("Multipart: Final boundary missing.".to_owned());
        }
    }

    fn finish(mut self) -> Result<Multipart, (Multipart, String)> {
        self.flags.crlf_lf_lines = self.crlf_line && self.flags.lf_line;
        self.flags.unmatched_boundary = self.unmatched == 1;
        let mut out = Multipart {
            flags: self.flags,
            part_headers: self.part_headers,
            ..Multipart::default()
        };
        for part in self.done {
            if part.is_file {
                let content_type = part.header(b"Content-Type").map(<[u8]>::to_vec);
                out.files.push(FilePart {
                    field: part.name,
                    filename: part.filename,
                    size: part.size,
                    content_type,
                });
            } else {
                out.args.push((part.name, part.value));
            }
        }
        match self.error {
            Some(message) => Err((out, message)),
            None => Ok(out),
        }
    }
}

/// Length of the next buffer libmodsecurity would process, `None` if the input ends first.
fn buffer_len(rest: &[u8]) -> Option<usize> {
    let window = rest.get(..BUF_SIZE).unwrap_or(rest);
    if let Some(newline) = window.iter().position(|&c| c == b'\n') {
        return Some(newline + 1);
    }
    if rest.len() < BUF_SIZE {
        return None;
    }
    // A full buffer; a `\r` is never taken as its last byte.
    Some(if rest.get(BUF_SIZE - 1) == Some(&b'\r') {
        BUF_SIZE - 1
    } else {
        BUF_SIZE
    })
}

/// libmodsecurity's `parse_content_disposition`: fills `name` / `filename` of the part.
/// `Err` is its negative return code, which appears in the error message.
fn parse_content_disposition(
    value: &[u8],
    part: &mut Part,
    flags: &mut MultipartFlags,
) -> Result<(), i32> {
    // The value is a C string: reading past its end reads the terminating NUL.
    let at = |i: usize| value.get(i).copied().unwrap_or(0);
    let skip_blanks = |mut i: usize| {
        while at(i) == b'\t' || at(i) == b' ' {
            i += 1;
        }
        i
    };
    if !value.starts_with(b"form-data") {
        return Err(-1);
    }
    let mut i = skip_blanks(b"form-data".len());
    if at(i) == 0 {
        return Ok(());
    }
    if at(i) != b';' {
        return Err(-2);
    }
    i += 1;
    let mut filename_star: Vec<u8> = Vec::new();
    while at(i) != 0 {
        i = skip_blanks(i);
        if at(i) == 0 {
            return Err(-3);
        }
        let start = i;
        while !matches!(at(i), 0 | b'=' | b'\t' | b' ') {
            i += 1;
        }
        if at(i) == 0 {
            return Err(-4);
        }
        let name = value.get(start..i).unwrap_or_default();
        i = skip_blanks(i);
        if at(i) == 0 {
            return Err(-5);
        }
        if at(i) != b'=' {
            return Err(-13);
        }
        i = skip_blanks(i + 1);
        if at(i) == 0 {
            return Err(-6);
        }

        let mut quote = 0u8;
        let mut param: Vec<u8> = Vec::new();
        if name == b"filename*" {
            // filename*=charset'[language]'percent-encoded-name (RFC 5987)
            let charset_start = i;
            while at(i) != 0 && (at(i).is_ascii_alphanumeric() || b"!#$%&+-^_`{}~".contains(&at(i)))
            {
                i += 1;
            }
            if at(i) != b'\'' || i == charset_start {
                return Err(-16);
            }
            i += 1;
            while at(i) != 0 && at(i) != b'\'' {
                i += 1;
            }
            if at(i) != b'\'' {
                return Err(-17);
            }
            i += 1;
            let name_start = i;
            while at(i) != 0 && at(i) != b';' {
                if at(i) == b'%' {
                    if !at(i + 1).is_ascii_hexdigit() || !at(i + 2).is_ascii_hexdigit() {
                        return Err(-18);
                    }
                    i += 3;
                } else if at(i).is_ascii_alphanumeric() || b"!#$&+-.^_`~".contains(&at(i)) {
                    i += 1;
                } else {
                    return Err(-19);
                }
            }
            param.extend_from_slice(value.get(name_start..i).unwrap_or_default());
        } else if at(i) == b'"' || at(i) == b'\'' {
            // Single quotes are accepted, as some backends do, but flagged.
            quote = at(i);
            if quote == b'\'' {
                flags.invalid_quoting = true;
            }
            i += 1;
            if at(i) == 0 {
                return Err(-7);
            }
            while at(i) != 0 {
                if at(i) == b'\\' {
                    if at(i + 1) == 0 {
                        return Err(-8);
                    }
                    // Only the quote and `\` are escapes; IE sends other backslashes unescaped
                    // (Windows paths), so those are kept.
                    if at(i + 1) == quote || at(i + 1) == b'\\' {
                        i += 1;
                    }
                } else if at(i) == quote {
                    break;
                }
                param.push(at(i));
                i += 1;
            }
            i += 1; // the closing quote
        } else {
            let start = i;
            while at(i) != 0 && is_token_char(at(i)) {
                i += 1;
            }
            param.extend_from_slice(value.get(start..i).unwrap_or_default());
        }

        match name {
            b"name" => {
                validate_quotes(&param, quote, flags);
                if !part.name.is_empty() {
                    return Err(-14);
                }
                part.name = param;
            }
            b"filename" => {
                validate_quotes(&param, quote, flags);
                if !part.filename.is_empty() {
                    return Err(-15);
                }
                part.filename = param;
            }
            b"filename*" => {
                if !filename_star.is_empty() {
                    return Err(-20);
                }
                filename_star = param;
            }
            _ => return Err(-11),
        }

        if at(i) != 0 {
            i = skip_blanks(i);
            if at(i) != 0 {
                if at(i) != b';' {
                    let previous = i.checked_sub(1).map(at).unwrap_or(0);
                    if previous == b'\'' || previous == b'"' {
                        flags.invalid_quoting = true;
                    }
                    return Err(-12);
                }
                i += 1;
            }
        }
    }
    if !filename_star.is_empty() && part.filename.is_empty() {
        return Err(-21);
    }
    Ok(())
}

/// A `'` in a name or filename that was not inside double quotes.
fn validate_quotes(value: &[u8], quote: u8, flags: &mut MultipartFlags) {
    if quote != b'"' && value.contains(&b'\'') {
        flags.invalid_quoting = true;
    }
}

/// RFC 2045 token characters.
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

/// The bytes before the first NUL, as C string functions see them.
fn c_str(s: &[u8]) -> &[u8] {
    match s.iter().position(|&c| c == 0) {
        Some(nul) => s.get(..nul).unwrap_or(s),
        None => s,
    }
}

/// libmodsecurity's `chomp`: drop trailing CR / LF, unless the string is nothing else.
fn chomp(s: &[u8]) -> &[u8] {
    match s.iter().rposition(|&c| c != b'\r' && c != b'\n') {
        Some(last) => s.get(..=last).unwrap_or(s),
        None => s,
    }
}

/// A line for an error message: as C sees it, without its line ending.
fn show(line: &[u8]) -> String {
    String::from_utf8_lossy(chomp(c_str(line))).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (label, Content-Type, body, exactly the flags expected, the one ARGS_POST pair)
    type FlagCase = (&'static str, &'static [u8], Vec<u8>, MultipartFlags, Pair);
    /// (label, body, REQBODY_ERROR message, ARGS_POST still returned)
    type BodyErrorCase = (
        &'static str,
        &'static [u8],
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    const CT: &[u8] = b"multipart/form-data; boundary=abc";

    /// Test bodies are written with `\n`; real clients send `\r\n`.
    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn ok(content_type: &[u8], body: &[u8]) -> Multipart {
        match parse_multipart(content_type, body) {
            Ok(m) => m,
            Err((_, message)) => panic!("unexpected error: {message}"),
        }
    }

    fn err(content_type: &[u8], body: &[u8]) -> (Multipart, String) {
        match parse_multipart(content_type, body) {
            Ok(m) => panic!("expected an error, parsed {m:?}"),
            Err(e) => e,
        }
    }

    fn pair(name: &str, value: &str) -> Pair {
        (name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    #[test]
    fn form_with_fields_and_a_file_fills_args_files_and_part_headers() {
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data; name=\"name\"\n",
            "\n",
            "Brian Rectanus\n",
            "--abc\n",
            "Content-Disposition: form-data; name=\"email\"\n",
            "\n",
            "brian@example.com\n",
            "--abc\n",
            "Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\"\n",
            "Content-Type: image/jpeg\n",
            "\n",
            "BINARYDATA\n",
            "--abc--\n",
        ));
        let m = ok(CT, &body);
        assert_eq!(
            m.args,
            vec![
                pair("name", "Brian Rectanus"),
                pair("email", "brian@example.com")
            ]
        );
        assert_eq!(
            m.files,
            vec![FilePart {
                field: b"image".to_vec(),
                filename: b"image.jpg".to_vec(),
                size: 10,
                content_type: Some(b"image/jpeg".to_vec()),
            }]
        );
        assert_eq!(
            m.part_headers,
            vec![
                pair("name", "Content-Disposition: form-data; name=\"name\""),
                pair("email", "Content-Disposition: form-data; name=\"email\""),
                pair(
                    "image",
                    "Content-Disposition: form-data; name=\"image\"; filename=\"image.jpg\""
                ),
                pair("image", "Content-Type: image/jpeg"),
            ]
        );
        assert_eq!(m.flags, MultipartFlags::default());
        assert!(!m.flags.strict_error());
    }

    #[test]
    fn values_keep_inner_line_endings_and_lose_the_one_before_the_boundary() {
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data; name=\"text\"\n",
            "\n",
            "line 1\n",
            "line 2\n",
            "\n",
            "--abc\n",
            "Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\n",
            "\n",
            "a\n",
            "b\n",
            "--abc\n",
            "Content-Disposition: form-data; name=\"empty\"\n",
            "\n",
            "\n",
            "--abc--\n",
        ));
        let m = ok(CT, &body);
        assert_eq!(
            m.args,
            vec![pair("text", "line 1\r\nline 2\r\n"), pair("empty", "")]
        );
        assert_eq!(m.files.first().map(|f| f.size), Some(4), "a CRLF b");
    }

    #[test]
    fn a_file_part_with_an_empty_filename_is_a_form_field() {
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data; name=\"upload\"; filename=\"\"\n",
            "Content-Type: application/octet-stream\n",
            "\n",
            "\n",
            "--abc--\n",
        ));
        let m = ok(CT, &body);
        assert_eq!(m.args, vec![pair("upload", "")]);
        assert!(m.files.is_empty());
    }

    #[test]
    fn each_flag_is_set_by_its_own_malformation() {
        let none = MultipartFlags::default();
        let normal = crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n");
        // (label, Content-Type, body, exactly the flags expected, ARGS_POST)
        let cases: Vec<FlagCase> =
            vec![
            (
                "quoted boundary",
                b"multipart/form-data; boundary=\"abc\"",
                normal.clone(),
                MultipartFlags { boundary_quoted: true, ..none },
                pair("a", "1"),
            ),
            (
                "whitespace before = of the boundary parameter",
                b"multipart/form-data; boundary =abc",
                normal.clone(),
                MultipartFlags { boundary_whitespace: true, ..none },
                pair("a", "1"),
            ),
            (
                "no semicolon before boundary",
                b"multipart/form-data boundary=abc",
                normal.clone(),
                MultipartFlags { missing_semicolon: true, ..none },
                pair("a", "1"),
            ),
            (
                "a preamble before the first boundary",
                CT,
                crlf("preamble\n--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n"),
                MultipartFlags { data_before: true, ..none },
                pair("a", "1"),
            ),
            (
                "bytes after the final boundary",
                CT,
                crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\nepilogue"),
                MultipartFlags { data_after: true, ..none },
                pair("a", "1"),
            ),
            (
                "a part header folded with a space",
                CT,
                crlf("--abc\nContent-Disposition: form-data;\n name=\"a\"\n\n1\n--abc--\n"),
                MultipartFlags { header_folding: true, ..none },
                pair("a", "1"),
            ),
            (
                "a part header folded with a vertical tab",
                CT,
                crlf("--abc\nContent-Disposition: form-data;\n\x0bname=\"a\"\n\n1\n--abc--\n"),
                MultipartFlags { header_folding: true, invalid_header_folding: true, ..none },
                pair("a", "1"),
            ),
            (
                "LF line endings only",
                CT,
                b"--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n".to_vec(),
                MultipartFlags { lf_line: true, ..none },
                pair("a", "1"),
            ),
            (
                "CRLF and LF line endings mixed",
                CT,
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"\n\r\n1\r\n--abc--\r\n"
                    .to_vec(),
                MultipartFlags { lf_line: true, crlf_lf_lines: true, ..none },
                pair("a", "1"),
            ),
            (
                "single-quoted name",
                CT,
                crlf("--abc\nContent-Disposition: form-data; name='a'\n\n1\n--abc--\n"),
                MultipartFlags { invalid_quoting: true, ..none },
                pair("a", "1"),
            ),
            (
                "a quote in an unquoted name",
                CT,
                crlf("--abc\nContent-Disposition: form-data; name=a'b\n\n1\n--abc--\n"),
                MultipartFlags { invalid_quoting: true, ..none },
                pair("a'b", "1"),
            ),
            (
                "final boundary right after the part headers (no data line)",
                CT,
                crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n--abc--"),
                MultipartFlags { invalid_part: true, ..none },
                pair("a", ""),
            ),
            (
                "--boundary inside the last part, with no boundary line after it",
                CT,
                crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\nx --abc y\n--abc--"),
                MultipartFlags { unmatched_boundary: true, ..none },
                pair("a", "x --abc y"),
            ),
        ];
        for (label, content_type, body, flags, arg) in cases {
            let m = ok(content_type, &body);
            assert_eq!(m.flags, flags, "{label}");
            assert_eq!(m.flags.strict_error(), !flags.unmatched_boundary, "{label}");
            assert_eq!(m.args, vec![arg], "{label}");
        }
    }

    #[test]
    fn flags_stay_clear_on_a_clean_body() {
        let body = crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n");
        let m = ok(CT, &body);
        assert_eq!(m.flags, MultipartFlags::default());
    }

    #[test]
    fn unmatched_boundary_is_not_part_of_strict_error() {
        let flags = MultipartFlags {
            unmatched_boundary: true,
            crlf_lf_lines: false,
            ..MultipartFlags::default()
        };
        assert!(!flags.strict_error());
        let flags = MultipartFlags {
            error: true,
            ..MultipartFlags::default()
        };
        assert!(flags.strict_error());
    }

    #[test]
    fn a_real_boundary_after_a_boundary_like_line_clears_unmatched_boundary() {
        // libmodsecurity moves the flag to 2 ("a boundary matched after it"): not 1.
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data; name=\"pem\"\n",
            "\n",
            "-----BEGIN CERTIFICATE-----\n",
            "--abc--\n",
        ));
        let m = ok(CT, &body);
        assert!(!m.flags.unmatched_boundary);
        assert_eq!(m.args, vec![pair("pem", "-----BEGIN CERTIFICATE-----")]);
    }

    #[test]
    fn many_files_never_set_file_limit_exceeded() {
        let mut body = String::new();
        for i in 0..150 {
            body.push_str(&format!(
                "--abc\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"{i}.txt\"\n\nx\n"
            ));
        }
        body.push_str("--abc--\n");
        let m = ok(CT, &crlf(&body));
        assert_eq!(m.files.len(), 150);
        assert!(!m.flags.file_limit_exceeded);
    }

    #[test]
    fn content_type_errors_use_modsecurity_messages() {
        let body = crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n");
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "empty header",
                b"",
                "Multipart: Content-Type header not available.",
            ),
            (
                "not form-data",
                b"multipart/mixed; boundary=abc",
                "Multipart: Invalid MIME type.",
            ),
            (
                "no boundary",
                b"multipart/form-data",
                "Multipart: Boundary not found in C-T.",
            ),
            (
                "Boundary in another case",
                b"multipart/form-data; Boundary=abc",
                "Multipart: Invalid boundary in C-T (case sensitivity).",
            ),
            (
                "two boundary parameters",
                b"multipart/form-data; boundary=abc; boundary=def",
                "Multipart: Multiple boundary parameters in C-T.",
            ),
            (
                "another parameter before boundary",
                b"multipart/form-data; charset=utf-8; boundary=abc",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "boundary without =",
                b"multipart/form-data; boundary",
                "Multipart: Invalid boundary in C-T (malformed).",
            ),
            (
                "junk between boundary and =",
                b"multipart/form-data; boundaryx=abc",
                "Multipart: Invalid boundary in C-T (parameter name).",
            ),
            (
                "opening quote only",
                b"multipart/form-data; boundary=\"abc",
                "Multipart: Invalid boundary in C-T (quote).",
            ),
            (
                "quoted boundary followed by a parameter",
                b"multipart/form-data; boundary=\"abc\"; charset=utf-8",
                "Multipart: Invalid boundary in C-T (quote).",
            ),
            (
                "empty boundary",
                b"multipart/form-data; boundary=",
                "Multipart: Invalid boundary in C-T (empty).",
            ),
            (
                "empty quoted boundary",
                b"multipart/form-data; boundary=\"\"",
                "Multipart: Invalid boundary in C-T (empty).",
            ),
            (
                "boundary= inside the boundary",
                b"multipart/form-data; boundary=\"xboundary=y\"",
                "Multipart: Multiple boundary parameters in C-T.",
            ),
            (
                "invalid boundary characters",
                b"multipart/form-data; boundary=a<b",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
            (
                "trailing space in the boundary",
                b"multipart/form-data; boundary=abc ",
                "Multipart: Invalid boundary in C-T (characters).",
            ),
        ];
        for (label, content_type, message) in cases {
            let (m, got) = err(content_type, &body);
            assert_eq!(got, *message, "{label}");
            assert!(
                m.args.is_empty() && m.flags.error && m.flags.strict_error(),
                "{label}"
            );
        }
        let long = [b"multipart/form-data; boundary=".as_slice(), &[b'a'; 1000]].concat();
        assert_eq!(
            err(&long, &body).1,
            "Multipart: Invalid boundary in C-T (length)."
        );
    }

    #[test]
    fn boundary_forms_modsecurity_accepts() {
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "mixed-case media type",
                b"Multipart/Form-Data; boundary=abc",
                "abc",
            ),
            (
                "charset after the boundary is tolerated",
                b"multipart/form-data; boundary=abc; charset=utf-8",
                "abc",
            ),
            ("quoted", b"multipart/form-data; boundary=\"a b\"", "a b"),
            (
                "dashes",
                b"multipart/form-data; boundary=----WebKitFormBoundary",
                "----WebKitFormBoundary",
            ),
        ];
        for (label, content_type, boundary) in cases {
            let body = crlf(&format!(
                "--{boundary}\nContent-Disposition: form-data; name=\"a\"\n\n1\n--{boundary}--\n"
            ));
            let m = ok(content_type, &body);
            assert_eq!(m.args, vec![pair("a", "1")], "{label}");
        }
    }

    #[test]
    fn missing_final_boundary_is_an_error_but_completed_parts_are_kept() {
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data; name=\"a\"\n",
            "\n",
            "1\n",
            "--abc\n",
            "Content-Disposition: form-data; name=\"b\"\n",
            "\n",
            "2\n",
        ));
        let (m, message) = err(CT, &body);
        assert_eq!(message, "Multipart: Final boundary missing.");
        assert_eq!(m.args, vec![pair("a", "1")]);
    }

    #[test]
    fn final_boundary_without_a_line_ending_completes_the_body() {
        let body = crlf("--abc\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--");
        let m = ok(CT, &body);
        assert_eq!(m.args, vec![pair("a", "1")]);
        assert!(!m.flags.strict_error());
    }

    #[test]
    fn body_errors_use_modsecurity_messages() {
        let cases: &[BodyErrorCase] = &[
            ("no boundary at all", b"just text\r\n", "Multipart: No boundaries found in payload.", &[]),
            (
                "junk after the boundary stops parsing",
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--abcdef\r\nx\r\n--abc--\r\n",
                // libmodsecurity then reports the final boundary as missing, overwriting.
                "Multipart: Final boundary missing.",
                &[],
            ),
            (
                "missing Content-Disposition",
                b"--abc\r\nContent-Type: text/plain\r\n\r\n1\r\n--abc--\r\n",
                "Multipart: Final boundary missing.",
                &[],
            ),
            (
                "bad Content-Disposition on an otherwise complete body",
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--abc\r\nContent-Disposition: attachment; name=\"b\"\r\n\r\n--abc--",
                "Multipart: Invalid Content-Disposition header (-1): attachment; name=\"b\"",
                &[("a", "1")],
            ),
            (
                "unknown Content-Disposition parameter",
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"; size=3\r\n\r\n--abc--",
                "Multipart: Invalid Content-Disposition header (-11): form-data; name=\"a\"; size=3",
                &[("a", "")],
            ),
            (
                "Content-Disposition without name",
                b"--abc\r\nContent-Disposition: form-data\r\n\r\n--abc--",
                "Multipart: Content-Disposition header missing name field.",
                &[],
            ),
            (
                "a header line without colon",
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\nbogus\r\n\r\n1\r\n--abc--\r\n",
                "Multipart: Invalid part header (colon missing): bogus",
                &[("a", "1")],
            ),
            (
                "header name starting with a control character (CRS 922130)",
                b"--abc\r\n\x0eContent-Disposition: form-data; name=\"file\"; filename=\"1.php\"\r\nContent-Disposition: form-data; name=\"post\"\r\n\r\n<?php\r\n--abc--",
                "Multipart: Invalid part header (contains invalid character).",
                &[("post", "<?php")],
            ),
            (
                "header name with a space (CRS 922130)",
                b"--abc\r\nContent- Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"post\"\r\n\r\n1\r\n--abc--",
                "Multipart: Invalid part header (contains invalid character).",
                &[("post", "1")],
            ),
            (
                "folding with nothing to fold into",
                b"--abc\r\n continued\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--abc--\r\n",
                "Multipart: Invalid part header (folding error).",
                &[("a", "1")],
            ),
            (
                "a NUL byte in part headers",
                b"--abc\r\nX-A: \0\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--abc--\r\n",
                "Multipart: Nul byte in part headers.",
                &[("a", "1")],
            ),
            (
                "whitespace before a boundary",
                b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n-- abc\r\n",
                "Multipart: Final boundary missing.",
                &[],
            ),
        ];
        for (label, body, message, args) in cases {
            let (m, got) = err(CT, body);
            assert_eq!(got, *message, "{label}");
            let expected: Vec<Pair> = args.iter().map(|(n, v)| pair(n, v)).collect();
            assert_eq!(m.args, expected, "{label}");
        }
    }

    #[test]
    fn quoted_boundary_used_with_quotes_in_the_body_is_an_error() {
        let body =
            b"--\"abc\"\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--\"abc\"--\r\n";
        let (m, message) = err(b"multipart/form-data; boundary=\"abc\"", body);
        // Stopped at "Invalid boundary (quotes)."; the missing final boundary is reported last.
        assert_eq!(message, "Multipart: No boundaries found in payload.");
        assert!(m.flags.error && m.flags.boundary_quoted);
    }

    #[test]
    fn crs_922_part_headers_are_exposed_per_part_name() {
        // REQUEST-922 test 922100-1 and 922110-29, LF line endings as go-ftw sends them.
        let body = concat!(
            "--boundary\n",
            "Content-disposition: form-data; name=\"_charset_\"\n",
            "\n",
            "utf-7\n",
            "--boundary\n",
            "Content-Disposition: form-data; name=\"positive\"\n",
            "CoNtEnT-TyPe: text/plain; charset=utf-7\n",
            "Content-Transfer-Encoding: 8bit\n",
            "\n",
            "Let me see if I can use utf-7.\n",
            "--boundary--\n",
        );
        let m = ok(b"multipart/form-data; boundary=boundary", body.as_bytes());
        assert_eq!(
            m.args,
            vec![
                pair("_charset_", "utf-7"),
                pair("positive", "Let me see if I can use utf-7.")
            ]
        );
        assert_eq!(
            m.part_headers,
            vec![
                pair(
                    "_charset_",
                    "Content-disposition: form-data; name=\"_charset_\""
                ),
                pair(
                    "positive",
                    "Content-Disposition: form-data; name=\"positive\""
                ),
                pair("positive", "CoNtEnT-TyPe: text/plain; charset=utf-7"),
                pair("positive", "Content-Transfer-Encoding: 8bit"),
            ]
        );
        assert!(m.flags.lf_line && m.flags.strict_error());
    }

    #[test]
    fn a_folded_part_header_is_one_part_header_line() {
        let body = crlf(concat!(
            "--abc\n",
            "Content-Disposition: form-data;\n",
            "\tname=\"a\"\n",
            "Content-Type: text/plain\n",
            "\n",
            "1\n",
            "--abc--\n",
        ));
        let m = ok(CT, &body);
        assert_eq!(
            m.part_headers,
            vec![
                pair("a", "Content-Disposition: form-data; name=\"a\""),
                pair("a", "Content-Type: text/plain"),
            ]
        );
    }

    #[test]
    fn content_disposition_values_follow_modsecurity_quoting() {
        // (Content-Disposition value, field name, file name); CRS 920120 / 920121 / 930110.
        let cases: &[(&str, &str, &str)] = &[
            (
                "form-data; name=\"fi;le\"; filename=\"test\"",
                "fi;le",
                "test",
            ),
            (
                "form-data; name=\";zzzz\"; filename=\"test\"",
                ";zzzz",
                "test",
            ),
            (
                "form-data; name=\"f\"; filename=\"te\\\"st.txt\"",
                "f",
                "te\"st.txt",
            ),
            (
                "form-data; name=\"f\"; filename=\"1.j\\s\\p\"",
                "f",
                "1.j\\s\\p",
            ),
            (
                "form-data; name=\"f\"; filename=\"..\\1.7z\"",
                "f",
                "..\\1.7z",
            ),
            ("form-data; name=\"f\"; filename=\"a\\\\b\"", "f", "a\\b"),
            ("form-data; name=f; filename=plain.txt", "f", "plain.txt"),
            ("form-data ;  name = \"f\" ; filename = \"x\"", "f", "x"),
            (
                "form-data; name=\"f\"; filename=\"x\"; filename*=UTF-8''na%C3%AFve.txt",
                "f",
                "x",
            ),
        ];
        for (disposition, field, filename) in cases {
            let body = crlf(&format!(
                "--abc\nContent-Disposition: {disposition}\n\nhelloworld\n--abc--\n"
            ));
            let result = parse_multipart(CT, &body);
            let files = match &result {
                Ok(m) => &m.files,
                Err((m, _)) => &m.files,
            };
            let expected = FilePart {
                field: field.as_bytes().to_vec(),
                filename: filename.as_bytes().to_vec(),
                size: 10,
                content_type: None,
            };
            if disposition.contains("filename =") {
                // `filename =` is parsed, but rejected because it lacks "filename=".
                assert!(files.is_empty(), "{disposition}");
                continue;
            }
            assert_eq!(files, &vec![expected], "{disposition}");
        }
    }

    #[test]
    fn a_boundary_right_after_part_headers_is_read_as_data() {
        // libmodsecurity: a boundary where data should begin is not a boundary (invalid part).
        let body =
            b"--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--abc\r\nx\r\n--abc--\r\n";
        let m = ok(CT, body);
        assert!(m.flags.invalid_part);
        assert_eq!(m.args, vec![pair("a", "--abc\r\nx")]);
    }

    #[test]
    fn long_lines_are_handled_like_modsecurity_buffers() {
        let long_value = "v".repeat(10_000);
        let body = crlf(&format!(
            "--abc\nContent-Disposition: form-data; name=\"a\"\n\n{long_value}\n--abc--\n"
        ));
        assert_eq!(ok(CT, &body).args, vec![pair("a", &long_value)]);

        let long_header = format!("X-Long: {}", "h".repeat(5000));
        let body = crlf(&format!(
            "--abc\n{long_header}\nContent-Disposition: form-data; name=\"a\"\n\n1\n--abc--\n"
        ));
        let (m, message) = err(CT, &body);
        assert_eq!(message, "Multipart: Final boundary missing.");
        assert!(
            m.flags.error,
            "stopped at: Part header line over 4096 bytes long"
        );

        // A value whose 4096th byte is `\r`: libmodsecurity cuts the buffer before it; the
        // value is unchanged.
        let tricky = format!("{}\r{}", "x".repeat(4095), "y".repeat(10));
        let body = format!(
            "--abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{tricky}\r\n--abc--\r\n"
        );
        let m = ok(CT, body.as_bytes());
        assert_eq!(m.args, vec![pair("a", &tricky)]);
    }

    #[test]
    fn empty_body_is_not_an_error() {
        let m = ok(CT, b"");
        assert_eq!(m, Multipart::default());
    }

    #[test]
    fn no_panic_on_any_prefix_of_valid_bodies() {
        let bodies = [
            crlf(concat!(
                "preamble\n--abc\n",
                "Content-Disposition: form-data; name=\"a\"; filename=\"x\\\"y\"\n",
                " folded\n",
                "Content-Type: text/plain\n",
                "\n",
                "1 --abc x\n",
                "--abc\n",
                "Content-Disposition: form-data; name='b'; filename*=UTF-8''%41\n",
                "\n",
                "2\n",
                "--abc--\n",
                "epilogue",
            )),
            b"--abc\nContent-Disposition: form-data; name=\"a\n\n\x0b\0--abc--".to_vec(),
        ];
        for body in &bodies {
            for prefix in super::super::every_prefix(body) {
                let _ = parse_multipart(CT, prefix);
                let _ = parse_multipart(prefix, body);
            }
        }
    }
}
