//! SigV4 for `es` and `aoss`, plus the one rule that keeps wire and signature in step: the query
//! string is re-serialised in the RFC 3986 form the signature uses, so the bytes the endpoint
//! receives are exactly the bytes that were signed.
//!
//! Only headers no AWS load balancer or VPC endpoint rewrites are signed: `host`,
//! `content-type`, and the `x-amz-*` headers the signer adds (`x-amz-date`,
//! `x-amz-security-token`, `x-amz-content-sha256`). The path is signed as AWS specifies for
//! non-S3 services: normalised and percent-encoded once more, while the wire keeps it untouched.

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};

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

/// Whether a query name or value is already in RFC 3986 form: unreserved characters only, as
/// most are (`pretty`, `size=10`, `format=json`).
fn is_unreserved(raw: &str) -> bool {
    raw.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn push_component(out: &mut String, raw: &str) -> Result<(), ProxyError> {
    if is_unreserved(raw) {
        out.push_str(raw);
        return Ok(());
    }
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

/// Signs requests for one endpoint (service, region) with SigV4, as AWS specifies it for
/// non-S3 services (the canonical URI normalised and percent-encoded once more). Written here
/// rather than through aws-sigv4 because it runs on every request: the canonical request is
/// built in one buffer, and the signing key, four HMACs deep, is derived once per credentials
/// and day instead of per request. A property test checks it against aws-sigv4.
#[derive(Debug)]
pub struct Signer {
    service: Service,
    region: String,
    key: Mutex<Option<SigningKey>>,
}

/// The last signing key derived, and what it was derived from.
struct SigningKey {
    credentials: Credentials,
    /// The scope date, `YYYYMMDD`.
    date: String,
    key: hmac::Key,
    token: Option<HeaderValue>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("date", &self.date)
            .finish_non_exhaustive()
    }
}

/// The parts of an outgoing request the signature covers.
pub struct SignInput<'a> {
    pub method: &'a str,
    /// The path exactly as it goes on the wire.
    pub path: &'a str,
    /// The query exactly as it goes on the wire (see [`wire_query`]), without `?`.
    pub query: Option<&'a str>,
    /// The `Host` header value sent.
    pub host: &'a str,
    pub content_type: Option<&'a str>,
    /// Lowercase hex SHA-256 of the body sent.
    pub payload_sha256: &'a str,
}

/// The characters that stay as they are in a canonical URI: RFC 3986 unreserved and `/`.
const PATH_COMPONENT: &AsciiSet = &QUERY_COMPONENT.remove(b'/');

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

impl Signer {
    pub fn new(service: Service, region: impl Into<String>) -> Signer {
        Signer {
            service,
            region: region.into(),
            key: Mutex::new(None),
        }
    }

