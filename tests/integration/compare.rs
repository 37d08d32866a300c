//! The README's "How it compares", measured: the other SigV4 tools that run on this machine and
//! sigv4-proxy, each against its own verifying [`TestUpstream`] (`es` and `aoss`) on loopback,
//! over the same cases: the paths and queries OpenSearch users send (`*`, `,`, `:`, date math,
//! `%2F`, `//`, `?v`, `q=a:b`, `+` and `%2B`, a repeated key), a session token, a body for
//! `aoss`, an upstream 403 passed through, and for the proxies streaming, a Dashboards redirect,
//! the client's headers and the default listen address.
//!
//! The tools: `curl --aws-sigv4` (the machine's curl), awscurl (`pip install awscurl`) and
//! santthosh/aws-es-kibana (`npm install -g aws-es-kibana`). For each case the test records
//! whether the request reached the upstream, whether the upstream's verifier accepted its
//! signature (and its error if not) and the status the client saw. It prints a Markdown table
//! and writes it to `target/test-artifacts/compare.md`.
//!
//! A tool's failure is a result, not a test failure: the test fails only when sigv4-proxy
//! itself fails a case (or, with `CI=true`, when a tool is missing). It is `#[ignore]`d (it
//! needs tools CI does not install):
//! `cargo test --test integration compare -- --ignored --nocapture`.
//!
//! Host names: curl and sigv4-proxy reach the upstream under its AWS-looking name through
//! `--connect-to`. awscurl and aws-es-kibana have no such option (and no /etc/hosts entry is
//! made), so their upstream is named `localhost`, with region and service given explicitly
//! (`--region`/`--service`; aws-es-kibana has `-r` and always signs for `es`). They find the
//! test CA through `REQUESTS_CA_BUNDLE` and `NODE_EXTRA_CA_CERTS`.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::http::{try_connection, try_send};
use crate::support::proxy::{clean_env, upstream_args, ProxyProcess};
use crate::support::sigv4::{
    self, sha256_hex, CanonicalOptions, ReceivedRequest, SigError, VerifyContext,
};
use crate::support::{tools, Creds, Gate, Recorded, Reply, TestUpstream};

const TEST: &str = "compare";
const REGION: &str = "us-east-1";
/// What a domain's fine-grained access control answers a user without the permission.
const DENIED_BODY: &str = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"no permissions for [indices:data/read/search] and User [name=arn:aws:iam::123456789012:role/reader, backend_roles=[arn:aws:iam::123456789012:role/reader], requestedTenant=null]"}],"type":"security_exception","reason":"no permissions for [indices:data/read/search] and User [name=arn:aws:iam::123456789012:role/reader, backend_roles=[arn:aws:iam::123456789012:role/reader], requestedTenant=null]"},"status":403}"#;
/// Headers a Dashboards browser or an application sends that the cluster needs or logs.
const CLIENT_HEADERS: &[(&str, &str)] = &[
    ("osd-xsrf", "true"),
    ("osd-version", "2.11.0"),
    ("x-opaque-id", "compare-run"),
    ("content-type", "application/json"),
];
const STREAM_FIRST: usize = 256 * 1024;
const STREAM_REST: usize = 1024 * 1024;
/// How long the upstream holds the rest of a streamed body for the client to show it has the
/// first part.
const STREAM_WAIT: Duration = Duration::from_secs(8);
/// Bound on one tool run or one request.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn long_term() -> Creds {
    Creds::new("AKIDCOMPAREEXAMPLE", "compare/long-term/secret")
}

fn temporary() -> Creds {
    Creds::with_token(
        "ASIACOMPAREEXAMPLE",
        "compare/temporary/secret",
        "compare-session-token/with+slash==",
    )
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

/// What a case looks at beyond reached / signed / status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Plain,
    /// The upstream answers a verified request 403 with [`DENIED_BODY`].
    Denied,
    /// The upstream answers 302 to `/_dashboards/app/home` on itself (proxies only).
    Redirect,
    /// Which of [`CLIENT_HEADERS`] reach the upstream (proxies only).
    Headers,
    /// The response body reaches the client while the upstream still sends it (proxies only).
    Stream,
}

impl Check {
    fn proxy_only(self) -> bool {
        matches!(self, Check::Redirect | Check::Headers | Check::Stream)
    }

    fn expected_status(self) -> u16 {
        match self {
            Check::Denied => 403,
            Check::Redirect => 302,
            _ => 200,
        }
    }
}

struct Case {
    row: &'static str,
    service: &'static str,
    method: &'static str,
    /// Path and query as the user gives them to the tool.
    target: &'static str,
    /// The body: `body` repeated `repeat` times.
    body: &'static str,
    repeat: usize,
    token: bool,
    /// Clients only: the user adds `x-amz-content-sha256` (the body's hash) with `-H`.
    user_content_sha: bool,
    check: Check,
}

impl Case {
    fn body(&self) -> String {
        self.body.repeat(self.repeat)
    }

