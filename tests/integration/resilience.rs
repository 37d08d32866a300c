//! Resilience: nothing is lost when the endpoint misbehaves (closes kept-alive connections,
//! restarts, stalls), slow clients are cut off without holding anyone else up, idle client
//! connections cost little memory, and a mixed soak ends with every request answered correctly
//! and no growth in memory or open files.
//!
//! Every wait is bounded. Memory and file-descriptor figures come from `/proc` for the real
//! binary; the bounds are generous (regressions, not benchmarks: `bench/run.sh` measures).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::http::{connection, get, response_head, send, start_upload, KeepAlive, Resp};
use crate::support::proxy::upstream_args;
use crate::support::upstream::generated_byte;
use crate::support::{Creds, IdleClose, ProxyProcess, Reply, TestProxy, TestUpstream};

const SECRET: &str = "resilience/secret+key";

fn creds() -> Creds {
    Creds::with_token("ASIARESILIENCE", SECRET, "resilience-session-token")
}

fn env_creds() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "ASIARESILIENCE".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        (
            "AWS_SESSION_TOKEN".into(),
            "resilience-session-token".into(),
        ),
    ]
}

fn builder(h2: bool) -> crate::support::upstream::TestUpstreamBuilder {
    let b = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .record_body_limit(0);
    if h2 {
        b
    } else {
        b.http1_only()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A body of `len` bytes unique to `seed`.
fn body_for(seed: u64, len: usize) -> Bytes {
    let line = format!("{{\"index\":{{\"_id\":\"{seed}\"}}}}\n{{\"n\":{seed},\"msg\":\"soak\"}}\n");
    Bytes::from(line.repeat(len / line.len() + 1)[..len].to_string())
}

/// Checks a proxied echo reply: 200, and the endpoint saw this path and exactly this body.
fn assert_echo(resp: &Resp, path: &str, body: &[u8]) {
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    let echo = resp.json();
    assert_eq!(echo["path"], path, "{}", resp.text());
    assert_eq!(echo["body_len"], body.len() as u64, "{path}");
    assert_eq!(echo["body_sha256"], sha256_hex(body), "{path}");
}

async fn get_echo(addr: std::net::SocketAddr, path: &str) {
    assert_echo(&get(addr, path).await, path, b"");
}

async fn post_echo(addr: std::net::SocketAddr, path: &str, body: Bytes) {
    let resp = send(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.clone(),
    )
    .await;
    assert_echo(&resp, path, &body);
}

fn all_verified(up: &TestUpstream) {
    for r in up.requests() {
        assert!(
            r.verified(),
            "{} {}: {:?}",
            r.method,
            r.raw_path,
            r.verification
        );
    }
}

// --------------------------------------------------------------------------------------------
// The endpoint closes kept-alive connections
// --------------------------------------------------------------------------------------------

async fn idle_closed_connections_are_replaced(h2: bool) {
    let up = builder(h2)
        .idle_close(IdleClose::After(Duration::from_millis(150)))
        .start()
        .await;
    let proxy = TestProxy::start(&up, &creds(), &[]).await;
    for i in 0..6u64 {
        get_echo(proxy.addr(), &format!("/logs/_doc/{i}")).await;
        post_echo(proxy.addr(), "/logs/_search", body_for(i, 300)).await;
        // Long enough for the endpoint to close the pooled connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        up.tls_handshakes() >= 6,
        "the endpoint closed idle connections, so new ones were made: {} handshakes",
        up.tls_handshakes()
    );
    all_verified(&up);
}

#[tokio::test]
async fn connections_the_endpoint_closes_when_idle_are_replaced_h2() {
    idle_closed_connections_are_replaced(true).await;
}

#[tokio::test]
async fn connections_the_endpoint_closes_when_idle_are_replaced_http1() {
    idle_closed_connections_are_replaced(false).await;
}

async fn idle_close_race_is_retried(h2: bool) {
    let up = builder(h2)
        .idle_close(IdleClose::LoseRequestAfter(Duration::from_millis(200)))
        .start()
        .await;
    // A body over the spill threshold: the retry replays it from the temporary file.
    let proxy = TestProxy::start(&up, &creds(), &["--spill-threshold", "64KiB"]).await;
    // One client connection, so one worker and its pool serve every request.
    let mut client = KeepAlive::connect(proxy.addr()).await;
    let json = [("content-type", "application/json")];
    let bulk = body_for(7, 1 << 20);
    assert_echo(&client.get("/warm").await, "/warm", b"");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_echo(&client.get("/logs/_doc/1").await, "/logs/_doc/1", b"");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = client.send("POST", "/_bulk", &json, bulk.clone()).await;
    assert_echo(&resp, "/_bulk", &bulk);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = client.send("PUT", "/logs/_doc/2", &json, "{\"a\":1}").await;
    assert_echo(&resp, "/logs/_doc/2", b"{\"a\":1}");
    // The GET and the PUT met a pooled connection the endpoint had given up on; the bulk went
    // on a new one, as the retry before it had not been pooled.
    assert_eq!(
        up.lost_requests(),
        2,
        "requests after a pause met a connection the endpoint had given up on"
    );
    let paths: Vec<String> = up.requests().iter().map(|r| r.raw_path.clone()).collect();
    assert_eq!(
        paths,
        ["/warm", "/logs/_doc/1", "/_bulk", "/logs/_doc/2"],
        "each lost request arrived exactly once more"
    );
    all_verified(&up);
}

#[tokio::test]
async fn a_request_racing_the_endpoints_idle_close_is_sent_again_h2() {
    idle_close_race_is_retried(true).await;
}

#[tokio::test]
async fn a_request_racing_the_endpoints_idle_close_is_sent_again_http1() {
    idle_close_race_is_retried(false).await;
}

/// A streamed body (`--unsigned-payload`, over the spill threshold) is sent once: when the
/// endpoint's connection drops while the body is on its way, the client gets 502 saying why,
/// and the body is not sent again (it cannot be: part of it has gone). Requests after it are
/// served as usual.
async fn a_streamed_body_is_not_sent_twice(h2: bool) {
    use tokio::io::AsyncWriteExt;
    let up = builder(h2).start().await;
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &["--spill-threshold", "64KiB", "--unsigned-payload"],
    )
    .await;
    let body = body_for(3, 1 << 20);
    let mut conn = start_upload(proxy.addr(), body.len(), &body[..400_000]).await;
    assert!(
        up.wait_for_body_bytes(100_000, Duration::from_secs(10))
            .await
            >= 100_000,
        "the body is on its way"
    );
    up.drop_connections();
    // The rest may or may not be read: the proxy answers as soon as the upload failed.
    let _ = conn.write_all(&body[400_000..]).await;
    let head = response_head(&mut conn, Duration::from_secs(10)).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    post_echo(proxy.addr(), "/_bulk", body_for(4, 1 << 20)).await;
    let bulks = up
        .requests()
        .iter()
        .filter(|r| r.raw_path == "/_bulk")
        .count();
    assert_eq!(
        bulks, 1,
        "only the second bulk arrived; the first was not sent again"
    );
    all_verified(&up);
}

#[tokio::test]
async fn a_streamed_body_is_not_sent_twice_h2() {
    a_streamed_body_is_not_sent_twice(true).await;
}

#[tokio::test]
async fn a_streamed_body_is_not_sent_twice_http1() {
    a_streamed_body_is_not_sent_twice(false).await;
}

async fn restart_mid_traffic(h2: bool) {
    let up = Arc::new(builder(h2).start().await);
    let proxy = TestProxy::start(&up, &creds(), &["--spill-threshold", "64KiB"]).await;
    let addr = proxy.addr();
    let stop = Instant::now() + Duration::from_millis(2500);
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..6u64)
        .map(|c| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < stop {
                    match i % 3 {
                        0 => get_echo(addr, &format!("/logs/_doc/{c}-{i}")).await,
                        1 => post_echo(addr, "/logs/_search", body_for(c * 1000 + i, 2000)).await,
                        _ => post_echo(addr, "/_bulk", body_for(c * 1000 + i, 200_000)).await,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let restarts = {
        let up = up.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(450)).await;
                up.drop_connections();
            }
        })
    };
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("clients finished")
            .expect("every request was answered correctly");
    }
    restarts.await.unwrap();
    assert!(
        done.load(Ordering::Relaxed) >= 12,
        "traffic flowed: {}",
        done.load(Ordering::Relaxed)
    );
    assert!(
        up.tls_handshakes() >= 5,
        "each restart forced new connections: {}",
        up.tls_handshakes()
    );
    all_verified(&up);
}

