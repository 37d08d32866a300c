//! Real clients, used as users use them, pointed at the proxy with no AWS configuration of their
//! own: opensearch-py (PyPI) and @opensearch-project/opensearch (npm) create an index, bulk-load,
//! search with a scroll, clear it, count and delete, against an in-memory OpenSearch behind the
//! verifying test upstream; and the README's curl examples marked `<!-- tested -->` run as
//! written.
//!
//! The scripts live in `tests/clients/`; `.ci/run` installs what they need
//! (`pip install opensearch-py`, `npm ci --prefix tests/clients`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::docs;
use crate::support::fake_opensearch::FakeOpenSearch;
use crate::support::proxy::TestAdmin;
use crate::support::{tools, Creds, Recorded, TestProxy, TestUpstream};

fn creds() -> Creds {
    Creds::with_token("ASIACLIENTSTEST", "clients/secret", "clients-session-token")
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// An environment with nothing AWS in it: the client knows only the proxy's URL.
fn bare_env(cmd: &mut tokio::process::Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "*");
}

/// Runs `cmd` (bounded to 120 s); returns the JSON line it printed.
async fn run_client(name: &str, mut cmd: tokio::process::Command) -> serde_json::Value {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{name} finished within 120 s"))
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {stdout}"))
}

/// What every client session must have looked like at the upstream.
fn assert_session(name: &str, seen: &[Recorded], fake: &FakeOpenSearch) {
    assert!(!seen.is_empty());
    for r in seen {
        assert!(
            r.verified(),
            "{name}: {} {} not verified: {:?}",
            r.method,
            r.path_and_query(),
            r.verification
        );
    }
    let calls: BTreeSet<String> = seen
        .iter()
        .map(|r| format!("{} {}", r.method, r.raw_path))
        .collect();
    for needed in [
        "PUT /books",
        "HEAD /books",
        "POST /_bulk",
        "POST /books/_search",
        "POST /_search/scroll",
        "DELETE /_search/scroll",
        "DELETE /books",
    ] {
        assert!(calls.contains(needed), "{name}: no {needed} in {calls:?}");
    }
    assert!(
        seen.iter().any(|r| r.raw_path == "/books/_refresh"),
        "{name}: refresh (GET or POST, as the client likes)"
    );
    let scroll_search = seen
        .iter()
        .find(|r| r.raw_path == "/books/_search")
        .unwrap();
    let query = scroll_search.raw_query.as_deref().unwrap_or("");
    assert!(query.contains("scroll=1m"), "{name}: {query}");
    assert!(fake.indices().is_empty(), "{name}: the index was deleted");
    assert_eq!(fake.open_scrolls(), 0, "{name}: every scroll was cleared");
}

async fn fake_cluster(proxy_args: &[&str]) -> (TestUpstream, FakeOpenSearch, TestProxy) {
    let up = TestUpstream::start_for("es", creds()).await;
    let fake = FakeOpenSearch::new();
    up.set_handler(fake.handler());
    let proxy = TestProxy::start(&up, &creds(), proxy_args).await;
    (up, fake, proxy)
}

/// The interpreter that has opensearch-py, by its real path (a pyenv shim needs the
/// developer's environment, which the client does not get); `None` (the test skips, or fails
/// on CI) without it.
fn python_with_opensearch_py(test: &str) -> Option<PathBuf> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import opensearchpy, sys; print(sys.executable)"])
        .output();
    match probe {
        Ok(out) if out.status.success() => Some(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )),
        _ => tools::missing(
            test,
            "python3 with opensearch-py",
            "pip install opensearch-py",
        ),
    }
}

/// Node.js with `tests/clients/node_modules` installed.
fn node_with_opensearch_js(test: &str) -> Option<PathBuf> {
    let node = tools::require(test, &["node", "nodejs"], "apt-get install nodejs npm")?;
    if !clients_dir()
        .join("node_modules/@opensearch-project/opensearch/package.json")
        .is_file()
    {
        return tools::missing(
            test,
            "tests/clients/node_modules/@opensearch-project/opensearch",
            "npm ci --prefix tests/clients",
        );
    }
    Some(node)
}

async fn run_py(python: &Path, proxy: &TestProxy, flags: &[&str]) -> serde_json::Value {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(clients_dir().join("opensearch_py.py"))
        .arg(proxy.url(""))
        .args(flags);
    bare_env(&mut cmd, home.path());
    run_client("opensearch-py", cmd).await
}

async fn run_js(node: &Path, proxy: &TestProxy, flags: &[&str]) -> serde_json::Value {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(clients_dir().join("opensearch_js.js"))
        .arg(proxy.url(""))
        .args(flags)
        .current_dir(clients_dir());
    bare_env(&mut cmd, home.path());
    run_client("@opensearch-project/opensearch", cmd).await
}