    fn applies_to(&self, peer: &Peer) -> bool {
        if peer.is_proxy() {
            !self.user_content_sha
        } else {
            !self.check.proxy_only()
        }
    }

    fn not_applicable(&self) -> &'static str {
        if self.user_content_sha {
            "n/a (a proxy)"
        } else {
            "n/a (a client)"
        }
    }

    /// `-H` arguments the user adds for this case.
    fn user_headers(&self) -> Vec<String> {
        let mut headers = Vec::new();
        if !self.body.is_empty() {
            headers.push("content-type: application/json".to_string());
        }
        if self.user_content_sha {
            headers.push(format!(
                "x-amz-content-sha256: {}",
                sha256_hex(self.body().as_bytes())
            ));
        }
        headers
    }
}

const fn get(row: &'static str, target: &'static str) -> Case {
    Case {
        row,
        service: "es",
        method: "GET",
        target,
        body: "",
        repeat: 1,
        token: false,
        user_content_sha: false,
        check: Check::Plain,
    }
}

const fn post(row: &'static str, target: &'static str, body: &'static str) -> Case {
    Case {
        method: "POST",
        body,
        ..get(row, target)
    }
}

const fn on_aoss(case: Case) -> Case {
    Case {
        service: "aoss",
        ..case
    }
}

const DOC: &str = r#"{"title":"rust"}"#;

const CASES: &[Case] = &[
    get("path with `*` and `,`", "/logs-*,metrics-*/_search"),
    get("path with `:` (remote cluster)", "/remote:logs/_search"),
    get(
        "date math `%3Clogs-%7Bnow%2Fd%7D%3E`",
        "/%3Clogs-%7Bnow%2Fd%7D%3E/_search",
    ),
    get("`%2F` in a document id", "/logs/_doc/a%2Fb"),
    get("`//` in the path", "/logs//_search"),
    get("query `?v`", "/_cat/indices?v"),
    get("query `q=a:b`", "/_search?q=title:rust"),
    get("query `+` (a space)", "/_search?q=a+b"),
    get("query `%2B` (a plus)", "/_search?q=a%2Bb"),
    get(
        "repeated query key",
        "/_search?filter_path=took&filter_path=hits.total",
    ),
    Case {
        token: true,
        ..get("session token", "/_cluster/health")
    },
    Case {
        check: Check::Denied,
        ..get("upstream 403 body passed through", "/secret/_search")
    },
    post("`es` POST with a body", "/books/_doc", DOC),
    Case {
        repeat: 800,
        ..post(
            "`es` POST, a 45 KiB `_bulk` body",
            "/_bulk",
            "{\"index\":{\"_index\":\"books\"}}\n{\"title\":\"rust\",\"year\":2024}\n",
        )
    },
    on_aoss(get("`aoss` GET", "/books/_search")),
    on_aoss(post("`aoss` POST with a body", "/books/_doc", DOC)),
    Case {
        user_content_sha: true,
        ..on_aoss(post(
            "`aoss` POST, the user adds `x-amz-content-sha256` (`-H`)",
            "/books/_doc",
            DOC,
        ))
    },
    Case {
        check: Check::Stream,
        ..get("response streamed (1.25 MiB, upstream pauses)", "/stream")
    },
    Case {
        check: Check::Redirect,
        ..get("Dashboards redirect (absolute `Location`)", "/_dashboards")
    },
    Case {
        check: Check::Headers,
        ..post("client headers sent upstream", "/_search", "{}")
    },
];

// ---------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Peer {
    Sigv4Proxy,
    Curl(PathBuf),
    Awscurl(PathBuf),
    AwsEsKibana(PathBuf),
}

impl Peer {
    fn is_proxy(&self) -> bool {
        matches!(self, Peer::Sigv4Proxy | Peer::AwsEsKibana(_))
    }

    /// Peers without `--connect-to` reach an upstream named `localhost`.
    fn uses_localhost(&self) -> bool {
        matches!(self, Peer::Awscurl(_) | Peer::AwsEsKibana(_))
    }
}

/// One column of the table: a peer that runs here, or why it does not.
struct Column {
    name: &'static str,
    version: String,
    peer: Result<Peer, String>,
}

/// `program args` run to its exit (bounded: 20 s), stdout trimmed; `None` if it cannot be run.
async fn probe(program: &str, args: &[&str]) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A column for a tool that is not here: [`tools::missing`] (panics in CI) and the reason.
fn missing_column(name: &'static str, what: &str, install: &str) -> Column {
    let _: Option<()> = tools::missing(TEST, what, install);
    Column {
        name,
        version: "not installed".into(),
        peer: Err(format!("not run: {what} is missing ({install})")),
    }
}

