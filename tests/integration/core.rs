//! The core promise: every request reaches the endpoint signed exactly as it was sent — odd
//! paths and queries, every method, every kind of body — and every answer comes back untouched.
//! The judge is `TestUpstream`, which verifies signatures with its own SigV4 implementation
//! after doing what the AWS front end does (drop `Connection`, append to `X-Forwarded-For`).

use std::time::Duration;

use bytes::Bytes;

use crate::support::http::{
    connection, get, raw, response_head, send, start_upload, Resp, GZIP_NDJSON,
};
use crate::support::{Creds, Gate, Reply, TestProxy, TestUpstream};

fn creds() -> Creds {
    Creds::with_token("ASIACORETEST", "core/secret+key", "core-session-token")
}

async fn upstream(service: &str) -> TestUpstream {
    TestUpstream::start_for(service, creds()).await
}

async fn pair(service: &str, extra: &[&str]) -> (TestUpstream, TestProxy) {
    let up = upstream(service).await;
    let proxy = TestProxy::start(&up, &creds(), extra).await;
    (up, proxy)
}

fn assert_ok_and_verified(resp: &Resp, up: &TestUpstream) {
    assert_eq!(resp.status, 200, "proxy answered: {}", resp.text());
    let rec = up.last_request().expect("upstream saw the request");
    assert!(rec.verified(), "signature rejected: {:?}", rec.verification);
}

/// (path sent by the client, query sent, query expected on the wire)
const TARGETS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("/", None, None),
    ("/_cat/indices", Some("v"), Some("v")),
    (
        "/_cat/indices",
        Some("v&s=index&h=index,health"),
        Some("v&s=index&h=index%2Chealth"),
    ),
    (
        "/logs-*/_search",
        Some("q=level:error"),
        Some("q=level%3Aerror"),
    ),
    ("/logs-2026.11.*,metrics-*/_search", None, None),
    ("/a,b,c/_count", Some("q=a+b"), Some("q=a%20b")),
    ("/idx/_search", Some("q=a%2Bb"), Some("q=a%2Bb")),
    (
        "/idx/_search",
        Some("q=%22exact%20phrase%22&size=0"),
        Some("q=%22exact%20phrase%22&size=0"),
    ),
    ("/idx/_search", Some("x=1&x=2&x="), Some("x=1&x=2&x=")),
    (
        "/idx/_search",
        Some("q=*&sort=@timestamp:desc"),
        Some("q=%2A&sort=%40timestamp%3Adesc"),
    ),
    (
        "/idx/_search",
        Some("filter_path=hits.hits._source&pretty"),
        Some("filter_path=hits.hits._source&pretty"),
    ),
    (
        "/idx/_search",
        Some("q=caf%C3%A9%E2%9C%93"),
        Some("q=caf%C3%A9%E2%9C%93"),
    ),
    (
        "/idx/_search",
        Some("q=a!$'()*;b"),
        Some("q=a%21%24%27%28%29%2A%3Bb"),
    ),
    ("/%3Clogs-%7Bnow%2Fd%7D%3E/_search", None, None),
    (
        "/%3Clogs-%7Bnow%2Fd%7Byyyy.MM.dd%7C%2B12:00%7D%7D%3E/_search",
        None,
        None,
    ),
    ("/idx:colon/_doc/1", None, None),
    ("/idx/_doc/a%2Fb", None, None),
    ("/idx/_doc/with%20space", None, None),
    ("/idx/_doc/plus+sign", None, None),
    ("/idx/_doc/caf%C3%A9", None, None),
    ("/idx/_doc/%E2%9C%93", None, None),
    ("/idx//_doc//double-slash", None, None),
    ("/idx/_doc/dot./x", None, None),
    ("/idx/_doc/~tilde_under-score", None, None),
    ("/idx/_doc/%25percent", None, None),
    ("/_plugin/kibana/", Some("a=%26&b=%3D"), Some("a=%26&b=%3D")),
];

