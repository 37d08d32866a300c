//! Validates the test suite's own SigV4 implementation (`support::sigv4`) against
//! the official AWS signing test suite shipped inside the `aws-sigv4` crate
//! (`aws-signing-test-suite/v4/<name>/`), plus a few targeted unit checks.
//!
//! For every v4 vector with a `context.json` we
//! * sign `request.txt` with our signer and compare `header-canonical-request.txt`,
//!   `header-string-to-sign.txt` and `header-signature.txt`, and
//! * verify `header-signed-request.txt` with our verifier at the vector's timestamp.
//!
//! Those vectors use S3-style single encoding; `context.json` only says whether
//! to normalise the path. The two vectors without a `context.json`
//! (`double-encode-path`, `double-url-encode`) use the non-S3 double encoding that
//! `es`/`aoss` need; they come from aws-sigv4's own tests, signed at
//! `20210511T154045Z` (canonical request) with its test credentials
//! (`ANOTREAL`, signed request).
//!
//! Skipped, because the verifier does not implement them:
//! * all `query-*` files (presigned URLs, query-string authentication),
//! * the whole `v4a/` directory (SigV4a, ECDSA, multi-region).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::support::sigv4::{
    self, CanonicalOptions, Creds, ReceivedRequest, SigErrorKind, SigningParams, VerifyContext,
};

/// The `aws-sigv4` version this build uses, read from `Cargo.lock` (whichever version the lock
/// file pins, its sources are in the registry after `cargo fetch` or any build).
fn sigv4_crate() -> String {
    let lock_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e})", lock_path.display()));
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"aws-sigv4\"" {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| {
                    panic!("{}: aws-sigv4 has no version line", lock_path.display())
                });
            return format!("aws-sigv4-{version}");
        }
    }
    panic!("{}: no aws-sigv4 package", lock_path.display());
}

fn suite_dir() -> PathBuf {
    let crate_dir = sigv4_crate();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("neither CARGO_HOME nor HOME is set; cannot locate the SigV4 test suite");
    let registry = cargo_home.join("registry").join("src");
    let entries = std::fs::read_dir(&registry).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); the {crate_dir} sources are needed for the SigV4 test vectors",
            registry.display()
        )
    });
    for entry in entries.flatten() {
        let dir = entry
            .path()
            .join(&crate_dir)
            .join("aws-signing-test-suite")
            .join("v4");
        if dir.is_dir() {
            return dir;
        }
    }
    panic!(
        "SigV4 test vectors not found: no {}/*/{crate_dir}/aws-signing-test-suite/v4 \
         (the version Cargo.lock pins; run `cargo fetch` so its sources are in the registry)",
        registry.display()
    );
}

