//! `sigv4-proxy check` as the real binary, with a clean environment, against fake endpoints that
//! answer each way AWS does (IAM deny, fine-grained access control deny, aoss deny, signature
//! mismatch, expired token, clock skew, success) and a fake STS on loopback.
//!
//! Each test prints the report (`cargo test check:: -- --nocapture` shows them all): those
//! outputs are the examples in docs/admin-and-check.md.

use std::time::Duration;

use crate::support::proxy::clean_env;
use crate::support::sts::FakeSts;
use crate::support::{Creds, Reply, TestUpstream};

const KEY: &str = "ASIAEXAMPLECHECK4XYZ";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCHECKKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLECHECKTOKEN==";
const ROLE_SESSION: &str = "arn:aws:sts::123456789012:assumed-role/dev/alice";

fn creds() -> Creds {
    Creds::with_token(KEY, SECRET, TOKEN)
}

fn env_creds(secret: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
        ("AWS_SESSION_TOKEN".into(), TOKEN.into()),
    ]
}

async fn upstream(service: &str) -> TestUpstream {
    TestUpstream::start_for(service, creds()).await
}

struct Outcome {
    code: i32,
    out: String,
}

impl Outcome {
    /// The report line of `step` (`✓ TLS …`), panicking with the whole report when absent.
    fn line(&self, step: &str) -> &str {
        self.out
            .lines()
            .find(|l| {
                l.split_once(' ')
                    .is_some_and(|(_, rest)| rest.starts_with(&format!("{step} ")))
            })
            .unwrap_or_else(|| panic!("no `{step}` line in:\n{}", self.out))
    }

    fn assert_line(&self, step: &str, mark: &str, contains: &[&str]) {
        let line = self.line(step);
        assert!(
            line.starts_with(mark),
            "`{step}` is not {mark}:\n{}",
            self.out
        );
        for c in contains {
            assert!(self.out.contains(c), "`{c}` missing from:\n{}", self.out);
        }
    }
}

/// Runs `sigv4-proxy check` against `up` (through --connect-to and its CA) with `env` on a clean
/// environment and `AWS_ENDPOINT_URL_STS` pointing at `sts`.
async fn check(
    up: &TestUpstream,
    sts: &FakeSts,
    env: &[(String, String)],
    extra: &[&str],
    with_ca: bool,
) -> Outcome {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"));
    cmd.arg("check")
        .arg(format!("https://{}", up.host_name()))
        .arg("--connect-to")
        .arg(up.addr().to_string());
    if with_ca {
        cmd.arg("--ca-bundle").arg(up.ca_bundle_path());
    }
    cmd.args(extra);
    run(cmd, sts, env).await
}

async fn run(mut cmd: tokio::process::Command, sts: &FakeSts, env: &[(String, String)]) -> Outcome {
    cmd.env_clear().kill_on_drop(true);
    for (k, v) in clean_env().iter().chain(env.iter()) {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL_STS", sts.url());
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("check finished within 60 s")
        .expect("run sigv4-proxy check");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{out}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        println!("stderr:\n{stderr}");
    }
    Outcome {
        code: output.status.code().expect("exit code"),
        out,
    }
}

async fn sts() -> FakeSts {
    FakeSts::identity(ROLE_SESSION, "123456789012").await
}

#[tokio::test]
async fn success_passes_every_step_and_exits_0() {
    let up = upstream("es").await;
    up.add_route(
        "GET",
        "/",
        Reply::json(
            200,
            &serde_json::json!({"cluster_name": "123456789012:logs", "version": {"distribution": "opensearch", "number": "2.13.0"}}),
        ),
    );
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 0, "{}", o.out);
    o.assert_line(
        "endpoint",
        "✓",
        &["service es (from the host name), region us-east-1 (from the host name)"],
    );
    o.assert_line(
        "credentials",
        "✓",
        &["EnvironmentVariable, key …4XYZ, temporary (with session token), no expiry"],
    );
    o.assert_line(
        "identity",
        "✓",
        &[
            &format!("{ROLE_SESSION} (account 123456789012)"),
            "name it as arn:aws:iam::123456789012:role/dev",
        ],
    );
    o.assert_line("DNS", "·", &["skipped: --connect-to"]);
    o.assert_line("TCP", "✓", &[&format!("connected to {}", up.addr())]);
    o.assert_line("TLS", "✓", &["h2; certificate", "issued by CN="]);
    o.assert_line("request", "✓", &["GET / → 200 OK: the endpoint accepted the signed request (cluster 123456789012:logs, OpenSearch 2.13.0)"]);
    o.assert_line("clock", "✓", &[]);
    assert!(
        o.out.trim_end().ends_with("All checks passed."),
        "{}",
        o.out
    );
    assert_eq!(sts.requests(), 1);
    assert!(!o.out.contains(SECRET) && !o.out.contains(TOKEN));
}

