//! The real binary: configuration errors, credentials from the environment, logs that never
//! show a secret, curl as a client, and a graceful SIGTERM.

use std::time::Duration;

use crate::support::http::get;
use crate::support::proxy::upstream_args;
use crate::support::{Creds, ProxyProcess, Reply, TestUpstream};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENvalue==";

fn env_creds() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "ASIAENVEXAMPLE1234".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET.into()),
        ("AWS_SESSION_TOKEN".into(), TOKEN.into()),
    ]
}

async fn upstream() -> TestUpstream {
    TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(Creds::with_token("ASIAENVEXAMPLE1234", SECRET, TOKEN))
        .start()
        .await
}

fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    run_to_exit_with(args, &[])
}

/// Runs the binary to its exit with no environment but `env` (and IMDS off).
fn run_to_exit_with(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .output()
        .expect("run sigv4-proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_64_with_the_reason() {
    let (code, err) = run_to_exit(&["https://search.example.com"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("needs --service es|aoss"), "{err}");
    let (code, err) = run_to_exit(&["http://search-x.us-east-1.es.amazonaws.com"]);
    assert_eq!(code, Some(64));
    assert!(err.contains("https"), "{err}");
    let (code, err) = run_to_exit(&[
        "--max-body",
        "huge",
        "https://search-x.us-east-1.es.amazonaws.com",
    ]);
    assert_eq!(code, Some(64));
    assert!(err.contains("--max-body"), "{err}");
    let (code, err) = run_to_exit(&[
        "--ca-bundle",
        "/nonexistent.pem",
        "https://search-x.us-east-1.es.amazonaws.com",
    ]);
    assert_eq!(code, Some(64));
    assert!(err.contains("/nonexistent.pem"), "{err}");
    let (code, err) = run_to_exit(&[]);
    assert_eq!(code, Some(64));
    assert!(err.contains("no endpoint"), "{err}");
}

#[test]
fn every_flag_has_an_environment_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let flags: Vec<String> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches([',', '.', ')'])
                .split('=')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    assert!(flags.len() > 15, "{help}");
    for flag in flags {
        let var = format!(
            "SIGV4_PROXY_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(
            help.contains(&var),
            "{flag} has no environment variable {var} in --help"
        );
    }
    assert!(help.contains("SIGV4_PROXY_ENDPOINT"));
}

#[tokio::test]
async fn environment_credentials_sign_requests_and_never_reach_the_logs() {
    let up = upstream().await;
    let mut args = upstream_args(&up);
    args.push("-vv".into());
    let env = env_creds();
    let mut proxy = ProxyProcess::start(&args, &env).await;
    let resp = crate::support::http::send(
        proxy.addr,
        "POST",
        "/idx/_search",
        &[
            ("authorization", "Basic Y2xpZW50OnBhc3N3b3Jk"),
            ("content-type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(up.last_request().unwrap().verified());
    assert_eq!(
        up.last_request().unwrap().header("x-amz-security-token"),
        Some(TOKEN)
    );
    let status = proxy.terminate().await;
    assert!(status.success(), "{status:?}");
    let logs = proxy.stderr();
    assert!(
        logs.contains("EnvironmentVariable"),
        "start-up names the credential source:\n{logs}"
    );
    assert!(logs.contains("…1234"), "start-up shows the key id's tail");
    for secret in [SECRET, TOKEN, "Y2xpZW50OnBhc3N3b3Jk", "ASIAENVEXAMPLE1234"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs at -vv:\n{logs}"
        );
    }
    assert!(!logs.contains("Signature="), "no signature in the logs");
    assert!(
        logs.contains("status=200"),
        "one access-log line per request:\n{logs}"
    );
}

#[tokio::test]
async fn json_logs_carry_one_line_per_request() {
    let up = upstream().await;
    let mut args = upstream_args(&up);
    args.extend(["--log-format".to_string(), "json".to_string()]);
    let mut proxy = ProxyProcess::start_json(&args, &env_creds()).await;
    assert_eq!(get(proxy.addr, "/_cluster/health").await.status, 200);
    proxy.terminate().await;
    let logs = proxy.stderr();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["path"] == "/_cluster/health")
        .unwrap_or_else(|| panic!("no JSON access line:\n{logs}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].is_string() || line["latency_ms"].is_number());
}

#[tokio::test]
async fn curl_through_the_proxy() {
    let up = upstream().await;
    let proxy = ProxyProcess::start(&upstream_args(&up), &env_creds()).await;
    let base = proxy.url("");
    let curl = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("curl")
            .args(&args)
            .output()
            .await
            .expect("curl is installed");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = curl(vec![
        "-sS".into(),
        "-g".into(),
        format!("{base}/_cat/indices?v&h=index,health"),
    ])
    .await;
    assert!(ok, "{out}");
    let rec = up.last_request().unwrap();
    assert!(rec.verified());
    assert_eq!(rec.raw_query.as_deref(), Some("v&h=index%2Chealth"));

    let body: String = (0..20_000)
        .map(|i| format!("{{\"index\":{{}}}}\n{{\"n\":{i}}}\n"))
        .collect();
    let file = std::env::temp_dir().join(format!(
        "sigv4-proxy-curl-bulk-{}.ndjson",
        std::process::id()
    ));
    std::fs::write(&file, &body).unwrap();
    let (ok, out) = curl(vec![
        "-sS".into(),
        "-XPOST".into(),
        "-H".into(),
        "Content-Type: application/x-ndjson".into(),
        "-H".into(),
        "Transfer-Encoding: chunked".into(),
        "--data-binary".into(),
        format!("@{}", file.display()),
        format!("{base}/_bulk"),
    ])
    .await;
    std::fs::remove_file(&file).ok();
    assert!(ok, "{out}");
    let rec = up.last_request().unwrap();
    assert!(rec.verified(), "{:?}", rec.verification);
    assert_eq!(rec.body_len, body.len() as u64);
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let up = upstream().await;
    up.add_route(
        "GET",
        "/slow",
        Reply::text(200, "finished").stall(Duration::from_millis(1500)),
    );
    let mut proxy = ProxyProcess::start(&upstream_args(&up), &env_creds()).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    up.wait_for_requests(1, Duration::from_secs(10)).await;
    let status = proxy.terminate().await;
    assert!(status.success(), "{status:?}");
    let resp = in_flight.await.unwrap();
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "finished"),
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// An upstream on a custom host name (no region in it) that verifies signatures for `region`.
async fn custom_host_upstream(region: &str) -> TestUpstream {
    TestUpstream::builder()
        .service("es")
        .region(region)
        .host_name("search.internal.example.net")
        .creds(Creds::with_token("ASIAENVEXAMPLE1234", SECRET, TOKEN))
        .start()
        .await
}

/// `args` for `up` plus `--service es`, no `--region`.
fn custom_host_args(up: &TestUpstream) -> Vec<String> {
    let mut args = upstream_args(up);
    args.extend(["--service".to_string(), "es".to_string()]);
    args
}

#[tokio::test]
async fn a_custom_host_with_service_signs_for_the_region_of_aws_region() {
    let up = custom_host_upstream("eu-central-1").await;
    let mut env = env_creds();
    env.push(("AWS_REGION".into(), "eu-central-1".into()));
    let mut proxy = ProxyProcess::start(&custom_host_args(&up), &env).await;
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), proxy.stderr());
    let rec = up.last_request().unwrap();
    assert!(rec.verified(), "{:?}", rec.verification);
    assert!(
        rec.header("authorization")
            .unwrap()
            .contains("/eu-central-1/es/aws4_request"),
        "{:?}",
        rec.header("authorization")
    );
    assert!(proxy.terminate().await.success());
}

#[tokio::test]
async fn a_custom_host_with_service_signs_for_the_region_of_the_profile() {
    let up = custom_host_upstream("ap-southeast-2").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "[default]\nregion = us-west-2\n[profile work]\nregion = ap-southeast-2\n",
    )
    .unwrap();
    let mut env = env_creds();
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    let mut args = custom_host_args(&up);
    args.extend(["--profile".to_string(), "work".to_string()]);
    let mut proxy = ProxyProcess::start(&args, &env).await;
    let resp = get(proxy.addr, "/").await;
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), proxy.stderr());
    let rec = up.last_request().unwrap();
    assert!(rec.verified(), "{:?}", rec.verification);
    assert!(rec
        .header("authorization")
        .unwrap()
        .contains("/ap-southeast-2/es/aws4_request"));
    assert!(proxy.terminate().await.success());
}

