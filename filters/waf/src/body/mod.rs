//! Request body processors of the SecLang engine: what ModSecurity v3 (libmodsecurity) extracts
//! from a request body before phase 2, so CRS rules see the same ARGS_POST, FILES, MULTIPART_*
//! and XML values.
//!
//! | processor | ModSecurity name | fills |
//! |---|---|---|
//! | [`parse_urlencoded`] | `URLENCODED` (and the query string) | ARGS_GET / ARGS_POST |
//! | [`parse_multipart`] | `MULTIPART` | ARGS_POST, FILES*, MULTIPART_PART_HEADERS, MULTIPART_* flags |
//! | [`parse_json`] | `JSON` | ARGS_POST, named `json.a.b`, `json.list.array_0` |
//! | [`parse_xml`] | `XML` | `XML:/*` (text), `XML://@*` (attribute values) |
//!
//! Every processor takes the whole body (the engine buffers it up to its body limit), allocates
//! only for what it returns, never panics and never recurses on input (nesting is tracked with
//! explicit stacks), so a hostile body costs at most linear time.
//!
//! Error strings are ModSecurity's own texts where it has one (e.g.
//! `Multipart: Final boundary missing.`); the engine prefixes them as ModSecurity does
//! (`Multipart parsing error: `, `JSON parsing error: `, `XML parsing error: `) for
//! REQBODY_ERROR_MSG.
//!
//! What this module does not do: store uploaded files (FILES_TMPNAMES / FILES_TMP_CONTENT),
//! validate XML against a DTD or schema (`@validateDTD`, `@validateSchema`), load external XML
//! entities, or evaluate XPath expressions other than the two CRS uses.

mod json;
mod multipart;
mod urlencoded;
mod xml;

pub use json::parse_json;
pub use multipart::{parse_multipart, FilePart, Multipart, MultipartFlags};
pub use urlencoded::parse_urlencoded;
pub(crate) use urlencoded::percent_decode;
pub use xml::{parse_xml, Xml};

/// How many bytes of names and values a processor may return for a body of `input_len` bytes.
///
/// Names can repeat input: a JSON value 500 arrays deep is named `json.array_0.array_0…` (4 KB)
/// for its 2 input bytes, a multipart part's name is repeated for each of its header lines.
/// libmodsecurity bounds this with SecArgumentsLimit; a processor here stops with an error past
/// this budget instead, so a hostile body cannot exhaust the VM's memory. 64 times the body
/// leaves room for real documents (a long key over an array of small numbers is about 25).
fn output_budget(input_len: usize) -> usize {
    input_len.saturating_mul(64).saturating_add(1 << 20)
}

/// A (name, value) pair as ModSecurity adds it to an ARGS-like collection: raw bytes, already
/// decoded by the processor (URL decoding, JSON unescaping, multipart quoting).
pub type Pair = (Vec<u8>, Vec<u8>);

/// Prefixes of a valid body, each cut one byte shorter than the last: processors must return
/// (an error, usually) without panicking on every one of them.
#[cfg(test)]
fn every_prefix(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    (0..=body.len()).filter_map(move |n| body.get(..n))
}
