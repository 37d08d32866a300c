//! Closed by default: the local policy (with the indices inside multi-document bodies), the
//! read-only shorthand, inbound Basic/Bearer authentication, HTTPS on the listener, and the
//! refusal to open a listener to the network without authentication.

use std::sync::Arc;

use bytes::Bytes;

use crate::support::docs;
use crate::support::http::{get, send, Resp, GZIP_NDJSON};
use crate::support::{Creds, DirectConnection, TestProxy, TestUpstream};

fn creds() -> Creds {
    Creds::new("AKIAPOLICYTEST", "policy-secret")
}

async fn upstream() -> TestUpstream {
    TestUpstream::start_for("es", creds()).await
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "sigv4-proxy-{}-{}-{name}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn assert_denied(resp: &Resp, mentions: &str) {
    assert_eq!(resp.status, 403, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["error"]["type"], "security_exception");
    let reason = v["error"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(mentions),
        "reason should mention {mentions}: {reason}"
    );
    assert_eq!(
        resp.header("x-sigv4-proxy-error"),
        Some("security_exception")
    );
}

/// The access-control guide's first trap: rights on `test-index/*` and `_bulk` let a `_bulk`
/// body write into `restricted-index`, because the service checks only the URL.
#[tokio::test]
async fn bulk_bodies_cannot_reach_indices_the_policy_does_not_allow() {
    bulk_bodies_against_the_policy(&[]).await;
    // Unsigned, a large body could go on as it arrives; one the policy reads is still read whole.
    bulk_bodies_against_the_policy(&["--unsigned-payload"]).await;
}

