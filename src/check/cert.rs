//! The endpoint's certificate for `check`: a verifier that records what the server presented
//! (also when verification fails, which is when it matters: a TLS-inspecting proxy shows up as
//! its own issuer), and a few fields read from the DER.
//!
//! Reading subject, issuer, expiry and DNS names takes a ~100-line DER walk; an X.509 crate
//! (x509-parser and its nom/asn1 stack) would add several crates to the build for four fields.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Delegates to the real (web PKI + `--ca-bundle`) verifier and keeps the leaf certificate.
#[derive(Debug)]
pub struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl RecordingVerifier {
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> RecordingVerifier {
        RecordingVerifier {
            inner,
            seen: Mutex::new(None),
        }
    }

    /// The leaf certificate the server presented, if the handshake got that far.
    pub fn presented(&self) -> Option<Vec<u8>> {
        self.seen.lock().ok().and_then(|g| g.clone())
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut g) = self.seen.lock() {
            *g = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What `check` prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub not_after: Option<SystemTime>,
    pub dns_names: Vec<String>,
}

/// One DER element: tag and contents; `rest` follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed element's contents.
fn children(mut contents: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((tag, value, rest)) = element(contents) {
        out.push((tag, value));
        contents = rest;
    }
    out
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// `CN=…, O=…` from a Name.
fn name(contents: &[u8]) -> String {
    let mut parts = Vec::new();
    for (_, rdn) in children(contents) {
        for (_, attribute) in children(rdn) {
            let fields = children(attribute);
            if let [(0x06, oid), (_, value)] = fields.as_slice() {
                let label = match *oid {
                    OID_CN => "CN",
                    OID_O => "O",
                    _ => continue,
                };
                parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
            }
        }
    }
    if parts.is_empty() {
        "(no CN or O)".into()
    } else {
        parts.join(", ")
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: u32 = text[..2].parse().ok()?;
            format!("{}{text}", if yy < 50 { "20" } else { "19" })
        }
        (0x18, 14) => text.to_string(),
        _ => return None,
    };
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Subject, issuer, expiry and DNS names of a DER certificate; `None` if it does not parse.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (0x30, cert, _) = element(der)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let mut fields = children(tbs);
    if fields.first().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.remove(0);
    }
    // serial, signature algorithm, issuer, validity, subject, public key, [extensions]
    let issuer = name(fields.get(2)?.1);
    let validity = children(fields.get(3)?.1);
    let not_after = validity.get(1).and_then(|(tag, v)| time(*tag, v));
    let subject = name(fields.get(4)?.1);
    let mut dns_names = Vec::new();
    if let Some((_, extensions)) = fields.iter().find(|(tag, _)| *tag == 0xa3) {
        for (_, list) in children(extensions) {
            for (_, extension) in children(list) {
                let parts = children(extension);
                if parts
                    .first()
                    .is_some_and(|(t, oid)| *t == 0x06 && *oid == OID_SAN)
                {
                    if let Some((_, octets)) = parts.iter().find(|(t, _)| *t == 0x04) {
                        if let Some((0x30, names, _)) = element(octets) {
                            for (tag, value) in children(names) {
                                if tag == 0x82 {
                                    dns_names.push(String::from_utf8_lossy(value).into_owned());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Some(CertSummary {
        subject,
        issuer,
        not_after,
        dns_names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_does_not_parse() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(summarize(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }

    #[test]
    fn reads_subject_issuer_expiry_and_names_of_a_real_certificate() {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Corp Inspection CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec![
            "*.us-east-1.es.amazonaws.com".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "*.us-east-1.es.amazonaws.com");
        leaf.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        leaf.not_after = rcgen::date_time_ymd(2030, 6, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let s = summarize(leaf.der()).unwrap();
        assert_eq!(s.subject, "CN=*.us-east-1.es.amazonaws.com, O=Example");
        assert_eq!(s.issuer, "CN=Corp Inspection CA");
        assert_eq!(
            humantime::format_rfc3339_seconds(s.not_after.unwrap()).to_string(),
            "2030-06-01T00:00:00Z"
        );
        assert_eq!(s.dns_names, ["*.us-east-1.es.amazonaws.com", "localhost"]);
    }

    #[test]
    fn times_in_both_forms() {
        let t = time(0x17, b"261231235959Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-12-31T23:59:59Z"
        );
        let t = time(0x18, b"20500101000000Z").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2050-01-01T00:00:00Z"
        );
    }
}
