//! Proves the judge works: requests hand-signed with the test suite's own SigV4
//! signer are accepted by `TestUpstream`, and every kind of tampering — or the
//! classic proxy mistakes of signing `Connection` / `X-Forwarded-For`, or
//! omitting the signed content hash for `aoss` — is rejected with the AWS-style
//! answer. Also exercises the canned replies, connection accounting and
//! robustness against garbage.

use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{connect_tls, signed_headers_with};
use crate::support::sigv4::{self, SigErrorKind, SigningParams};
use crate::support::upstream::generated_byte;
use crate::support::{Alpn, Creds, DirectConnection, DirectResponse, Reply, TestUpstream};

fn creds() -> Creds {
    Creds::new("AKIDTESTUPSTREAM", "test/secret+key")
}

fn temp_creds() -> Creds {
    Creds::with_token("ASIATESTUPSTREAM", "temp/secret", "session-token-1")
}

async fn es() -> TestUpstream {
    TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .start()
        .await
}

async fn connect(up: &TestUpstream, alpn: Alpn) -> DirectConnection {
    DirectConnection::connect(up.addr(), up.pki().client_config(alpn), up.host_name())
        .await
        .expect("connect to upstream")
}

/// Sign `method target` for `up` with `params`-style defaults and extra headers.
fn sign_for(
    up: &TestUpstream,
    c: &Creds,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let params = SigningParams::new(c, up.service(), up.region(), SystemTime::now());
    signed_headers_with(up.host_name(), method, target, headers, body, &params)
}

/// Sign and send in one go on a fresh connection.
async fn send_signed(
    up: &TestUpstream,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> DirectResponse {
    let h = sign_for(up, &creds(), method, target, headers, body);
    connect(up, Alpn::H2AndHttp11)
        .await
        .send(method, target, &h, body.to_vec())
        .await
        .expect("request")
}

fn set(headers: &mut [(String, String)], name: &str, value: &str) {
    let h = headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no header {name}"));
    h.1 = value.to_owned();
}

fn assert_mismatch(resp: &DirectResponse) {
    assert_eq!(resp.status, 403, "{}", resp.body_str());
    let msg = resp.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.starts_with("The request signature we calculated does not match"),
        "{msg}"
    );
    assert!(
        msg.contains("The Canonical String for this request should have been"),
        "{msg}"
    );
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("InvalidSignatureException")
    );
}

#[tokio::test]
async fn signed_get_is_accepted_over_h2_and_http1() {
    let up = es().await;
    for (alpn, proto, version) in [
        (Alpn::H2AndHttp11, "h2", http::Version::HTTP_2),
        (Alpn::Http11Only, "http/1.1", http::Version::HTTP_11),
    ] {
        let target = "/_cluster/health?pretty&level=indices";
        let h = sign_for(&up, &creds(), "GET", target, &[], b"");
        let mut conn = connect(&up, alpn).await;
        assert_eq!(conn.alpn.as_deref(), Some(proto));
        let resp = conn.send("GET", target, &h, "").await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.body_str());
        assert_eq!(resp.version, version);
        assert!(resp.header("date").is_some_and(|d| d.ends_with(" GMT")));
        let echo = resp.json();
        assert_eq!(echo["method"], "GET");
        assert_eq!(echo["path"], "/_cluster/health");
        assert_eq!(echo["query"], "pretty&level=indices");
        assert_eq!(echo["headers"]["host"], up.host_name());

        let rec = up.last_request().unwrap();
        assert!(rec.verified(), "{:?}", rec.verification);
        assert_eq!(rec.alpn.as_deref(), Some(proto));
        assert_eq!(rec.sni.as_deref(), Some(up.host_name()));
        assert_eq!(rec.version, version);
    }
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn odd_paths_and_queries_verify_with_double_encoding() {
    let up = es().await;
    for target in [
        "/my-index/_doc/a%2Fb",
        "/_cat/indices/logs-*?v&h=index,health",
        "/idx/_search?q=title:foo+bar&sort=a%3Adesc",
        "/idx//_doc/./x/../caf%C3%A9?",
        "/idx/_doc/1?routing=%E1%88%B4&refresh=wait_for",
    ] {
        let resp = send_signed(&up, "GET", target, &[], b"").await;
        assert_eq!(resp.status, 200, "{target}: {}", resp.body_str());
    }
}