#[tokio::test]
async fn iam_denial_is_told_apart_and_exits_1() {
    let up = upstream("es").await;
    up.add_route(
        "GET",
        "/",
        Reply::json(
            403,
            &serde_json::json!({"Message": format!("User: {ROLE_SESSION} is not authorized to perform: es:ESHttpGet because no identity-based policy allows the es:ESHttpGet action")}),
        ),
    );
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line("request", "✗", &["GET / → 403 Forbidden: denied by IAM", "AWS said: User: arn:aws:sts::123456789012:assumed-role/dev/alice is not authorized", "fix: allow es:ESHttpGet on arn:aws:es:us-east-1:ACCOUNT:domain/test/* for arn:aws:iam::123456789012:role/dev"]);
    assert!(o.out.trim_end().ends_with("1 check failed."), "{}", o.out);
}

#[tokio::test]
async fn fine_grained_access_control_denial_is_told_apart() {
    let up = upstream("es").await;
    let reason = "no permissions for [cluster:monitor/main] and User [name=arn:aws:iam::123456789012:role/dev, backend_roles=[arn:aws:iam::123456789012:role/dev], requestedTenant=null]";
    up.add_route(
        "GET",
        "/",
        Reply::json(
            403,
            &serde_json::json!({"error": {"root_cause": [{"type": "security_exception", "reason": reason}], "type": "security_exception", "reason": reason}, "status": 403}),
        ),
    );
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line(
        "request",
        "✗",
        &[
            "denied by fine-grained access control",
            "allows [cluster:monitor/main]",
            "fix: map arn:aws:iam::123456789012:role/dev as a backend role",
        ],
    );
}

#[tokio::test]
async fn aoss_denial_names_both_policies() {
    let up = upstream("aoss").await;
    up.add_route(
        "GET",
        "/_cat/indices",
        Reply::json(
            403,
            &serde_json::json!({"status": 403, "request-id": "0a1b2c3d-0000-4000-8000-000000000000", "error": {"reason": "403 Forbidden", "type": "Forbidden"}}),
        )
        .header("x-aoss-response-hint", "X01:gw-helper-deny"),
    );
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line("endpoint", "✓", &["service aoss"]);
    o.assert_line("request", "✗", &["GET /_cat/indices → 403 Forbidden (X01:gw-helper-deny): denied by the collection's network policy or by its data access policy; aoss does not say which", "fix: network policy:", "fix: data access policy: it must grant arn:aws:iam::123456789012:role/dev"]);
}

#[tokio::test]
async fn aoss_404_on_root_is_normal() {
    let up = upstream("aoss").await;
    up.add_route("GET", "/", Reply::status(404));
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &["--path", "/"], true).await;
    assert_eq!(o.code, 0, "{}", o.out);
    o.assert_line(
        "request",
        "✓",
        &["GET / → 404 Not Found: normal for OpenSearch Serverless"],
    );
}

