//! Verifying a file of audit records: each record's hash and signature, and
//! each stream's chain — sequence numbers without gaps, in order, each `prev`
//! equal to the previous record's `hash`.

use super::keys::Keyring;
use super::record::{
    check_record, extract_record_lines, RecordError, SignatureCheck, GENESIS_HASH,
};
use std::collections::BTreeMap;
use std::fmt;

/// What is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the input the record came from.
    pub line: usize,
    pub stream: Option<String>,
    pub seq: Option<u64>,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not an audit record.
    Unreadable(String),
    /// The content does not match the record's own hash.
    Altered,
    /// The hash matches but the signature does not: content and hash were
    /// rewritten by someone without the key (or signed with another secret).
    BadSignature,
    UnknownKey(String),
    /// Not signed, and the verifier requires signatures.
    Unsigned,
    MalformedSignature(String),
    /// Records with these sequence numbers are not in the input.
    Missing {
        from: u64,
        to: u64,
    },
    /// This record appears after a record with a higher sequence number.
    OutOfOrder {
        after_seq: u64,
        after_line: usize,
    },
    /// The same sequence number appeared before.
    Duplicate {
        first_line: usize,
    },
    /// `prev` is not the previous record's hash: the previous record was
    /// replaced, or this one was cut from another chain.
    BrokenLink {
        prev_seq: Option<u64>,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unreadable(why) => write!(f, "unreadable: {why}"),
            ProblemKind::Altered => write!(f, "altered: content does not match its hash"),
            ProblemKind::BadSignature => write!(
                f,
                "altered: signature does not verify (hash rewritten without the key, or wrong key)"
            ),
            ProblemKind::UnknownKey(kid) => write!(f, "signed with unknown key id {kid:?}"),
            ProblemKind::Unsigned => write!(f, "not signed"),
            ProblemKind::MalformedSignature(why) => write!(f, "malformed signature: {why}"),
            ProblemKind::Missing { from, to } if from == to => {
                write!(f, "missing: record seq {from} is not in the input")
            }
            ProblemKind::Missing { from, to } => {
                write!(f, "missing: records seq {from}..={to} are not in the input")
            }
            ProblemKind::OutOfOrder {
                after_seq,
                after_line,
            } => write!(
                f,
                "out of order: comes after seq {after_seq} (line {after_line})"
            ),
            ProblemKind::Duplicate { first_line } => {
                write!(f, "duplicate: same seq as line {first_line}")
            }
            ProblemKind::BrokenLink { prev_seq: Some(p) } => write!(
                f,
                "broken chain: prev is not the hash of seq {p} (that record was replaced?)"
            ),
            ProblemKind::BrokenLink { prev_seq: None } => {
                write!(
                    f,
                    "broken chain: first record's prev is not the genesis hash"
                )
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(stream) = &self.stream {
            write!(f, " (stream {stream}")?;
            if let Some(seq) = self.seq {
                write!(f, ", seq {seq}")?;
            }
            write!(f, ")")?;
        }
        write!(f, ": {}", self.kind)
    }
}

struct Entry {
    line: usize,
    seq: u64,
    prev: String,
    hash: String,
}

/// Feeds lines in, then [`ChainVerifier::finish`] gives the report.
///
/// ```
/// use meshward_shared::audit::{ChainVerifier, Keyring};
/// let keys = Keyring::new();
/// let mut v = ChainVerifier::new(&keys);
/// v.push_line(1, "not a record");
/// let report = v.finish();
/// assert!(!report.is_ok());
/// ```
pub struct ChainVerifier<'k> {
    keys: &'k Keyring,
    require_signatures: bool,
    allow_late_start: bool,
    records: usize,
    signed_by: BTreeMap<String, usize>,
    problems: Vec<Problem>,
    streams: BTreeMap<String, Vec<Entry>>,
}