#[tokio::test]
async fn signed_post_body_is_hashed_and_recorded() {
    let up = es().await;
    let body = br#"{"query":{"match_all":{}}}"#;
    let resp = send_signed(
        &up,
        "POST",
        "/idx/_search",
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    let echo = resp.json();
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["body_sha256"], sigv4::sha256_hex(body));
    let rec = up.last_request().unwrap();
    assert_eq!(&rec.body[..], body);
}

#[tokio::test]
async fn tampering_is_rejected() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;
    let body = br#"{"a":1}"#;
    let h = sign_for(
        &up,
        &creds(),
        "PUT",
        "/idx/_doc/1?refresh=true",
        &[("content-type", "application/json"), ("x-opaque-id", "abc")],
        body,
    );
    let ok = conn
        .send("PUT", "/idx/_doc/1?refresh=true", &h, body.to_vec())
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body_str());

    // Path, query, body, signed header value.
    for (target, body2) in [
        ("/idx/_doc/2?refresh=true", &body[..]),
        ("/idx/_doc/1?refresh=false", &body[..]),
        ("/idx/_doc/1?refresh=true", &br#"{"a":2}"#[..]),
    ] {
        let resp = conn.send("PUT", target, &h, body2.to_vec()).await.unwrap();
        assert_mismatch(&resp);
    }
    let mut h2 = h.clone();
    set(&mut h2, "x-opaque-id", "abd");
    let resp = conn
        .send("PUT", "/idx/_doc/1?refresh=true", &h2, body.to_vec())
        .await
        .unwrap();
    assert_mismatch(&resp);
    let rec = up.last_request().unwrap();
    match rec.verification {
        Err(sigv4::SigError::SignatureMismatch {
            canonical_request, ..
        }) => assert!(canonical_request.contains("x-opaque-id:abd\n")),
        other => panic!("{other:?}"),
    }

    // Date moved (still inside the window): mismatch. Outside the window: expired.
    let mut h3 = h.clone();
    let moved = sigv4::format_amz_date(SystemTime::now() - Duration::from_secs(60));
    set(&mut h3, "x-amz-date", &moved);
    let resp = conn
        .send("PUT", "/idx/_doc/1?refresh=true", &h3, body.to_vec())
        .await
        .unwrap();
    assert_mismatch(&resp);
}

#[tokio::test]
async fn stale_and_future_signatures_get_the_aws_clock_messages() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;
    for (shift_back, prefix) in [
        (true, "Signature expired: "),
        (false, "Signature not yet current: "),
    ] {
        let t = if shift_back {
            SystemTime::now() - Duration::from_secs(600)
        } else {
            SystemTime::now() + Duration::from_secs(600)
        };
        let c = creds();
        let params = SigningParams::new(&c, "es", "us-east-1", t);
        let h = signed_headers_with(up.host_name(), "GET", "/", &[], b"", &params);
        let resp = conn.send("GET", "/", &h, "").await.unwrap();
        assert_eq!(resp.status, 403);
        let msg = resp.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.starts_with(prefix), "{msg}");
        assert!(msg.contains(&sigv4::format_amz_date(t)), "{msg}");
    }
}

