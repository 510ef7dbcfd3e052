//! X.509-SVID checks on a peer certificate, as Envoy hands it to a Wasm filter
//! in `connection.peer_certificate`: raw PEM in Envoy 1.40 (seen in the
//! end-to-end suite), URL-encoded PEM in XFCC `Cert=` values and some hosts.
//!
//! What is checked (SPIFFE X.509-SVID spec, ARCHITECTURE §7): exactly one URI
//! SAN, a valid SPIFFE ID with a non-empty path, a leaf that is not a CA
//! (`cA=false`), a key usage extension with `digitalSignature` and without
//! `keyCertSign`/`cRLSign`, and the validity window against the given clock.
//!
//! What is not checked: the signature chain up to the trust bundle. Envoy's
//! TLS stack has verified it before the filter runs; a Wasm filter sees only
//! the leaf.
//!
//! ```no_run
//! use meshward_shared::svid;
//! # let property_bytes: Vec<u8> = vec![];
//! let now = 1_767_225_600; // seconds since the Unix epoch
//! match svid::verify_peer_certificate(&property_bytes, now) {
//!     Ok(svid) => println!("caller {}", svid.id),
//!     Err(e) => println!("rejected: {e} ({})", e.reason()),
//! }
//! ```

use crate::spiffe::{SpiffeId, SpiffeIdError};
use std::fmt;
use x509_parser::extensions::GeneralName;

/// The largest certificate accepted, in bytes of URL-encoded PEM; Envoy's own
/// limits are far below this, it only bounds the decoding work.
pub const MAX_ENCODED_LEN: usize = 64 * 1024;

/// A verified X.509-SVID: its SPIFFE ID and validity window (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svid {
    pub id: SpiffeId,
    pub not_before: i64,
    pub not_after: i64,
}

impl Svid {
    /// Whether `now` (Unix seconds) is inside the validity window.
    pub fn valid_at(&self, now: i64) -> Result<(), SvidError> {
        if now < self.not_before {
            Err(SvidError::NotYetValid)
        } else if now > self.not_after {
            Err(SvidError::Expired)
        } else {
            Ok(())
        }
    }
}

/// Why a peer certificate is not an acceptable X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvidError {
    /// Larger than [`MAX_ENCODED_LEN`].
    TooLarge,
    /// Bad `%XX` escape in the URL-encoded PEM.
    UrlEncoding,
    /// Not a PEM `CERTIFICATE` block.
    Pem,
    /// The DER inside does not parse as an X.509 certificate, or an extension
    /// is malformed or duplicated.
    Der,
    /// No URI SAN.
    NoUriSan,
    /// More than one URI SAN (the spec requires exactly one).
    MultipleUriSans,
    /// The URI SAN is not a SPIFFE ID.
    InvalidSpiffeId(SpiffeIdError),
    /// The SPIFFE ID names only a trust domain: no workload has it.
    NoPath,
    /// `basicConstraints` has `cA=true`.
    CaLeaf,
    /// No key usage extension.
    MissingKeyUsage,
    /// Key usage lacks `digitalSignature`.
    NoDigitalSignature,
    /// Key usage has `keyCertSign`.
    KeyCertSign,
    /// Key usage has `cRLSign`.
    CrlSign,
    /// `notBefore` is in the future.
    NotYetValid,
    /// `notAfter` is in the past.
    Expired,
}

impl SvidError {
    /// A short, stable reason (for logs, decisions and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::TooLarge => "too_large",
            SvidError::UrlEncoding => "url_encoding",
            SvidError::Pem => "pem",
            SvidError::Der => "der",
            SvidError::NoUriSan => "no_uri_san",
            SvidError::MultipleUriSans => "multiple_uri_sans",
            SvidError::InvalidSpiffeId(_) => "invalid_spiffe_id",
            SvidError::NoPath => "no_path",
            SvidError::CaLeaf => "ca_leaf",
            SvidError::MissingKeyUsage => "missing_key_usage",
            SvidError::NoDigitalSignature => "no_digital_signature",
            SvidError::KeyCertSign => "key_cert_sign",
            SvidError::CrlSign => "crl_sign",
            SvidError::NotYetValid => "not_yet_valid",
            SvidError::Expired => "expired",
        }
    }
}

