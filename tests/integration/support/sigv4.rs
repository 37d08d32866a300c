//! An independent, deliberately small SigV4 (`AWS4-HMAC-SHA256`) implementation
//! used to *judge* the proxy.
//!
//! It is written from the AWS documentation ("Create a canonical request",
//! "Create a string to sign", "Calculate the signature") and checked against the
//! official signing test suite, and it never calls `aws-sigv4`: if the proxy's
//! signer had a bug, reusing it here would make the bug check itself.
//!
//! Two halves:
//! * [`verify`] / [`verify_with`] — what the AWS front end does with a request it
//!   received: parse `Authorization`, check scope, clock, session token and payload
//!   hash, rebuild the canonical request from the bytes on the wire and compare
//!   signatures. Failures are [`SigError`]s that render AWS-style bodies.
//! * [`sign`] — the same canonicalisation used in the other direction, for
//!   hand-signed requests in self-tests and fake clients.
//!
//! Canonicalisation rules for non-S3 services (`es`, `aoss`) — the default
//! [`CanonicalOptions::NON_S3`]: the canonical URI is the raw path as received,
//! normalised (`.`/`..` removed, empty segments collapsed, trailing slash kept)
//! and then percent-encoded *once more* (everything but `A-Za-z0-9-._~` and `/`).
//! The query is split on `&`, each name and value decoded (`+` is a space) and
//! re-encoded RFC 3986 style, then sorted.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only algorithm this verifier understands.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Payload hash value that opts out of payload signing.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far `X-Amz-Date` may be from the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

// ---------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------

/// One set of credentials the endpoint accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub access_key: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Creds {
    /// Long-term credentials (no session token).
    pub fn new(access_key: impl Into<String>, secret: impl Into<String>) -> Self {
        Creds {
            access_key: access_key.into(),
            secret: secret.into(),
            token: None,
        }
    }

    /// Temporary credentials with a session token.
    pub fn with_token(
        access_key: impl Into<String>,
        secret: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Creds {
            access_key: access_key.into(),
            secret: secret.into(),
            token: Some(token.into()),
        }
    }
}

/// A request exactly as the verifier sees it (after any front-end mutation).
#[derive(Clone, Copy, Debug)]
pub struct ReceivedRequest<'a> {
    pub method: &'a str,
    /// The path as it appeared on the wire, still percent-encoded.
    pub raw_path: &'a str,
    /// The query as it appeared on the wire (without `?`), if any.
    pub raw_query: Option<&'a str>,
    /// Headers in the order received. Names may be in any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// How the canonical URI is built. AWS uses [`CanonicalOptions::NON_S3`] for
/// every service except S3; the signing test suite mostly uses the S3 style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanonicalOptions {
    /// Remove `.`/`..` segments and collapse `//`.
    pub normalize_path: bool,
    /// Percent-encode the (already encoded) wire path again.
    pub double_encode: bool,
}

impl CanonicalOptions {
    /// Rules for `es`, `aoss` and every other non-S3 service.
    pub const NON_S3: CanonicalOptions = CanonicalOptions {
        normalize_path: true,
        double_encode: true,
    };
    /// S3 rules: the path is used as given, encoded only where it must be.
    pub const S3: CanonicalOptions = CanonicalOptions {
        normalize_path: false,
        double_encode: false,
    };
}

/// Everything the endpoint knows when it verifies a request.
#[derive(Clone, Debug)]
pub struct VerifyContext<'a> {
    pub creds: &'a [Creds],
    /// Session tokens that are known but expired.
    pub expired_tokens: &'a [String],
    pub service: &'a str,
    pub region: &'a str,
    /// The server's clock.
    pub now: SystemTime,
    /// OpenSearch Serverless insists on a signed `x-amz-content-sha256`.
    pub require_signed_content_sha256: bool,
    pub options: CanonicalOptions,
}

