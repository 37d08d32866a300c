//! Throw-away PKI for tests: a fresh CA and one leaf certificate valid for
//! `localhost`, `127.0.0.1` and the AWS endpoint wildcards the tests use.
//!
//! The CA PEM is written to a temporary file (deleted when the [`TestPki`] is
//! dropped) so the proxy can be started with `--ca-bundle <path>`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// SANs every leaf certificate carries.
pub const DEFAULT_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "*.us-east-1.es.amazonaws.com",
    "*.eu-west-1.es.amazonaws.com",
    "*.us-east-1.aoss.amazonaws.com",
    "*.eu-west-1.aoss.amazonaws.com",
    "*.cn-north-1.es.amazonaws.com.cn",
];

/// Which application protocols the server offers via ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Alpn {
    /// `h2` and `http/1.1` (like AWS endpoints).
    #[default]
    H2AndHttp11,
    /// Only `http/1.1`.
    Http11Only,
}

impl Alpn {
    pub fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http11Only => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The rustls crypto provider used everywhere (ring only).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA plus a leaf certificate signed by it.
pub struct TestPki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
    sans: Vec<String>,
    ca_file: tempfile::NamedTempFile,
}

impl TestPki {
    /// A fresh CA and leaf for [`DEFAULT_SANS`].
    pub fn new() -> Self {
        Self::with_extra_sans(&[])
    }

    /// A fresh CA and leaf for [`DEFAULT_SANS`] plus `extra` (DNS names or IPs).
    pub fn with_extra_sans(extra: &[&str]) -> Self {
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sigv4-proxy test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("generate CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let sans: Vec<String> = DEFAULT_SANS
            .iter()
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect();
        let mut leaf_params = rcgen::CertificateParams::new(sans.clone()).expect("valid SANs");
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sigv4-proxy test upstream");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = rcgen::KeyPair::generate().expect("generate leaf key");
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("sign leaf");

        let ca_pem = ca_cert.pem();
        let mut ca_file = tempfile::Builder::new()
            .prefix("sigv4-proxy-test-ca-")
            .suffix(".pem")
            .tempfile()
            .expect("create CA temp file");
        ca_file
            .write_all(ca_pem.as_bytes())
            .and_then(|_| ca_file.flush())
            .expect("write CA temp file");

        TestPki {
            ca_pem,
            ca_der: ca_cert.der().clone(),
            leaf_der: leaf_cert.der().clone(),
            leaf_key_der: leaf_key.serialize_der(),
            sans,
            ca_file,
        }
    }

    /// The CA certificate in PEM form.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate in DER form.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Path of a PEM file holding the CA (for `--ca-bundle`).
    pub fn ca_bundle_path(&self) -> &Path {
        self.ca_file.path()
    }

    /// The SANs the leaf certificate carries.
    pub fn sans(&self) -> &[String] {
        &self.sans
    }

    /// Leaf chain (leaf, CA) and key, for building custom server configs.
    pub fn leaf_chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.leaf_der.clone(), self.ca_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
        )
    }

    /// A rustls server config presenting the leaf certificate.
    pub fn server_config(&self, alpn: Alpn) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.leaf_chain();
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("leaf certificate and key match");
        config.alpn_protocols = alpn.protocols();
        Arc::new(config)
    }

    /// A rustls client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: Alpn) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA cert is valid");
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.protocols();
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
