//! The `x-meshward-audit` header value and its signature header.
//!
//! Canonical encoding: `;`-separated `key=value` fields in this fixed order,
//! optional fields omitted when absent, values percent-encoded (see
//! `encoding.rs`):
//!
//! ```text
//! v=1;id=<request id>;t=<unix ms>;tenant=<caller tenant>;principal=<SPIFFE ID>;
//! dst=<authority>;m=<method>;p=<path>;d.waf=<decision>;d.tenant=<decision>;d.ratelimit=<decision>
//! ```
//!
//! A decision is `<outcome>[|<rule>[|<reason>]]` (`deny||over_limit` when only
//! the reason is known). A decision that is absent means that filter did not
//! decide (it did not run, or wrote nothing) — never "allowed".
//!
//! The parser accepts exactly what [`AuditClaims::encode`] writes: for every
//! valid value `encode(parse(v)) == v`, so a value has one meaning and one
//! signature.

use super::encoding::{hex_decode, hex_encode_into, percent_decode, percent_encode_into};
use super::keys::{Keyring, SigningKey};
use crate::filter_state::{Decision, Outcome};

/// The signature algorithm named in the signature header.
pub const SIGNATURE_ALG: &str = "hmac-sha256";

/// Domain separation: a header MAC can never be replayed as a record MAC.
const HEADER_MAC_DOMAIN: &[u8] = b"meshward-audit-header-v1\0";

/// What the audit filter tells the upstream service about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditClaims {
    pub request_id: String,
    /// When the audit filter saw the request headers, Unix milliseconds.
    pub time_unix_ms: u64,
    /// The caller's tenant as the `tenant` filter established it.
    pub tenant: Option<String>,
    /// The caller's SPIFFE ID as the `tenant` filter verified it.
    pub principal: Option<String>,
    /// The `:authority` the request was sent to.
    pub destination: Option<String>,
    pub method: String,
    pub path: String,
    pub waf: Option<Decision>,
    /// The `tenant` filter's authorization decision.
    pub authz: Option<Decision>,
    pub ratelimit: Option<Decision>,
}

/// [`AuditClaims`] borrowed from wherever the writer holds them: encoding
/// these writes exactly what [`AuditClaims::encode`] writes, without copying
/// each value into claims first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimsRef<'a> {
    pub request_id: &'a str,
    pub time_unix_ms: u64,
    pub tenant: Option<&'a str>,
    pub principal: Option<&'a str>,
    pub destination: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub waf: Option<&'a Decision>,
    pub authz: Option<&'a Decision>,
    pub ratelimit: Option<&'a Decision>,
}

impl ClaimsRef<'_> {
    /// The canonical header value (see [`AuditClaims::encode`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(128 + self.path.len());
        out.push_str("v=1;id=");
        percent_encode_into(&mut out, self.request_id);
        out.push_str(";t=");
        push_decimal(&mut out, self.time_unix_ms);
        push_opt(&mut out, "tenant", self.tenant);
        push_opt(&mut out, "principal", self.principal);
        push_opt(&mut out, "dst", self.destination);
        out.push_str(";m=");
        percent_encode_into(&mut out, self.method);
        out.push_str(";p=");
        percent_encode_into(&mut out, self.path);
        push_decision(&mut out, "d.waf", self.waf);
        push_decision(&mut out, "d.tenant", self.authz);
        push_decision(&mut out, "d.ratelimit", self.ratelimit);
        out
    }
}

/// Appends `n` in decimal (what `n.to_string()` spells, without the
/// formatting machinery).
pub(crate) fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// Why a header value or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("audit header is malformed: {0}")]
    Malformed(String),
    #[error("audit signature header is malformed: {0}")]
    MalformedSignature(String),
    #[error("audit header is signed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("audit header signature does not verify with key {0:?}")]
    BadSignature(String),
    #[error("audit header is {age_ms} ms old, more than the {max_age_ms} ms allowed")]
    Stale { age_ms: u64, max_age_ms: u64 },
    #[error("audit header is {ahead_ms} ms in the future")]
    FromTheFuture { ahead_ms: u64 },
}