async fn bulk_bodies_against_the_policy(extra: &[&str]) {
    let policy = TempFile::new(
        "bulk.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"TestIndex","Effect":"Allow","Action":"es:ESHttp*","Resource":["arn:aws:es:us-east-1:123456789012:domain/test-domain/test-index/*","arn:aws:es:us-east-1:123456789012:domain/test-domain/_bulk"]}
        ]}"#,
    );
    let up = upstream().await;
    let mut args = vec!["--policy", policy.path()];
    args.extend_from_slice(extra);
    let proxy = TestProxy::start(&up, &creds(), &args).await;
    let ndjson = [("content-type", "application/x-ndjson")];

    let sneaky = "{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"a\":1}\n{\"index\":{\"_index\":\"restricted-index\",\"_id\":\"2\"}}\n{\"a\":2}\n";
    let resp = send(proxy.addr(), "POST", "/_bulk", &ndjson, sneaky).await;
    assert_denied(&resp, "restricted-index");
    assert_eq!(
        up.request_count(),
        0,
        "a denied request never reaches the endpoint"
    );

    let fine = "{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"a\":1}\n{\"delete\":{\"_index\":\"test-index\",\"_id\":\"2\"}}\n";
    let resp = send(proxy.addr(), "POST", "/_bulk", &ndjson, fine).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(up.last_request().unwrap().verified());
    let resp = send(
        proxy.addr(),
        "POST",
        "/test-index/_bulk",
        &ndjson,
        "{\"index\":{}}\n{\"a\":1}\n",
    )
    .await;
    assert_eq!(
        resp.status,
        200,
        "test-index/_bulk is covered by test-index/*: {}",
        resp.text()
    );
    let resp = send(
        proxy.addr(),
        "POST",
        "/restricted-index/_bulk",
        &ndjson,
        "{\"index\":{}}\n{\"a\":1}\n",
    )
    .await;
    assert_denied(&resp, "restricted-index");

    // The same trap through _mget and _msearch.
    let json = [("content-type", "application/json")];
    let resp = send(
        proxy.addr(),
        "POST",
        "/test-index/_mget",
        &json,
        r#"{"docs":[{"_id":"1"},{"_index":"restricted-index","_id":"2"}]}"#,
    )
    .await;
    assert_eq!(resp.status, 403);
    // A body that cannot be read is denied, not guessed.
    let resp = send(
        proxy.addr(),
        "POST",
        "/_bulk",
        &ndjson,
        "{\"index\":{\"_index\":\"test-index\"}\n",
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());

    // A large, spilled bulk with the forbidden line at the very end.
    let mut big = String::new();
    for i in 0..40_000 {
        big.push_str(&format!("{{\"index\":{{\"_index\":\"test-index\",\"_id\":\"{i}\"}}}}\n{{\"field\":\"value {i}\"}}\n"));
    }
    big.push_str("{\"update\":{\"_index\":\"restricted-index\",\"_id\":\"x\"}}\n{\"doc\":{}}\n");
    assert!(big.len() > 2 << 20);
    let resp = send(proxy.addr(), "POST", "/_bulk", &ndjson, big).await;
    assert_denied(&resp, "restricted-index");
    assert_eq!(
        up.requests()
            .iter()
            .filter(|r| r.raw_path.ends_with("/_bulk"))
            .count(),
        2,
        "only the allowed bulks reached the endpoint"
    );
}

/// The guide's second trap: a Deny on `restricted-index/*` still lets `GET _all/_search` and
/// `DELETE restricted-index` through at the domain. Not here.
#[tokio::test]
async fn a_deny_on_an_index_covers_wildcards_all_and_the_index_itself() {
    let policy = TempFile::new(
        "deny.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"es:*","Resource":"*"},
            {"Sid":"KeepOut","Effect":"Deny","Action":"es:*","Resource":"restricted-index/*"}
        ]}"#,
    );
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--policy", policy.path()]).await;
    for (method, target) in [
        ("GET", "/_all/_search"),
        ("GET", "/_search"),
        ("GET", "/*/_search"),
        ("GET", "/restr*/_search"),
        ("DELETE", "/restricted-index"),
        ("GET", "/restricted-index/_search"),
        ("GET", "/test-index,restricted-index/_count"),
        ("PUT", "/restricted-index/_doc/1"),
    ] {
        let resp = send(
            proxy.addr(),
            method,
            target,
            &[("content-type", "application/json")],
            Bytes::new(),
        )
        .await;
        assert_eq!(resp.status, 403, "{method} {target}: {}", resp.text());
        assert!(
            resp.json()["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("KeepOut"),
            "{method} {target} names the statement"
        );
    }
    assert_eq!(up.request_count(), 0);
    for (method, target) in [
        ("GET", "/test-index/_search"),
        ("PUT", "/test-index/_doc/1"),
        ("DELETE", "/test-index"),
        ("GET", "/_cluster/health"),
    ] {
        let resp = send(
            proxy.addr(),
            method,
            target,
            &[("content-type", "application/json")],
            Bytes::new(),
        )
        .await;
        assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
    }
    assert!(up.requests().iter().all(|r| r.verified()));
}

#[tokio::test]
async fn read_only_allows_reads_and_searches_only() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--read-only"]).await;
    let json = [("content-type", "application/json")];
    for (method, target, body) in [
        ("GET", "/_cat/indices?v", ""),
        ("HEAD", "/logs", ""),
        ("POST", "/logs/_search", "{}"),
        ("POST", "/_msearch", "{}\n{}\n"),
        ("POST", "/logs/_count", "{}"),
        ("POST", "/_search/scroll", "{\"scroll_id\":\"x\"}"),
    ] {
        let resp = send(proxy.addr(), method, target, &json, body.to_string()).await;
        assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
    }
    let before = up.request_count();
    for (method, target, body) in [
        ("PUT", "/logs", "{}"),
        ("POST", "/logs/_doc", "{}"),
        ("POST", "/_bulk", "{\"index\":{\"_index\":\"logs\"}}\n{}\n"),
        ("DELETE", "/logs", ""),
        ("POST", "/_reindex", "{}"),
        ("POST", "/logs/_delete_by_query", "{}"),
    ] {
        let resp = send(proxy.addr(), method, target, &json, body.to_string()).await;
        assert_eq!(resp.status, 403, "{method} {target}: {}", resp.text());
    }
    assert_eq!(up.request_count(), before, "no write reached the endpoint");
}