impl<'a> VerifyContext<'a> {
    /// The context AWS would use for `service` (`aoss` requires a signed content hash).
    pub fn new(creds: &'a [Creds], service: &'a str, region: &'a str, now: SystemTime) -> Self {
        VerifyContext {
            creds,
            expired_tokens: &[],
            service,
            region,
            now,
            require_signed_content_sha256: service == "aoss",
            options: CanonicalOptions::NON_S3,
        }
    }
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    pub session_token: Option<String>,
    pub request_time: SystemTime,
    /// `SignedHeaders` as sent by the client.
    pub signed_headers: Vec<String>,
    /// The payload hash that went into the canonical request.
    pub payload_hash: String,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

/// Why a request was rejected. Each variant renders the body AWS would send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header at all.
    MissingAuth,
    /// `Authorization` present but not a well-formed SigV4 header, or no date.
    IncompleteSignature { message: String },
    /// The access key id is not one the endpoint knows.
    UnknownKey { access_key: String },
    /// Token missing, wrong, present when not expected, or not signed.
    InvalidToken { reason: String },
    /// The token is known but expired.
    ExpiredToken,
    /// Credential scope date/region/service/terminator is wrong.
    WrongScope { message: String },
    /// `host` is not among the signed headers.
    HostNotSigned,
    /// `X-Amz-Date` more than five minutes in the past.
    SignatureExpired {
        request_time: String,
        now: String,
        limit: String,
    },
    /// `X-Amz-Date` more than five minutes in the future.
    SignatureNotYetCurrent {
        request_time: String,
        now: String,
        limit: String,
    },
    /// `aoss` without a signed `x-amz-content-sha256`.
    MissingSignedContentSha256,
    /// `x-amz-content-sha256` differs from the hash of the body received.
    PayloadHashMismatch { header: String, computed: String },
    /// The signature does not match what the endpoint computed.
    SignatureMismatch {
        canonical_request: String,
        string_to_sign: String,
    },
    /// The request's host does not belong to this endpoint (test-upstream check).
    WrongHost { expected: String, got: String },
}

/// Field-less mirror of [`SigError`] for easy assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigErrorKind {
    MissingAuth,
    IncompleteSignature,
    UnknownKey,
    InvalidToken,
    ExpiredToken,
    WrongScope,
    HostNotSigned,
    SignatureExpired,
    SignatureNotYetCurrent,
    MissingSignedContentSha256,
    PayloadHashMismatch,
    SignatureMismatch,
    WrongHost,
}

const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

impl SigError {
    pub fn kind(&self) -> SigErrorKind {
        match self {
            SigError::MissingAuth => SigErrorKind::MissingAuth,
            SigError::IncompleteSignature { .. } => SigErrorKind::IncompleteSignature,
            SigError::UnknownKey { .. } => SigErrorKind::UnknownKey,
            SigError::InvalidToken { .. } => SigErrorKind::InvalidToken,
            SigError::ExpiredToken => SigErrorKind::ExpiredToken,
            SigError::WrongScope { .. } => SigErrorKind::WrongScope,
            SigError::HostNotSigned => SigErrorKind::HostNotSigned,
            SigError::SignatureExpired { .. } => SigErrorKind::SignatureExpired,
            SigError::SignatureNotYetCurrent { .. } => SigErrorKind::SignatureNotYetCurrent,
            SigError::MissingSignedContentSha256 => SigErrorKind::MissingSignedContentSha256,
            SigError::PayloadHashMismatch { .. } => SigErrorKind::PayloadHashMismatch,
            SigError::SignatureMismatch { .. } => SigErrorKind::SignatureMismatch,
            SigError::WrongHost { .. } => SigErrorKind::WrongHost,
        }
    }

    /// HTTP status the front end answers with.
    pub fn status(&self) -> u16 {
        match self {
            SigError::MissingSignedContentSha256 | SigError::PayloadHashMismatch { .. } => 400,
            _ => 403,
        }
    }