const FIELDS: [&str; 11] = [
    "v",
    "id",
    "t",
    "tenant",
    "principal",
    "dst",
    "m",
    "p",
    "d.waf",
    "d.tenant",
    "d.ratelimit",
];

impl AuditClaims {
    /// Claims with the required fields; everything else absent.
    pub fn new(request_id: &str, time_unix_ms: u64, method: &str, path: &str) -> Self {
        AuditClaims {
            request_id: request_id.to_string(),
            time_unix_ms,
            tenant: None,
            principal: None,
            destination: None,
            method: method.to_string(),
            path: path.to_string(),
            waf: None,
            authz: None,
            ratelimit: None,
        }
    }

    /// The canonical header value. Empty optional strings (and empty decision
    /// rules or reasons) are written as absent.
    pub fn encode(&self) -> String {
        self.borrowed().encode()
    }

    /// The same claims, borrowed.
    pub fn borrowed(&self) -> ClaimsRef<'_> {
        ClaimsRef {
            request_id: &self.request_id,
            time_unix_ms: self.time_unix_ms,
            tenant: self.tenant.as_deref(),
            principal: self.principal.as_deref(),
            destination: self.destination.as_deref(),
            method: &self.method,
            path: &self.path,
            waf: self.waf.as_ref(),
            authz: self.authz.as_ref(),
            ratelimit: self.ratelimit.as_ref(),
        }
    }

    /// Parses a canonical header value (see the module docs).
    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let bad = |m: String| HeaderError::Malformed(m);
        let mut claims = AuditClaims::new("", 0, "", "");
        let mut next = 0usize;
        let mut seen_version = false;
        for field in value.split(';') {
            let (key, raw) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("field {field:?} has no '='")))?;
            let pos = FIELDS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| bad(format!("unknown field {key:?}")))?;
            if pos < next {
                return Err(bad(format!("field {key:?} is repeated or out of order")));
            }
            next = pos + 1;
            match key {
                "v" => {
                    if raw != "1" {
                        return Err(bad(format!("unsupported version {raw:?}")));
                    }
                    seen_version = true;
                }
                "t" => {
                    claims.time_unix_ms = raw
                        .parse()
                        .map_err(|_| bad(format!("t: not a time in milliseconds: {raw:?}")))?;
                }
                "d.waf" => claims.waf = Some(parse_decision(raw).map_err(bad)?),
                "d.tenant" => claims.authz = Some(parse_decision(raw).map_err(bad)?),
                "d.ratelimit" => claims.ratelimit = Some(parse_decision(raw).map_err(bad)?),
                _ => {
                    let text = percent_decode(raw)
                        .ok_or_else(|| bad(format!("{key}: bad percent-encoding")))?;
                    match key {
                        "id" => claims.request_id = text,
                        "tenant" => claims.tenant = Some(text),
                        "principal" => claims.principal = Some(text),
                        "dst" => claims.destination = Some(text),
                        "m" => claims.method = text,
                        _ => claims.path = text,
                    }
                }
            }
        }
        if !seen_version {
            return Err(bad("missing field \"v\"".into()));
        }
        for (name, value) in [
            ("id", &claims.request_id),
            ("m", &claims.method),
            ("p", &claims.path),
        ] {
            if value.is_empty() {
                return Err(bad(format!("missing field {name:?}")));
            }
        }
        if claims.encode() != value {
            return Err(bad("not in canonical form".into()));
        }
        Ok(claims)
    }
}

fn push_opt(out: &mut String, key: &str, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        out.push(';');
        out.push_str(key);
        out.push('=');
        percent_encode_into(out, v);
    }
}

fn push_decision(out: &mut String, key: &str, decision: Option<&Decision>) {
    let Some(d) = decision else { return };
    out.push(';');
    out.push_str(key);
    out.push('=');
    out.push_str(d.outcome.as_str());
    let rule = d.rule.as_deref().filter(|r| !r.is_empty());
    let reason = d.reason.as_deref().filter(|r| !r.is_empty());
    if rule.is_some() || reason.is_some() {
        out.push('|');
        percent_encode_into(out, rule.unwrap_or(""));
    }
    if let Some(reason) = reason {
        out.push('|');
        percent_encode_into(out, reason);
    }
}

