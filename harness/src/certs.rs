//! Test PKI minted at test time with rcgen: a CA and X.509-SVIDs for SPIFFE
//! IDs, plus the broken variants a tenant filter must reject (two URI SANs, a
//! CA certificate as leaf, `keyCertSign`, no key usage, expired or not yet
//! valid at a given time). Nothing here is ever checked in.
//!
//! ```
//! use meshward_harness::certs::{SvidSpec, TestCa};
//! let ca = TestCa::new("meshward test CA").unwrap();
//! let good = ca.issue("spiffe://cluster.local/ns/bank-a/sa/api").unwrap();
//! let expired = ca
//!     .svid(&SvidSpec::new("spiffe://cluster.local/ns/bank-a/sa/api")
//!         .expired_at((meshward_harness::DEFAULT_START_NANOS / 1_000_000_000) as i64))
//!     .unwrap();
//! assert!(good.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert_ne!(good.cert_pem, expired.cert_pem);
//! // What Envoy puts in the XFCC element's `Cert="…"` (the `connection.peer_certificate`
//! // property is the raw PEM):
//! assert!(good.url_encoded_pem().starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default validity start: 2020-01-01T00:00:00Z. The default window covers
/// both the harness's virtual clock (2026-01-01) and the real clock of an
/// Envoy end-to-end test.
pub const DEFAULT_NOT_BEFORE: i64 = 1_577_836_800;
/// Default validity end: 2049-12-31T00:00:00Z (still a UTCTime).
pub const DEFAULT_NOT_AFTER: i64 = 2_524_521_600;

/// Sets the validity window from Unix seconds. rcgen takes
/// `time::OffsetDateTime`; building it from rcgen's own epoch value keeps this
/// crate free of a direct `time` dependency.
fn set_validity(params: &mut CertificateParams, not_before: i64, not_after: i64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let shift = |secs: i64| {
        if secs >= 0 {
            epoch + Duration::from_secs(secs.unsigned_abs())
        } else {
            epoch - Duration::from_secs(secs.unsigned_abs())
        }
    };
    params.not_before = shift(not_before);
    params.not_after = shift(not_after);
}

/// Key usages of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKeyUsage {
    /// `digitalSignature` + `keyEncipherment`, as SPIRE and Istio issue.
    Standard,
    /// `digitalSignature` + `keyCertSign`: forbidden for a leaf SVID.
    KeyCertSign,
    /// `digitalSignature` + `cRLSign`: forbidden for a leaf SVID.
    CrlSign,
    /// `keyEncipherment` only: lacks the required `digitalSignature`.
    NoDigitalSignature,
    /// No key usage extension at all.
    None,
}

/// What to put into one leaf certificate.
#[derive(Debug, Clone)]
pub struct SvidSpec {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ca: bool,
    pub key_usage: LeafKeyUsage,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl SvidSpec {
    /// A well-formed X.509-SVID for `spiffe_id` (the ID is not validated, so
    /// invalid IDs can be minted on purpose).
    pub fn new(spiffe_id: &str) -> SvidSpec {
        SvidSpec {
            uris: vec![spiffe_id.to_string()],
            dns: Vec::new(),
            ca: false,
            key_usage: LeafKeyUsage::Standard,
            not_before: DEFAULT_NOT_BEFORE,
            not_after: DEFAULT_NOT_AFTER,
        }
    }

    /// Adds a second (third, …) URI SAN.
    pub fn extra_uri(mut self, uri: &str) -> SvidSpec {
        self.uris.push(uri.to_string());
        self
    }

    /// Adds a DNS SAN (e.g. `localhost` for a listener).
    pub fn dns(mut self, name: &str) -> SvidSpec {
        self.dns.push(name.to_string());
        self
    }

    /// Marks the leaf `cA=true`.
    pub fn ca_leaf(mut self) -> SvidSpec {
        self.ca = true;
        self
    }

    pub fn key_usage(mut self, usage: LeafKeyUsage) -> SvidSpec {
        self.key_usage = usage;
        self
    }

    /// Valid from `not_before` to `not_after` (Unix seconds, inclusive).
    pub fn valid_between(mut self, not_before: i64, not_after: i64) -> SvidSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Expired one second before `now` (Unix seconds).
    pub fn expired_at(self, now: i64) -> SvidSpec {
        self.valid_between(now - 30 * 86_400, now - 1)
    }

    /// Valid from one hour after `now` (Unix seconds).
    pub fn not_yet_valid_at(self, now: i64) -> SvidSpec {
        self.valid_between(now + 3_600, now + 30 * 86_400)
    }
}

/// An issued certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    /// The first URI SAN.
    pub spiffe_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl IssuedSvid {
    /// The certificate URL-encoded (`urlEncodedPemEncodedPeerCertificate`), as
    /// Envoy writes it in XFCC `Cert="…"`. Envoy 1.40 serves the
    /// `connection.peer_certificate` property as the raw PEM instead.
    pub fn url_encoded_pem(&self) -> String {
        url_encode(&self.cert_pem)
    }

    /// Writes `<stem>.pem` (certificate) and `<stem>-key.pem` into `dir`;
    /// returns both paths.
    pub fn write_to(&self, dir: &Path, stem: &str) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// A self-signed test CA.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    /// A new CA with a fresh P-256 key and common name `name`.
    pub fn new(name: &str) -> Result<TestCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshward");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, DEFAULT_NOT_BEFORE, DEFAULT_NOT_AFTER);
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(TestCa { params, key, pem })
    }

