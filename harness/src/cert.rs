//! What Envoy reads off a peer certificate for its `connection.*` attributes.

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

/// The subject in RFC 2253 form.
pub fn subject(pem: &str) -> Option<String> {
    with_cert(pem, |cert| cert.subject().to_string())
}