async fn columns() -> Vec<Column> {
    let mut cols = vec![Column {
        name: "sigv4-proxy",
        version: format!("sigv4-proxy {}", env!("CARGO_PKG_VERSION")),
        peer: Ok(Peer::Sigv4Proxy),
    }];
    cols.push(match tools::find(&["curl"]) {
        Some(bin) => Column {
            name: "curl --aws-sigv4",
            version: probe("curl", &["--version"])
                .await
                .and_then(|v| {
                    v.lines()
                        .next()
                        .map(|l| l.split(" (").next().unwrap_or(l).to_string())
                })
                .unwrap_or_else(|| "curl (version unknown)".into()),
            peer: Ok(Peer::Curl(bin)),
        },
        None => missing_column("curl --aws-sigv4", "curl", "apt-get install curl"),
    });
    // The awscurl script beside the interpreter that has the package, by its real path (a
    // pyenv shim needs the developer's environment, which the tool does not get).
    let awscurl = probe(
        "python3",
        &[
            "-c",
            "import sys, os, importlib.metadata as m; \
             print(os.path.join(os.path.dirname(sys.executable), 'awscurl')); \
             print(m.version('awscurl'))",
        ],
    )
    .await
    .and_then(|out| {
        let (bin, version) = out.split_once('\n')?;
        let bin = PathBuf::from(bin.trim());
        bin.is_file().then(|| (bin, version.trim().to_string()))
    });
    cols.push(match awscurl {
        Some((bin, version)) => Column {
            name: "awscurl",
            version: format!("awscurl {version}"),
            peer: Ok(Peer::Awscurl(bin)),
        },
        None => missing_column("awscurl", "awscurl", "pip install awscurl"),
    });
    cols.push(match tools::find(&["aws-es-kibana"]) {
        Some(bin) => Column {
            name: "aws-es-kibana",
            version: format!(
                "aws-es-kibana {}",
                probe(&bin.display().to_string(), &["--version"])
                    .await
                    .unwrap_or_else(|| "(version unknown)".into())
            ),
            peer: Ok(Peer::AwsEsKibana(bin)),
        },
        None => missing_column(
            "aws-es-kibana",
            "aws-es-kibana",
            "npm install -g aws-es-kibana",
        ),
    });
    cols
}

// ---------------------------------------------------------------------------
// Upstreams and running proxies
// ---------------------------------------------------------------------------

/// The upstream one peer is measured against, and the URL the peer is given for it.
struct Endpoint {
    up: TestUpstream,
    url: String,
    gate: Arc<Gate>,
}

async fn endpoint(peer: &Peer, service: &str) -> Endpoint {
    let mut builder = TestUpstream::builder()
        .service(service)
        .region(REGION)
        .creds(long_term())
        .creds(temporary());
    if peer.uses_localhost() {
        builder = builder.host_name("localhost");
    }
    let up = builder.start().await;
    let url = if peer.uses_localhost() {
        up.endpoint_url()
    } else {
        format!("https://{}", up.host_name())
    };
    let gate = Arc::new(Gate::default());
    up.add_route(
        "GET",
        "/secret/_search",
        Reply::bytes(403, "application/json; charset=UTF-8", DENIED_BODY),
    );
    up.add_route(
        "GET",
        "/_dashboards",
        Reply::redirect(302, &format!("{url}/_dashboards/app/home")),
    );
    up.add_route(
        "GET",
        "/stream",
        Reply::gated(
            Bytes::from(vec![b'a'; STREAM_FIRST]),
            Bytes::from(vec![b'b'; STREAM_REST]),
            gate.clone(),
            STREAM_WAIT,
        ),
    );
    Endpoint { up, url, gate }
}

fn creds_env(creds: &Creds) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), creds.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), creds.secret.clone()),
    ];
    if let Some(token) = &creds.token {
        env.push(("AWS_SESSION_TOKEN".to_string(), token.clone()));
    }
    env
}

/// A proxy peer listening on loopback, killed on drop.
enum Running {
    Sigv4Proxy(ProxyProcess),
    Node {
        addr: SocketAddr,
        child: tokio::process::Child,
        /// Its stderr so far, read in the background.
        stderr: Arc<std::sync::Mutex<String>>,
    },
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Sigv4Proxy(p) => p.addr,
            Running::Node { addr, .. } => *addr,
        }
    }

    /// The first `Error…` line the process logged, if any.
    fn logged_error(&self) -> Option<String> {
        match self {
            Running::Sigv4Proxy(_) => None,
            Running::Node { stderr, .. } => stderr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lines()
                .find(|l| l.starts_with("Error"))
                .map(str::to_owned),
        }
    }

    fn child(&mut self) -> &mut tokio::process::Child {
        match self {
            Running::Sigv4Proxy(p) => &mut p.child,
            Running::Node { child, .. } => child,
        }
    }
}