#[tokio::test]
async fn clock_offset_shifts_window_and_date_header() {
    let up = es().await;
    up.set_clock_offset(Duration::from_secs(3600));
    let resp = send_signed(&up, "GET", "/", &[], b"").await;
    assert_eq!(resp.status, 403);
    assert!(resp.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired"));
    let expected_date = sigv4::format_http_date(up.now());
    // Compare date and hour only, so a second ticking over cannot flake this.
    assert_eq!(
        resp.header("date").unwrap()[..20],
        expected_date[..20],
        "Date header follows the upstream clock"
    );
    up.set_clock_offset_secs(0);
    assert_eq!(send_signed(&up, "GET", "/", &[], b"").await.status, 200);
}

#[tokio::test]
async fn credentials_rotation_and_tokens() {
    let up = TestUpstream::builder()
        .creds(creds())
        .creds(temp_creds())
        .start()
        .await;
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;

    let h = sign_for(&up, &temp_creds(), "GET", "/", &[], b"");
    assert_eq!(conn.send("GET", "/", &h, "").await.unwrap().status, 200);
    let mut wrong = h.clone();
    set(&mut wrong, "x-amz-security-token", "session-token-2");
    let resp = conn.send("GET", "/", &wrong, "").await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body_str(),
        r#"{"message":"The security token included in the request is invalid."}"#
    );
    up.expire_token("session-token-1");
    let resp = conn.send("GET", "/", &h, "").await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body_str(),
        r#"{"message":"The security token included in the request is expired"}"#
    );
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("ExpiredTokenException")
    );

    // Rotation: the old long-term key stops working, the new one works.
    let new = Creds::new("AKIDROTATED", "rotated-secret");
    up.rotate_creds(new.clone());
    let old = sign_for(&up, &creds(), "GET", "/", &[], b"");
    let resp = conn.send("GET", "/", &old, "").await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        up.last_request().unwrap().verification.unwrap_err().kind(),
        SigErrorKind::UnknownKey
    );
    let fresh = sign_for(&up, &new, "GET", "/", &[], b"");
    assert_eq!(conn.send("GET", "/", &fresh, "").await.unwrap().status, 200);
}

#[tokio::test]
async fn signed_connection_header_fails_because_the_front_end_drops_it() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::Http11Only).await;
    let h = sign_for(
        &up,
        &creds(),
        "GET",
        "/",
        &[("connection", "keep-alive")],
        b"",
    );
    let resp = conn.send("GET", "/", &h, "").await.unwrap();
    assert_mismatch(&resp);
    let rec = up.last_request().unwrap();
    assert_eq!(rec.header("connection"), Some("keep-alive"));
    assert!(sigv4::header(&rec.frontend_headers, "connection").is_none());

    // Unsigned Connection header is harmless.
    let mut h = sign_for(&up, &creds(), "GET", "/", &[], b"");
    h.push(("connection".into(), "keep-alive".into()));
    assert_eq!(conn.send("GET", "/", &h, "").await.unwrap().status, 200);
}

#[tokio::test]
async fn signed_x_forwarded_for_fails_because_the_front_end_appends() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;
    let h = sign_for(
        &up,
        &creds(),
        "GET",
        "/",
        &[("x-forwarded-for", "10.0.0.1")],
        b"",
    );
    assert_mismatch(&conn.send("GET", "/", &h, "").await.unwrap());

    let mut h = sign_for(&up, &creds(), "GET", "/", &[], b"");
    h.push(("x-forwarded-for".into(), "10.0.0.1".into()));
    assert_eq!(conn.send("GET", "/", &h, "").await.unwrap().status, 200);
    let rec = up.last_request().unwrap();
    assert_eq!(
        sigv4::header(&rec.frontend_headers, "x-forwarded-for"),
        Some("10.0.0.1, 127.0.0.1")
    );
}