#[tokio::test]
async fn an_endpoint_restart_mid_traffic_loses_no_request_h2() {
    restart_mid_traffic(true).await;
}

#[tokio::test]
async fn an_endpoint_restart_mid_traffic_loses_no_request_http1() {
    restart_mid_traffic(false).await;
}

// --------------------------------------------------------------------------------------------
// The endpoint stalls
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn stalled_requests_get_504_after_the_timeout_while_others_flow() {
    let up = builder(false)
        .route(
            "*",
            "/stall/_search",
            Reply::text(200, "too late").stall(Duration::from_secs(30)),
        )
        .start()
        .await;
    let proxy = TestProxy::start(&up, &creds(), &["--response-timeout", "700ms"]).await;
    let addr = proxy.addr();
    let stalled: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = get(addr, "/stall/_search").await;
                (resp, started.elapsed())
            })
        })
        .collect();
    // While those wait, everything else is answered promptly.
    let mut slowest = Duration::ZERO;
    for i in 0..10 {
        let started = Instant::now();
        get_echo(addr, &format!("/fast/_doc/{i}")).await;
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(3),
        "other requests were held up: {slowest:?}"
    );
    for s in stalled {
        let (resp, took) = s.await.unwrap();
        assert_eq!(resp.status, 504, "{}", resp.text());
        assert_eq!(resp.json()["error"]["type"], "upstream_timeout_exception");
        assert!(
            took >= Duration::from_millis(650) && took < Duration::from_secs(10),
            "504 after {took:?}"
        );
    }
    // Still healthy afterwards.
    for i in 0..5 {
        get_echo(addr, &format!("/after/_doc/{i}")).await;
    }
}