/// A free loopback port (bound and released; a race with another process is possible but
/// only makes the peer fail to start, which is recorded).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits (bounded) until `addr` accepts connections.
async fn wait_listening(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// aws-es-kibana's command for `ep` (`listen`: `Some((address, port))`, or its defaults).
fn aws_es_kibana(
    bin: &PathBuf,
    ep: &Endpoint,
    creds: &Creds,
    listen: Option<(&str, u16)>,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    if let Some((address, port)) = listen {
        cmd.args(["-b", address, "-p", &port.to_string()]);
    }
    // The endpoint as its README says: host (and port), no scheme.
    let endpoint = ep.url.trim_start_matches("https://").to_string();
    cmd.args(["-r", REGION, &endpoint])
        .env_clear()
        .envs(clean_env())
        .envs(creds_env(creds))
        .env("NODE_EXTRA_CA_CERTS", ep.up.ca_bundle_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// What a process wrote to stderr, read (bounded) after it was killed.
async fn stderr_of(mut child: tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let _ = child.start_kill();
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), err.read_to_string(&mut text)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    text.lines().rev().take(6).collect::<Vec<_>>().join(" / ")
}

async fn start_proxy(peer: &Peer, ep: &Endpoint, creds: &Creds) -> Result<Running, String> {
    match peer {
        Peer::Sigv4Proxy => Ok(Running::Sigv4Proxy(
            ProxyProcess::start(&upstream_args(&ep.up), &creds_env(creds)).await,
        )),
        Peer::AwsEsKibana(bin) => {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = aws_es_kibana(bin, ep, creds, Some(("127.0.0.1", port)))
                .spawn()
                .map_err(|e| format!("spawn: {e}"))?;
            if wait_listening(addr, Duration::from_secs(20)).await {
                // Keep stderr drained so the process never blocks on a full pipe.
                let stderr = Arc::new(std::sync::Mutex::new(String::new()));
                if let Some(err) = child.stderr.take() {
                    let sink = stderr.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncBufReadExt;
                        let mut lines = tokio::io::BufReader::new(err).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                            s.push_str(&line);
                            s.push('\n');
                        }
                    });
                }
                Ok(Running::Node {
                    addr,
                    child,
                    stderr,
                })
            } else {
                Err(format!(
                    "did not listen within 20 s: {}",
                    stderr_of(child).await
                ))
            }
        }
        _ => unreachable!("{peer:?} is a client"),
    }
}

// ---------------------------------------------------------------------------
// Running one case
// ---------------------------------------------------------------------------

/// What happened to one case for one peer.
#[derive(Default)]
struct Outcome {
    /// The peer did not run, or the client got no HTTP response: why.
    error: Option<String>,
    /// Status the client saw.
    status: Option<u16>,
    body: Bytes,
    location: Option<String>,
    /// Requests the upstream recorded for this case.
    seen: Vec<Recorded>,
    /// For [`Check::Stream`]: the first part arrived before the upstream stopped waiting.
    streamed: Option<bool>,
}

impl Outcome {
    fn failed(error: String) -> Outcome {
        Outcome {
            error: Some(error),
            ..Outcome::default()
        }
    }
}

/// The case's `-H` headers, its body (after `data_flag`) and the URL, in a clean environment.
fn add_request(cmd: &mut tokio::process::Command, case: &Case, ep: &Endpoint, data_flag: &str) {
    for header in case.user_headers() {
        cmd.args(["-H", &header]);
    }
    if !case.body.is_empty() {
        cmd.args([data_flag, &case.body()]);
    }
    cmd.arg(format!("{}{}", ep.url, case.target))
        .env_clear()
        .envs(clean_env());
}

/// Runs a command-line client (bounded); `(exit ok, stdout, stderr)`.
async fn run_tool(mut cmd: tokio::process::Command) -> Result<(bool, Vec<u8>, String), String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .map_err(|_| format!("did not finish within {RUN_LIMIT:?}"))?
        .map_err(|e| format!("could not run: {e}"))?;
    Ok((
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

async fn run_curl(bin: &PathBuf, case: &Case, ep: &Endpoint, creds: &Creds) -> Outcome {
    let host = ep.up.host_name().to_string();
    let body_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["-q", "-sS", "--max-time", "20", "-o"])
        .arg(body_file.path())
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(ep.up.ca_bundle_path())
        .args([
            "--connect-to",
            &format!("{host}:443:{}", ep.up.addr()),
            "--aws-sigv4",
            &format!("aws:amz:{REGION}:{}", case.service),
            "--user",
            &format!("{}:{}", creds.access_key, creds.secret),
            "-X",
            case.method,
        ]);
    if let Some(token) = &creds.token {
        // curl has no option for a session token; the header is how it is sent.
        cmd.args(["-H", &format!("x-amz-security-token: {token}")]);
    }
    add_request(&mut cmd, case, ep, "--data-binary");
    match run_tool(cmd).await {
        Err(e) => Outcome::failed(e),
        Ok((ok, stdout, stderr)) => {
            let code: u16 = String::from_utf8_lossy(&stdout).trim().parse().unwrap_or(0);
            Outcome {
                error: (!ok || code == 0).then(|| format!("curl: {}", last_line(&stderr))),
                status: (code != 0).then_some(code),
                body: std::fs::read(body_file.path()).unwrap_or_default().into(),
                ..Outcome::default()
            }
        }
    }
}

async fn run_awscurl(bin: &PathBuf, case: &Case, ep: &Endpoint, creds: &Creds) -> Outcome {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "-v",
        "--service",
        case.service,
        "--region",
        REGION,
        "--access_key",
        &creds.access_key,
        "--secret_key",
        &creds.secret,
        "-X",
        case.method,
    ]);
    if let Some(token) = &creds.token {
        cmd.args(["--session_token", token]);
    }
    // awscurl's own default headers (`Accept: application/xml`, `Content-Type:
    // application/json`) apply only without `-H`.
    add_request(&mut cmd, case, ep, "-d");
    cmd.env("REQUESTS_CA_BUNDLE", ep.up.ca_bundle_path());
    match run_tool(cmd).await {
        Err(e) => Outcome::failed(e),
        Ok((ok, stdout, stderr)) => {
            // awscurl prints only the body; `-v` logs `'Response code: NNN\n'` (pprinted) on stderr.
            let status = stderr
                .split("Response code: ")
                .nth(1)
                .and_then(|rest| rest.get(..3))
                .and_then(|code| code.parse().ok());
            Outcome {
                error: (!ok || status.is_none())
                    .then(|| format!("awscurl: {}", last_line(&stderr))),
                status,
                body: stdout.into(),
                ..Outcome::default()
            }
        }
    }
}