async fn every_target_is_signed_as_sent(service: &str) {
    let (up, proxy) = pair(service, &[]).await;
    for (path, query, wire_query) in TARGETS {
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let resp = get(proxy.addr(), &target).await;
        assert_eq!(resp.status, 200, "{service} {target}: {}", resp.text());
        let rec = up.last_request().unwrap();
        assert!(rec.verified(), "{service} {target}: {:?}", rec.verification);
        assert_eq!(
            rec.raw_path, *path,
            "{service}: path must go upstream byte for byte"
        );
        assert_eq!(
            rec.raw_query.as_deref(),
            *wire_query,
            "{service} {target}: query on the wire"
        );
        assert_eq!(
            rec.sni.as_deref(),
            Some(up.host_name()),
            "SNI is the endpoint's name, not --connect-to's"
        );
        assert_eq!(rec.header("host"), Some(up.host_name()));
    }
}

#[tokio::test]
async fn es_paths_and_queries_are_signed_as_sent() {
    every_target_is_signed_as_sent("es").await;
}

#[tokio::test]
async fn aoss_paths_and_queries_are_signed_as_sent() {
    every_target_is_signed_as_sent("aoss").await;
}

#[tokio::test]
async fn unencoded_reserved_characters_in_the_path_are_forwarded_and_signed() {
    // `curl -g` and some clients send braces, quotes and UTF-8 without percent-encoding.
    let (up, proxy) = pair("es", &[]).await;
    for path in [
        "/logs-{now/d}/_search",
        "/idx/_doc/\"quoted\"",
        "/caf\u{e9}/_doc/\u{2713}",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let reply = raw(proxy.addr(), request.as_bytes(), Duration::from_secs(10)).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
        let rec = up.last_request().unwrap();
        assert_eq!(rec.raw_path, path);
        assert!(rec.verified(), "{path}: {:?}", rec.verification);
    }
}

#[tokio::test]
async fn methods_and_bodies_for_both_services() {
    for service in ["es", "aoss"] {
        let (up, proxy) = pair(service, &[]).await;
        let json = r#"{"query":{"match_all":{}}}"#;
        let ct = [("content-type", "application/json")];

        let resp = send(proxy.addr(), "PUT", "/idx", &ct, r#"{"settings":{}}"#).await;
        assert_ok_and_verified(&resp, &up);
        assert_eq!(up.last_request().unwrap().body_str(), r#"{"settings":{}}"#);

        let resp = send(proxy.addr(), "GET", "/idx/_search", &ct, json).await;
        assert_ok_and_verified(&resp, &up);
        let rec = up.last_request().unwrap();
        assert_eq!(
            (rec.method.as_str(), rec.body_str().as_str()),
            ("GET", json),
            "GET with a body keeps it"
        );

        let resp = send(proxy.addr(), "HEAD", "/idx", &[], Bytes::new()).await;
        assert_ok_and_verified(&resp, &up);
        assert!(resp.body.is_empty());

        let resp = send(proxy.addr(), "DELETE", "/idx", &[], Bytes::new()).await;
        assert_ok_and_verified(&resp, &up);
        assert_eq!(up.last_request().unwrap().method, "DELETE");

        let resp = send(proxy.addr(), "POST", "/idx/_refresh", &[], Bytes::new()).await;
        assert_ok_and_verified(&resp, &up);
        let rec = up.last_request().unwrap();
        assert_eq!(
            rec.header("content-length"),
            Some("0"),
            "empty POST carries Content-Length: 0"
        );

        let resp = send(proxy.addr(), "PATCH", "/idx/_doc/1", &ct, "{}").await;
        assert_ok_and_verified(&resp, &up);

        let rec = up.last_request().unwrap();
        let sha = rec
            .header("x-amz-content-sha256")
            .expect("x-amz-content-sha256 sent");
        assert_eq!(sha, rec.body_sha256);
        let signed = &rec.verification.as_ref().unwrap().signed_headers;
        assert!(
            signed.iter().any(|h| h == "x-amz-content-sha256"),
            "{service}: content hash is signed: {signed:?}"
        );
        for never in [
            "connection",
            "user-agent",
            "content-length",
            "x-forwarded-for",
        ] {
            assert!(
                !signed.iter().any(|h| h == never),
                "{never} must not be signed: {signed:?}"
            );
        }
        proxy.stop().await;
    }
}

#[tokio::test]
async fn binary_gzip_and_multi_megabyte_bodies_arrive_intact() {
    let (up, proxy) = pair("aoss", &["--spill-threshold", "64KiB"]).await;
    let binary: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let resp = send(
        proxy.addr(),
        "POST",
        "/idx/_doc",
        &[("content-type", "application/octet-stream")],
        binary.clone(),
    )
    .await;
    assert_ok_and_verified(&resp, &up);
    let rec = up.last_request().unwrap();
    assert_eq!(rec.body_len, binary.len() as u64);
    assert_eq!(rec.body_sha256, hex_sha256(&binary));

    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"{\"index\":{}}\n{\"a\":1}\n").unwrap();
        e.finish().unwrap()
    };
    let resp = send(proxy.addr(), "POST", "/_bulk", GZIP_NDJSON, gz.clone()).await;
    assert_ok_and_verified(&resp, &up);
    let rec = up.last_request().unwrap();
    assert_eq!(rec.header("content-encoding"), Some("gzip"));
    assert_eq!(rec.body_sha256, hex_sha256(&gz));

    let big: Vec<u8> = (0..(12 << 20)).map(|i: u32| (i % 239) as u8).collect();
    let resp = send(
        proxy.addr(),
        "POST",
        "/_bulk",
        &[("content-type", "application/x-ndjson")],
        big.clone(),
    )
    .await;
    assert_ok_and_verified(&resp, &up);
    let rec = up.last_request().unwrap();
    assert_eq!(
        (rec.body_len, rec.body_sha256.clone()),
        (big.len() as u64, hex_sha256(&big))
    );
    assert_eq!(
        rec.header("content-length"),
        Some(big.len().to_string().as_str())
    );
}