    /// Value of the `x-amzn-ErrorType` response header.
    pub fn error_type(&self) -> &'static str {
        match self {
            SigError::MissingAuth => "MissingAuthenticationTokenException",
            SigError::IncompleteSignature { .. } | SigError::HostNotSigned => {
                "IncompleteSignatureException"
            }
            SigError::UnknownKey { .. } | SigError::InvalidToken { .. } => {
                "UnrecognizedClientException"
            }
            SigError::ExpiredToken => "ExpiredTokenException",
            SigError::MissingSignedContentSha256 | SigError::PayloadHashMismatch { .. } => {
                "BadRequestException"
            }
            SigError::WrongHost { .. } => "ForbiddenException",
            SigError::WrongScope { .. }
            | SigError::SignatureExpired { .. }
            | SigError::SignatureNotYetCurrent { .. }
            | SigError::SignatureMismatch { .. } => "InvalidSignatureException",
        }
    }

    /// The human message inside an `es`-style `{"message": ...}` body.
    pub fn message(&self) -> String {
        match self {
            SigError::MissingAuth => "Missing Authentication Token".to_owned(),
            SigError::IncompleteSignature { message } => message.clone(),
            SigError::UnknownKey { .. } | SigError::InvalidToken { .. } => {
                "The security token included in the request is invalid.".to_owned()
            }
            SigError::ExpiredToken => {
                "The security token included in the request is expired".to_owned()
            }
            SigError::WrongScope { message } => message.clone(),
            SigError::HostNotSigned => {
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
                    .to_owned()
            }
            SigError::SignatureExpired {
                request_time,
                now,
                limit,
            } => format!(
                "Signature expired: {request_time} is now earlier than {limit} ({now} - 5 min.)"
            ),
            SigError::SignatureNotYetCurrent {
                request_time,
                now,
                limit,
            } => format!(
                "Signature not yet current: {request_time} is still later than {limit} ({now} + 5 min.)"
            ),
            SigError::MissingSignedContentSha256 => {
                "x-amz-content-sha256 header must be signed in SigV4".to_owned()
            }
            SigError::PayloadHashMismatch { .. } => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .to_owned()
            }
            SigError::SignatureMismatch {
                canonical_request,
                string_to_sign,
            } => format!(
                "{MISMATCH_MESSAGE}\n\nThe Canonical String for this request should have been\n'{canonical_request}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
            ),
            SigError::WrongHost { expected, got } => {
                format!("Test upstream: request host '{got}' does not belong to this endpoint ('{expected}')")
            }
        }
    }

    /// The JSON error body the AWS front end of `service` would send.
    ///
    /// `es`: `{"message":"..."}`. `aoss` answers authentication failures with its
    /// generic `{"status":403,"request-id":...,"error":{"reason":"403 Forbidden","type":"Forbidden"}}`
    /// and request-shape failures (status 400) with `{"message":"..."}`.
    pub fn aws_body(&self, service: &str, request_id: &str) -> String {
        if service == "aoss" && self.status() == 403 {
            serde_json::json!({
                "status": 403,
                "request-id": request_id,
                "error": {"reason": "403 Forbidden", "type": "Forbidden"},
            })
            .to_string()
        } else {
            serde_json::json!({ "message": self.message() }).to_string()
        }
    }
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.kind())?;
        match self {
            SigError::InvalidToken { reason } => write!(f, "{reason}"),
            SigError::UnknownKey { access_key } => write!(f, "unknown access key {access_key}"),
            SigError::PayloadHashMismatch { header, computed } => {
                write!(f, "header {header}, body hashes to {computed}")
            }
            _ => f.write_str(&self.message()),
        }
    }
}

impl std::error::Error for SigError {}

// ---------------------------------------------------------------------------
// Hashing helpers
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Final signature: hex(HMAC(signing key, string to sign)).
pub fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    hex::encode(hmac(
        &signing_key(secret, date, region, service),
        string_to_sign.as_bytes(),
    ))
}