const PY_SESSION: &str = r#"{"info":"opensearch","exists":true,"bulk_ok":25,"bulk_errors":[],
    "scrolled":12,"pages":3,"scan":25,"count":25,"get":"book 7","exists_after_delete":false}"#;
const JS_SESSION: &str = r#"{"info":"opensearch","exists":true,"bulk_items":25,"bulk_errors":false,
    "scrolled":12,"pages":3,"count":25,"get":"book 7","exists_after_delete":false}"#;

#[tokio::test]
async fn opensearch_py_indexes_bulk_loads_scrolls_and_deletes() {
    let Some(python) = python_with_opensearch_py("clients::opensearch_py") else {
        return;
    };
    let (up, fake, proxy) = fake_cluster(&[]).await;
    let seen = run_py(&python, &proxy, &[]).await;
    assert_eq!(
        seen,
        serde_json::from_str::<serde_json::Value>(PY_SESSION).unwrap()
    );
    assert_session("opensearch-py", &up.requests(), &fake);
    proxy.stop().await;
}

#[tokio::test]
async fn opensearch_js_indexes_bulk_loads_scrolls_and_deletes() {
    let Some(node) = node_with_opensearch_js("clients::opensearch_js") else {
        return;
    };
    let (up, fake, proxy) = fake_cluster(&[]).await;
    let seen = run_js(&node, &proxy, &[]).await;
    assert_eq!(
        seen,
        serde_json::from_str::<serde_json::Value>(JS_SESSION).unwrap()
    );
    assert_session("opensearch-js", &up.requests(), &fake);
    proxy.stop().await;
}

/// A policy that allows everything but `restricted*`: the clients' session works as before with
/// gzip request bodies (`http_compress=True`, `compression: 'gzip'`), which the policy inflates
/// to read and the endpoint gets as sent; their writes and searches on restricted-index get
/// 403 and never reach the endpoint.
async fn assert_compressed_session_under_policy(
    name: &str,
    up: &TestUpstream,
    fake: &FakeOpenSearch,
    seen: serde_json::Value,
    session: &str,
) {
    let mut want: serde_json::Value = serde_json::from_str(session).unwrap();
    for attempt in ["restricted_doc", "restricted_bulk", "restricted_search"] {
        want[attempt] = serde_json::json!(403);
    }
    assert_eq!(seen, want, "{name}");
    let requests = up.requests();
    assert_session(name, &requests, fake);
    let gzip_bulks: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.raw_path == "/_bulk" && r.header("content-encoding") == Some("gzip"))
        .collect();
    assert!(
        !gzip_bulks.is_empty(),
        "{name}: its bulk reached the endpoint gzip-compressed"
    );
    assert!(gzip_bulks
        .iter()
        .all(|r| r.verified() && r.body.starts_with(&[0x1f, 0x8b])));
    assert!(
        requests
            .iter()
            .all(|r| !r.path_and_query().contains("restricted")
                && !String::from_utf8_lossy(&r.body).contains("restricted")),
        "{name}: nothing on restricted-index reached the endpoint"
    );
}

const DENY_RESTRICTED: &str = r#"{"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Action":"es:*","Resource":"*"},
    {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#;

#[tokio::test]
async fn opensearch_py_compressed_under_a_policy() {
    let Some(python) = python_with_opensearch_py("clients::opensearch_py_compressed") else {
        return;
    };
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), DENY_RESTRICTED).unwrap();
    let (up, fake, proxy) = fake_cluster(&["--policy", policy.path().to_str().unwrap()]).await;
    let seen = run_py(&python, &proxy, &["--compress", "--restricted"]).await;
    assert_compressed_session_under_policy("opensearch-py", &up, &fake, seen, PY_SESSION).await;
    proxy.stop().await;
}

#[tokio::test]
async fn opensearch_js_compressed_under_a_policy() {
    let Some(node) = node_with_opensearch_js("clients::opensearch_js_compressed") else {
        return;
    };
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), DENY_RESTRICTED).unwrap();
    let (up, fake, proxy) = fake_cluster(&["--policy", policy.path().to_str().unwrap()]).await;
    let seen = run_js(&node, &proxy, &["--compress", "--restricted"]).await;
    assert_compressed_session_under_policy("opensearch-js", &up, &fake, seen, JS_SESSION).await;
    proxy.stop().await;
}

// ---------------------------------------------------------------------------
// The documentation's curl examples, as written
// ---------------------------------------------------------------------------

/// The ```-fenced blocks preceded by a `<!-- tested -->` line in `file`, with their first line
/// number.
fn tested_blocks(file: &str) -> Vec<(usize, String)> {
    let text = docs::read(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "<!-- tested -->" {
            let (block, next) = docs::block_at(file, &lines, i + 1);
            blocks.push((i + 3, block));
            i = next;
        } else {
            i += 1;
        }
    }
    blocks
}