/// `--unsigned-payload`: empty, small and spilled bodies, for es and aoss, arrive intact and
/// signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (itself signed); a verifier that checks
/// the canonical request accepts them.
#[tokio::test]
async fn unsigned_payload_signs_bodies_as_unsigned_and_sends_them_intact() {
    for service in ["es", "aoss"] {
        let (up, proxy) = pair(
            service,
            &["--unsigned-payload", "--spill-threshold", "64KiB"],
        )
        .await;
        for len in [0usize, 20, 300_000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let resp = send(
                proxy.addr(),
                "POST",
                "/idx/_search",
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
            assert_ok_and_verified(&resp, &up);
            let rec = up.last_request().unwrap();
            assert_eq!(
                rec.header("x-amz-content-sha256"),
                Some("UNSIGNED-PAYLOAD"),
                "{service}, {len} bytes"
            );
            let signed = &rec.verification.as_ref().unwrap().signed_headers;
            assert!(
                signed.iter().any(|h| h == "x-amz-content-sha256"),
                "{service}: {signed:?}"
            );
            assert_eq!(
                (rec.body_len, rec.body_sha256.clone()),
                (len as u64, hex_sha256(&body)),
                "{service}, {len} bytes"
            );
        }
        proxy.stop().await;
    }
}

/// With `--unsigned-payload` nothing needs a large body whole, so it goes on to the endpoint
/// as it arrives: half of it is there while the client still holds the other half. Signed, the
/// body must be hashed whole first and none of it is sent before its end.
#[tokio::test]
async fn unsigned_large_bodies_stream_to_the_endpoint_as_they_arrive() {
    use tokio::io::AsyncWriteExt;
    let body: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 241) as u8).collect();
    let half = body.len() / 2;
    for unsigned in [true, false] {
        let mut args = vec!["--spill-threshold", "64KiB"];
        if unsigned {
            args.push("--unsigned-payload");
        }
        let (up, proxy) = pair("aoss", &args).await;
        let mut conn = start_upload(proxy.addr(), body.len(), &body[..half]).await;
        let wait = Duration::from_secs(if unsigned { 10 } else { 1 });
        let arrived = up.wait_for_body_bytes(half as u64 / 2, wait).await;
        if unsigned {
            assert!(
                arrived >= half as u64 / 2,
                "only {arrived} bytes reached the endpoint"
            );
        } else {
            assert_eq!(
                arrived, 0,
                "a signed body is sent only once it is hashed whole"
            );
        }
        conn.write_all(&body[half..]).await.unwrap();
        let head = response_head(&mut conn, Duration::from_secs(10)).await;
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "unsigned {unsigned}: {head}"
        );
        let rec = up.last_request().unwrap();
        assert!(rec.verified(), "{:?}", rec.verification);
        assert_eq!(
            (rec.body_len, rec.body_sha256.clone()),
            (body.len() as u64, hex_sha256(&body))
        );
        let expected = if unsigned {
            "UNSIGNED-PAYLOAD".to_string()
        } else {
            hex_sha256(&body)
        };
        assert_eq!(rec.header("x-amz-content-sha256"), Some(expected.as_str()));
        proxy.stop().await;
    }
}