// ---------------------------------------------------------------------------
// Canonicalisation
// ---------------------------------------------------------------------------

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encode `bytes`, keeping unreserved characters and the extra bytes in `keep`.
fn encode_bytes(bytes: &[u8], keep: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if is_unreserved(b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3986 encoding used for query names/values: unreserved kept, all else `%XX`.
pub fn uri_encode(bytes: &[u8]) -> String {
    encode_bytes(bytes, b"")
}

/// Decode `%XX` escapes (invalid escapes are kept literally); optionally `+` → space.
fn percent_decode(s: &str, plus_as_space: bool) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hi = (bytes[i + 1] as char).to_digit(16);
                let lo = (bytes[i + 2] as char).to_digit(16);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Remove `.` and `..` segments and empty segments; keep leading and trailing `/`.
pub fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    let ends_with_dir = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if ends_with_dir && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI for a path as it appeared on the wire.
pub fn canonical_uri(raw_path: &str, options: CanonicalOptions) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let path = if options.normalize_path {
        normalize_path(path)
    } else {
        path.to_owned()
    };
    if options.double_encode {
        encode_bytes(path.as_bytes(), b"/")
    } else {
        // Single encoding: the path is already encoded; only encode what must be.
        encode_bytes(path.as_bytes(), b"/%")
    }
}

/// The canonical query string for a raw query (without `?`).
pub fn canonical_query(raw_query: Option<&str>) -> String {
    let Some(raw) = raw_query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(name, true)),
                uri_encode(&percent_decode(value, true)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trim and collapse runs of whitespace (including folded lines) to one space.
pub fn canonical_header_value(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// All values of header `name` (case-insensitive), in order, canonicalised and
/// joined with `,`; `None` if the header is absent.
pub fn header_values(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| canonical_header_value(v))
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(","))
    }
}

/// First raw value of header `name` (case-insensitive).
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Canonical headers block (each line `name:value\n`) for `signed_headers`.
/// Absent headers contribute an empty value (the signature then simply fails).
pub fn canonical_headers(headers: &[(String, String)], signed_headers: &[String]) -> String {
    let mut out = String::new();
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&header_values(headers, name).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// The canonical request, joined exactly as AWS specifies.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: Option<&str>,
    headers: &[(String, String)],
    signed_headers: &[String],
    payload_hash: &str,
    options: CanonicalOptions,
) -> String {
    format!(
        "{method}\n{}\n{}\n{}\n{}\n{payload_hash}",
        canonical_uri(raw_path, options),
        canonical_query(raw_query),
        canonical_headers(headers, signed_headers),
        signed_headers.join(";"),
    )
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

// ---------------------------------------------------------------------------
// Dates (no chrono dependency: civil calendar arithmetic by hand)
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 → (year, month, day). Proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn from_unix_secs(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse `YYYYMMDDTHHMMSSZ` strictly.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(from_unix_secs(
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se),
    ))
}