/// The ```-fenced blocks of `file` with a line that runs curl (transcripts, `$ curl …`, are
/// output, not examples) that are not among `tested`.
fn untested_curl_blocks(file: &str, tested: &[(usize, String)]) -> Vec<(usize, String)> {
    let text = docs::read(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("```") {
            let (body, next) = docs::block_at(file, &lines, i);
            let runs_curl = body.lines().any(|l| l.trim_start().starts_with("curl "));
            if runs_curl && !tested.iter().any(|(line, _)| *line == i + 2) {
                out.push((i + 2, body));
            }
            i = next;
        } else {
            i += 1;
        }
    }
    out
}

/// Runs one documented block the one documented way (README, "Where people run it"):
/// a `sigv4-proxy [FLAGS] ENDPOINT [&]` line starts the proxy for that endpoint (here: in front
/// of the fake OpenSearch with the endpoint's host name); `localhost:9200` becomes that proxy's
/// address, and with `--admin-listen HOST:PORT`, `localhost:PORT` its admin listener's; every
/// other line runs in bash as written (`set -euo pipefail`), in a directory holding a small
/// `bulk.ndjson`.
async fn run_block(file: &str, line: usize, block: &str) {
    let what = format!("{file}:{line}");
    let mut script = String::from("set -euo pipefail\n");
    let mut proxy_line = None;
    for l in block.lines() {
        if l.trim_start().starts_with("sigv4-proxy ") {
            assert!(proxy_line.is_none(), "{what}: one proxy per block");
            proxy_line = Some(l.trim().trim_end_matches('&').trim().to_string());
        } else {
            script.push_str(l);
            script.push('\n');
        }
    }
    let words: Vec<&str> = proxy_line
        .as_deref()
        .map(|l| l.split_whitespace().skip(1).collect())
        .unwrap_or_default();
    let endpoint = words
        .iter()
        .find(|w| w.starts_with("https://"))
        .map(|w| w.trim_start_matches("https://").to_string())
        .unwrap_or_else(|| "search-logs-abc123.us-east-1.es.amazonaws.com".to_string());
    let flags: Vec<&str> = words
        .iter()
        .filter(|w| !w.starts_with("https://"))
        .copied()
        .collect();
    let up = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .host_name(&endpoint)
        .creds(creds())
        .start()
        .await;
    let fake = FakeOpenSearch::new();
    up.set_handler(fake.handler());
    let proxy = TestProxy::start(&up, &creds(), &flags).await;
    let curls = script
        .lines()
        .filter(|l| l.trim_start().starts_with("curl ") && l.contains("localhost:9200"))
        .count();
    let mut script = script.replace("localhost:9200", &proxy.addr().to_string());
    let admin_port = flags
        .iter()
        .position(|f| *f == "--admin-listen")
        .and_then(|i| flags.get(i + 1))
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, port)| port.to_string());
    let admin = match &admin_port {
        Some(port) => {
            let admin = TestAdmin::start(proxy.proxy()).await;
            script = script.replace(&format!("localhost:{port}"), &admin.addr.to_string());
            Some(admin)
        }
        None => None,
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bulk.ndjson"),
        "{\"index\":{\"_index\":\"logs-2026.11.22\"}}\n{\"level\":\"error\",\"message\":\"disk full\"}\n",
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    bare_env(&mut cmd, dir.path());
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: finished within 60 s"))
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Each curl to the proxy reached the endpoint signed (a proxy error would never get
    // there); anything else the endpoint saw is the admin listener's readiness probe.
    let seen = up.requests();
    let probes = seen
        .iter()
        .filter(|r| admin.is_some() && r.method == "HEAD" && r.raw_path == "/")
        .count();
    assert_eq!(
        seen.len() - probes,
        curls,
        "{what}: every curl reached the endpoint:\n{stdout}"
    );
    if script.contains("/readyz") {
        assert!(
            stdout.contains(r#""status":"ready""#),
            "{what}: the admin listener says ready:\n{stdout}"
        );
    }
    for r in &seen {
        assert!(
            r.verified(),
            "{what}: {} {} not verified",
            r.method,
            r.path_and_query()
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn documented_curl_examples_run_as_written() {
    if tools::find(&["curl"]).is_none() {
        return tools::missing("clients::documented_curl", "curl", "apt-get install curl")
            .unwrap_or(());
    }
    let mut ran = 0;
    for file in ["README.md"] {
        let tested = tested_blocks(file);
        if let Some((line, block)) = untested_curl_blocks(file, &tested).first() {
            panic!("{file}:{line}: a curl example not marked `<!-- tested -->`:\n{block}");
        }
        for (line, block) in tested {
            run_block(file, line, &block).await;
            ran += 1;
        }
    }
    assert!(ran >= 4, "the README marks its curl examples");
}
