//! What Envoy reads off a peer certificate for its `connection.*` attributes
//! and the XFCC element it adds. Envoy reads them once per TLS connection;
//! [`PeerCert`] holds them so the harness does too.

/// A peer certificate and the facts Envoy derives from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    pub pem: String,
    pub der_sha256_hex: String,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    /// RFC 2253, as `connection.subject_peer_certificate`.
    pub subject: String,
}

impl PeerCert {
    pub fn parse(pem: &str) -> PeerCert {
        PeerCert {
            pem: pem.to_string(),
            der_sha256_hex: der_sha256_hex(pem).unwrap_or_default(),
            uri_sans: uri_sans(pem),
            dns_sans: dns_sans(pem),
            subject: subject(pem).unwrap_or_default(),
        }
    }
}

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

fn with_cert<R>(
    pem: &str,
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> R,
) -> Option<R> {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(f(&cert))
}

fn sans(pem: &str, uri: bool) -> Vec<String> {
    with_cert(pem, |cert| {
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) if uri => Some(u.to_string()),
                GeneralName::DNSName(d) if !uri => Some(d.to_string()),
                _ => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The URI SANs in order; Envoy's `connection.uri_san_peer_certificate` is the first.
pub fn uri_sans(pem: &str) -> Vec<String> {
    sans(pem, true)
}

pub fn dns_sans(pem: &str) -> Vec<String> {
    sans(pem, false)
}

/// The subject in RFC 2253 form, as Envoy gives it: the last RDN first,
/// comma-separated, with short attribute names (`O=meshward,CN=api`).
pub fn subject(pem: &str) -> Option<String> {
    use x509_parser::objects::{oid2abbrev, oid_registry};
    with_cert(pem, |cert| {
        let registry = oid_registry();
        let rdns: Vec<String> = cert
            .subject()
            .iter()
            .map(|rdn| {
                rdn.iter()
                    .map(|attr| {
                        let name = oid2abbrev(attr.attr_type(), registry)
                            .map(str::to_string)
                            .unwrap_or_else(|_| attr.attr_type().to_id_string());
                        let value = attr.as_str().map(escape_rfc2253).unwrap_or_default();
                        format!("{name}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        rdns.into_iter().rev().collect::<Vec<_>>().join(",")
    })
}

/// RFC 2253 §2.4: escape `,+"\<>;` anywhere, `#` and space at the start, space at the end.
fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Hex SHA-256 of the certificate's DER, as Envoy puts in XFCC `Hash=`.
pub fn der_sha256_hex(pem: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let (_, pem) = parse_x509_pem(pem.as_bytes()).ok()?;
    let digest = Sha256::digest(&pem.contents);
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}