/// A request to a proxy peer, as a client of it would send it.
async fn through_proxy(addr: SocketAddr, case: &Case, ep: &Endpoint) -> Outcome {
    if case.check == Check::Stream {
        return streamed(addr, case.target, &ep.gate).await;
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if case.check == Check::Headers {
        headers.extend_from_slice(CLIENT_HEADERS);
    } else if !case.body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    match try_send(addr, case.method, case.target, &headers, case.body()).await {
        Ok(resp) => Outcome {
            status: Some(resp.status),
            location: resp.header("location").map(str::to_owned),
            body: resp.body,
            ..Outcome::default()
        },
        Err(e) => Outcome::failed(e),
    }
}

/// GET `target`, reading the body as it comes: did the first part arrive before the upstream
/// gave up waiting for the client to have it?
async fn streamed(addr: SocketAddr, target: &str, gate: &Gate) -> Outcome {
    let exchange = async {
        let mut sender = try_connection(addr).await?;
        let req = http::Request::get(target)
            .header("host", addr.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut received = Vec::new();
        let mut early = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            received.extend_from_slice(&frame.into_data().unwrap_or_default());
            if early.is_none() && received.len() >= STREAM_FIRST {
                early = Some(!gate.timed_out());
                gate.open();
            }
        }
        Ok::<_, String>((status, received, early))
    };
    match tokio::time::timeout(RUN_LIMIT, exchange).await {
        Ok(Ok((status, received, early))) => Outcome {
            status: Some(status),
            error: (received.len() != STREAM_FIRST + STREAM_REST).then(|| {
                format!(
                    "got {} of {} bytes",
                    received.len(),
                    STREAM_FIRST + STREAM_REST
                )
            }),
            streamed: early,
            ..Outcome::default()
        },
        Ok(Err(e)) => Outcome::failed(e),
        Err(_) => Outcome::failed(format!("no complete response within {RUN_LIMIT:?}")),
    }
}

/// Runs every case that applies to `peer`; `None` where a case does not apply.
async fn run_peer(peer: &Peer) -> Vec<Option<Outcome>> {
    let es = endpoint(peer, "es").await;
    let aoss = endpoint(peer, "aoss").await;
    // Proxies: one process per (service, credentials), started when first needed.
    let mut proxies: HashMap<(&str, bool), Result<Running, String>> = HashMap::new();
    let mut results = Vec::new();
    for case in CASES {
        if !case.applies_to(peer) {
            results.push(None);
            continue;
        }
        let ep = if case.service == "aoss" { &aoss } else { &es };
        let creds = if case.token { temporary() } else { long_term() };
        ep.up.take_requests();
        let mut outcome = match peer {
            Peer::Curl(bin) => run_curl(bin, case, ep, &creds).await,
            Peer::Awscurl(bin) => run_awscurl(bin, case, ep, &creds).await,
            Peer::Sigv4Proxy | Peer::AwsEsKibana(_) => {
                let key = (case.service, case.token);
                let running = match proxies.entry(key) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(start_proxy(peer, ep, &creds).await),
                };
                match running {
                    Ok(running) => through_proxy(running.addr(), case, ep).await,
                    Err(e) => Outcome::failed(format!("proxy did not start: {e}")),
                }
            }
        };
        // A proxy may still be talking to the upstream after answering: give it a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        outcome.seen = ep.up.take_requests();
        results.push(Some(outcome));
    }
    results
}

// ---------------------------------------------------------------------------
// The default listen address
// ---------------------------------------------------------------------------

/// Local addresses in LISTEN state on `port`, from /proc/net/tcp and tcp6.
fn listeners(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some("0A")) = (fields.get(1), fields.get(3).copied()) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            found.push(match (v6, addr) {
                (false, a) => {
                    let n = u32::from_str_radix(a, 16).unwrap_or(0);
                    format!("{}:{port}", std::net::Ipv4Addr::from(n.to_le_bytes()))
                }
                (true, "00000000000000000000000000000000") => format!("[::]:{port}"),
                (true, "00000000000000000000000001000000") => format!("[::1]:{port}"),
                (true, a) => format!("[{a}]:{port}"),
            });
        }
    }
    found
}