#[tokio::test]
async fn aoss_requires_a_signed_content_hash() {
    let up = TestUpstream::builder()
        .service("aoss")
        .region("eu-west-1")
        .creds(creds())
        .start()
        .await;
    assert!(up.host_name().ends_with(".eu-west-1.aoss.amazonaws.com"));
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;
    let body = br#"{"size":0}"#;

    // Default aoss signing includes x-amz-content-sha256: accepted.
    let h = sign_for(&up, &creds(), "POST", "/idx/_search", &[], body);
    assert!(sigv4::header(&h, "x-amz-content-sha256").is_some());
    let resp = conn
        .send("POST", "/idx/_search", &h, body.to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());

    // Without the header, and with it present but unsigned: 400.
    let c = creds();
    let no_hash = SigningParams {
        content_sha256: false,
        ..SigningParams::new(&c, "aoss", "eu-west-1", SystemTime::now())
    };
    let h = signed_headers_with(up.host_name(), "POST", "/idx/_search", &[], body, &no_hash);
    let mut unsigned = h.clone();
    unsigned.push(("x-amz-content-sha256".into(), sigv4::sha256_hex(body)));
    for h in [h, unsigned] {
        let resp = conn
            .send("POST", "/idx/_search", &h, body.to_vec())
            .await
            .unwrap();
        assert_eq!(resp.status, 400);
        assert_eq!(
            resp.body_str(),
            r#"{"message":"x-amz-content-sha256 header must be signed in SigV4"}"#
        );
    }

    // Wrong secret: aoss's generic 403 body.
    let bad = Creds::new("AKIDTESTUPSTREAM", "wrong");
    let h = sign_for(&up, &bad, "GET", "/", &[], b"");
    let resp = conn.send("GET", "/", &h, "").await.unwrap();
    assert_eq!(resp.status, 403);
    let v = resp.json();
    assert_eq!(v["status"], 403);
    assert_eq!(v["error"]["type"], "Forbidden");
    assert!(v["request-id"].as_str().is_some_and(|s| s.len() == 36));

    // Hash present and signed, but the body differs: 400.
    let h = sign_for(&up, &creds(), "POST", "/idx/_search", &[], body);
    let resp = conn
        .send("POST", "/idx/_search", &h, b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(
        up.last_request().unwrap().verification.unwrap_err().kind(),
        SigErrorKind::PayloadHashMismatch
    );
}

#[tokio::test]
async fn unsigned_and_misdirected_requests_are_rejected() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::H2AndHttp11).await;
    let host = vec![("host".to_owned(), up.host_name().to_owned())];
    let resp = conn.send("GET", "/", &host, "").await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body_str(),
        r#"{"message":"Missing Authentication Token"}"#
    );

    // Correctly signed, but for another host.
    let c = creds();
    let params = SigningParams::new(&c, "es", "us-east-1", SystemTime::now());
    let h = signed_headers_with("localhost:9200", "GET", "/", &[], b"", &params);
    let resp = conn.send("GET", "/", &h, "").await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        up.last_request().unwrap().verification.unwrap_err().kind(),
        SigErrorKind::WrongHost
    );
}

#[tokio::test]
async fn canned_replies() {
    let up = es().await;
    up.add_route(
        "GET",
        "/redirect",
        Reply::redirect(307, "https://elsewhere.example/"),
    );
    up.add_route(
        "GET",
        "/cookie",
        Reply::text(200, "ok").set_cookie("AWSALB=abc; Path=/"),
    );
    up.add_route("GET", "/big", Reply::streamed(1_000_003));
    up.add_route(
        "GET",
        "/slow",
        Reply::status(204).stall(Duration::from_millis(200)),
    );
    up.add_route("GET", "/close", Reply::close_connection());
    up.add_route(
        "GET",
        "/gzip",
        Reply::json(200, &serde_json::json!({"ok": true})).gzipped(),
    );

    let resp = send_signed(&up, "GET", "/redirect", &[], b"").await;
    assert_eq!(
        (resp.status, resp.header("location")),
        (307, Some("https://elsewhere.example/"))
    );
    let resp = send_signed(&up, "GET", "/cookie", &[], b"").await;
    assert_eq!(resp.header("set-cookie"), Some("AWSALB=abc; Path=/"));

    let resp = send_signed(&up, "GET", "/big", &[], b"").await;
    assert_eq!(resp.body.len(), 1_000_003);
    assert!(resp
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == generated_byte(i as u64)));

    let started = Instant::now();
    let resp = send_signed(&up, "GET", "/slow", &[], b"").await;
    assert_eq!(resp.status, 204);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let resp = send_signed(&up, "GET", "/gzip", &[], b"").await;
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&resp.body[..]),
        &mut plain,
    )
    .unwrap();
    assert_eq!(plain, r#"{"ok":true}"#);

    for alpn in [Alpn::H2AndHttp11, Alpn::Http11Only] {
        let h = sign_for(&up, &creds(), "GET", "/close", &[], b"");
        let mut conn = connect(&up, alpn).await;
        assert!(conn.send("GET", "/close", &h, "").await.is_err());
    }

    // Handler replacement.
    up.set_handler(|r| Reply::text(418, format!("teapot {}", r.raw_path)));
    let resp = send_signed(&up, "GET", "/x", &[], b"").await;
    assert_eq!(
        (resp.status, resp.body_str()),
        (418, "teapot /x".to_owned())
    );
}

