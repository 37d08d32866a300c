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
use http::{HeaderMap, HeaderName, HeaderValue};
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

/// Why the endpoint refused a signed request, when signing again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The security token is expired or the key is unknown: fetch new credentials.
    Credentials,
    /// The request time is too far from the endpoint's clock. `server_now` is the endpoint's
    /// time (from `Date`, else from the message), when known.
    ClockSkew { server_now: Option<SystemTime> },
}

/// A `Date` this far from the local clock on a 401/403 means the clock is off, even when the
/// body does not say so (aoss answers every authentication failure with a generic body). SigV4
/// accepts five minutes; the AWS SDKs use four.
const SKEW_THRESHOLD: Duration = Duration::from_secs(4 * 60);

/// Reads a 400/401/403 from the endpoint: is it about credentials, about the clock, or neither?
/// "The request signature we calculated does not match" and policy denials are neither: signing
/// again would give the same answer.
pub fn classify_rejection(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    local_now: SystemTime,
) -> Option<Rejection> {
    if !matches!(status, 400 | 401 | 403) {
        return None;
    }
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let error_type = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    if text.contains("security token included in the request is expired")
        || text.contains("security token included in the request is invalid")
        || matches!(
            error_type.as_str(),
            "ExpiredTokenException"
                | "ExpiredToken"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
        )
    {
        return Some(Rejection::Credentials);
    }
    let server_date = headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let said_skew = text.contains("signature expired")
        || text.contains("signature not yet current")
        || matches!(
            error_type.as_str(),
            "RequestTimeTooSkewed" | "RequestExpired" | "RequestInTheFuture"
        );
    let date_skewed = matches!(status, 401 | 403)
        && server_date.is_some_and(|d| distance(d, local_now) > SKEW_THRESHOLD);
    if said_skew || date_skewed {
        return Some(Rejection::ClockSkew {
            server_now: server_date.or_else(|| time_in_skew_message(&text)),
        });
    }
    None
}

fn distance(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

/// The endpoint's time in "Signature expired: R is now earlier than L (NOW - 5 min.)" and
/// "Signature not yet current: R is still later than L (NOW + 5 min.)"; `text` is lowercased.
fn time_in_skew_message(text: &str) -> Option<SystemTime> {
    let (_, after) = text.rsplit_once('(')?;
    parse_amz_date(after.get(..16)?)
}

/// `20231114T221320Z` (case-insensitive).
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || !b[8].eq_ignore_ascii_case(&b't') || !b[15].eq_ignore_ascii_case(&b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    civil_time(
        num(0..4)?,
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
    )
}

/// IMF-fixdate, the `Date` header's form: `Tue, 14 Nov 2023 22:13:20 GMT`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, day, month, year, time, zone] = parts.as_slice() else {
        return None;
    };
    if !zone.eq_ignore_ascii_case("gmt") {
        return None;
    }
    let month = MONTHS.iter().position(|m| month.eq_ignore_ascii_case(m))? as u64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    civil_time(year.parse().ok()?, month, day.parse().ok()?, hh, mm, ss)
}

/// Seconds since the epoch for a UTC civil time (Howard Hinnant's days-from-civil).
fn civil_time(y: u64, m: u64, d: u64, hh: u64, mm: u64, ss: u64) -> Option<SystemTime> {
    if !(1970..10000).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + hh * 3600 + mm * 60 + ss))
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_static(k),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn dates_parse_in_both_aws_forms() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(parse_amz_date("20231114T221320Z"), Some(t));
        assert_eq!(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"), Some(t));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_709_164_800))
        );
        assert_eq!(parse_http_date("Tue, 14 Nov 2023 22:13:20 CET"), None);
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_amz_date("2023-11-14T22:13"), None);
    }

    #[test]
    fn rejections_are_told_apart() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let date = [("date", "Tue, 14 Nov 2023 22:13:20 GMT")];
        let classify = |status, h: &[(&'static str, &str)], body: &str| {
            classify_rejection(status, &headers(h), body.as_bytes(), now)
        };
        assert_eq!(
            classify(
                403,
                &date,
                r#"{"message":"The security token included in the request is expired"}"#
            ),
            Some(Rejection::Credentials)
        );
        assert_eq!(
            classify(
                403,
                &date,
                r#"{"message":"The security token included in the request is invalid."}"#
            ),
            Some(Rejection::Credentials)
        );
        // aoss: generic body, the type only in the header.
        assert_eq!(
            classify(
                403,
                &[(
                    "x-amzn-errortype",
                    "ExpiredTokenException:http://internal.amazon.com/coral/"
                )],
                r#"{"status":403,"error":{"reason":"403 Forbidden","type":"Forbidden"}}"#
            ),
            Some(Rejection::Credentials)
        );
        // Signature mismatch, policy denials and other statuses are passed through.
        assert_eq!(
            classify(
                403,
                &date,
                r#"{"message":"The request signature we calculated does not match the signature you provided."}"#
            ),
            None
        );
        assert_eq!(
            classify(
                403,
                &date,
                r#"{"Message":"User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: es:ESHttpGet"}"#
            ),
            None
        );
        assert_eq!(
            classify(
                500,
                &date,
                "The security token included in the request is expired"
            ),
            None
        );
        // Skew: the time from Date, else from the message.
        let server = now + std::time::Duration::from_secs(900);
        assert_eq!(
            classify(
                403,
                &[("date", "Tue, 14 Nov 2023 22:28:20 GMT")],
                r#"{"message":"Signature expired: 20231114T221320Z is now earlier than 20231114T222320Z (20231114T222820Z - 5 min.)"}"#
            ),
            Some(Rejection::ClockSkew {
                server_now: Some(server)
            })
        );
        assert_eq!(
            classify(
                403,
                &[],
                r#"{"message":"Signature not yet current: 20231114T222820Z is still later than 20231114T221820Z (20231114T221320Z + 5 min.)"}"#
            ),
            Some(Rejection::ClockSkew {
                server_now: Some(now)
            })
        );
        // aoss InvalidSignatureException with a generic body: the Date header tells.
        let aoss = r#"{"status":403,"error":{"reason":"403 Forbidden","type":"Forbidden"}}"#;
        assert_eq!(
            classify(
                403,
                &[
                    ("x-amzn-errortype", "InvalidSignatureException"),
                    ("date", "Tue, 14 Nov 2023 22:28:20 GMT")
                ],
                aoss
            ),
            Some(Rejection::ClockSkew {
                server_now: Some(server)
            })
        );
        assert_eq!(
            classify(
                403,
                &[
                    ("x-amzn-errortype", "InvalidSignatureException"),
                    ("date", "Tue, 14 Nov 2023 22:14:20 GMT")
                ],
                aoss
            ),
            None
        );
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