    /// The CA certificate (the trust bundle), PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA certificate to `dir/<stem>.pem`.
    pub fn write_to(&self, dir: &Path, stem: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, &self.pem)?;
        Ok(path)
    }

    /// A well-formed SVID for `spiffe_id`.
    pub fn issue(&self, spiffe_id: &str) -> Result<IssuedSvid, rcgen::Error> {
        self.svid(&SvidSpec::new(spiffe_id))
    }

    /// A leaf as `spec` describes it, signed by this CA.
    pub fn svid(&self, spec: &SvidSpec) -> Result<IssuedSvid, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshward");
        for uri in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.as_str().try_into()?));
        }
        for name in &spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.as_str().try_into()?));
        }
        params.is_ca = if spec.ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = match spec.key_usage {
            LeafKeyUsage::Standard => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            LeafKeyUsage::KeyCertSign => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
            ],
            LeafKeyUsage::CrlSign => {
                vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]
            }
            LeafKeyUsage::NoDigitalSignature => vec![KeyUsagePurpose::KeyEncipherment],
            LeafKeyUsage::None => Vec::new(),
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, spec.not_before, spec.not_after);
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedSvid {
            spiffe_id: spec.uris.first().cloned().unwrap_or_default(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Envoy
/// encodes the peer certificate for `connection.peer_certificate`.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parse(pem: &str) -> (Vec<String>, bool, i64, i64, Option<(bool, bool)>) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let uris = cert
            .subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(u.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ca = cert
            .basic_constraints()
            .unwrap()
            .is_some_and(|b| b.value.ca);
        let ku = cert
            .key_usage()
            .unwrap()
            .map(|k| (k.value.digital_signature(), k.value.key_cert_sign()));
        let v = cert.validity();
        (
            uris,
            ca,
            v.not_before.timestamp(),
            v.not_after.timestamp(),
            ku,
        )
    }

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn variants_carry_what_they_claim() {
        let ca = TestCa::new("t").unwrap();
        let id = "spiffe://cluster.local/ns/bank-a/sa/api";
        let (uris, is_ca, nb, na, ku) = parse(&ca.issue(id).unwrap().cert_pem);
        assert_eq!(uris, vec![id.to_string()]);
        assert!(!is_ca);
        assert!(nb <= NOW && NOW <= na);
        assert_eq!(ku, Some((true, false)));

        let two = ca
            .svid(&SvidSpec::new(id).extra_uri("spiffe://cluster.local/ns/bank-b/sa/api"))
            .unwrap();
        assert_eq!(parse(&two.cert_pem).0.len(), 2);
        assert!(parse(&ca.svid(&SvidSpec::new(id).ca_leaf()).unwrap().cert_pem).1);
        let kcs = ca
            .svid(&SvidSpec::new(id).key_usage(LeafKeyUsage::KeyCertSign))
            .unwrap();
        assert_eq!(parse(&kcs.cert_pem).4, Some((true, true)));
        let none = ca
            .svid(&SvidSpec::new(id).key_usage(LeafKeyUsage::None))
            .unwrap();
        assert_eq!(parse(&none.cert_pem).4, None);
        let (_, _, _, na, _) = parse(
            &ca.svid(&SvidSpec::new(id).expired_at(NOW))
                .unwrap()
                .cert_pem,
        );
        assert_eq!(na, NOW - 1);
        let (_, _, nb, _, _) = parse(
            &ca.svid(&SvidSpec::new(id).not_yet_valid_at(NOW))
                .unwrap()
                .cert_pem,
        );
        assert!(nb > NOW);
    }

    #[test]
    fn url_encoding_round_trips_the_pem() {
        let ca = TestCa::new("t").unwrap();
        let svid = ca.issue("spiffe://cluster.local/ns/bank-a/sa/api").unwrap();
        let enc = svid.url_encoded_pem();
        assert!(!enc.contains('\n') && !enc.contains('+') && !enc.contains('/'));
        let decoded = meshward_shared::svid::url_decode(enc.as_bytes()).unwrap();
        assert_eq!(decoded, svid.cert_pem.as_bytes());
    }

    #[test]
    fn files_are_written_for_the_envoy_helper() {
        let dir = std::env::temp_dir().join(format!("meshward-certs-{}", std::process::id()));
        let ca = TestCa::new("t").unwrap();
        let ca_path = ca.write_to(&dir, "ca").unwrap();
        let svid = ca.issue("spiffe://cluster.local/ns/bank-a/sa/api").unwrap();
        let (cert, key) = svid.write_to(&dir, "bank-a-api").unwrap();
        assert_eq!(std::fs::read_to_string(ca_path).unwrap(), ca.pem());
        assert_eq!(std::fs::read_to_string(cert).unwrap(), svid.cert_pem);
        assert!(std::fs::read_to_string(key)
            .unwrap()
            .contains("PRIVATE KEY"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