/// Starts `peer` without a listen option and reports where it listens: its default is
/// OpenSearch's port 9200 for both proxies, so that port must be free here.
async fn default_listen(peer: &Peer) -> Result<String, String> {
    const PORT: u16 = 9200;
    if std::net::TcpListener::bind(("0.0.0.0", PORT)).is_err() || !listeners(PORT).is_empty() {
        return Err(format!(
            "port {PORT} is in use on this machine: not measured"
        ));
    }
    let ep = endpoint(peer, "es").await;
    let creds = long_term();
    let mut child = match peer {
        Peer::Sigv4Proxy => {
            let args: Vec<String> = upstream_args(&ep.up)
                .into_iter()
                .take_while(|a| a != "--listen")
                .collect();
            ProxyProcess::start(&args, &creds_env(&creds)).await.child
        }
        Peer::AwsEsKibana(bin) => {
            let child = aws_es_kibana(bin, &ep, &creds, None)
                .spawn()
                .map_err(|e| format!("spawn: {e}"))?;
            let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
            if !wait_listening(addr, Duration::from_secs(20)).await {
                return Err(format!(
                    "not listening on {addr} within 20 s: {}",
                    stderr_of(child).await
                ));
            }
            child
        }
        _ => unreachable!("{peer:?} is a client"),
    };
    let found = listeners(PORT);
    // Gone (bounded) before the next peer wants the port.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    if found.is_empty() {
        Err("no listening socket found".into())
    } else {
        Ok(found.join(", "))
    }
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// The upstream's verdict on one recorded request.
fn verdict(r: &Recorded, service: &str) -> String {
    match &r.verification {
        Ok(_) => "signature accepted".into(),
        Err(e @ SigError::SignatureMismatch { .. }) if signed_as_s3(r, service) => format!(
            "signature refused: `{:?}` (it verifies under S3's rules: the path signed as sent, \
             without the normalising and second encoding of `es`/`aoss`)",
            e.kind()
        ),
        Err(e) => format!("signature refused: `{:?}`", e.kind()),
    }
}

/// Would the request verify if the endpoint used S3's canonical URI (the path as sent, no
/// normalisation, no second encoding) instead of the rule for every other service?
fn signed_as_s3(r: &Recorded, service: &str) -> bool {
    let creds = [long_term(), temporary()];
    let received = ReceivedRequest {
        method: &r.method,
        raw_path: &r.raw_path,
        raw_query: r.raw_query.as_deref(),
        headers: &r.frontend_headers,
        body: &[],
    };
    let mut ctx = VerifyContext::new(&creds, service, REGION, r.received_at);
    ctx.options = CanonicalOptions::S3;
    sigv4::verify_prehashed(&received, &r.body_sha256, &ctx).is_ok()
}

/// `Location` with its run-specific authority named: `PROXY` (the proxy's loopback port) or
/// `ENDPOINT` (the upstream), so the table reads the same every run.
fn placeholders(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let split = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let name = if authority.starts_with("127.0.0.1:") {
        "PROXY"
    } else if authority.starts_with("localhost") || authority.contains(".amazonaws.com") {
        "ENDPOINT"
    } else {
        authority
    };
    format!("{scheme}://{name}{tail}")
}