#[tokio::test]
async fn connections_and_handshakes_are_counted() {
    let up = es().await;
    let mut conn = connect(&up, Alpn::Http11Only).await;
    for _ in 0..3 {
        let h = sign_for(&up, &creds(), "GET", "/", &[], b"");
        assert_eq!(conn.send("GET", "/", &h, "").await.unwrap().status, 200);
    }
    let mut conn2 = connect(&up, Alpn::H2AndHttp11).await;
    let h = sign_for(&up, &creds(), "GET", "/", &[], b"");
    assert_eq!(conn2.send("GET", "/", &h, "").await.unwrap().status, 200);

    let seen = up.wait_for_requests(4, Duration::from_secs(1)).await;
    let ids: Vec<u64> = seen.iter().map(|r| r.connection_id).collect();
    assert_eq!(ids, vec![0, 0, 0, 1]);
    assert_eq!(up.connections_accepted(), 2);
    assert_eq!(up.tls_handshakes(), 2);
}

#[tokio::test]
async fn http1_only_upstream_refuses_h2() {
    let up = TestUpstream::builder()
        .creds(creds())
        .http1_only()
        .start()
        .await;
    let conn = connect(&up, Alpn::H2AndHttp11).await;
    assert_eq!(conn.alpn.as_deref(), Some("http/1.1"));
}

#[tokio::test]
async fn garbage_does_not_hurt_the_server() {
    let up = es().await;

    // Plain TCP that closes at once, and plaintext HTTP on the TLS port.
    drop(tokio::net::TcpStream::connect(up.addr()).await.unwrap());
    let mut plain = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(1), plain.read(&mut buf)).await;

    // Garbage after a good TLS handshake.
    let mut tls = connect_tls(
        up.addr(),
        up.pki().client_config(Alpn::Http11Only),
        up.host_name(),
    )
    .await
    .unwrap();
    tls.write_all(b"\x00\x01NOT HTTP AT ALL\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.read_to_end(&mut out)).await;
    let head = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || head.starts_with("HTTP/1.1 400"), "{head}");

    // Non-UTF-8 header bytes: answered (unsigned, so 403), not a crash.
    let mut tls = connect_tls(
        up.addr(),
        up.pki().client_config(Alpn::Http11Only),
        up.host_name(),
    )
    .await
    .unwrap();
    let mut raw = format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Bin: ", up.host_name()).into_bytes();
    raw.extend_from_slice(&[0xff, 0xfe, 0x80]);
    raw.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    tls.write_all(&raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        up.last_request().unwrap().header("x-bin"),
        Some("\u{fffd}\u{fffd}\u{fffd}")
    );

    // A bogus Authorization header.
    let mut conn = connect(&up, Alpn::Http11Only).await;
    let resp = conn
        .send(
            "GET",
            "/",
            &[
                ("host".into(), up.host_name().into()),
                ("authorization".into(), "AWS4-HMAC-SHA256 nonsense".into()),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        up.last_request().unwrap().verification.unwrap_err().kind(),
        SigErrorKind::IncompleteSignature
    );

    // Still serving.
    assert_eq!(send_signed(&up, "GET", "/", &[], b"").await.status, 200);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let up = TestUpstream::builder()
        .creds(creds())
        .max_body(1024)
        .start()
        .await;
    let body = vec![b'x'; 2048];
    let resp = send_signed(&up, "POST", "/idx/_bulk", &[], &body).await;
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.body_str(),
        r#"{"Message":"Request size exceeded 1024 bytes"}"#
    );
    assert_eq!(
        send_signed(&up, "POST", "/idx/_bulk", &[], &body[..1024])
            .await
            .status,
        200
    );
}