/// A request parsed from a suite `.txt` file.
struct TxtRequest {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl TxtRequest {
    fn as_received(&self) -> ReceivedRequest<'_> {
        ReceivedRequest {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// Parse `METHOD target HTTP/1.1`, `Name:value` lines (indented lines continue
/// the previous value), a blank line and the body. The target may contain spaces.
fn parse_request(text: &str) -> TxtRequest {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().expect("request line");
    let (method, rest) = request_line.split_once(' ').expect("method");
    let (target, _version) = rest.rsplit_once(' ').expect("HTTP version");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut().expect("continuation after a header");
            last.1.push('\n');
            last.1.push_str(line);
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.to_owned(), v.to_owned()));
        }
    }
    TxtRequest {
        method: method.to_owned(),
        path,
        query,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

fn time(amz: &str) -> SystemTime {
    sigv4::parse_amz_date(amz).unwrap_or_else(|| panic!("bad date {amz}"))
}

/// Runs one vector that has a `context.json`; returns a failure description.
fn run_context_vector(dir: &Path) -> Result<(), String> {
    let ctx: serde_json::Value =
        serde_json::from_str(&read(dir, "context.json")).map_err(|e| e.to_string())?;
    let c = &ctx["credentials"];
    let creds = Creds {
        access_key: c["access_key_id"].as_str().unwrap_or_default().to_owned(),
        secret: c["secret_access_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        token: c["token"].as_str().map(str::to_owned),
    };
    let region = ctx["region"].as_str().unwrap_or_default();
    let service = ctx["service"].as_str().unwrap_or_default();
    let omit_token = ctx["omit_session_token"].as_bool().unwrap_or(false);
    let options = CanonicalOptions {
        normalize_path: ctx["normalize"].as_bool().unwrap_or(true),
        double_encode: false,
    };
    let amz = ctx["timestamp"]
        .as_str()
        .unwrap_or_default()
        .replace(['-', ':'], "");
    let now = time(&amz);

    // Sign request.txt and compare every intermediate artefact.
    let req = parse_request(&read(dir, "request.txt"));
    let params = SigningParams {
        content_sha256: ctx["sign_body"].as_bool().unwrap_or(false),
        sign_token: !omit_token,
        options,
        ..SigningParams::new(&creds, service, region, now)
    };
    let out = sigv4::sign(&req.as_received(), &params);
    let mut errors = Vec::new();
    for (what, ours, file) in [
        (
            "canonical request",
            &out.canonical_request,
            "header-canonical-request.txt",
        ),
        (
            "string to sign",
            &out.string_to_sign,
            "header-string-to-sign.txt",
        ),
        ("signature", &out.signature, "header-signature.txt"),
    ] {
        let expected = read(dir, file);
        if ours.trim_end() != expected.trim_end() {
            errors.push(format!(
                "{what}:\n--- ours\n{ours}\n--- expected\n{expected}"
            ));
        }
    }

    // Verify the suite's signed request as the server would.
    let signed = parse_request(&read(dir, "header-signed-request.txt"));
    let vctx = VerifyContext {
        require_signed_content_sha256: false,
        options,
        ..VerifyContext::new(std::slice::from_ref(&creds), service, region, now)
    };
    let result = sigv4::verify_with(&signed.as_received(), &vctx);
    match (omit_token, result) {
        (false, Ok(v)) if v.signature != out.signature => {
            errors.push("verifier accepted a different signature".into())
        }
        (false, Ok(_)) => {}
        (false, Err(e)) => errors.push(format!("verifier rejected the signed request: {e}")),
        // The token was added after signing; we (like AWS for es) insist it is signed.
        (true, Err(e)) if e.kind() == SigErrorKind::InvalidToken => {}
        (true, other) => errors.push(format!(
            "unsigned session token should be rejected, got {other:?}"
        )),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

#[test]
fn official_v4_vectors_with_context() {
    let root = suite_dir();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .expect("read suite dir")
        .flatten()
        .filter(|e| e.path().join("context.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 30,
        "expected the full v4 suite in {}, found {} vectors",
        root.display(),
        names.len()
    );
    let failures: Vec<String> = names
        .iter()
        .filter_map(|n| {
            run_context_vector(&root.join(n))
                .err()
                .map(|e| format!("### {n}\n{e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
    eprintln!("{} v4 vectors passed: {}", names.len(), names.join(", "));
}

#[test]
fn double_url_encode_vector() {
    let dir = suite_dir().join("double-url-encode");
    let req = parse_request(&read(&dir, "request.txt"));
    let creds = Creds::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    let params = SigningParams::new(&creds, "lambda", "us-east-2", time("20210511T154045Z"));
    let out = sigv4::sign(&req.as_received(), &params);
    assert_eq!(
        out.canonical_request,
        read(&dir, "header-canonical-request.txt").trim_end()
    );
    assert_eq!(
        out.string_to_sign,
        read(&dir, "header-string-to-sign.txt").trim_end()
    );
}

#[test]
fn double_encode_path_vector() {
    let dir = suite_dir().join("double-encode-path");
    // Canonical request, as aws-sigv4's own test produces it (time 20210511T154045Z).
    let req = parse_request(&read(&dir, "request.txt"));
    let creds = Creds::new("ANOTREAL", "notrealrnrELgWzOk3IfjzDKtFBhDby");
    let params = SigningParams::new(&creds, "service", "us-east-1", time("20210511T154045Z"));
    let out = sigv4::sign(&req.as_received(), &params);
    assert_eq!(
        out.canonical_request,
        read(&dir, "header-canonical-request.txt").trim_end()
    );
    // The signed request (signed at 20150830T123600Z) verifies with double encoding.
    let signed = parse_request(&read(&dir, "header-signed-request.txt"));
    let v = sigv4::verify(
        &signed.as_received(),
        std::slice::from_ref(&creds),
        "service",
        "us-east-1",
        time("20150830T123600Z"),
    )
    .expect("double-encoded signed request verifies");
    assert_eq!(
        v.signature,
        "57d157672191bac40bae387e48bbe14b15303c001fdbb01f4abf295dccb09705"
    );
    assert!(v
        .canonical_request
        .contains("\n/test/%40connections/JBDvjfGEIAMCERw%253D\n"));
}

#[test]
fn non_s3_canonical_uri_rules() {
    let o = CanonicalOptions::NON_S3;
    assert_eq!(sigv4::canonical_uri("", o), "/");
    assert_eq!(sigv4::canonical_uri("/", o), "/");
    assert_eq!(sigv4::canonical_uri("/a/./b/../c", o), "/a/c");
    assert_eq!(sigv4::canonical_uri("//a//b//", o), "/a/b/");
    assert_eq!(sigv4::canonical_uri("/a/..", o), "/");
    assert_eq!(sigv4::canonical_uri("/a/b/..", o), "/a/");
    assert_eq!(
        sigv4::canonical_uri("/idx/_doc/a%2Fb", o),
        "/idx/_doc/a%252Fb"
    );
    assert_eq!(
        sigv4::canonical_uri("/_cat/indices/*", o),
        "/_cat/indices/%2A"
    );
    assert_eq!(sigv4::canonical_uri("/a+b:c", o), "/a%2Bb%3Ac");
    assert_eq!(sigv4::canonical_uri("/caf%C3%A9", o), "/caf%25C3%25A9");
    assert_eq!(sigv4::canonical_uri("/-._~", o), "/-._~");
}

#[test]
fn canonical_query_rules() {
    let q = |s| sigv4::canonical_query(Some(s));
    assert_eq!(sigv4::canonical_query(None), "");
    assert_eq!(q(""), "");
    assert_eq!(q("b=2&a=1"), "a=1&b=2");
    assert_eq!(q("pretty"), "pretty=");
    assert_eq!(q("pretty&v="), "pretty=&v=");
    assert_eq!(q("a=2&a=1&a=10"), "a=1&a=10&a=2");
    assert_eq!(q("q=a+b"), "q=a%20b");
    assert_eq!(q("q=a%20b"), "q=a%20b");
    assert_eq!(q("q=a%2Bb"), "q=a%2Bb");
    assert_eq!(q("q=title:x*"), "q=title%3Ax%2A");
    assert_eq!(q("f=a,b&s=x%2fy"), "f=a%2Cb&s=x%2Fy");
    assert_eq!(q("a&&b=1"), "a=&b=1");
    assert_eq!(q("bad=%zz"), "bad=%25zz");
    assert_eq!(q("t=%E1%88%B4"), "t=%E1%88%B4");
}

#[test]
fn header_value_canonicalisation() {
    assert_eq!(sigv4::canonical_header_value("  a   b \t c  "), "a b c");
    let headers = vec![
        ("X-A".to_owned(), " 1 ".to_owned()),
        ("host".to_owned(), "h".to_owned()),
        ("x-a".to_owned(), "2".to_owned()),
    ];
    assert_eq!(
        sigv4::canonical_headers(&headers, &["host".into(), "x-a".into()]),
        "host:h\nx-a:1,2\n"
    );
}

#[test]
fn dates_round_trip() {
    for s in [
        "19700101T000000Z",
        "20150830T123600Z",
        "20000229T235959Z",
        "20261122T001500Z",
    ] {
        assert_eq!(sigv4::format_amz_date(time(s)), s);
    }
    assert!(sigv4::parse_amz_date("2015-08-30T12:36:00Z").is_none());
    assert!(sigv4::parse_amz_date("20151330T123600Z").is_none());
    assert_eq!(
        sigv4::format_http_date(time("19941106T084937Z")),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
}

/// `GET /_cluster/health` with `headers` and no body.
fn health(headers: &[(String, String)]) -> ReceivedRequest<'_> {
    ReceivedRequest {
        method: "GET",
        raw_path: "/_cluster/health",
        raw_query: None,
        headers,
        body: b"",
    }
}

/// A request signed at `t` for es/us-east-1 with `creds`.
fn es_request(creds: &Creds, t: SystemTime) -> Vec<(String, String)> {
    let headers = vec![(
        "host".to_owned(),
        "search-x.us-east-1.es.amazonaws.com".to_owned(),
    )];
    let out = sigv4::sign(
        &health(&headers),
        &SigningParams::new(creds, "es", "us-east-1", t),
    );
    out.apply(&headers)
}

fn verify_es(headers: &[(String, String)], creds: &[Creds], now: SystemTime) -> sigv4::SigError {
    sigv4::verify(&health(headers), creds, "es", "us-east-1", now).expect_err("should be rejected")
}

#[test]
fn clock_window_messages() {
    let creds = Creds::new("AKID", "secret");
    let signed_at = time("20261122T000000Z");
    let headers = es_request(&creds, signed_at);
    let e = verify_es(
        &headers,
        std::slice::from_ref(&creds),
        time("20261122T001500Z"),
    );
    assert_eq!(
        e.aws_body("es", "rid"),
        r#"{"message":"Signature expired: 20261122T000000Z is now earlier than 20261122T001000Z (20261122T001500Z - 5 min.)"}"#
    );
    let e = verify_es(
        &headers,
        std::slice::from_ref(&creds),
        time("20261121T235000Z"),
    );
    assert_eq!(
        e.message(),
        "Signature not yet current: 20261122T000000Z is still later than 20261121T235500Z (20261121T235000Z + 5 min.)"
    );
    // Exactly five minutes either way is still accepted.
    let req = health(&headers);
    for now in ["20261122T000500Z", "20261121T235500Z"] {
        sigv4::verify(
            &req,
            std::slice::from_ref(&creds),
            "es",
            "us-east-1",
            time(now),
        )
        .unwrap_or_else(|e| panic!("{now}: {e}"));
    }
}

#[test]
fn scope_and_key_errors() {
    let creds = Creds::new("AKID", "secret");
    let t = time("20261122T000000Z");
    let headers = es_request(&creds, t);
    let e = verify_es(&headers, &[Creds::new("OTHER", "secret")], t);
    assert_eq!(e.kind(), SigErrorKind::UnknownKey);
    assert_eq!(
        e.aws_body("es", "rid"),
        r#"{"message":"The security token included in the request is invalid."}"#
    );
    let req = health(&headers);
    let e = sigv4::verify(&req, std::slice::from_ref(&creds), "es", "eu-west-1", t).unwrap_err();
    assert_eq!(e.kind(), SigErrorKind::WrongScope);
    let e = sigv4::verify(&req, std::slice::from_ref(&creds), "aoss", "us-east-1", t).unwrap_err();
    assert_eq!(e.kind(), SigErrorKind::WrongScope);
    let e = verify_es(&headers, &[Creds::new("AKID", "wrong")], t);
    assert_eq!(e.kind(), SigErrorKind::SignatureMismatch);
    let body = e.aws_body("es", "rid");
    assert!(body.starts_with(r#"{"message":"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'GET\n/_cluster/health\n\nhost:"#), "{body}");
    assert!(body.ends_with(r#"'\n"}"#), "{body}");
    let aoss: serde_json::Value = serde_json::from_str(&e.aws_body("aoss", "rid-1")).unwrap();
    assert_eq!(
        aoss,
        serde_json::json!({"status":403,"request-id":"rid-1","error":{"reason":"403 Forbidden","type":"Forbidden"}})
    );
}

#[test]
fn session_token_rules() {
    let creds = Creds::with_token("ASIA1", "secret", "tok");
    let t = time("20261122T000000Z");
    let headers = es_request(&creds, t);
    assert!(sigv4::verify(
        &health(&headers),
        std::slice::from_ref(&creds),
        "es",
        "us-east-1",
        t
    )
    .is_ok());

    // Expired token.
    let expired = ["tok".to_owned()];
    let ctx = VerifyContext {
        expired_tokens: &expired,
        ..VerifyContext::new(std::slice::from_ref(&creds), "es", "us-east-1", t)
    };
    let e = sigv4::verify_with(&health(&headers), &ctx).unwrap_err();
    assert_eq!(
        e.aws_body("es", "rid"),
        r#"{"message":"The security token included in the request is expired"}"#
    );

    // Token that does not belong to the key.
    let other = [Creds::with_token("ASIA1", "secret", "other")];
    let e = sigv4::verify(&health(&headers), &other, "es", "us-east-1", t).unwrap_err();
    assert_eq!(e.kind(), SigErrorKind::InvalidToken);

    // Token sent but not signed.
    let params = SigningParams {
        sign_token: false,
        ..SigningParams::new(&creds, "es", "us-east-1", t)
    };
    let base = vec![(
        "host".to_owned(),
        "search-x.us-east-1.es.amazonaws.com".to_owned(),
    )];
    let unsigned_tok = sigv4::sign(&health(&base), &params).apply(&base);
    let e = sigv4::verify(
        &health(&unsigned_tok),
        std::slice::from_ref(&creds),
        "es",
        "us-east-1",
        t,
    )
    .unwrap_err();
    assert_eq!(e.kind(), SigErrorKind::InvalidToken);
}