#[test]
fn a_custom_host_with_no_region_anywhere_says_where_to_put_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(&config, "[profile work]\noutput = json\n").unwrap();
    let config = config.display().to_string();
    let (code, stderr) = run_to_exit_with(
        &[
            "https://search.internal.example.net",
            "--service",
            "es",
            "--profile",
            "work",
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("AWS_CONFIG_FILE", &config),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ("HOME", "/nonexistent"),
        ],
    );
    assert_eq!(code, Some(64), "a configuration error: {stderr}");
    assert!(
        stderr.contains("no region")
            && stderr.contains("--region")
            && stderr.contains("AWS_REGION")
            && stderr.contains("profile `work`"),
        "{stderr}"
    );
}

#[test]
fn the_readme_quotes_the_open_listener_refusal_as_the_binary_prints_it() {
    let readme = crate::support::docs::read("README.md");
    let lines: Vec<&str> = readme.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("sigv4-proxy: refusing to listen on"))
        .expect("README quotes the refusal");
    let command = lines[at - 1]
        .strip_prefix("$ sigv4-proxy ")
        .expect("the line before the quote is the command");
    let args: Vec<&str> = command.split_whitespace().collect();
    let (code, stderr) = run_to_exit(&args);
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.trim_end(), lines[at]);
}

#[tokio::test]
async fn a_request_that_outlives_the_drain_deadline_is_cut_off_and_the_process_exits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream().await;
    up.add_route(
        "GET",
        "/stuck",
        Reply::text(200, "too late").stall(Duration::from_secs(60)),
    );
    let mut args = upstream_args(&up);
    args.extend(["--drain-timeout".to_string(), "1s".to_string()]);
    let mut proxy = ProxyProcess::start(&args, &env_creds()).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    up.wait_for_requests(1, Duration::from_secs(10)).await;
    // Bounded by `terminate` (15 s), far below the upstream's 60 s stall.
    let status = proxy.terminate().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was closed once the process exited"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("too late"),
        "the stuck request did not complete: {answer}"
    );
    let log = proxy.stderr();
    assert!(log.contains("drain deadline passed"), "{log}");
    assert!(
        status.code().is_some(),
        "exited by itself, not by a signal: {status:?}\n{log}"
    );
}

/// `--workers N` runs N worker threads, `auto` half the CPUs the process may use (rounded up),
/// and the ready line says how many; requests are served either way.
#[tokio::test]
async fn workers_sets_how_many_threads_serve_connections() {
    let up = upstream().await;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (flag, expected) in [(Some("3"), 3), (None, cpus.div_ceil(2))] {
        let mut args = upstream_args(&up);
        if let Some(n) = flag {
            args.extend(["--workers".to_string(), n.to_string()]);
        }
        let mut proxy = ProxyProcess::start(&args, &env_creds()).await;
        // The workers start with the first connection.
        assert_eq!(get(proxy.addr, "/_cluster/health").await.status, 200);
        let pid = proxy.child.id().expect("running");
        let workers = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the proxy's threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("sigv4-worker-"))
            .count();
        assert_eq!(workers, expected, "--workers {flag:?} on {cpus} CPUs");
        proxy.terminate().await;
        let logs = proxy.stderr();
        assert!(
            logs.lines()
                .any(|l| l.contains("sigv4-proxy ready")
                    && l.contains(&format!("workers={expected}"))),
            "{logs}"
        );
    }
}