/// `--response-timeout` counts the endpoint's silence, not the upload's length: a streamed body
/// that takes three times the timeout to arrive (the endpoint taking each piece as it comes)
/// is answered, and an endpoint that says nothing once the body is in still gets 504.
#[tokio::test]
async fn a_streamed_upload_longer_than_the_response_timeout_is_not_cut_off() {
    use tokio::io::AsyncWriteExt;
    let args = [
        "--unsigned-payload",
        "--spill-threshold",
        "64KiB",
        "--response-timeout",
        "500ms",
    ];
    let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 239) as u8).collect();
    let piece = body.len() / 10;
    let (up, proxy) = pair("es", &args).await;
    let started = std::time::Instant::now();
    let mut conn = start_upload(proxy.addr(), body.len(), &body[..piece]).await;
    for at in (piece..body.len()).step_by(piece) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.write_all(&body[at..(at + piece).min(body.len())])
            .await
            .unwrap();
    }
    let head = response_head(&mut conn, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "the upload took {:?}",
        started.elapsed()
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let rec = up.last_request().unwrap();
    assert_eq!(rec.body_sha256, hex_sha256(&body));
    proxy.stop().await;

    let (up, proxy) = pair("es", &args).await;
    up.add_route(
        "POST",
        "/_bulk",
        Reply::status(200).stall(Duration::from_secs(5)),
    );
    let mut conn = start_upload(proxy.addr(), body.len(), &body).await;
    let answered = std::time::Instant::now();
    let head = response_head(&mut conn, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    assert!(
        answered.elapsed() < Duration::from_secs(4),
        "504 after {:?}, not the endpoint's 5 s",
        answered.elapsed()
    );
    proxy.stop().await;
}

/// A streamed body the client stops sending: past `--body-idle-timeout` the client gets 408
/// and the endpoint's request is cut off (never completes); a client that goes away mid-body
/// likewise leaves nothing complete upstream. The proxy serves the next request.
#[tokio::test]
async fn a_streamed_body_the_client_stops_sending_never_completes_upstream() {
    let (up, proxy) = pair(
        "es",
        &[
            "--unsigned-payload",
            "--spill-threshold",
            "64KiB",
            "--body-idle-timeout",
            "1s",
        ],
    )
    .await;
    let body = vec![b'x'; 1 << 20];
    let mut stalled = start_upload(proxy.addr(), body.len(), &body[..300_000]).await;
    assert!(
        up.wait_for_body_bytes(100_000, Duration::from_secs(10))
            .await
            >= 100_000
    );
    let head = response_head(&mut stalled, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    let before = up.body_bytes_received();
    let gone = start_upload(proxy.addr(), body.len(), &body[..300_000]).await;
    assert!(
        up.wait_for_body_bytes(before + 100_000, Duration::from_secs(10))
            .await
            > before
    );
    drop(gone);

    let resp = get(proxy.addr(), "/_cluster/health").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let paths: Vec<String> = up.requests().iter().map(|r| r.raw_path.clone()).collect();
    assert_eq!(
        paths,
        ["/_cluster/health"],
        "no cut-off body completed upstream"
    );
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn chunked_and_expect_continue_bodies_work() {
    let (up, proxy) = pair("es", &[]).await;
    let request = b"POST /idx/_doc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n";
    let reply = raw(proxy.addr(), request, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let rec = up.last_request().unwrap();
    assert_eq!(rec.body_str(), "{\"a\": 1}");
    assert_eq!(
        rec.header("content-length"),
        Some("8"),
        "upstream gets a Content-Length"
    );
    assert!(rec.header("transfer-encoding").is_none());
    assert!(rec.verified());

    // Expect: 100-continue: the proxy answers 100 itself and never forwards Expect.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"PUT /idx/_doc/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    stream.write_all(b"{\"b\":2}").await.unwrap();
    let mut rest = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.contains("200 OK"), "{rest}");
    let rec = up.last_request().unwrap();
    assert_eq!(rec.body_str(), "{\"b\":2}");
    assert!(rec.header("expect").is_none());
}

#[tokio::test]
async fn over_limit_bodies_get_413_and_never_reach_the_endpoint() {
    let (up, proxy) = pair("es", &["--max-body", "1MiB"]).await;
    // Declared too large: refused from the header alone, before the body is sent.
    let reply = raw(
        proxy.addr(),
        b"POST /_bulk HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(!reply.contains("100 Continue"));
    assert!(reply.contains("request_entity_too_large_exception"));
    // Chunked, found too large while reading.
    let body = vec![b'x'; 1_100_000];
    let stream = futures_util::stream::iter(
        body.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect::<Vec<_>>(),
    );
    let resp = send_streaming(
        proxy.addr(),
        "/_bulk",
        http_body_util::StreamBody::new(stream),
    )
    .await;
    assert_eq!(resp.status, 413);
    assert_eq!(
        resp.header("x-sigv4-proxy-error"),
        Some("request_entity_too_large_exception")
    );
    assert_eq!(resp.json()["status"], 413);
    assert_eq!(
        up.request_count(),
        0,
        "nothing over the limit reached the endpoint"
    );
    // Exactly at the limit is fine.
    let resp = send(proxy.addr(), "POST", "/_bulk", &[], vec![b'y'; 1 << 20]).await;
    assert_ok_and_verified(&resp, &up);
}

async fn send_streaming<B>(addr: std::net::SocketAddr, target: &str, body: B) -> Resp
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let mut sender = connection(addr).await;
    let req = http::Request::post(target)
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn headers_hop_by_hop_duplicates_and_client_credentials() {
    let (up, proxy) = pair("es", &[]).await;
    let resp = send(
        proxy.addr(),
        "GET",
        "/idx/_search",
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "must go"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("x-amz-security-token", "client-token"),
            ("x-amz-date", "19990101T000000Z"),
            ("x-opaque-id", "trace-42"),
            ("osd-xsrf", "true"),
            ("accept-encoding", "gzip"),
            ("cookie", "a=1"),
            ("x-dup", "first"),
            ("x-dup", "second"),
            ("x-forwarded-for", "10.1.2.3"),
            ("user-agent", "test-agent/1.0"),
        ],
        Bytes::new(),
    )
    .await;
    assert_ok_and_verified(&resp, &up);
    let rec = up.last_request().unwrap();
    for gone in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(rec.header(gone).is_none(), "{gone} must not be forwarded");
    }
    assert!(rec
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=ASIACORETEST/"));
    assert_eq!(
        rec.header("x-amz-security-token"),
        Some("core-session-token")
    );
    assert_ne!(rec.header("x-amz-date"), Some("19990101T000000Z"));
    assert_eq!(rec.header("x-opaque-id"), Some("trace-42"));
    assert_eq!(rec.header("osd-xsrf"), Some("true"));
    assert_eq!(rec.header("accept-encoding"), Some("gzip"));
    assert_eq!(rec.header("cookie"), Some("a=1"));
    assert_eq!(rec.header("user-agent"), Some("test-agent/1.0"));
    assert_eq!(
        rec.header_all("x-dup"),
        ["first", "second"],
        "repeated headers keep their order"
    );
    assert_eq!(rec.header("x-forwarded-for"), Some("10.1.2.3"));
}

#[tokio::test]
async fn responses_pass_through_untouched_errors_included() {
    let up = upstream("es").await;
    up.add_route(
        "GET",
        "/denied/_search",
        Reply::json(403, &serde_json::json!({"error":{"type":"security_exception","reason":"no permissions for [indices:data/read/search]"},"status":403}))
            .header("x-custom", "kept")
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "dropped"),
    );
    up.add_route(
        "GET",
        "/gz",
        Reply::text(200, "compressed text ".repeat(100)).gzipped(),
    );
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    let resp = get(proxy.addr(), "/denied/_search").await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.json()["error"]["reason"],
        "no permissions for [indices:data/read/search]"
    );
    assert_eq!(resp.header("x-custom"), Some("kept"));
    assert!(resp.header("x-upstream-hop").is_none());
    assert!(
        resp.header("x-sigv4-proxy-error").is_none(),
        "an endpoint error is not a proxy error"
    );

    let resp = send(
        proxy.addr(),
        "GET",
        "/gz",
        &[("accept-encoding", "gzip")],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        resp.header("content-encoding"),
        Some("gzip"),
        "compressed bodies are passed through as they are"
    );
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(&resp.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "compressed text ".repeat(100));
}

#[tokio::test]
async fn a_large_response_streams_through_intact() {
    let up = upstream("es").await;
    let len: u64 = 96 << 20;
    up.add_route("GET", "/_snapshot/big", Reply::streamed(len));
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    let mut sender = connection(proxy.addr()).await;
    let resp = sender
        .send_request(
            http::Request::get("/_snapshot/big")
                .header("host", "x")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut seen: u64 = 0;
    let mut first_chunk_at_most = u64::MAX;
    use http_body_util::BodyExt;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("stream stalled")
    {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            if seen == 0 {
                first_chunk_at_most = data.len() as u64;
            }
            for (i, b) in data.iter().enumerate() {
                assert_eq!(
                    *b,
                    crate::support::upstream::generated_byte(seen + i as u64),
                    "byte {}",
                    seen + i as u64
                );
            }
            seen += data.len() as u64;
        }
    }
    assert_eq!(seen, len);
    assert!(
        first_chunk_at_most < len,
        "the response arrives in pieces, not as one buffered blob"
    );
}

#[tokio::test]
async fn redirects_come_back_pointed_at_the_proxy_and_are_not_followed() {
    let up = upstream("es").await;
    let location = format!("https://{}/_dashboards/app/home", up.host_name());
    up.add_route(
        "GET",
        "/_dashboards",
        Reply::redirect(302, &location).set_cookie(&format!(
            "security_authentication=abc; Domain={}; Path=/_dashboards; Secure; HttpOnly",
            up.host_name()
        )),
    );
    up.add_route(
        "GET",
        "/elsewhere",
        Reply::redirect(301, "https://signin.aws.amazon.com/oauth"),
    );
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    let resp = send(
        proxy.addr(),
        "GET",
        "/_dashboards",
        &[("host", "localhost:9200")],
        Bytes::new(),
    )
    .await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some("http://localhost:9200/_dashboards/app/home")
    );
    assert_eq!(
        resp.header("set-cookie"),
        Some("security_authentication=abc; Path=/_dashboards; HttpOnly")
    );
    assert_eq!(
        up.request_count(),
        1,
        "the redirect was passed back, not followed"
    );
    let resp = get(proxy.addr(), "/elsewhere").await;
    assert_eq!(
        resp.header("location"),
        Some("https://signin.aws.amazon.com/oauth")
    );
}