/// RFC 9110 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (for `Date` headers).
pub fn format_http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_secs(t);
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------
// Authorization header
// ---------------------------------------------------------------------------

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl AuthHeader {
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

fn incomplete(message: impl Into<String>) -> SigError {
    SigError::IncompleteSignature {
        message: message.into(),
    }
}

/// Parse an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<AuthHeader, SigError> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        let algo = value.split_whitespace().next().unwrap_or("");
        return Err(incomplete(format!(
            "Authorization header requires the '{ALGORITHM}' algorithm, got '{algo}'."
        )));
    };
    if !rest.starts_with(' ') {
        return Err(incomplete(format!(
            "Authorization header requires '{ALGORITHM}' followed by a space."
        )));
    }
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        } else {
            return Err(incomplete(format!(
                "Authorization header has an unknown component '{part}'."
            )));
        }
    }
    let mut missing = String::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", sig),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let (Some(credential), Some(signed), Some(sig)) = (credential, signed, sig) else {
        return Err(incomplete(format!(
            "{missing}Authorization={}",
            value.split_whitespace().next().unwrap_or("")
        )));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 {
        return Err(incomplete(format!(
            "Credential should have exactly five slash-separated parts: '{credential}'."
        )));
    }
    Ok(AuthHeader {
        access_key: parts[0].to_owned(),
        date: parts[1].to_owned(),
        region: parts[2].to_owned(),
        service: parts[3].to_owned(),
        terminator: parts[4].to_owned(),
        signed_headers: signed.split(';').map(str::to_owned).collect(),
        signature: sig.to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Verify with the default AWS context for `service`: no expired tokens,
/// non-S3 canonicalisation, `aoss` requires a signed content hash.
pub fn verify(
    req: &ReceivedRequest,
    creds: &[Creds],
    service: &str,
    region: &str,
    now: SystemTime,
) -> Result<Verified, SigError> {
    verify_with(req, &VerifyContext::new(creds, service, region, now))
}

/// Verify a request, hashing its body.
pub fn verify_with(req: &ReceivedRequest, ctx: &VerifyContext) -> Result<Verified, SigError> {
    verify_prehashed(req, &sha256_hex(req.body), ctx)
}

/// Verify a request whose body was already hashed (`req.body` is ignored), so
/// large streamed bodies need not be kept in memory.
pub fn verify_prehashed(
    req: &ReceivedRequest,
    body_sha256: &str,
    ctx: &VerifyContext,
) -> Result<Verified, SigError> {
    let headers = req.headers;
    let auth_value = header(headers, "authorization").ok_or(SigError::MissingAuth)?;
    let auth = parse_authorization(auth_value)?;

    // Date.
    let amz_date = header(headers, "x-amz-date").map(str::trim).ok_or_else(|| {
        incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    })?;
    let request_time = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;

    // Credential scope.
    if auth.date != amz_date[..8] {
        return Err(SigError::WrongScope {
            message: format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                auth.date,
                &amz_date[..8]
            ),
        });
    }
    if auth.region != ctx.region {
        return Err(SigError::WrongScope {
            message: format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            ),
        });
    }
    if auth.service != ctx.service {
        return Err(SigError::WrongScope {
            message: format!(
                "Credential should be scoped to correct service: '{}'. ",
                ctx.service
            ),
        });
    }
    if auth.terminator != "aws4_request" {
        return Err(SigError::WrongScope {
            message: format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
                auth.terminator
            ),
        });
    }

    // Access key and session token.
    let creds = ctx
        .creds
        .iter()
        .find(|c| c.access_key == auth.access_key)
        .ok_or_else(|| SigError::UnknownKey {
            access_key: auth.access_key.clone(),
        })?;
    let sent_token = header(headers, "x-amz-security-token").map(str::trim);
    let token_signed = auth
        .signed_headers
        .iter()
        .any(|h| h == "x-amz-security-token");
    match (&creds.token, sent_token) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(SigError::InvalidToken {
                reason: "a session token was sent for long-term credentials".into(),
            })
        }
        (Some(_), None) => {
            return Err(SigError::InvalidToken {
                reason: "temporary credentials used without x-amz-security-token".into(),
            })
        }
        (Some(expected), Some(sent)) => {
            if sent != expected {
                return Err(SigError::InvalidToken {
                    reason: "x-amz-security-token does not match the access key".into(),
                });
            }
            if ctx.expired_tokens.iter().any(|t| t == sent) {
                return Err(SigError::ExpiredToken);
            }
            if !token_signed {
                return Err(SigError::InvalidToken {
                    reason: "x-amz-security-token is not a signed header".into(),
                });
            }
        }
    }

    // Required signed headers.
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::HostNotSigned);
    }
    let content_sha = header(headers, "x-amz-content-sha256").map(str::trim);
    if ctx.require_signed_content_sha256
        && (content_sha.is_none()
            || !auth
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-content-sha256"))
    {
        return Err(SigError::MissingSignedContentSha256);
    }

    // Clock.
    let now_s = unix_secs(ctx.now);
    let req_s = unix_secs(request_time);
    let skew = MAX_SKEW.as_secs() as i64;
    if req_s < now_s - skew {
        return Err(SigError::SignatureExpired {
            request_time: amz_date.to_owned(),
            now: format_amz_date(ctx.now),
            limit: format_amz_date(from_unix_secs(now_s - skew)),
        });
    }
    if req_s > now_s + skew {
        return Err(SigError::SignatureNotYetCurrent {
            request_time: amz_date.to_owned(),
            now: format_amz_date(ctx.now),
            limit: format_amz_date(from_unix_secs(now_s + skew)),
        });
    }

    // Payload hash.
    let payload_hash = match content_sha {
        Some(h) if h == UNSIGNED_PAYLOAD => h.to_owned(),
        Some(h) if h.eq_ignore_ascii_case(body_sha256) => h.to_owned(),
        Some(h) => {
            return Err(SigError::PayloadHashMismatch {
                header: h.to_owned(),
                computed: body_sha256.to_owned(),
            })
        }
        None => body_sha256.to_owned(),
    };

    // Signature.
    let creq = canonical_request(
        req.method,
        req.raw_path,
        req.raw_query,
        headers,
        &auth.signed_headers,
        &payload_hash,
        ctx.options,
    );
    let sts = string_to_sign(amz_date, &auth.scope(), &creq);
    let expected = signature(&creds.secret, &auth.date, &auth.region, &auth.service, &sts);
    if expected != auth.signature {
        return Err(SigError::SignatureMismatch {
            canonical_request: creq,
            string_to_sign: sts,
        });
    }
    Ok(Verified {
        access_key: creds.access_key.clone(),
        session_token: sent_token.map(str::to_owned),
        request_time,
        signed_headers: auth.signed_headers,
        payload_hash,
        canonical_request: creq,
        string_to_sign: sts,
        signature: expected,
    })
}