// --------------------------------------------------------------------------------------------
// Slow clients
// --------------------------------------------------------------------------------------------

/// Sends `head` then drips `drip` one byte every 100 ms; returns what the proxy answered (if
/// anything) and when it answered or closed the connection.
async fn drip(
    addr: std::net::SocketAddr,
    head: &'static [u8],
    drip: &'static [u8],
) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in drip.iter().cycle().take(200) {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_clients_are_cut_off_without_holding_up_others() {
    let up = builder(true).start().await;
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &["--header-read-timeout", "1s", "--request-timeout", "2s"],
    )
    .await;
    let addr = proxy.addr();
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(tokio::spawn(drip(
            addr,
            b"GET /slow-head HTTP/1.1\r\nHost: x\r\n",
            b"X-Slow: 1\r\n",
        )));
        slow.push(tokio::spawn(drip(
            addr,
            b"POST /slow-body/_search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
            b"{\"query\":{\"match_all\":{}}}",
        )));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        get_echo(addr, &format!("/fast/_doc/{i}")).await;
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(3),
        "slow clients held others up: {slowest:?}"
    );
    for (i, s) in slow.into_iter().enumerate() {
        let (answer, took) = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("drip ended")
            .unwrap();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(8),
            "slow client {i} cut off after {took:?}: {answer:?}"
        );
        assert!(
            answer.is_empty()
                || answer.starts_with("HTTP/1.1 408")
                || answer.starts_with("HTTP/1.1 504"),
            "slow client {i}: {answer:?}"
        );
    }
    assert!(
        up.requests()
            .iter()
            .all(|r| r.raw_path.starts_with("/fast")),
        "nothing a slow client half-sent reached the endpoint"
    );
}