#[tokio::test]
async fn connections_are_pooled_and_http2_is_used_when_offered() {
    let (up, proxy) = pair("es", &[]).await;
    let mut client = crate::support::http::KeepAlive::connect(proxy.addr()).await;
    for i in 0..20 {
        let resp = client.get(&format!("/idx/_doc/{i}")).await;
        assert_eq!(resp.status, 200);
    }
    assert_eq!(
        up.tls_handshakes(),
        1,
        "20 sequential requests reuse one TLS connection"
    );
    // Each client connection is served by one of the workers, each with its own pool: new
    // client connections add at most one upstream connection per worker.
    for i in 0..20 {
        assert_eq!(get(proxy.addr(), &format!("/new/{i}")).await.status, 200);
    }
    assert!(
        up.tls_handshakes() <= sigv4_proxy::workers::count() as u64,
        "{} handshakes for 40 requests on {} workers",
        up.tls_handshakes(),
        sigv4_proxy::workers::count()
    );
    let rec = up.last_request().unwrap();
    assert_eq!(rec.alpn.as_deref(), Some("h2"));
    assert_eq!(rec.version, http::Version::HTTP_2);

    let up1 = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .http1_only()
        .start()
        .await;
    let proxy1 = TestProxy::start(&up1, &creds(), &[]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let addr = proxy1.addr();
            tokio::spawn(async move { get(addr, &format!("/p/{i}")).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    for i in 0..10 {
        assert_eq!(get(proxy1.addr(), &format!("/s/{i}")).await.status, 200);
    }
    assert_eq!(up1.last_request().unwrap().version, http::Version::HTTP_11);
    assert!(
        up1.tls_handshakes() <= 8,
        "HTTP/1.1 connections are kept alive and reused: {} handshakes for 18 requests",
        up1.tls_handshakes()
    );
}

#[tokio::test]
async fn proxy_errors_are_opensearch_json_with_the_right_status() {
    // Unreachable endpoint: 502.
    let up = upstream("es").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut argv = vec!["--connect-to".to_string(), dead.to_string()];
    argv.push("--connect-timeout".into());
    argv.push("2s".into());
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let proxy = TestProxy::start(&up, &creds(), &args).await;
    let resp = get(proxy.addr(), "/").await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(
        resp.json()["error"]["type"],
        "upstream_unreachable_exception"
    );
    assert_eq!(
        resp.header("x-sigv4-proxy-error"),
        Some("upstream_unreachable_exception")
    );

    // TLS failure (certificate from an unknown CA): 502 that says so.
    let proxy = TestProxy::start_with_provider(
        &up,
        crate::support::proxy::provider(&creds()),
        &["--ca-bundle", &other_ca_path()],
    )
    .await;
    let resp = get(proxy.addr(), "/").await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.json()["error"]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{}",
        resp.text()
    );

    // Stalled endpoint: 504 after --response-timeout, and the proxy keeps serving.
    up.add_route(
        "GET",
        "/slow",
        Reply::status(200).stall(Duration::from_secs(5)),
    );
    let proxy = TestProxy::start(&up, &creds(), &["--response-timeout", "300ms"]).await;
    let resp = get(proxy.addr(), "/slow").await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error"]["type"], "upstream_timeout_exception");
    assert_eq!(get(proxy.addr(), "/fast").await.status, 200);

    // Query that cannot be signed: 400.
    let resp = get(proxy.addr(), "/idx/_search?q=%FF").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["status"], 400);

    // Two Content-Types: one signature cannot cover both; 400, nothing sent.
    let before = up.request_count();
    let resp = send(
        proxy.addr(),
        "POST",
        "/idx/_doc",
        &[
            ("content-type", "application/json"),
            ("content-type", "text/plain"),
        ],
        "{}",
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(
        resp.json()["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{}",
        resp.text()
    );
    assert_eq!(up.request_count(), before);
}

fn other_ca_path() -> String {
    let pki = crate::support::TestPki::new();
    let path =
        std::env::temp_dir().join(format!("sigv4-proxy-other-ca-{}.pem", std::process::id()));
    std::fs::write(&path, pki.ca_pem()).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn no_credentials_means_503_with_what_to_do() {
    use aws_credential_types::provider::{
        error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider,
    };
    #[derive(Debug)]
    struct Nothing;
    impl ProvideCredentials for Nothing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )))
        }
    }
    let up = upstream("es").await;
    let proxy =
        TestProxy::start_with_provider(&up, SharedCredentialsProvider::new(Nothing), &[]).await;
    let resp = get(proxy.addr(), "/").await;
    assert_eq!(resp.status, 503);
    let reason = resp.json()["error"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("no providers in chain") && reason.contains("AWS_PROFILE"),
        "{reason}"
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_endpoint_is_retried_transparently() {
    let up = upstream("es").await;
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    assert_eq!(get(proxy.addr(), "/warm").await.status, 200);
    // The next request on the pooled connection finds it closed by the endpoint.
    up.add_route("POST", "/idx/_search", Reply::close_connection());
    let up_ref = &up;
    let resp = send(
        proxy.addr(),
        "POST",
        "/idx/_search",
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    // The endpoint closes on every attempt here, so the client gets one clear 502 after a retry.
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(
        up_ref
            .requests()
            .iter()
            .filter(|r| r.raw_path == "/idx/_search")
            .count(),
        2,
        "sent once more, then given up"
    );
}

/// Requests a client could send raw over TCP that are not a request for a path: each gets a
/// 4xx (OpenSearch-style JSON where the proxy answers, hyper's bare 400 where hyper refuses
/// them before the proxy sees them), none reaches the endpoint, and the proxy keeps serving.
#[tokio::test]
async fn malformed_and_non_origin_form_requests_get_4xx_and_never_reach_the_endpoint() {
    let (up, proxy) = pair("es", &[]).await;
    // (request, answered by the proxy itself with its JSON error); `Connection: close` so the
    // read ends with the answer.
    let cases: [(&[u8], bool); 9] = [
        (b"GARBAGE\r\n\r\n", false),
        (b"GET https://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", true),
        (b"GET https://evil.example/_search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
        (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n", true),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", false),
        (
            b"POST /i/_doc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
            false,
        ),
        (b"GET foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
        (b"GET _search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", true),
    ];
    for (request, by_proxy) in cases {
        let what = String::from_utf8_lossy(request).into_owned();
        let reply = raw(proxy.addr(), request, Duration::from_secs(5)).await;
        let status: u16 = reply
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{what:?}: no status line in {reply:?}"));
        assert!((400..500).contains(&status), "{what:?}: {reply}");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        if by_proxy {
            assert!(
                head.to_ascii_lowercase().contains("x-sigv4-proxy-error:"),
                "{what:?}: {reply}"
            );
            let v: serde_json::Value = serde_json::from_str(body.trim())
                .unwrap_or_else(|e| panic!("{what:?}: not JSON ({e}): {body}"));
            assert_eq!(v["status"], status, "{what:?}: {body}");
            assert!(v["error"]["type"].is_string(), "{what:?}: {body}");
        }
        assert_eq!(up.request_count(), 0, "{what:?} reached the endpoint");
        assert_ok_and_verified(&get(proxy.addr(), "/_cluster/health").await, &up);
        up.take_requests();
    }
}

/// The response streams: the upstream sends the first part of a large body and then waits
/// (at most 10 s) until the client has that part before it sends the rest. A proxy that
/// buffered the response would hold the first part until the upstream gave up waiting.
#[tokio::test]
async fn a_response_reaches_the_client_while_the_endpoint_is_still_sending_it() {
    use http_body_util::BodyExt;
    let gate = std::sync::Arc::new(Gate::default());
    let first = Bytes::from(vec![b'a'; 256 * 1024]);
    let rest = Bytes::from(vec![b'b'; 1024 * 1024]);
    let up = TestUpstream::builder()
        .creds(creds())
        .route(
            "GET",
            "/stream",
            Reply::gated(
                first.clone(),
                rest.clone(),
                gate.clone(),
                Duration::from_secs(10),
            ),
        )
        .start()
        .await;
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    let exchange = async {
        let mut sender = connection(proxy.addr()).await;
        let req = http::Request::get("/stream")
            .header("host", proxy.addr().to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut received = Vec::new();
        while received.len() < first.len() {
            let frame = body.frame().await.expect("more body").unwrap();
            received.extend_from_slice(&frame.into_data().unwrap_or_default());
        }
        assert!(
            !gate.timed_out(),
            "the first part arrived only after the endpoint stopped waiting: buffered"
        );
        assert_eq!(&received[..first.len()], &first[..]);
        gate.open();
        while let Some(frame) = body.frame().await {
            received.extend_from_slice(&frame.unwrap().into_data().unwrap_or_default());
        }
        received
    };
    let received = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("the exchange finished within 30 s");
    assert!(!gate.timed_out());
    assert_eq!(received.len(), first.len() + rest.len());
    assert_eq!(&received[first.len()..], &rest[..]);
}