    pub fn service(&self) -> Service {
        self.service
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Adds `authorization`, `x-amz-date`, `x-amz-content-sha256` and, with temporary
    /// credentials, `x-amz-security-token` to `headers`. Signed: `content-type` (when given),
    /// `host` and those `x-amz-*` headers, nothing a load balancer may rewrite.
    pub fn sign(
        &self,
        input: &SignInput<'_>,
        credentials: &Credentials,
        time: SystemTime,
        headers: &mut HeaderMap,
    ) -> Result<(), ProxyError> {
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| ProxyError::Internal("the clock is before 1970".into()))?
            .as_secs();
        let amz_date = format_amz_date(secs);
        let amz_date = std::str::from_utf8(&amz_date).expect("ASCII digits");
        let date = &amz_date[..8];
        let token = credentials.session_token();
        let content_type = input.content_type.map(trim_spaces);
        let signed_headers = signed_header_names(content_type.is_some(), token.is_some());

        // The canonical request, then the string to sign in the same buffer.
        let mut buf = String::with_capacity(
            320 + input.path.len() + input.query.map_or(0, str::len) + token.map_or(0, str::len),
        );
        buf.push_str(input.method);
        buf.push('\n');
        canonical_path(input.path, &mut buf);
        buf.push('\n');
        if let Some(query) = input.query {
            canonical_query(query, &mut buf)?;
        }
        buf.push('\n');
        let mut header = |name: &str, value: &str| {
            buf.push_str(name);
            buf.push(':');
            buf.push_str(value);
            buf.push('\n');
        };
        // In the order of their names, as the canonical request wants them.
        if let Some(ct) = &content_type {
            header("content-type", ct);
        }
        header("host", input.host);
        header("x-amz-content-sha256", input.payload_sha256);
        header("x-amz-date", amz_date);
        if let Some(token) = token {
            header("x-amz-security-token", token);
        }
        buf.push('\n');
        buf.push_str(signed_headers);
        buf.push('\n');
        buf.push_str(input.payload_sha256);
        let creq_hash = digest::digest(&digest::SHA256, buf.as_bytes());

        buf.clear();
        buf.push_str(ALGORITHM);
        buf.push('\n');
        buf.push_str(amz_date);
        buf.push('\n');
        let scope_start = buf.len();
        buf.push_str(date);
        buf.push('/');
        buf.push_str(&self.region);
        buf.push('/');
        buf.push_str(self.service.signing_name());
        buf.push_str("/aws4_request");
        let scope = scope_start..buf.len();
        buf.push('\n');
        push_hex(&mut buf, creq_hash.as_ref());
        let (signature, token_value) =
            self.with_key(credentials, date, |key| hmac::sign(key, buf.as_bytes()))?;

        let key_id = credentials.access_key_id();
        let mut authorization = String::with_capacity(
            ALGORITHM.len() + 64 + key_id.len() + scope.len() + signed_headers.len() + 64,
        );
        authorization.push_str(ALGORITHM);
        authorization.push_str(" Credential=");
        authorization.push_str(key_id);
        authorization.push('/');
        authorization.push_str(&buf[scope]);
        authorization.push_str(", SignedHeaders=");
        authorization.push_str(signed_headers);
        authorization.push_str(", Signature=");
        push_hex(&mut authorization, signature.as_ref());
        // From the String's own buffer, without a copy.
        let mut authorization = HeaderValue::from_maybe_shared(bytes::Bytes::from(authorization))
            .map_err(|_| {
            ProxyError::Internal("the access key id or region cannot be sent in a header".into())
        })?;
        authorization.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, authorization);
        headers.insert(
            X_AMZ_DATE,
            HeaderValue::from_str(amz_date).expect("digits and letters"),
        );
        let payload_sha256 = if input.payload_sha256 == EMPTY_SHA256 {
            HeaderValue::from_static(EMPTY_SHA256)
        } else {
            HeaderValue::from_str(input.payload_sha256).map_err(|_| {
                ProxyError::Internal("the body hash cannot be sent in a header".into())
            })?
        };
        headers.insert(X_AMZ_CONTENT_SHA256, payload_sha256);
        match token_value {
            Some(token) => {
                headers.insert(X_AMZ_SECURITY_TOKEN, token);
            }
            None => {
                headers.remove(X_AMZ_SECURITY_TOKEN);
            }
        }
        Ok(())
    }

    /// Runs `f` with the signing key for `credentials` on `date` (`YYYYMMDD`), derived when
    /// either changed; also returns the `x-amz-security-token` header for the credentials
    /// (made once with the key: a session token is ~1 KB that would be copied per request).
    fn with_key<T>(
        &self,
        credentials: &Credentials,
        date: &str,
        f: impl FnOnce(&hmac::Key) -> T,
    ) -> Result<(T, Option<HeaderValue>), ProxyError> {
        let mut cached = self.key.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached.as_ref().is_some_and(|k| {
            k.date == date
                && k.credentials.access_key_id() == credentials.access_key_id()
                && k.credentials.secret_access_key() == credentials.secret_access_key()
                && k.credentials.session_token() == credentials.session_token()
        });
        if !fresh {
            let token = match credentials.session_token() {
                Some(token) => {
                    let mut value = HeaderValue::from_str(token).map_err(|_| {
                        ProxyError::Internal("the session token cannot be sent in a header".into())
                    })?;
                    value.set_sensitive(true);
                    Some(value)
                }
                None => None,
            };
            *cached = Some(SigningKey {
                credentials: credentials.clone(),
                date: date.to_string(),
                key: derive_key(
                    credentials.secret_access_key(),
                    date,
                    &self.region,
                    self.service.signing_name(),
                ),
                token,
            });
        }
        let cached = cached.as_ref().expect("set above");
        Ok((f(&cached.key), cached.token.clone()))
    }
}

/// The signed header names, in order, for a request with or without a content type and a
/// session token.
fn signed_header_names(content_type: bool, token: bool) -> &'static str {
    match (content_type, token) {
        (false, false) => "host;x-amz-content-sha256;x-amz-date",
        (true, false) => "content-type;host;x-amz-content-sha256;x-amz-date",
        (false, true) => "host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
        (true, true) => "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
    }
}