impl fmt::Display for SvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvidError::TooLarge => f.write_str("peer certificate is too large"),
            SvidError::UrlEncoding => f.write_str("peer certificate has a bad URL encoding"),
            SvidError::Pem => f.write_str("peer certificate is not a PEM CERTIFICATE"),
            SvidError::Der => f.write_str("peer certificate does not parse as X.509"),
            SvidError::NoUriSan => f.write_str("SVID has no URI SAN"),
            SvidError::MultipleUriSans => f.write_str("SVID has more than one URI SAN"),
            SvidError::InvalidSpiffeId(e) => write!(f, "SVID URI SAN is not a SPIFFE ID: {e}"),
            SvidError::NoPath => f.write_str("SVID SPIFFE ID has no path"),
            SvidError::CaLeaf => f.write_str("SVID leaf is a CA certificate"),
            SvidError::MissingKeyUsage => f.write_str("SVID has no key usage extension"),
            SvidError::NoDigitalSignature => f.write_str("SVID key usage lacks digitalSignature"),
            SvidError::KeyCertSign => f.write_str("SVID key usage has keyCertSign"),
            SvidError::CrlSign => f.write_str("SVID key usage has cRLSign"),
            SvidError::NotYetValid => f.write_str("SVID is not yet valid"),
            SvidError::Expired => f.write_str("SVID has expired"),
        }
    }
}

impl std::error::Error for SvidError {}