impl<'k> ChainVerifier<'k> {
    /// A verifier that requires every record to be signed with a key in `keys`.
    pub fn new(keys: &'k Keyring) -> Self {
        ChainVerifier {
            keys,
            require_signatures: true,
            allow_late_start: false,
            records: 0,
            signed_by: BTreeMap::new(),
            problems: Vec::new(),
            streams: BTreeMap::new(),
        }
    }

    /// Accepts unsigned records (for filters run with signing off): hashes
    /// and chains still prove order and completeness, not authorship.
    pub fn allow_unsigned(mut self, yes: bool) -> Self {
        self.require_signatures = !yes;
        self
    }

    /// Accepts streams whose first record in the input is not seq 1 (an
    /// export that starts mid-stream). Gaps after it are still problems.
    pub fn allow_late_start(mut self, yes: bool) -> Self {
        self.allow_late_start = yes;
        self
    }

    /// One line of input: a record, an Envoy log line with a record, or an
    /// OTLP logs request with records (see `extract_record_lines`).
    pub fn push_line(&mut self, line_no: usize, text: &str) {
        for record in extract_record_lines(text) {
            self.push_record(line_no, &record);
        }
    }

    /// One record line.
    pub fn push_record(&mut self, line_no: usize, record: &str) {
        let checked = match check_record(record, self.keys) {
            Ok(c) => c,
            Err(RecordError::NotJson(why)) | Err(RecordError::NotARecord(why)) => {
                self.problems.push(Problem {
                    line: line_no,
                    stream: None,
                    seq: None,
                    kind: ProblemKind::Unreadable(why),
                });
                return;
            }
        };
        self.records += 1;
        let body = &checked.body;
        let problem = |kind| Problem {
            line: line_no,
            stream: Some(body.stream.clone()),
            seq: Some(body.seq),
            kind,
        };
        if !checked.hash_matches {
            self.problems.push(problem(ProblemKind::Altered));
        } else {
            match &checked.signature {
                SignatureCheck::Valid => {
                    let kid = body.kid.clone().unwrap_or_default();
                    *self.signed_by.entry(kid).or_default() += 1;
                }
                SignatureCheck::Invalid => self.problems.push(problem(ProblemKind::BadSignature)),
                SignatureCheck::UnknownKey(kid) => self
                    .problems
                    .push(problem(ProblemKind::UnknownKey(kid.clone()))),
                SignatureCheck::Unsigned if self.require_signatures => {
                    self.problems.push(problem(ProblemKind::Unsigned))
                }
                SignatureCheck::Unsigned => {}
                SignatureCheck::Malformed(why) => self
                    .problems
                    .push(problem(ProblemKind::MalformedSignature(why.clone()))),
            }
        }
        self.streams
            .entry(body.stream.clone())
            .or_default()
            .push(Entry {
                line: line_no,
                seq: body.seq,
                prev: body.prev.clone(),
                hash: checked.hash,
            });
    }

    pub fn finish(mut self) -> ChainReport {
        let streams = std::mem::take(&mut self.streams);
        for (stream, entries) in &streams {
            self.check_stream(stream, entries);
        }
        self.problems.sort_by_key(|p| p.line);
        ChainReport {
            records: self.records,
            streams: streams.len(),
            signed_by: self.signed_by,
            problems: self.problems,
        }
    }

