//! A test CA and X.509-SVIDs minted at test time (ARCHITECTURE §7): one URI SAN
//! each, `cA=false`, key usage `digitalSignature` (+ `keyEncipherment`), client
//! and server auth. The listener's SVID also carries the DNS SAN `localhost`,
//! so the client can verify the server by name.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The trust domain of the test mesh (Istio's default).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A workload's certificate and key, PEM.
#[derive(Debug, Clone)]
pub struct Svid {
    pub spiffe_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test CA.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    pub fn new() -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshward e2e");
        params
            .distinguished_name
            .push(DnType::CommonName, "meshward e2e root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(TestCa { params, key, pem })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// An SVID for `spiffe://cluster.local/ns/<namespace>/sa/<service_account>`.
    pub fn svid(&self, namespace: &str, service_account: &str) -> anyhow::Result<Svid> {
        self.leaf(
            &format!("spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"),
            &[],
        )
    }

    /// An SVID that also names `dns` hosts (for a listener the client verifies by name).
    pub fn server_svid(
        &self,
        namespace: &str,
        service_account: &str,
        dns: &[&str],
    ) -> anyhow::Result<Svid> {
        self.leaf(
            &format!("spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"),
            dns,
        )
    }

    fn leaf(&self, spiffe_id: &str, dns: &[&str]) -> anyhow::Result<Svid> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "meshward e2e");
        params
            .subject_alt_names
            .push(SanType::URI(spiffe_id.try_into()?));
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into()?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Svid {
            spiffe_id: spiffe_id.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