/// One table cell: reached / signed / status, then what the case looks at.
fn cell(case: &Case, o: &Outcome) -> String {
    let mut parts: Vec<String> = Vec::new();
    let first = o.seen.first();
    let ok = first.is_some_and(|r| r.verified()) && o.status == Some(case.check.expected_status());
    let mark = if ok { "✅" } else { "❌" };
    match first {
        None => parts.push(format!("{mark} never reached the upstream")),
        Some(r) => {
            parts.push(format!("{mark} {}", verdict(r, case.service)));
            let expected_path = case.target;
            if r.path_and_query() != expected_path {
                parts.push(format!("sent as `{}`", r.path_and_query()));
            }
            if case.service == "aoss" && !case.body.is_empty() {
                let signed = r.verification.as_ref().ok().map_or_else(
                    || {
                        r.header("authorization")
                            .is_some_and(|a| a.contains("x-amz-content-sha256"))
                    },
                    |v| v.signed_headers.iter().any(|h| h == "x-amz-content-sha256"),
                );
                parts.push(match (r.header("x-amz-content-sha256"), signed) {
                    (Some(_), true) => "`x-amz-content-sha256` sent and signed".into(),
                    (Some(_), false) => "`x-amz-content-sha256` sent, not signed".into(),
                    (None, _) => "no `x-amz-content-sha256`".into(),
                });
            }
        }
    }
    match o.status {
        Some(s) => parts.push(format!("client got {s}")),
        None => parts.push("client got no HTTP status".into()),
    }
    match case.check {
        Check::Plain => {}
        Check::Denied if o.status == Some(403) => parts.push(if o.body == DENIED_BODY.as_bytes() {
            "body passed unchanged".into()
        } else {
            format!("body changed ({} bytes)", o.body.len())
        }),
        Check::Denied => {}
        Check::Redirect => {
            if let Some(loc) = &o.location {
                parts.push(format!("`Location: {}`", placeholders(loc)));
            }
            if o.seen.len() > 1 {
                parts.push(format!(
                    "the proxy followed it (upstream also got `{}`)",
                    o.seen[1].raw_path
                ));
            }
        }
        Check::Headers => {
            if let Some(r) = first {
                let (reached, dropped): (Vec<&str>, Vec<&str>) = CLIENT_HEADERS
                    .iter()
                    .map(|(n, _)| *n)
                    .partition(|n| r.header(n).is_some());
                if !reached.is_empty() {
                    parts.push(format!("reached: {}", reached.join(", ")));
                }
                if !dropped.is_empty() {
                    parts.push(format!("dropped: {}", dropped.join(", ")));
                }
                let signed: Vec<&str> = r
                    .verification
                    .as_ref()
                    .map(|v| {
                        reached
                            .iter()
                            .copied()
                            .filter(|n| v.signed_headers.iter().any(|h| h == n))
                            .collect()
                    })
                    .unwrap_or_default();
                parts.push(if signed.is_empty() {
                    "none of them signed".into()
                } else {
                    format!("signed: {}", signed.join(", "))
                });
            }
        }
        Check::Stream => parts.push(match o.streamed {
            Some(true) => "streamed: the first 256 KiB arrived while the upstream waited".into(),
            Some(false) => {
                "buffered: the first 256 KiB arrived only after the upstream stopped waiting".into()
            }
            None => "stream not observed".into(),
        }),
    }
    if let Some(e) = &o.error {
        parts.push(format!("error: {}", e.replace('|', "\\|")));
    }
    parts.join("; ")
}

/// Everything measured for one column.
struct Measured {
    cases: Vec<Option<Outcome>>,
    /// Proxies only: where the proxy listens when started without a listen option.
    listen: Option<Result<String, String>>,
    /// Proxies only: what a client gets while the endpoint refuses connections.
    unreachable: Option<Unreachable>,
}

/// A proxy's answer while its endpoint refuses connections.
struct Unreachable {
    answer: Result<(u16, String), String>,
    /// `None` while the process still runs afterwards, else how it ended.
    exited: Option<String>,
}

impl Unreachable {
    fn cell(&self) -> String {
        let answer = match &self.answer {
            Ok((status, body)) if body.is_empty() => format!("client got {status}, empty body"),
            Ok((status, body)) => {
                let short: String = body.chars().take(100).collect();
                let more = if short.len() < body.len() { "…" } else { "" };
                format!("client got {status} `{}{more}`", short.replace('|', "\\|"))
            }
            Err(e) => format!("client got no HTTP response ({e})"),
        };
        match &self.exited {
            None => format!("{answer}; the proxy kept running"),
            Some(how) => format!("{answer}; the proxy process exited ({how})"),
        }
    }
}

/// Starts `peer` in front of an endpoint, stops the endpoint (its port then refuses
/// connections) and sends one request.
async fn unreachable(peer: &Peer) -> Result<Unreachable, String> {
    let ep = endpoint(peer, "es").await;
    let mut running = start_proxy(peer, &ep, &long_term()).await?;
    // The proxy read the CA at start; the upstream's listener closes with it.
    let Endpoint { up, .. } = ep;
    let pki = up.pki().clone();
    let (host, port) = (up.host_name().to_string(), up.addr().to_string());
    drop(up);
    let named = |text: &str| {
        text.replace(&host, "ENDPOINT")
            .replace(&port, "127.0.0.1:PORT")
    };
    let answer = try_send(running.addr(), "GET", "/_cluster/health", &[], Bytes::new())
        .await
        .map(|resp| (resp.status, named(&resp.text())));
    // A process that crashes on the error may take a moment to go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exited = running
        .child()
        .try_wait()
        .map_err(|e| e.to_string())?
        .map(|status| match running.logged_error() {
            Some(error) => format!("{status}, after logging `{}`", named(&error)),
            None => status.to_string(),
        });
    drop(pki);
    Ok(Unreachable { answer, exited })
}