fn parse_decision(raw: &str) -> Result<Decision, String> {
    let mut parts = raw.split('|');
    let outcome = match parts.next() {
        Some("allow") => Outcome::Allow,
        Some("deny") => Outcome::Deny,
        Some("dry_run_deny") => Outcome::DryRunDeny,
        other => return Err(format!("unknown decision outcome {other:?}")),
    };
    let text = |part: Option<&str>| -> Result<Option<String>, String> {
        match part {
            None | Some("") => Ok(None),
            Some(p) => percent_decode(p)
                .map(Some)
                .ok_or_else(|| format!("bad percent-encoding in decision {raw:?}")),
        }
    };
    let rule = text(parts.next())?;
    let reason = text(parts.next())?;
    if parts.next().is_some() {
        return Err(format!("decision {raw:?} has too many parts"));
    }
    Ok(Decision {
        outcome,
        rule,
        reason,
    })
}

/// The signature header for a canonical header value:
/// `kid=<key id>;alg=hmac-sha256;sig=<64 hex>`.
///
/// The MAC covers a domain tag, the key id and the value, so a signature
/// cannot be moved to another value, another key id or an audit record.
pub fn sign_header(value: &str, key: &SigningKey) -> String {
    let mac = key.sign(&[
        HEADER_MAC_DOMAIN,
        key.id().as_bytes(),
        b"\0",
        value.as_bytes(),
    ]);
    let mut out = String::with_capacity(32 + key.id().len() + 64);
    out.push_str("kid=");
    out.push_str(key.id());
    out.push_str(";alg=");
    out.push_str(SIGNATURE_ALG);
    out.push_str(";sig=");
    hex_encode_into(&mut out, &mac);
    out
}

/// Verifies an `x-meshward-audit` value against its signature header and
/// returns the claims it carries.
///
/// This is the function an upstream Rust service calls: it checks the
/// signature with the key the header names (which must be in `keys`) and that
/// the value is canonical. It does not check the time; see
/// [`verify_header_at`] to bound the age of a header too.
pub fn verify_header(
    value: &str,
    signature: &str,
    keys: &Keyring,
) -> Result<AuditClaims, HeaderError> {
    let (kid, mac) = parse_signature(signature)?;
    match keys.verify(
        kid,
        &[HEADER_MAC_DOMAIN, kid.as_bytes(), b"\0", value.as_bytes()],
        &mac,
    ) {
        None => return Err(HeaderError::UnknownKey(kid.to_string())),
        Some(false) => return Err(HeaderError::BadSignature(kid.to_string())),
        Some(true) => {}
    }
    AuditClaims::parse(value)
}

/// [`verify_header`], then checks that the header was made at most
/// `max_age_ms` before `now_unix_ms` (and not more than `max_age_ms` after
/// it, for clock skew). Bounds how long a captured header stays replayable.
pub fn verify_header_at(
    value: &str,
    signature: &str,
    keys: &Keyring,
    now_unix_ms: u64,
    max_age_ms: u64,
) -> Result<AuditClaims, HeaderError> {
    let claims = verify_header(value, signature, keys)?;
    if claims.time_unix_ms > now_unix_ms {
        let ahead_ms = claims.time_unix_ms - now_unix_ms;
        if ahead_ms > max_age_ms {
            return Err(HeaderError::FromTheFuture { ahead_ms });
        }
    } else {
        let age_ms = now_unix_ms - claims.time_unix_ms;
        if age_ms > max_age_ms {
            return Err(HeaderError::Stale { age_ms, max_age_ms });
        }
    }
    Ok(claims)
}

