//! SigV4 for `es` and `aoss` with aws-sigv4, plus the one rule that keeps wire and signature in
//! step: the query string is re-serialised in the RFC 3986 form the signer uses, so the bytes
//! the endpoint receives are exactly the bytes that were signed.
//!
//! Only headers no AWS load balancer or VPC endpoint rewrites are signed: `host`,
//! `content-type`, and the `x-amz-*` headers the signer adds (`x-amz-date`,
//! `x-amz-security-token`, `x-amz-content-sha256`). The path is signed as aws-sigv4 does for
//! non-S3 services: normalised and percent-encoded once more, while the wire keeps it untouched.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::endpoint::Service;
use crate::error::ProxyError;

/// RFC 3986 unreserved characters stay; everything else is `%XX`.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Re-serialises a raw query string so that each name and value is in the exact form SigV4's
/// canonical query uses. The meaning is kept: `+` is a space (as both OpenSearch and AWS read it),
/// `%2B` a plus. Order and value-less parameters (`?v`, `?pretty`) are kept as they are; empty
/// pieces (`a=1&&b=2`) are dropped, as the signer drops them.
pub fn wire_query(raw: &str) -> Result<String, ProxyError> {
    let mut out = String::with_capacity(raw.len() + 8);
    for piece in raw.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (piece, None),
        };
        if !out.is_empty() {
            out.push('&');
        }
        push_component(&mut out, name)?;
        if let Some(value) = value {
            out.push('=');
            push_component(&mut out, value)?;
        }
    }
    Ok(out)
}

fn push_component(out: &mut String, raw: &str) -> Result<(), ProxyError> {
    let plus_as_space = raw.replace('+', " ");
    let decoded: Vec<u8> = percent_decode(plus_as_space.as_bytes()).collect();
    let text = std::str::from_utf8(&decoded).map_err(|_| {
        ProxyError::BadRequest(format!(
            "query parameter `{raw}` is not valid UTF-8 once percent-decoded; it cannot be signed"
        ))
    })?;
    out.extend(utf8_percent_encode(text, QUERY_COMPONENT));
    Ok(())
}

/// This machine's clock corrected by what the endpoint said the time is. Starts uncorrected;
/// [`Clock::learn`] records the offset after a "Signature expired" / "not yet current" answer,
/// as the AWS SDKs do, and every later signature (and the credential cache's expiry checks) use
/// the corrected time.
#[derive(Debug, Default)]
pub struct Clock {
    /// Endpoint time minus local time, in milliseconds.
    offset_ms: AtomicI64,
}

impl Clock {
    /// The corrected current time.
    pub fn now(&self) -> SystemTime {
        shift(SystemTime::now(), self.offset_ms.load(Ordering::Relaxed))
    }

    /// Endpoint time minus local time.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Records that the endpoint's clock read `server_now` at local time `local_now`; returns the
    /// new offset in milliseconds.
    pub fn learn(&self, server_now: SystemTime, local_now: SystemTime) -> i64 {
        let offset = match server_now.duration_since(local_now) {
            Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.offset_ms.store(offset, Ordering::Relaxed);
        offset
    }
}

fn shift(t: SystemTime, offset_ms: i64) -> SystemTime {
    let by = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        t + by
    } else {
        t.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// Signs requests for one endpoint (service, region).
#[derive(Debug, Clone)]
pub struct Signer {
    service: Service,
    region: String,
}

/// The parts of an outgoing request the signature covers.
pub struct SignInput<'a> {
    pub method: &'a str,
    /// `https://authority/path?query`, exactly as it goes on the wire.
    pub uri: &'a str,
    /// The `Host` header value sent.
    pub host: &'a str,
    pub content_type: Option<&'a str>,
    /// Lowercase hex SHA-256 of the body sent.
    pub payload_sha256: &'a str,
}

impl Signer {
    pub fn new(service: Service, region: impl Into<String>) -> Signer {
        Signer {
            service,
            region: region.into(),
        }
    }