fn table(cols: &[Column], measured: &[Result<Measured, String>]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Measured by `cargo test --test integration compare -- --ignored --nocapture` \
         (tests/integration/compare.rs): each tool against a verifying test upstream on loopback."
    );
    let _ = writeln!(md);
    for c in cols {
        let _ = writeln!(md, "- {}: {}", c.name, c.version);
    }
    let _ = writeln!(md);
    let _ = write!(md, "| case |");
    for c in cols {
        let _ = write!(md, " {} |", c.name);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "|---|{}", "---|".repeat(cols.len()));
    let mut row = |label: String, text: &dyn Fn(&Measured) -> String| {
        let _ = write!(md, "| {label} |");
        for m in measured {
            let t = match m {
                Err(e) => e.clone(),
                Ok(m) => text(m),
            };
            let _ = write!(md, " {t} |");
        }
        let _ = writeln!(md);
    };
    for (i, case) in CASES.iter().enumerate() {
        row(
            format!(
                "{} (`{}` {} `{}`)",
                case.row, case.service, case.method, case.target
            ),
            &|m| match &m.cases[i] {
                None => case.not_applicable().into(),
                Some(o) => cell(case, o),
            },
        );
    }
    row("default listen address".into(), &|m| match &m.listen {
        None => "n/a (a client)".into(),
        Some(Ok(a)) => format!("`{a}`"),
        Some(Err(e)) => e.clone(),
    });
    row(
        "endpoint refuses connections (`es` GET `/_cluster/health`)".into(),
        &|m| match &m.unreachable {
            None => "n/a (a client)".into(),
            Some(u) => u.cell(),
        },
    );
    let _ = writeln!(
        md,
        "\nSignatures refused as not matching: the request as the upstream received it, and the \
         canonical URI and query its verifier built from those bytes.\n"
    );
    for (c, m) in cols.iter().zip(measured) {
        let Ok(m) = m else { continue };
        for (case, o) in CASES.iter().zip(&m.cases) {
            let Some(r) = o.as_ref().and_then(|o| o.seen.first()) else {
                continue;
            };
            if let Err(SigError::SignatureMismatch {
                canonical_request, ..
            }) = &r.verification
            {
                let mut lines = canonical_request.lines().skip(1);
                let _ = writeln!(
                    md,
                    "- {}, {}: received `{} {}`; canonical URI `{}`, query `{}`",
                    c.name,
                    case.row,
                    r.method,
                    r.path_and_query(),
                    lines.next().unwrap_or_default(),
                    lines.next().unwrap_or_default()
                );
            }
        }
    }
    md
}

/// What sigv4-proxy must have done in every case (the reference column).
fn check_reference(m: &Measured) {
    for (case, o) in CASES.iter().zip(&m.cases) {
        let Some(o) = o else {
            continue;
        };
        let what = format!("sigv4-proxy, {}: {}", case.row, cell(case, o));
        assert!(o.error.is_none(), "{what}");
        let r = o.seen.first().unwrap_or_else(|| panic!("{what}"));
        assert!(r.verified(), "{what}: {:?}", r.verification);
        // The path byte for byte; the query may come re-encoded (`:` as `%3A`), as it is signed.
        let path = case.target.split('?').next().unwrap_or_default();
        assert_eq!(r.raw_path, path, "{what}");
        assert_eq!(o.status, Some(case.check.expected_status()), "{what}");
        match case.check {
            Check::Plain => {}
            Check::Denied => assert_eq!(o.body, DENIED_BODY.as_bytes(), "{what}"),
            Check::Redirect => {
                let loc = o.location.as_deref().unwrap_or_default();
                assert!(
                    loc.starts_with("http://127.0.0.1:") && loc.ends_with("/_dashboards/app/home"),
                    "{what}"
                );
                assert_eq!(o.seen.len(), 1, "{what}: followed the redirect");
            }
            Check::Headers => {
                for (name, value) in CLIENT_HEADERS {
                    assert_eq!(r.header(name), Some(*value), "{what}");
                }
            }
            Check::Stream => assert_eq!(o.streamed, Some(true), "{what}"),
        }
    }
    if let Some(Ok(addr)) = &m.listen {
        assert_eq!(
            addr, "127.0.0.1:9200",
            "sigv4-proxy's default listen address"
        );
    }
    let u = m.unreachable.as_ref().expect("sigv4-proxy is a proxy");
    assert!(
        matches!(&u.answer, Ok((502, body)) if body.contains("upstream_unreachable_exception"))
            && u.exited.is_none(),
        "sigv4-proxy with its endpoint down: {}",
        u.cell()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs awscurl (pip) and aws-es-kibana (npm); run with --ignored"]
async fn compare() {
    let cols = columns().await;
    let mut measured = Vec::new();
    for c in &cols {
        measured.push(match &c.peer {
            Ok(peer) => {
                eprintln!("compare: running {} ({})", c.name, c.version);
                let cases = run_peer(peer).await;
                let (listen, unreachable) = if peer.is_proxy() {
                    (
                        Some(default_listen(peer).await),
                        Some(unreachable(peer).await.unwrap_or_else(|e| Unreachable {
                            answer: Err(format!("proxy did not start: {e}")),
                            exited: None,
                        })),
                    )
                } else {
                    (None, None)
                };
                Ok(Measured {
                    cases,
                    listen,
                    unreachable,
                })
            }
            Err(e) => Err(e.clone()),
        });
    }
    let md = table(&cols, &measured);
    println!("{md}");
    let dir = tools::artifacts_dir();
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    std::fs::write(dir.join("compare.md"), &md).expect("write compare.md");
    check_reference(measured[0].as_ref().expect("sigv4-proxy always runs"));
}