// --------------------------------------------------------------------------------------------
// The real binary: memory and file descriptors
// --------------------------------------------------------------------------------------------

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS") as f64 / 1024.0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}

/// This process's soft limit on open files.
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

async fn start_binary(up: &TestUpstream, extra: &[&str]) -> ProxyProcess {
    let mut args = upstream_args(up);
    args.extend(extra.iter().map(|s| s.to_string()));
    ProxyProcess::start(&args, &env_creds()).await
}

/// Keeps a connection open after one request; the hyper connection task lives while it does.
type KeptAlive = hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>;

async fn keep_alive_after_one_request(addr: std::net::SocketAddr) -> KeptAlive {
    let mut sender = connection(addr).await;
    let resp = sender
        .send_request(
            http::Request::get("/_cluster/health")
                .header("host", "x")
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    sender
}

#[tokio::test]
async fn thousands_of_idle_client_connections_keep_memory_bounded() {
    let up = builder(true).start().await;
    let proxy = start_binary(&up, &[]).await;
    let pid = proxy.child.id().expect("pid");
    // Both processes hold one descriptor per connection; stay well inside the limit.
    let n = 2000.min(fd_limit().saturating_sub(300)) & !1;
    assert_eq!(get(proxy.addr, "/_cluster/health").await.status, 200);
    let before = rss_mib(pid);
    let fds_before = open_fds(pid);

    let started = Instant::now();
    // Half just connect and say nothing; half make one request and stay kept alive.
    let mut silent = Vec::with_capacity(n / 2);
    for _ in 0..n / 2 {
        silent.push(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let mut kept = Vec::with_capacity(n / 2);
    for chunk in 0..(n / 2).div_ceil(50) {
        let batch: Vec<_> = (0..50.min(n / 2 - chunk * 50))
            .map(|_| tokio::spawn(keep_alive_after_one_request(proxy.addr)))
            .collect();
        for b in batch {
            kept.push(b.await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = rss_mib(pid);
    let fds_idle = open_fds(pid);
    eprintln!(
        "proxy RSS: {before:.1} MiB before, {with_idle:.1} MiB with {n} idle client connections \
         ({:.1} KiB each); {fds_idle} fds (set up in {:?})",
        (with_idle - before) * 1024.0 / n as f64,
        started.elapsed()
    );
    assert!(
        fds_idle + 8 >= fds_before + n,
        "all {n} connections are open at the proxy: {fds_idle} fds"
    );
    assert!(
        with_idle < 64.0,
        "{n} idle connections took the proxy to {with_idle:.1} MiB"
    );
    // And it still serves.
    assert_eq!(get(proxy.addr, "/_cluster/health").await.status, 200);

    drop(silent);
    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > fds_before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        open_fds(pid) <= fds_before + 2,
        "closed client connections are released: {} fds, {fds_before} before",
        open_fds(pid)
    );
}

// --------------------------------------------------------------------------------------------
// Soak
// --------------------------------------------------------------------------------------------

const STREAM_LEN: u64 = 4 << 20;

/// Reads a streamed response through the proxy; `abort_after` drops the connection part-way.
async fn stream_response(addr: std::net::SocketAddr, abort_after: Option<u64>) {
    let work = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        let conn = tokio::spawn(conn);
        let resp = sender
            .send_request(
                http::Request::get("/_snapshot/stream")
                    .header("host", "x")
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("streamed body");
            if let Some(data) = frame.data_ref() {
                for (i, b) in data.iter().enumerate().step_by(997) {
                    assert_eq!(
                        *b,
                        generated_byte(seen + i as u64),
                        "byte {}",
                        seen + i as u64
                    );
                }
                seen += data.len() as u64;
            }
            if abort_after.is_some_and(|n| seen >= n) {
                conn.abort();
                return;
            }
        }
        assert_eq!(seen, STREAM_LEN);
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("streamed response within 60 s");
}

/// Sends the head and part of a body, then goes away.
async fn abort_mid_body(addr: std::net::SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = "POST /aborted/_bulk HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 2097152\r\n\r\n";
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body_for(1, 600_000)).await;
    drop(stream);
}

#[tokio::test]
async fn a_mixed_soak_answers_everything_and_leaks_nothing() {
    let secs: u64 = std::env::var("SIGV4_PROXY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let up = builder(true)
        .route("GET", "/_snapshot/stream", Reply::streamed(STREAM_LEN))
        .start()
        .await;
    let proxy = start_binary(&up, &["--spill-threshold", "256KiB"]).await;
    let pid = proxy.child.id().expect("pid");
    let addr = proxy.addr;
    let completed = Arc::new(AtomicU64::new(0));

    // One pass of the mix per worker step: GET, search POST, bulk (spilled), streamed
    // response, and now and then a client that goes away mid-body or mid-response.
    async fn step(addr: std::net::SocketAddr, worker: u64, i: u64) {
        let seed = worker * 1_000_000 + i;
        match i % 8 {
            0 | 4 => get_echo(addr, &format!("/logs-{worker}/_doc/{i}")).await,
            1 | 5 => post_echo(addr, "/logs-*/_search", body_for(seed, 1500)).await,
            2 => post_echo(addr, "/_bulk", body_for(seed, 1 << 20)).await,
            3 => stream_response(addr, None).await,
            6 => stream_response(addr, Some(1 << 20)).await,
            _ => abort_mid_body(addr).await,
        }
    }
    async fn run_for(
        addr: std::net::SocketAddr,
        workers: u64,
        until: Instant,
        completed: Arc<AtomicU64>,
    ) {
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let completed = completed.clone();
                tokio::spawn(async move {
                    let mut i = w;
                    while Instant::now() < until {
                        step(addr, w, i).await;
                        completed.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("every request answered correctly");
        }
    }

    let started = Instant::now();
    let warm = Duration::from_secs((secs / 5).clamp(2, 12));
    run_for(addr, 6, started + warm, completed.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_warm = rss_mib(pid);
    let fds_warm = open_fds(pid);
    let done_warm = completed.load(Ordering::Relaxed);

    run_for(
        addr,
        6,
        started + Duration::from_secs(secs),
        completed.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = rss_mib(pid);
    let fds_end = open_fds(pid);
    let hwm = proc_status_kib(pid, "VmHWM") as f64 / 1024.0;
    let done = completed.load(Ordering::Relaxed);
    eprintln!(
        "soak {secs}s: {done} operations ({done_warm} in the warm-up); proxy RSS {rss_warm:.1} MiB \
         after warm-up, {rss_end:.1} MiB at the end, peak {hwm:.1} MiB; fds {fds_warm} -> {fds_end}"
    );
    assert!(done > done_warm, "the soak ran past its warm-up");
    assert!(
        fds_end <= fds_warm + 4,
        "open files grew from {fds_warm} to {fds_end}"
    );
    assert!(
        rss_end <= rss_warm * 1.5 + 16.0,
        "memory grew from {rss_warm:.1} MiB to {rss_end:.1} MiB"
    );
    let seen = up.requests();
    assert!(
        seen.iter().all(|r| r.raw_path != "/aborted/_bulk"),
        "a body the client abandoned was never sent on"
    );
    all_verified(&up);
    assert_eq!(get(addr, "/_cluster/health").await.status, 200);
}