/// Decodes `%XX` escapes. `+` stays `+`: it is a base64 character in PEM,
/// and Envoy's encoder escapes spaces as `%20`.
pub fn url_decode(input: &[u8]) -> Result<Vec<u8>, SvidError> {
    if input.len() > MAX_ENCODED_LEN {
        return Err(SvidError::TooLarge);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|c| hex(*c));
            let lo = bytes.next().and_then(|c| hex(*c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(SvidError::UrlEncoding),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Verifies the value of `connection.peer_certificate` at time `now`, whether
/// the host serves it as raw PEM (Envoy 1.40) or URL-encoded.
pub fn verify_peer_certificate(property: &[u8], now: i64) -> Result<Svid, SvidError> {
    let svid = inspect_peer_certificate(property)?;
    svid.valid_at(now)?;
    Ok(svid)
}

/// Every check of [`verify_peer_certificate`] except the validity window: for
/// a caller that caches the result per connection and re-checks the window
/// per request with [`Svid::valid_at`].
///
/// One decoder serves both forms: PEM has no `%`, and `+` is kept, so URL
/// decoding leaves raw PEM as it is.
pub fn inspect_peer_certificate(property: &[u8]) -> Result<Svid, SvidError> {
    inspect_url_encoded_pem(property)
}

/// Verifies a URL-encoded PEM certificate (as in XFCC `Cert=`) at time `now`.
pub fn verify_url_encoded_pem(encoded: &[u8], now: i64) -> Result<Svid, SvidError> {
    verify_pem(&url_decode(encoded)?, now)
}

/// Verifies a PEM certificate (the first `CERTIFICATE` block) at time `now`.
pub fn verify_pem(pem: &[u8], now: i64) -> Result<Svid, SvidError> {
    let svid = inspect_pem(pem)?;
    svid.valid_at(now)?;
    Ok(svid)
}

/// Every check of [`verify_url_encoded_pem`] except the validity window: for
/// a caller that caches the result per connection and re-checks the window
/// per request with [`Svid::valid_at`].
pub fn inspect_url_encoded_pem(encoded: &[u8]) -> Result<Svid, SvidError> {
    inspect_pem(&url_decode(encoded)?)
}

/// Every check of [`verify_pem`] except the validity window.
pub fn inspect_pem(pem: &[u8]) -> Result<Svid, SvidError> {
    if pem.len() > MAX_ENCODED_LEN {
        return Err(SvidError::TooLarge);
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| SvidError::Pem)?;
    if pem.label != "CERTIFICATE" {
        return Err(SvidError::Pem);
    }
    inspect_der(&pem.contents)
}

/// Verifies a DER certificate at time `now`.
pub fn verify_der(der: &[u8], now: i64) -> Result<Svid, SvidError> {
    let svid = inspect_der(der)?;
    svid.valid_at(now)?;
    Ok(svid)
}

/// Every check except the validity window, whose result the caller may cache
/// and re-check against a later clock with [`Svid::valid_at`].
pub fn inspect_der(der: &[u8]) -> Result<Svid, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| SvidError::Der)?;

    let san = cert
        .subject_alternative_name()
        .map_err(|_| SvidError::Der)?
        .ok_or(SvidError::NoUriSan)?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next().ok_or(SvidError::NoUriSan)?;
    if uris.next().is_some() {
        return Err(SvidError::MultipleUriSans);
    }
    let id = SpiffeId::parse(uri).map_err(SvidError::InvalidSpiffeId)?;
    if id.path().is_empty() {
        return Err(SvidError::NoPath);
    }

    if let Some(bc) = cert.basic_constraints().map_err(|_| SvidError::Der)? {
        if bc.value.ca {
            return Err(SvidError::CaLeaf);
        }
    }

    let ku = cert
        .key_usage()
        .map_err(|_| SvidError::Der)?
        .ok_or(SvidError::MissingKeyUsage)?;
    if ku.value.key_cert_sign() {
        return Err(SvidError::KeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(SvidError::CrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }

    let validity = cert.validity();
    Ok(Svid {
        id,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    /// 2026-01-01T00:00:00Z, the harness's virtual clock start.
    const NOW: i64 = 1_767_225_600;
    const DAY: i64 = 86_400;

    struct Leaf {
        uris: Vec<&'static str>,
        ca: bool,
        key_usages: Option<Vec<KeyUsagePurpose>>,
        not_before: i64,
        not_after: i64,
    }

    impl Default for Leaf {
        fn default() -> Self {
            Leaf {
                uris: vec!["spiffe://cluster.local/ns/bank-a/sa/api"],
                ca: false,
                key_usages: Some(vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]),
                not_before: NOW - DAY,
                not_after: NOW + DAY,
            }
        }
    }

    fn ts(secs: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn mint(leaf: Leaf) -> String {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = leaf
            .uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        if leaf.ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        } else {
            p.is_ca = IsCa::ExplicitNoCa;
        }
        p.key_usages = leaf.key_usages.unwrap_or_default();
        p.not_before = ts(leaf.not_before);
        p.not_after = ts(leaf.not_after);
        p.signed_by(&key, &issuer).unwrap().pem()
    }

    fn url_encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn a_valid_svid_yields_its_spiffe_id() {
        let pem = mint(Leaf::default());
        let svid = verify_url_encoded_pem(url_encode(&pem).as_bytes(), NOW).unwrap();
        assert_eq!(svid.id.as_str(), "spiffe://cluster.local/ns/bank-a/sa/api");
        assert_eq!(svid.not_after, NOW + DAY);
        // Plain PEM works too, and `+` in base64 survives URL decoding.
        assert_eq!(verify_pem(pem.as_bytes(), NOW).unwrap(), svid);
    }

    #[test]
    fn the_peer_certificate_property_is_read_raw_or_url_encoded() {
        let pem = mint(Leaf::default());
        let raw = verify_peer_certificate(pem.as_bytes(), NOW).unwrap();
        let encoded = verify_peer_certificate(url_encode(&pem).as_bytes(), NOW).unwrap();
        assert_eq!(raw, encoded);
        assert_eq!(raw.id.as_str(), "spiffe://cluster.local/ns/bank-a/sa/api");
        assert!(verify_peer_certificate(pem.as_bytes(), NOW + 2 * DAY).is_err());
    }

    #[test]
    fn checks_fail_with_the_rule_that_broke() {
        let cases: Vec<(&str, Leaf, SvidError)> = vec![
            (
                "two URI SANs",
                Leaf {
                    uris: vec![
                        "spiffe://cluster.local/ns/bank-b/sa/api",
                        "spiffe://cluster.local/ns/bank-a/sa/api",
                    ],
                    ..Leaf::default()
                },
                SvidError::MultipleUriSans,
            ),
            (
                "no URI SAN",
                Leaf {
                    uris: vec![],
                    ..Leaf::default()
                },
                SvidError::NoUriSan,
            ),
            (
                "URI SAN not a SPIFFE ID",
                Leaf {
                    uris: vec!["https://bank-a.example/api"],
                    ..Leaf::default()
                },
                SvidError::InvalidSpiffeId(SpiffeIdError::WrongScheme),
            ),
            (
                "URI SAN with ..",
                Leaf {
                    uris: vec!["spiffe://cluster.local/ns/bank-a/../bank-b"],
                    ..Leaf::default()
                },
                SvidError::InvalidSpiffeId(SpiffeIdError::DotSegment),
            ),
            (
                "trust domain only",
                Leaf {
                    uris: vec!["spiffe://cluster.local"],
                    ..Leaf::default()
                },
                SvidError::NoPath,
            ),
            (
                "CA as leaf",
                Leaf {
                    ca: true,
                    ..Leaf::default()
                },
                SvidError::CaLeaf,
            ),
            (
                "no key usage",
                Leaf {
                    key_usages: None,
                    ..Leaf::default()
                },
                SvidError::MissingKeyUsage,
            ),
            (
                "keyCertSign",
                Leaf {
                    key_usages: Some(vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyCertSign,
                    ]),
                    ..Leaf::default()
                },
                SvidError::KeyCertSign,
            ),
            (
                "cRLSign",
                Leaf {
                    key_usages: Some(vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::CrlSign,
                    ]),
                    ..Leaf::default()
                },
                SvidError::CrlSign,
            ),
            (
                "no digitalSignature",
                Leaf {
                    key_usages: Some(vec![KeyUsagePurpose::KeyEncipherment]),
                    ..Leaf::default()
                },
                SvidError::NoDigitalSignature,
            ),
            (
                "expired",
                Leaf {
                    not_before: NOW - 2 * DAY,
                    not_after: NOW - 1,
                    ..Leaf::default()
                },
                SvidError::Expired,
            ),
            (
                "not yet valid",
                Leaf {
                    not_before: NOW + 60,
                    not_after: NOW + DAY,
                    ..Leaf::default()
                },
                SvidError::NotYetValid,
            ),
        ];
        for (label, leaf, want) in cases {
            let pem = mint(leaf);
            assert_eq!(verify_pem(pem.as_bytes(), NOW), Err(want), "{label}");
        }
    }

    #[test]
    fn the_validity_window_is_inclusive_at_both_ends() {
        let pem = mint(Leaf {
            not_before: NOW,
            not_after: NOW + 10,
            ..Leaf::default()
        });
        assert!(verify_pem(pem.as_bytes(), NOW).is_ok());
        assert!(verify_pem(pem.as_bytes(), NOW + 10).is_ok());
        assert_eq!(
            verify_pem(pem.as_bytes(), NOW + 11),
            Err(SvidError::Expired)
        );
        assert_eq!(
            verify_pem(pem.as_bytes(), NOW - 1),
            Err(SvidError::NotYetValid)
        );
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert_eq!(
            verify_url_encoded_pem(b"%zz", NOW),
            Err(SvidError::UrlEncoding)
        );
        assert_eq!(
            verify_url_encoded_pem(b"abc%4", NOW),
            Err(SvidError::UrlEncoding)
        );
        assert_eq!(verify_pem(b"", NOW), Err(SvidError::Pem));
        assert_eq!(verify_pem(b"hello", NOW), Err(SvidError::Pem));
        let not_der = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(verify_pem(not_der.as_bytes(), NOW), Err(SvidError::Der));
        let key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
        assert_eq!(verify_pem(key.as_bytes(), NOW), Err(SvidError::Pem));
        let big = vec![b'a'; MAX_ENCODED_LEN + 1];
        assert_eq!(verify_url_encoded_pem(&big, NOW), Err(SvidError::TooLarge));
        // A truncated real certificate.
        let pem = mint(Leaf::default());
        let der_start = pem.find('\n').unwrap() + 1;
        let truncated = format!(
            "{}{}\n-----END CERTIFICATE-----\n",
            &pem[..der_start],
            &pem[der_start..der_start + 100]
        );
        assert!(verify_pem(truncated.as_bytes(), NOW).is_err());
    }
}