    pub fn service(&self) -> Service {
        self.service
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Returns the headers to add: `authorization`, `x-amz-date`, `x-amz-content-sha256` and,
    /// with temporary credentials, `x-amz-security-token`.
    pub fn sign(
        &self,
        input: &SignInput<'_>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ProxyError> {
        let identity: Identity = credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
        // aoss rejects a request whose x-amz-content-sha256 is not signed; es accepts it.
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name())
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| ProxyError::Internal(format!("signing parameters: {e}")))?
            .into();
        let mut headers: Vec<(&str, &str)> = vec![("host", input.host)];
        if let Some(ct) = input.content_type {
            headers.push(("content-type", ct));
        }
        let signable = SignableRequest::new(
            input.method,
            input.uri,
            headers.into_iter(),
            SignableBody::Precomputed(input.payload_sha256.to_string()),
        )
        .map_err(|e| ProxyError::BadRequest(format!("request cannot be signed: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| ProxyError::BadRequest(format!("request cannot be signed: {e}")))?
            .into_parts();
        let (headers, _params) = instructions.into_parts();
        headers
            .into_iter()
            .map(|h| {
                let mut value = HeaderValue::from_str(h.value()).map_err(|e| {
                    ProxyError::Internal(format!("signed header {}: {e}", h.name()))
                })?;
                value.set_sensitive(h.sensitive() || h.name() == "authorization");
                Ok((HeaderName::from_static(h.name()), value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_reserialised_in_rfc3986_form() {
        assert_eq!(wire_query("v").unwrap(), "v");
        assert_eq!(wire_query("v&pretty").unwrap(), "v&pretty");
        assert_eq!(wire_query("q=a:b").unwrap(), "q=a%3Ab");
        assert_eq!(wire_query("q=a+b").unwrap(), "q=a%20b");
        assert_eq!(wire_query("q=a%2Bb").unwrap(), "q=a%2Bb");
        assert_eq!(wire_query("q=a%2bb").unwrap(), "q=a%2Bb");
        assert_eq!(wire_query("q=%7e~*").unwrap(), "q=~~%2A");
        assert_eq!(wire_query("a=1&&b=2&").unwrap(), "a=1&b=2");
        assert_eq!(wire_query("x=1&x=2&x=").unwrap(), "x=1&x=2&x=");
        assert_eq!(wire_query("q=caf%C3%A9").unwrap(), "q=caf%C3%A9");
        assert_eq!(wire_query("q=100%").unwrap(), "q=100%25");
        assert_eq!(wire_query("f=a=b").unwrap(), "f=a%3Db");
    }

    #[test]
    fn clock_keeps_the_learned_offset() {
        let clock = Clock::default();
        let local = SystemTime::now();
        assert_eq!(
            clock.learn(local + std::time::Duration::from_secs(600), local),
            600_000
        );
        let ahead = clock.now().duration_since(SystemTime::now()).unwrap();
        assert!(ahead > std::time::Duration::from_secs(599), "{ahead:?}");
        assert_eq!(
            clock.learn(local - std::time::Duration::from_secs(30), local),
            -30_000
        );
        assert!(clock.now() < SystemTime::now());
    }

    #[test]
    fn invalid_utf8_in_query_is_a_bad_request() {
        assert!(matches!(
            wire_query("q=%FF"),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn signs_host_content_type_and_amz_headers_only() {
        let signer = Signer::new(Service::Aoss, "us-east-1");
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = signer
            .sign(
                &SignInput {
                    method: "GET",
                    uri: "https://x.us-east-1.aoss.amazonaws.com/idx/_search?q=a%3Ab",
                    host: "x.us-east-1.aoss.amazonaws.com",
                    content_type: Some("application/json"),
                    payload_sha256: hash,
                },
                &creds,
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            )
            .unwrap();
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/aoss/aws4_request"
            ),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"), "{auth}");
        assert_eq!(get("x-amz-content-sha256").as_deref(), Some(hash));
        assert_eq!(get("x-amz-security-token").as_deref(), Some("token"));
        assert_eq!(get("x-amz-date").as_deref(), Some("20231114T221320Z"));
        assert!(headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1
            .is_sensitive());
    }
}