    fn check_stream(&mut self, stream: &str, entries: &[Entry]) {
        let problem = |e: &Entry, kind| Problem {
            line: e.line,
            stream: Some(stream.to_string()),
            seq: Some(e.seq),
            kind,
        };
        // Arrival order: anything below the highest seq seen so far is out of
        // order; the same seq twice is a duplicate.
        let mut first_line: BTreeMap<u64, usize> = BTreeMap::new();
        let mut highest: Option<&Entry> = None;
        for e in entries {
            if let Some(&line) = first_line.get(&e.seq) {
                self.problems
                    .push(problem(e, ProblemKind::Duplicate { first_line: line }));
                continue;
            }
            first_line.insert(e.seq, e.line);
            match highest {
                Some(h) if e.seq < h.seq => self.problems.push(problem(
                    e,
                    ProblemKind::OutOfOrder {
                        after_seq: h.seq,
                        after_line: h.line,
                    },
                )),
                _ => highest = Some(e),
            }
        }
        // Sequence order: gaps and links.
        let mut sorted: Vec<&Entry> = entries.iter().collect();
        sorted.sort_by_key(|e| e.seq);
        sorted.dedup_by_key(|e| e.seq);
        let Some(first) = sorted.first() else { return };
        if first.seq == 1 || first.seq == 0 {
            if first.prev != GENESIS_HASH {
                self.problems
                    .push(problem(first, ProblemKind::BrokenLink { prev_seq: None }));
            }
        } else if !self.allow_late_start {
            self.problems.push(problem(
                first,
                ProblemKind::Missing {
                    from: 1,
                    to: first.seq - 1,
                },
            ));
        }
        for pair in sorted.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.seq > a.seq + 1 {
                self.problems.push(problem(
                    b,
                    ProblemKind::Missing {
                        from: a.seq + 1,
                        to: b.seq - 1,
                    },
                ));
            } else if b.prev != a.hash {
                self.problems.push(problem(
                    b,
                    ProblemKind::BrokenLink {
                        prev_seq: Some(a.seq),
                    },
                ));
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub records: usize,
    pub streams: usize,
    /// Valid signatures per key id.
    pub signed_by: BTreeMap<String, usize>,
    /// Every problem found, by input line.
    pub problems: Vec<Problem>,
}

impl ChainReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.records > 0
    }
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed: Vec<String> = self
            .signed_by
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let signed = if signed.is_empty() {
            "none".to_string()
        } else {
            signed.join(", ")
        };
        if self.records == 0 && self.problems.is_empty() {
            return writeln!(f, "FAILED: no audit records in the input");
        }
        if self.is_ok() {
            return writeln!(
                f,
                "OK: {} records in {} stream(s); every hash, signature (by key: {signed}) and chain link verified, no gaps",
                self.records, self.streams
            );
        }
        writeln!(
            f,
            "FAILED: {} problem(s) in {} records, {} stream(s) (valid signatures by key: {signed})",
            self.problems.len(),
            self.records,
            self.streams
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::SigningKey;
    use super::super::record::{seal, tests::body};
    use super::*;

    const SECRET: &[u8] = b"chain-secret-0123456789";

    fn chain(stream: &str, n: u64, key: Option<&SigningKey>) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let sealed = seal(&mut body(stream, seq, &prev), key);
                prev = sealed.hash;
                sealed.line
            })
            .collect()
    }

    fn verify(lines: &[String], keys: &Keyring) -> ChainReport {
        let mut v = ChainVerifier::new(keys);
        for (i, l) in lines.iter().enumerate() {
            v.push_line(i + 1, l);
        }
        v.finish()
    }

    fn setup() -> (SigningKey, Keyring) {
        let mut ring = Keyring::new();
        ring.insert("k1", SECRET).unwrap();
        (SigningKey::new("k1", SECRET).unwrap(), ring)
    }

    fn kinds(r: &ChainReport) -> Vec<(usize, ProblemKind)> {
        r.problems
            .iter()
            .map(|p| (p.line, p.kind.clone()))
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (key, ring) = setup();
        let report = verify(&chain("s", 5, Some(&key)), &ring);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.records, 5);
        assert!(report
            .to_string()
            .starts_with("OK: 5 records in 1 stream(s)"));
    }

    #[test]
    fn interleaved_streams_verify_independently() {
        let (key, ring) = setup();
        let a = chain("a", 3, Some(&key));
        let b = chain("b", 3, Some(&key));
        let mixed: Vec<String> = a.into_iter().zip(b).flat_map(|(x, y)| [x, y]).collect();
        let report = verify(&mixed, &ring);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.streams, 2);
    }

    #[test]
    fn a_removed_record_is_reported_missing() {
        let (key, ring) = setup();
        let mut lines = chain("s", 4, Some(&key));
        lines.remove(1);
        let report = verify(&lines, &ring);
        assert_eq!(
            kinds(&report),
            vec![(2, ProblemKind::Missing { from: 2, to: 2 })]
        );
        assert!(report
            .to_string()
            .contains("line 2 (stream s, seq 3): missing: record seq 2"));
    }

    #[test]
    fn a_removed_first_record_is_reported_unless_late_start_is_allowed() {
        let (key, ring) = setup();
        let lines = chain("s", 3, Some(&key))[1..].to_vec();
        let report = verify(&lines, &ring);
        assert_eq!(
            kinds(&report),
            vec![(1, ProblemKind::Missing { from: 1, to: 1 })]
        );
        let mut v = ChainVerifier::new(&ring).allow_late_start(true);
        for (i, l) in lines.iter().enumerate() {
            v.push_line(i + 1, l);
        }
        assert!(v.finish().is_ok());
    }

    #[test]
    fn a_reordered_record_is_reported_out_of_order() {
        let (key, ring) = setup();
        let mut lines = chain("s", 4, Some(&key));
        lines.swap(1, 2);
        let report = verify(&lines, &ring);
        assert_eq!(
            kinds(&report),
            vec![(
                3,
                ProblemKind::OutOfOrder {
                    after_seq: 3,
                    after_line: 2
                }
            )]
        );
    }

    #[test]
    fn an_altered_record_is_reported_altered() {
        let (key, ring) = setup();
        let mut lines = chain("s", 3, Some(&key));
        lines[1] = lines[1].replace("\"method\":\"GET\"", "\"method\":\"PUT\"");
        let report = verify(&lines, &ring);
        assert_eq!(kinds(&report), vec![(2, ProblemKind::Altered)]);
    }

    #[test]
    fn a_replaced_record_breaks_the_link_and_fails_its_signature() {
        let (key, ring) = setup();
        let mut lines = chain("s", 3, Some(&key));
        // A forger with another key re-seals record 2 consistently.
        let other = SigningKey::new("k1", b"forger-secret-0123456789").unwrap();
        let prev = serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_string();
        let mut b = body("s", 2, &prev);
        b.status = Some(500);
        lines[1] = seal(&mut b, Some(&other)).line;
        let report = verify(&lines, &ring);
        assert_eq!(
            kinds(&report),
            vec![
                (2, ProblemKind::BadSignature),
                (3, ProblemKind::BrokenLink { prev_seq: Some(2) })
            ]
        );
    }

    #[test]
    fn duplicates_and_garbage_are_reported() {
        let (key, ring) = setup();
        let mut lines = chain("s", 2, Some(&key));
        lines.push(lines[1].clone());
        lines.push("hello".into());
        let report = verify(&lines, &ring);
        assert_eq!(report.problems.len(), 2, "{report}");
        assert_eq!(
            report.problems[0].kind,
            ProblemKind::Duplicate { first_line: 2 }
        );
        assert!(matches!(
            report.problems[1].kind,
            ProblemKind::Unreadable(_)
        ));
    }

    #[test]
    fn unsigned_records_fail_unless_allowed() {
        let (_, ring) = setup();
        let lines = chain("s", 2, None);
        let report = verify(&lines, &ring);
        assert_eq!(report.problems.len(), 2);
        assert!(report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::Unsigned));
        let mut v = ChainVerifier::new(&ring).allow_unsigned(true);
        for (i, l) in lines.iter().enumerate() {
            v.push_line(i + 1, l);
        }
        assert!(v.finish().is_ok());
    }

    #[test]
    fn empty_input_is_not_ok() {
        let (_, ring) = setup();
        let report = verify(&[], &ring);
        assert!(!report.is_ok());
        assert!(report.to_string().contains("no audit records"));
    }
}