#[tokio::test]
async fn signature_mismatch_shows_what_the_endpoint_expected() {
    let up = upstream("es").await;
    let sts = sts().await;
    // The secret does not belong to the key: the endpoint computes another signature.
    let o = check(&up, &sts, &env_creds("not-the-right-secret"), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    assert!(
        o.out.contains("x-amz-security-token:(redacted)"),
        "{}",
        o.out
    );
    assert!(
        !o.out.contains(TOKEN),
        "the session token is never printed:\n{}",
        o.out
    );
    o.assert_line(
        "request",
        "✗",
        &[
            "signature mismatch",
            "AWS said: The request signature we calculated does not match",
            "The Canonical String for this request should have been",
            "fix: a skewed clock",
        ],
    );
}

#[tokio::test]
async fn expired_token_is_named() {
    let up = upstream("es").await;
    up.expire_token(TOKEN);
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line(
        "request",
        "✗",
        &[
            "the credentials' session token has expired",
            "AWS said: The security token included in the request is expired",
            "fix: get fresh credentials",
        ],
    );
    // The environment has no newer key, so the proxy passed the rejection on without a retry.
    assert!(!o.out.contains("first answer"), "{}", o.out);
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn small_clock_skew_is_a_warning() {
    let up = upstream("es").await;
    up.set_clock_offset_secs(150);
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 0, "warnings do not fail the check:\n{}", o.out);
    o.assert_line("request", "✓", &[]);
    o.assert_line(
        "clock",
        "!",
        &["behind the endpoint's", "fix: synchronise the clock"],
    );
    assert!(
        o.out.contains("All checks passed, with 1 warning."),
        "{}",
        o.out
    );
}

#[tokio::test]
async fn large_clock_skew_fails_the_clock_step_though_the_proxy_works_around_it() {
    let up = upstream("es").await;
    up.set_clock_offset_secs(600);
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    // The endpoint refused the first signature ("Signature expired"); the proxy learnt the
    // endpoint's time from the answer and signed again, as it does for client requests.
    o.assert_line("request", "✓", &["GET / → 200 OK", "first answer: the signature time was refused; the proxy signed again with the endpoint's time"]);
    o.assert_line(
        "clock",
        "✗",
        &[
            "the local clock is 10m",
            "behind the endpoint's",
            "the proxy works around it",
        ],
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn missing_credentials_fail_and_skip_what_needs_them() {
    let up = upstream("es").await;
    let sts = sts().await;
    let o = check(&up, &sts, &[], &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line(
        "credentials",
        "✗",
        &[
            "none found",
            "fix: configure one source of the default chain",
        ],
    );
    o.assert_line("identity", "·", &["skipped: no credentials"]);
    o.assert_line("TLS", "✓", &[]);
    o.assert_line("request", "·", &["skipped: no credentials to sign with"]);
    assert_eq!(sts.requests(), 0);
}

#[tokio::test]
async fn credentials_sts_refuses_are_a_failure() {
    let up = upstream("es").await;
    let sts = FakeSts::error(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
    )
    .await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], true).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line("identity", "✗", &["STS refused the credentials: AWS does not know this access key or session token (InvalidClientTokenId)"]);
}

#[tokio::test]
async fn unreachable_sts_is_only_a_warning() {
    let up = upstream("es").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut env = env_creds(SECRET);
    // Overrides the fake STS: nothing listens there.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"));
    cmd.args([
        "check",
        &format!("https://{}", up.host_name()),
        "--connect-to",
        &up.addr().to_string(),
    ])
    .arg("--ca-bundle")
    .arg(up.ca_bundle_path());
    env.push(("AWS_ENDPOINT_URL_STS".into(), format!("http://{closed}")));
    cmd.env_clear();
    for (k, v) in clean_env().iter().chain(env.iter()) {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("bounded")
        .expect("run");
    let o = Outcome {
        code: output.status.code().unwrap(),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
    };
    println!("{}", o.out);
    assert_eq!(o.code, 0, "{}", o.out);
    o.assert_line(
        "identity",
        "!",
        &["could not reach STS", "not counted as a failure"],
    );
}

#[tokio::test]
async fn unknown_certificate_issuer_shows_the_presented_certificate() {
    let up = upstream("es").await;
    let sts = sts().await;
    let o = check(&up, &sts, &env_creds(SECRET), &[], false).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line(
        "TLS",
        "✗",
        &[
            "handshake failed: invalid peer certificate: UnknownIssuer",
            "the server presented: certificate",
            "fix: the certificate is not signed by a public CA",
        ],
    );
    o.assert_line("request", "·", &["skipped: the endpoint is not reachable"]);
}

#[tokio::test]
async fn dns_step_resolves_and_classifies_the_address() {
    let up = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(creds())
        .host_name("localhost")
        .start()
        .await;
    let sts = sts().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"));
    cmd.args([
        "check",
        &format!("https://localhost:{}", up.addr().port()),
        "--service",
        "es",
        "--region",
        "us-east-1",
    ])
    .arg("--ca-bundle")
    .arg(up.ca_bundle_path());
    let o = run(cmd, &sts, &env_creds(SECRET)).await;
    assert_eq!(o.code, 0, "{}", o.out);
    o.assert_line(
        "endpoint",
        "✓",
        &["service es (from --service), region us-east-1 (from --region)"],
    );
    o.assert_line("DNS", "✓", &["localhost → ", "(loopback)"]);
    o.assert_line("TCP", "✓", &[&format!("127.0.0.1:{}", up.addr().port())]);
}

#[tokio::test]
async fn bad_configuration_is_a_failed_endpoint_step() {
    let up = upstream("es").await;
    let sts = sts().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"));
    cmd.args(["check", "http://search-x.us-east-1.es.amazonaws.com"]);
    let o = run(cmd, &sts, &env_creds(SECRET)).await;
    assert_eq!(o.code, 1, "{}", o.out);
    o.assert_line("endpoint", "✗", &["plain http"]);
    drop(up);
}

#[test]
fn proxy_still_starts_without_the_subcommand() {
    // `sigv4-proxy ENDPOINT` keeps its meaning next to `sigv4-proxy check ENDPOINT`: a bad
    // flag value for the proxy is still a configuration error (exit 64), not a check.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"))
        .args(["--max-body", "lots", "https://x.us-east-1.es.amazonaws.com"])
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-body"));
}
