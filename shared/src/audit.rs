//! Signed audit headers and tamper-evident audit records: the one definition
//! that the `audit` filter writes with, and that the `meshward audit` command
//! and upstream services verify with.
//!
//! - [`AuditClaims`] is what the `x-meshward-audit` header carries, in a compact
//!   canonical encoding ([`AuditClaims::encode`] / [`AuditClaims::parse`]);
//!   [`sign_header`] and [`verify_header`] handle `x-meshward-audit-signature`
//!   (HMAC-SHA256 under a key id, so keys can rotate).
//! - [`RecordBody`] is one audit record; [`seal`] chains it to the previous
//!   record (stream id, sequence number, hash of the previous record) and signs
//!   it; [`ChainVerifier`] finds missing, reordered and altered records.
//!
//! What this module does not do: keep secrets secret at rest, or detect records
//! dropped after the last one an auditor holds (a chain proves what it holds
//! is complete up to its last record, nothing after it).
//!
//! ```
//! use meshward_shared::audit::{sign_header, verify_header, AuditClaims, Keyring, SigningKey};
//!
//! let key = SigningKey::new("k1", b"0123456789abcdef0123").unwrap();
//! let claims = AuditClaims::new("req-1", 1_767_225_600_000, "GET", "/accounts/1");
//! let value = claims.encode();
//! let signature = sign_header(&value, &key);
//!
//! let mut keys = Keyring::new();
//! keys.insert("k1", b"0123456789abcdef0123").unwrap();
//! assert_eq!(verify_header(&value, &signature, &keys).unwrap(), claims);
//! ```

mod canonical;
mod chain;
mod encoding;
mod header;
mod keys;
mod record;

pub use chain::{ChainReport, ChainVerifier, Problem, ProblemKind};
pub use encoding::{format_rfc3339_millis, hex_encode, hex_encode_into};
pub use header::{
    sign_header, verify_header, verify_header_at, AuditClaims, ClaimsRef, HeaderError,
    SIGNATURE_ALG,
};
pub use keys::{env_var_for_key, KeyError, Keyring, Secret, SigningKey, MIN_SECRET_BYTES};
pub use record::{
    check_record, extract_record_lines, seal, seal_into, CheckedRecord, RecordBody, RecordDecision,
    RecordDecisions, RecordError, SealedRecord, GENESIS_HASH, LOG_PREFIX, RECORD_VERSION,
};