#[tokio::test]
async fn source_ip_conditions_apply_to_the_client_address() {
    let policy = TempFile::new(
        "ip.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"es:ESHttpGet","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8"]}}}
        ]}"#,
    );
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--policy", policy.path()]).await;
    assert_eq!(
        get(proxy.addr(), "/").await.status,
        403,
        "127.0.0.1 is not in 10.0.0.0/8"
    );
    let policy = TempFile::new(
        "ip2.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"es:ESHttpGet","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]}}}
        ]}"#,
    );
    let proxy = TestProxy::start(&up, &creds(), &["--policy", policy.path()]).await;
    assert_eq!(get(proxy.addr(), "/").await.status, 200);
}

fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn inbound_basic_and_bearer_auth_with_per_user_policy() {
    let users = TempFile::new(
        "htpasswd",
        &(htpasswd_line("alice", "wonderland") + &htpasswd_line("bob", "builder")),
    );
    let tokens = TempFile::new("tokens", "# CI jobs\nci-token-0123456789abcdef\n");
    let policy = TempFile::new(
        "users.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"Proxy":["alice","token:2"]},"Action":"es:ESHttp*","Resource":"*"},
            {"Effect":"Allow","Principal":{"Proxy":["bob"]},"Action":"es:ESHttpGet","Resource":"logs-*"}
        ]}"#,
    );
    let up = upstream().await;
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &[
            "--htpasswd",
            users.path(),
            "--token-file",
            tokens.path(),
            "--policy",
            policy.path(),
        ],
    )
    .await;

    let resp = get(proxy.addr(), "/").await;
    assert_eq!(resp.status, 401);
    let challenges: Vec<&str> = resp
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic realm=")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    assert_eq!(resp.json()["status"], 401);

    let wrong = basic("alice", "looking-glass");
    let resp = send(
        proxy.addr(),
        "GET",
        "/",
        &[("authorization", &wrong)],
        Bytes::new(),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_eq!(up.request_count(), 0);

    let alice = basic("alice", "wonderland");
    let resp = send(
        proxy.addr(),
        "PUT",
        "/any/_doc/1",
        &[
            ("authorization", &alice),
            ("content-type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rec = up.last_request().unwrap();
    assert!(
        rec.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256"),
        "the client's credentials are never forwarded"
    );
    assert!(rec.verified());

    let bob = basic("bob", "builder");
    assert_eq!(
        send(
            proxy.addr(),
            "GET",
            "/logs-2026/_search",
            &[("authorization", &bob)],
            Bytes::new()
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            proxy.addr(),
            "GET",
            "/secrets/_search",
            &[("authorization", &bob)],
            Bytes::new()
        )
        .await
        .status,
        403
    );
    assert_eq!(
        send(
            proxy.addr(),
            "DELETE",
            "/logs-2026",
            &[("authorization", &bob)],
            Bytes::new()
        )
        .await
        .status,
        403
    );

    let token = [("authorization", "Bearer ci-token-0123456789abcdef")];
    assert_eq!(
        send(proxy.addr(), "DELETE", "/any", &token, Bytes::new())
            .await
            .status,
        200
    );
    let bad = [("authorization", "Bearer ci-token-0123456789abcdeX")];
    assert_eq!(
        send(proxy.addr(), "GET", "/", &bad, Bytes::new())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn the_listener_serves_https_and_redirects_stay_https() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_file = TempFile::new("cert.pem", &cert.cert.pem());
    let key_file = TempFile::new("key.pem", &cert.key_pair.serialize_pem());
    let up = upstream().await;
    let location = format!("https://{}/_dashboards/app/home", up.host_name());
    up.add_route(
        "GET",
        "/_dashboards",
        crate::support::Reply::redirect(302, &location),
    );
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &["--tls-cert", cert_file.path(), "--tls-key", key_file.path()],
    )
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(crate::support::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut conn = DirectConnection::connect(proxy.addr(), Arc::new(client), "localhost")
        .await
        .unwrap();
    assert_eq!(
        conn.alpn.as_deref(),
        Some("h2"),
        "HTTP/2 is offered to clients too"
    );
    let resp = conn
        .send("GET", "/_cat/health", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    assert!(up.last_request().unwrap().verified());
    let resp = conn
        .send("GET", "/_dashboards", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some("https://localhost/_dashboards/app/home")
    );

    // Plain HTTP on the TLS port gets nowhere.
    let reply = crate::support::http::raw(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        std::time::Duration::from_secs(3),
    )
    .await;
    assert!(!reply.contains("200 OK"));
}

#[test]
fn an_open_listener_without_auth_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "https://search-x.us-east-1.es.amazonaws.com",
        ])
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without inbound authentication") && err.contains("--allow-unauthenticated"),
        "{err}"
    );
}

/// The policy manual, docs/policy.md: every `<!-- policy NAME -->` JSON block is loaded as a
/// policy file, and every `<!-- request NAME STATUS -->` block (`METHOD PATH` and the body) is
/// sent through a proxy with that policy; it gets STATUS, a 403 exactly the JSON block after
/// it, a 200 reaches the endpoint signed.
#[tokio::test]
async fn the_documented_policy_examples_are_what_the_proxy_does() {
    const DOC: &str = "docs/policy.md";
    let text = docs::read(DOC);
    let lines: Vec<&str> = text.lines().collect();
    // The block on the line after `at`.
    let block_after = |at: usize| docs::block_at(DOC, &lines, at + 1);
    let mut policies: Vec<(String, TempFile)> = Vec::new();
    let mut requests = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(marker) = line
            .trim()
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let words: Vec<&str> = marker.split_whitespace().collect();
        match words.as_slice() {
            ["policy", name] => {
                let (json, _) = block_after(i);
                policies.push((
                    name.to_string(),
                    TempFile::new(&format!("{name}.json"), &json),
                ));
            }
            ["request", name, status] => {
                let (request, next) = block_after(i);
                let status: u16 = status.parse().unwrap();
                let expected = (status == 403).then(|| {
                    let at = (next..lines.len())
                        .find(|&j| !lines[j].trim().is_empty())
                        .unwrap();
                    block_after(at - 1).0
                });
                requests.push((i + 1, name.to_string(), request, status, expected));
            }
            _ => {}
        }
    }
    assert!(policies.len() >= 2, "{DOC} shows the example policies");
    assert!(requests.len() >= 8, "{DOC} shows the example requests");
    let up = upstream().await;
    for (name, file) in &policies {
        let proxy = TestProxy::start(&up, &creds(), &["--policy", file.path()]).await;
        for (line, _, request, status, expected) in requests.iter().filter(|r| &r.1 == name) {
            let (head, body) = request.split_once('\n').unwrap_or((request, ""));
            let (method, target) = head.split_once(' ').unwrap();
            let body = if body.is_empty() {
                String::new()
            } else {
                format!("{body}\n")
            };
            let seen = up.request_count();
            let resp = send(
                proxy.addr(),
                method,
                target,
                &[("content-type", "application/x-ndjson")],
                body,
            )
            .await;
            assert_eq!(resp.status, *status, "{DOC}:{line}: {}", resp.text());
            match expected {
                Some(json) => {
                    assert_eq!(resp.text(), json.trim(), "{DOC}:{line}");
                    assert_eq!(up.request_count(), seen, "{DOC}:{line}: nothing forwarded");
                }
                None => {
                    assert_eq!(up.request_count(), seen + 1, "{DOC}:{line}");
                    assert!(up.last_request().unwrap().verified());
                }
            }
        }
        proxy.stop().await;
    }
}