// ---------------------------------------------------------------------------
// Signing (for self-tests and fake clients)
// ---------------------------------------------------------------------------

/// Parameters for [`sign`].
#[derive(Clone, Debug)]
pub struct SigningParams<'a> {
    pub creds: &'a Creds,
    pub service: &'a str,
    pub region: &'a str,
    pub time: SystemTime,
    /// Add and sign `x-amz-content-sha256` (required by `aoss`).
    pub content_sha256: bool,
    /// Use this payload hash instead of hashing the body (e.g. `UNSIGNED-PAYLOAD`).
    pub payload_hash_override: Option<String>,
    /// Sign the session token (AWS requires it). If false it is added unsigned.
    pub sign_token: bool,
    pub options: CanonicalOptions,
}

impl<'a> SigningParams<'a> {
    /// Defaults AWS clients use for `service`: token signed, non-S3 rules, and
    /// `x-amz-content-sha256` for `aoss`.
    pub fn new(creds: &'a Creds, service: &'a str, region: &'a str, time: SystemTime) -> Self {
        SigningParams {
            creds,
            service,
            region,
            time,
            content_sha256: service == "aoss",
            payload_hash_override: None,
            sign_token: true,
            options: CanonicalOptions::NON_S3,
        }
    }
}

/// Result of [`sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureOutput {
    /// Headers to add to the request, `authorization` last.
    pub headers: Vec<(String, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signature: String,
}

impl SignatureOutput {
    /// The request's headers (minus any the signer replaced) followed by the
    /// signing headers.
    pub fn apply(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| !self.headers.iter().any(|(a, _)| n.eq_ignore_ascii_case(a)))
            .cloned()
            .collect();
        all.extend(self.headers.iter().cloned());
        all
    }
}

/// Sign a request: every header in `req.headers` is signed, plus `x-amz-date`,
/// the session token and optionally `x-amz-content-sha256` (these, and any
/// `authorization`, replace same-named headers already present in the request,
/// so use [`SignatureOutput::apply`] on headers without them). The caller must
/// include `host`.
pub fn sign(req: &ReceivedRequest, params: &SigningParams) -> SignatureOutput {
    let amz_date = format_amz_date(params.time);
    let date = &amz_date[..8];
    let payload_hash = params
        .payload_hash_override
        .clone()
        .unwrap_or_else(|| sha256_hex(req.body));

    let mut added: Vec<(String, String)> = vec![("x-amz-date".into(), amz_date.clone())];
    if params.content_sha256 {
        added.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    let token = params.creds.token.clone();
    if let (Some(t), true) = (&token, params.sign_token) {
        added.push(("x-amz-security-token".into(), t.clone()));
    }

    // Headers the signer owns replace any the request already carries.
    let mut all: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !added.iter().any(|(a, _)| n.eq_ignore_ascii_case(a)))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    all.extend(added.iter().cloned());
    let mut signed: Vec<String> = all.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();

    let creq = canonical_request(
        req.method,
        req.raw_path,
        req.raw_query,
        &all,
        &signed,
        &payload_hash,
        params.options,
    );
    let scope = format!("{date}/{}/{}/aws4_request", params.region, params.service);
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let sig = signature(
        &params.creds.secret,
        date,
        params.region,
        params.service,
        &sts,
    );
    if let (Some(t), false) = (&token, params.sign_token) {
        added.push(("x-amz-security-token".into(), t.clone()));
    }
    added.push((
        "authorization".into(),
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={sig}",
            params.creds.access_key,
            signed.join(";")
        ),
    ));
    SignatureOutput {
        headers: added,
        canonical_request: creq,
        string_to_sign: sts,
        signature: sig,
    }
}