fn parse_signature(signature: &str) -> Result<(&str, Vec<u8>), HeaderError> {
    let bad = |m: &str| HeaderError::MalformedSignature(m.to_string());
    let rest = signature
        .strip_prefix("kid=")
        .ok_or_else(|| bad("expected kid=<id>;alg=hmac-sha256;sig=<hex>"))?;
    let (kid, rest) = rest
        .split_once(';')
        .ok_or_else(|| bad("expected kid=<id>;alg=hmac-sha256;sig=<hex>"))?;
    let hex = rest
        .strip_prefix("alg=hmac-sha256;sig=")
        .ok_or_else(|| bad("unsupported algorithm (expected alg=hmac-sha256)"))?;
    let mac = hex_decode(hex)
        .filter(|m| m.len() == 32)
        .ok_or_else(|| bad("sig is not 64 lowercase hex digits"))?;
    super::keys::validate_key_id(kid).map_err(|_| bad("invalid key id"))?;
    Ok((kid, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_spelled_like_to_string() {
        for n in [0, 7, 10, 1_767_225_600_000, u64::MAX] {
            let mut s = String::from("t=");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("t={n}"));
        }
    }

    #[test]
    fn borrowed_claims_encode_like_owned_ones() {
        let mut c = AuditClaims::new("r;1", 1_767_225_600_123, "GET", "/a b");
        c.tenant = Some("bank-a".into());
        c.authz = Some(Decision::new(Outcome::Deny).with_reason("x"));
        let b = c.borrowed();
        assert_eq!(b.encode(), c.encode());
        assert_eq!(AuditClaims::parse(&b.encode()).unwrap(), c);
    }

    const K1: &[u8] = b"k1-secret-0123456789";
    const K2: &[u8] = b"k2-secret-9876543210";

    fn full() -> AuditClaims {
        AuditClaims {
            request_id: "3f1c9a8e-0b7d-4c55-9a1e-2f6d7c8b9a01".into(),
            time_unix_ms: 1_767_225_600_123,
            tenant: Some("bank-a".into()),
            principal: Some("spiffe://bank.example/ns/bank-a/sa/api".into()),
            destination: Some("transaction.bank-a.svc:8080".into()),
            method: "POST".into(),
            path: "/transfer?to=a;b&amount=1 000".into(),
            waf: Some(Decision::new(Outcome::Allow)),
            authz: Some(Decision::new(Outcome::DryRunDeny).with_rule("deny-b|x")),
            ratelimit: Some(Decision::new(Outcome::Deny).with_reason("over_limit")),
        }
    }

    fn ring(keys: &[(&str, &[u8])]) -> Keyring {
        let mut r = Keyring::new();
        for (id, s) in keys {
            r.insert(id, s).unwrap();
        }
        r
    }

    #[test]
    fn encoding_is_compact_and_readable() {
        assert_eq!(
            full().encode(),
            "v=1;id=3f1c9a8e-0b7d-4c55-9a1e-2f6d7c8b9a01;t=1767225600123;tenant=bank-a;\
             principal=spiffe://bank.example/ns/bank-a/sa/api;dst=transaction.bank-a.svc:8080;\
             m=POST;p=/transfer?to%3Da%3Bb&amount%3D1%20000;d.waf=allow;\
             d.tenant=dry_run_deny|deny-b%7Cx;d.ratelimit=deny||over_limit"
        );
    }

    #[test]
    fn absent_decisions_stay_absent_never_allow() {
        let claims = AuditClaims::new("r", 1, "GET", "/");
        let value = claims.encode();
        assert_eq!(value, "v=1;id=r;t=1;m=GET;p=/");
        let back = AuditClaims::parse(&value).unwrap();
        assert_eq!(back.waf, None);
        assert_eq!(back.authz, None);
        assert_eq!(back.ratelimit, None);
    }

    #[test]
    fn parse_inverts_encode() {
        let claims = full();
        assert_eq!(AuditClaims::parse(&claims.encode()).unwrap(), claims);
    }

    #[test]
    fn non_canonical_or_malformed_values_are_refused() {
        let rows = [
            ("reordered fields", "v=1;t=1;id=r;m=GET;p=/"),
            ("repeated field", "v=1;id=r;id=s;t=1;m=GET;p=/"),
            ("unknown field", "v=1;id=r;t=1;m=GET;p=/;x=1"),
            ("missing version", "id=r;t=1;m=GET;p=/"),
            ("other version", "v=2;id=r;t=1;m=GET;p=/"),
            ("missing path", "v=1;id=r;t=1;m=GET"),
            ("needless escape", "v=1;id=%72;t=1;m=GET;p=/"),
            ("leading zero time", "v=1;id=r;t=01;m=GET;p=/"),
            ("empty optional", "v=1;id=r;t=1;tenant=;m=GET;p=/"),
            ("unknown outcome", "v=1;id=r;t=1;m=GET;p=/;d.waf=maybe"),
            (
                "trailing separator in decision",
                "v=1;id=r;t=1;m=GET;p=/;d.waf=allow|",
            ),
            (
                "too many decision parts",
                "v=1;id=r;t=1;m=GET;p=/;d.waf=deny|a|b|c",
            ),
            ("no equals", "v=1;id=r;t=1;m=GET;p=/;junk"),
        ];
        for (label, value) in rows {
            assert!(AuditClaims::parse(value).is_err(), "{label}: {value}");
        }
    }

    #[test]
    fn signature_verifies_with_the_right_key_and_fails_with_another() {
        let key = SigningKey::new("k1", K1).unwrap();
        let value = full().encode();
        let sig = sign_header(&value, &key);
        assert!(sig.starts_with("kid=k1;alg=hmac-sha256;sig="));
        assert_eq!(
            verify_header(&value, &sig, &ring(&[("k1", K1)])).unwrap(),
            full()
        );
        assert_eq!(
            verify_header(&value, &sig, &ring(&[("k1", K2)])),
            Err(HeaderError::BadSignature("k1".into()))
        );
        assert_eq!(
            verify_header(&value, &sig, &ring(&[("k2", K1)])),
            Err(HeaderError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn a_changed_value_or_key_id_fails_verification() {
        let keys = ring(&[("k1", K1), ("k2", K1)]);
        let key = SigningKey::new("k1", K1).unwrap();
        let value = full().encode();
        let sig = sign_header(&value, &key);
        let altered = value.replace("tenant=bank-a", "tenant=bank-b");
        assert_eq!(
            verify_header(&altered, &sig, &keys),
            Err(HeaderError::BadSignature("k1".into()))
        );
        let moved = sig.replace("kid=k1", "kid=k2");
        assert_eq!(
            verify_header(&value, &moved, &keys),
            Err(HeaderError::BadSignature("k2".into())),
            "the key id is covered by the MAC"
        );
    }

    #[test]
    fn rotated_keys_verify_side_by_side() {
        let keys = ring(&[("k1", K1), ("k2", K2)]);
        let value = full().encode();
        for (id, secret) in [("k1", K1), ("k2", K2)] {
            let sig = sign_header(&value, &SigningKey::new(id, secret).unwrap());
            assert!(verify_header(&value, &sig, &keys).is_ok(), "{id}");
        }
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let keys = ring(&[("k1", K1)]);
        let value = full().encode();
        for sig in [
            "",
            "kid=k1",
            "kid=k1;alg=hmac-sha1;sig=00",
            "kid=k1;alg=hmac-sha256;sig=zz",
            "kid=k1;alg=hmac-sha256;sig=00",
            "kid=k 1;alg=hmac-sha256;sig=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(
                matches!(
                    verify_header(&value, sig, &keys),
                    Err(HeaderError::MalformedSignature(_))
                ),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn verify_at_bounds_the_age() {
        let keys = ring(&[("k1", K1)]);
        let key = SigningKey::new("k1", K1).unwrap();
        let value = AuditClaims::new("r", 10_000, "GET", "/").encode();
        let sig = sign_header(&value, &key);
        assert!(verify_header_at(&value, &sig, &keys, 15_000, 5_000).is_ok());
        assert_eq!(
            verify_header_at(&value, &sig, &keys, 15_001, 5_000),
            Err(HeaderError::Stale {
                age_ms: 5_001,
                max_age_ms: 5_000
            })
        );
        assert!(matches!(
            verify_header_at(&value, &sig, &keys, 1_000, 5_000),
            Err(HeaderError::FromTheFuture { ahead_ms: 9_000 })
        ));
    }
}