/// SHA-256 of the empty body, in hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Writes `bytes` in lowercase hex into `out`, two digits a byte, as far as `out` reaches (the
/// `hex` crate builds its string a `char` at a time, which showed in the per-request profile).
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Appends `bytes` in lowercase hex.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for chunk in bytes.chunks(32) {
        let mut digits = [0u8; 64];
        let digits = &mut digits[..chunk.len() * 2];
        write_hex(digits, chunk);
        out.push_str(std::str::from_utf8(digits).expect("hex digits"));
    }
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
fn derive_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut k = Vec::with_capacity(4 + secret.len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k);
    for part in [date, region, service, "aws4_request"] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

/// `20231114T221320Z` for seconds since the epoch.
fn format_amz_date(secs: u64) -> [u8; 16] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"00000000T000000Z";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y);
    put(4, 2, m);
    put(6, 2, d);
    put(9, 2, rem / 3600);
    put(11, 2, rem / 60 % 60);
    put(13, 2, rem % 60);
    out
}

/// (year, month, day) of a day since the epoch (Howard Hinnant's civil-from-days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A header value as the canonical request wants it: spaces trimmed at both ends and runs of
/// spaces inside collapsed to one (only spaces, as AWS does).
fn trim_spaces(value: &str) -> Cow<'_, str> {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        if c == ' ' && value[i + 1..].starts_with(' ') {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The canonical URI for non-S3 services: dot segments removed and empty segments collapsed
/// (`//a/./b/../c/` → `/a/c/`), then every byte but unreserved ones and `/` percent-encoded
/// (so the wire's `%2F` signs as `%252F`, `*` as `%2A`).
fn canonical_path(path: &str, out: &mut String) {
    if path.is_empty() {
        out.push('/');
        return;
    }
    let needs_normalising = !path.starts_with('/') || path.contains('.') || path.contains("//");
    if !needs_normalising {
        out.extend(utf8_percent_encode(path, PATH_COMPONENT));
        return;
    }
    // RFC 3986 §5.2.4 on segments; empty ones are dropped too.
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let trailing = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|end| path.ends_with(end));
    if segments.is_empty() {
        out.push('/');
        return;
    }
    for segment in segments {
        out.push('/');
        out.extend(utf8_percent_encode(segment, PATH_COMPONENT));
    }
    if trailing {
        out.push('/');
    }
}

/// The canonical query: each name and value in RFC 3986 form (`+` read as a space, as AWS reads
/// it), a parameter without a value as `name=`, sorted by name and then value.
fn canonical_query(query: &str, out: &mut String) -> Result<(), ProxyError> {
    let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            Ok((query_component(name)?, query_component(value)?))
        })
        .collect::<Result<_, ProxyError>>()?;
    params.sort_unstable();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    Ok(())
}

/// One query name or value in canonical form ([`wire_query`]'s); borrowed when it already is.
fn query_component(raw: &str) -> Result<Cow<'_, str>, ProxyError> {
    if is_unreserved(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len() + 8);
    push_component(&mut out, raw)?;
    Ok(Cow::Owned(out))
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
    let text = rejection_message(body);
    let error_type = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    if text.starts_with("the security token included in the request is expired")
        || text.starts_with("the security token included in the request is invalid")
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
    let said_skew = text.starts_with("signature expired")
        || text.starts_with("signature not yet current")
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