/// docs/policy.md's `<!-- transcript -->` blocks: the `$ …` line runs in bash, in a directory
/// holding the page's policies as `NAME.json`, with the binary first on the PATH; what it prints
/// is the rest of the block, exactly.
#[test]
fn the_documented_policy_commands_print_what_the_page_shows() {
    const DOC: &str = "docs/policy.md";
    let text = docs::read(DOC);
    let lines: Vec<&str> = text.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let mut transcripts = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line
            .trim()
            .strip_prefix("<!-- policy ")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            let (json, _) = docs::block_at(DOC, &lines, i + 1);
            std::fs::write(dir.path().join(format!("{name}.json")), json).unwrap();
        }
        if line.trim() == "<!-- transcript -->" {
            transcripts.push((i + 1, docs::block_at(DOC, &lines, i + 1).0));
        }
    }
    assert!(transcripts.len() >= 2, "{DOC} shows explain and check");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (line, block) in transcripts {
        let (command, expected) = block.split_once('\n').unwrap();
        let command = command.strip_prefix("$ ").expect("a `$ ` command line");
        let out = std::process::Command::new("bash")
            .args(["-c", command])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{DOC}:{line}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            expected,
            "{DOC}:{line}"
        );
    }
}

/// Decisions are logged: an allowed request's access line names the statement and the
/// resource, a denied one has its own line with the statement and resource, at the default
/// log level of the binary.
#[tokio::test]
async fn policy_decisions_are_logged_with_statement_and_resource() {
    let policy = TempFile::new(
        "logged.json",
        r#"{"Statement":[
            {"Sid":"AllowAll","Effect":"Allow","Action":"es:*","Resource":"*"},
            {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted-index/*"}
        ]}"#,
    );
    let up = upstream().await;
    let mut args = crate::support::proxy::upstream_args(&up);
    args.extend(["--policy".to_string(), policy.path().to_string()]);
    let env = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            "AKIAPOLICYTEST".to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "policy-secret".to_string(),
        ),
    ];
    let mut proxy = crate::support::ProxyProcess::start(&args, &env).await;
    assert_eq!(get(proxy.addr, "/test-index/_search").await.status, 200);
    assert_eq!(
        get(proxy.addr, "/restricted-index/_doc/7").await.status,
        403
    );
    assert!(proxy.terminate().await.success());
    let log = proxy.stderr();
    let allowed = log
        .lines()
        .find(|l| l.contains("path=/test-index/_search"))
        .unwrap_or_else(|| panic!("no access line for the allowed request:\n{log}"));
    assert!(
        allowed.contains("allow (AllowAll) on test-index/_search"),
        "{allowed}"
    );
    let denied = log
        .lines()
        .find(|l| l.contains("denied:") && l.contains("sigv4_proxy::policy"))
        .unwrap_or_else(|| panic!("no denial line:\n{log}"));
    assert!(
        denied.contains("statement=\"DenyRestricted\"")
            && denied.contains("resource=restricted-index/_doc/7"),
        "{denied}"
    );
    let access = log
        .lines()
        .find(|l| l.contains("path=/restricted-index/_doc/7") && l.contains("status=403"))
        .unwrap_or_else(|| panic!("no access line for the denied request:\n{log}"));
    assert!(access.contains("deny (DenyRestricted)"), "{access}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The policy fails closed through the running proxy: a request from each way in that the
/// attack review found gets 403 naming the API and what decided, and nothing of it reaches the
/// endpoint; the same APIs on allowed indices reach it signed, a compressed bulk as it was sent.
#[tokio::test]
async fn the_policy_fails_closed_and_harmless_requests_pass() {
    let policy = TempFile::new(
        "closed.json",
        r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"LogsAndApis","Effect":"Allow","Action":"es:*","Resource":["logs-*","_*"]},
            {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#,
    );
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--policy", policy.path()]).await;
    let json = [("content-type", "application/json")];
    let bulk_restricted = "{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n";
    for (method, target, body, mentions) in [
        ("POST", "/_foo,restricted-index/_bulk?ignore_unavailable=true", "{\"index\":{}}\n{}\n", "(bulk, from the path)"),
        ("POST", "/logs-1/doc/_bulk", bulk_restricted, "(bulk, from the body, line 1)"),
        ("GET", "/_search?index=restricted-index", "", "from the `index` query parameter"),
        ("PUT", "/logs-1/_alias/logs-innocent", "{\"index\":\"restricted-index\"}", "(indices.put_alias, from the body, index)"),
        ("PUT", "/_plugins/_ism/policies/p", "{\"policy\":{\"ism_template\":[{\"index_patterns\":[\"restricted*\"]}]}}", "(ism.put_policy, from the body"),
        ("GET", "//_search", "", "an empty index list"),
        ("POST", "/_dashboards/api/console/proxy?path=%2Frestricted-index%2F_search&method=GET", "", "in the console's GET /restricted-index/_search"),
        ("POST", "/_dashboards/internal/search/opensearch", "{\"params\":{\"index\":\"restricted-index\"}}", "in Dashboards' search"),
        ("GET", "/_plugin/kibana/elasticsearch/restricted-index/_search", "", "in Kibana's GET"),
        ("POST", "/_plugins/_unheard_of", "{}", "cannot tell which indices, so all"),
        ("POST", "/logs-1/_search", "{\"query\":{\"terms\":{\"u\":{\"index\":\"restricted-index\",\"id\":\"1\",\"path\":\"f\"}}}}", "from the body, query.terms.u.index"),
    ] {
        let resp = send(proxy.addr(), method, target, &json, body.to_string()).await;
        assert_denied(&resp, mentions);
    }
    let gz = Bytes::from(gzip(bulk_restricted.as_bytes()));
    let resp = send(proxy.addr(), "POST", "/_bulk", GZIP_NDJSON, gz).await;
    assert_denied(&resp, "restricted-index/_doc (bulk, from the body, line 1)");
    assert_eq!(up.request_count(), 0, "nothing denied reached the endpoint");

    let bulk_fine = gzip(b"{\"index\":{\"_index\":\"logs-1\",\"_id\":\"1\"}}\n{\"msg\":\"x\"}\n");
    let resp = send(
        proxy.addr(),
        "POST",
        "/_bulk",
        GZIP_NDJSON,
        Bytes::from(bulk_fine.clone()),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let sent = up.last_request().unwrap();
    assert!(sent.verified());
    assert_eq!(sent.body, bulk_fine, "the compressed body went on as sent");
    assert_eq!(sent.header("content-encoding"), Some("gzip"));
    for (method, target, body) in [
        (
            "POST",
            "/logs-1/_search",
            "{\"query\":{\"match\":{\"index\":\"a field named index\"}}}",
        ),
        ("GET", "/logs-*/_search?q=x", ""),
        (
            "POST",
            "/_search/scroll",
            "{\"scroll\":\"1m\",\"scroll_id\":\"abc\"}",
        ),
        ("DELETE", "/_search/scroll", "{\"scroll_id\":\"abc\"}"),
        (
            "POST",
            "/_dashboards/internal/search/opensearch",
            "{\"params\":{\"index\":\"logs-*\",\"body\":{}}}",
        ),
        ("POST", "/_plugins/_ism/add/logs-1", "{\"policy_id\":\"p\"}"),
        ("GET", "/_cluster/health", ""),
    ] {
        let resp = send(proxy.addr(), method, target, &json, body.to_string()).await;
        assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
    }
    assert!(up.requests().iter().all(|r| r.verified()));
    proxy.stop().await;
}

/// `--read-only`: clearing every client's scrolls or points in time is a write; clearing one's
/// own is not.
#[tokio::test]
async fn read_only_refuses_to_clear_every_scroll() {
    let up = upstream().await;
    let proxy = TestProxy::start(&up, &creds(), &["--read-only"]).await;
    let json = [("content-type", "application/json")];
    for (target, body) in [
        ("/_search/scroll", "{\"scroll_id\":\"_all\"}"),
        ("/_search/scroll", "{\"scroll_id\":[\"a\",\"_all\"]}"),
        ("/_search/scroll?scroll_id=_all", ""),
        ("/_search/scroll/a,_all", ""),
        ("/_search/point_in_time", "{\"pit_id\":[\"_all\"]}"),
        ("/_search/point_in_time/_all", ""),
    ] {
        let resp = send(proxy.addr(), "DELETE", target, &json, body.to_string()).await;
        assert_denied(&resp, "denied by the read-only policy");
    }
    assert_eq!(up.request_count(), 0);
    let resp = send(
        proxy.addr(),
        "DELETE",
        "/_search/scroll",
        &json,
        "{\"scroll_id\":[\"a\"]}".to_string(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    proxy.stop().await;
}