/// What the AWS front end said, lowercased: the top-level `message` (`Message`) of a JSON body,
/// else the whole body when it is not JSON. An OpenSearch error (`{"error":…,"status":…}`),
/// which may quote the client's own input, has no such message: text a client sent can never
/// make the proxy sign again.
fn rejection_message(body: &[u8]) -> String {
    let message = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => fields
            .get("message")
            .or_else(|| fields.get("Message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string(),
        Ok(_) => String::new(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    message.trim_start().to_ascii_lowercase()
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
        // An OpenSearch error quoting what the client sent is not the front end speaking.
        assert_eq!(
            classify(
                400,
                &date,
                r#"{"error":{"type":"parsing_exception","reason":"unknown query [The security token included in the request is expired]"},"status":400}"#
            ),
            None
        );
        assert_eq!(
            classify(
                400,
                &date,
                r#"{"error":{"type":"x","reason":"Signature expired: 20231114T221320Z is now earlier than 20231114T222320Z (20231114T222820Z - 5 min.)"},"status":400}"#
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
        // The signer holds to the same rule for a query that did not come through wire_query.
        let signed = Signer::new(Service::Es, "us-east-1").sign(
            &SignInput {
                method: "GET",
                path: "/",
                query: Some("q=%FF"),
                host: "search-x.us-east-1.es.amazonaws.com",
                content_type: None,
                payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            },
            &Credentials::new("AKID", "secret", None, None, "test"),
            SystemTime::UNIX_EPOCH,
            &mut HeaderMap::new(),
        );
        assert!(matches!(signed, Err(ProxyError::BadRequest(_))));
    }

    #[test]
    fn signs_host_content_type_and_amz_headers_only() {
        let signer = Signer::new(Service::Aoss, "us-east-1");
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut headers = HeaderMap::new();
        signer
            .sign(
                &SignInput {
                    method: "GET",
                    path: "/idx/_search",
                    query: Some("q=a%3Ab"),
                    host: "x.us-east-1.aoss.amazonaws.com",
                    content_type: Some("application/json"),
                    payload_sha256: hash,
                },
                &creds,
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                &mut headers,
            )
            .unwrap();
        let get = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
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
        assert!(headers["authorization"].is_sensitive());
        assert!(headers["x-amz-security-token"].is_sensitive());
        assert_eq!(headers.len(), 4);
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = String::from("x");
        push_hex(&mut out, &bytes);
        assert_eq!(out, format!("x{}", hex::encode(&bytes)));
    }

    #[test]
    fn amz_dates_match_the_calendar() {
        let date = |secs| String::from_utf8(format_amz_date(secs).to_vec()).unwrap();
        assert_eq!(date(0), "19700101T000000Z");
        assert_eq!(date(1_700_000_000), "20231114T221320Z");
        assert_eq!(date(1_709_164_799), "20240228T235959Z");
        assert_eq!(date(1_709_164_800), "20240229T000000Z");
        assert_eq!(date(4_102_444_800), "21000101T000000Z");
        for secs in (0..5_000_000_000u64).step_by(86_400 * 37 + 3_601) {
            assert_eq!(
                parse_amz_date(&date(secs)),
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            );
        }
    }

    #[test]
    fn the_signing_key_is_derived_again_for_new_credentials_or_a_new_day() {
        let signer = Signer::new(Service::Es, "eu-west-1");
        let input = SignInput {
            method: "GET",
            path: "/",
            query: None,
            host: "search-x.eu-west-1.es.amazonaws.com",
            content_type: None,
            payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = Credentials::new("AKIDA", "secret-a", None, None, "test");
        let b = Credentials::new("AKIDA", "secret-b", None, None, "test");
        let sign = |creds: &Credentials, t: SystemTime| {
            let mut h = HeaderMap::new();
            signer.sign(&input, creds, t, &mut h).unwrap();
            h["authorization"].to_str().unwrap().to_string()
        };
        // The cached key gives what a fresh signer gives, for every change of key or day.
        for (creds, t) in [
            (&a, t0),
            (&a, t0 + Duration::from_secs(60)),
            (&b, t0 + Duration::from_secs(60)),
            (&b, t0 + Duration::from_secs(86_400)),
            (&a, t0 + Duration::from_secs(86_400)),
        ] {
            let mut fresh = HeaderMap::new();
            Signer::new(Service::Es, "eu-west-1")
                .sign(&input, creds, t, &mut fresh)
                .unwrap();
            assert_eq!(sign(creds, t), fresh["authorization"].to_str().unwrap());
        }
        assert_ne!(sign(&a, t0), sign(&b, t0));
    }

    /// What aws-sigv4 makes of the same request, with the settings es and aoss need.
    fn aws_sigv4_headers(
        service: Service,
        region: &str,
        input: &SignInput<'_>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Vec<(String, String)> {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode,
        };
        use aws_smithy_runtime_api::client::identity::Identity;
        let identity: Identity = credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Double;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Enabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service.signing_name())
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let uri = match input.query {
            Some(q) => format!("https://{}{}?{q}", input.host, input.path),
            None => format!("https://{}{}", input.host, input.path),
        };
        let mut headers = vec![("host", input.host)];
        if let Some(ct) = input.content_type {
            headers.push(("content-type", ct));
        }
        let signable = SignableRequest::new(
            input.method,
            &uri,
            headers.into_iter(),
            SignableBody::Precomputed(input.payload_sha256.to_string()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let (headers, _) = instructions.into_parts();
        let mut out: Vec<(String, String)> = headers
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        out.sort();
        out
    }

    fn ours(
        signer: &Signer,
        input: &SignInput<'_>,
        credentials: &Credentials,
        time: SystemTime,
    ) -> Vec<(String, String)> {
        let mut headers = HeaderMap::new();
        signer.sign(input, credentials, time, &mut headers).unwrap();
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_signature_is_aws_sigv4s_for_awkward_requests() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("IQoJb3JpZ2luX2VjEBo+/=".into()),
            None,
            "test",
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_700_000);
        let hash = "4f1ad9e8b1c2a0b6d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4";
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("/", None, None),
            ("", None, None),
            (
                "/%3Clogs-%7Bnow%2Fd%7D%3E/_search",
                Some("q=a%3Ab&v"),
                Some("application/json"),
            ),
            ("/logs-*,metrics-*/_count", Some("v&pretty&v"), None),
            ("//double//slash//", Some("x=2&x=1&x="), None),
            (
                "/a/./b/../c/.",
                None,
                Some("  text/plain;   charset=utf-8  "),
            ),
            ("/a/b/..", Some("%7e=~&A=1&a=1"), None),
            ("/../../x", Some("q=caf%C3%A9&q=%20sp%20"), None),
            ("/idx/_doc/a%2Fb", Some("routing=a%2Bb&q=a%20b"), None),
            ("/%E2%82%AC/%25", Some("=empty&k="), Some("")),
            ("/.hidden/..x/.../", None, None),
        ];
        for service in [Service::Es, Service::Aoss] {
            let signer = Signer::new(service, "us-gov-west-1");
            for (path, query, content_type) in cases {
                let input = SignInput {
                    method: "POST",
                    path,
                    query: *query,
                    host: "vpc-logs-abc.us-gov-west-1.es.amazonaws.com",
                    content_type: *content_type,
                    payload_sha256: hash,
                };
                assert_eq!(
                    ours(&signer, &input, &creds, t),
                    aws_sigv4_headers(service, "us-gov-west-1", &input, &creds, t),
                    "{path} {query:?} {content_type:?}"
                );
            }
        }
    }

    mod against_aws_sigv4 {
        use super::*;
        use proptest::prelude::*;

        /// Path bytes as clients send them: percent escapes, reserved characters, dots and
        /// slashes in every combination.
        fn path() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("/".to_string()),
                    Just(".".to_string()),
                    Just("..".to_string()),
                    Just("%2F".to_string()),
                    Just("%25".to_string()),
                    Just("%E2%82%AC".to_string()),
                    "[a-zA-Z0-9_~.*,:;=!$'()@+&-]{1,6}",
                ],
                0..10,
            )
            .prop_map(|parts| parts.concat())
        }

        fn query() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(
                proptest::collection::vec(
                    (
                        "[a-zA-Z0-9_.~%+*:-]{0,5}",
                        proptest::option::of("[a-zA-Z0-9_.~%+*:=-]{0,6}"),
                    ),
                    0..6,
                )
                .prop_map(|pairs| {
                    pairs
                        .into_iter()
                        .map(|(k, v)| match v {
                            Some(v) => format!("{k}={v}"),
                            None => k,
                        })
                        .collect::<Vec<_>>()
                        .join("&")
                }),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn same_headers_as_aws_sigv4(
                path in path(),
                query in query(),
                content_type in proptest::option::of("[ a-zA-Z0-9/;=+.-]{0,24}"),
                method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("HEAD")],
                token in proptest::option::of("[A-Za-z0-9+/=]{1,40}"),
                secs in 0u64..4_000_000_000,
                aoss in any::<bool>(),
            ) {
                let service = if aoss { Service::Aoss } else { Service::Es };
                let path = if path.starts_with('/') { path } else { format!("/{path}") };
                // Only what can be a request target; the proxy has parsed it as one.
                let target = match &query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                prop_assume!(target.parse::<http::Uri>().is_ok());
                // Queries that are not UTF-8 once decoded get 400 before signing.
                let wire = query.as_deref().map(wire_query).transpose();
                prop_assume!(wire.is_ok());
                let wire = wire.unwrap();
                let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token, None, "test");
                let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                let input = SignInput {
                    method,
                    path: &path,
                    query: wire.as_deref().filter(|q| !q.is_empty()),
                    host: "search-x.eu-central-1.es.amazonaws.com",
                    content_type: content_type.as_deref(),
                    payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                };
                let signer = Signer::new(service, "eu-central-1");
                prop_assert_eq!(
                    ours(&signer, &input, &creds, t),
                    aws_sigv4_headers(service, "eu-central-1", &input, &creds, t)
                );
            }
        }
    }
}
