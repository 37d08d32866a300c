//! Dashboards through the proxy, in a real browser: headless Chromium (Debian's `chromium`)
//! opens `/_dashboards` on the proxy. Behind it the test upstream plays a small Dashboards: a
//! redirect to `/_dashboards/app/home` with an absolute `Location` on the endpoint's host, an
//! HTML page setting a session cookie (`Domain=` the endpoint, `Secure`, `HttpOnly`), a script,
//! and two XHR `POST`s that Dashboards' server answers only with `osd-xsrf` and the session
//! cookie. The page writes what the XHRs got into its DOM, which Chromium dumps.
//!
//! Two browser profiles (separate `--user-data-dir`s) each get their own session: the proxy
//! keeps no cookie jar, so cookies live only in the browser that received them. A screenshot is
//! kept as `target/test-artifacts/dashboards.png`. The proxy runs with a policy that denies
//! restricted indices, which none of this touches.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{tools, Creds, Recorded, Reply, TestProxy, TestUpstream};

const TEST: &str = "browser::dashboards_in_headless_chromium";

fn creds() -> Creds {
    Creds::with_token("ASIABROWSERTEST", "browser/secret", "browser-session-token")
}

const HOME_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Home - OpenSearch Dashboards</title>
<style>
  body { margin: 0; font: 15px/1.4 sans-serif; background: #f5f7fa; color: #1a1c21; }
  header { background: #005eb8; color: #fff; padding: 14px 24px; font-size: 20px; }
  main { padding: 24px; }
  table { border-collapse: collapse; background: #fff; min-width: 640px; }
  td, th { border: 1px solid #d3dae6; padding: 8px 12px; text-align: left; }
  #status.ok { color: #017d73; font-weight: bold; }
</style>
</head>
<body>
<header>OpenSearch Dashboards &middot; through sigv4-proxy</header>
<main>
<h2>Home</h2>
<table>
  <tr><th>page origin</th><td id="origin">-</td></tr>
  <tr><th>saved objects (POST /api/saved_objects/_find)</th><td id="find">pending</td></tr>
  <tr><th>search (POST /internal/search/opensearch)</th><td id="search">pending</td></tr>
  <tr><th>session the server saw</th><td id="session">-</td></tr>
  <tr><th>status</th><td id="status">loading</td></tr>
</table>
</main>
<script src="/_dashboards/bundles/app.js"></script>
</body>
</html>
"#;

const APP_JS: &str = r#"
function post(path, body) {
  return new Promise(function (resolve, reject) {
    var xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('osd-xsrf', 'osd-fetch');
    xhr.setRequestHeader('osd-version', '2.19.1');
    xhr.setRequestHeader('content-type', 'application/json');
    xhr.onload = function () { resolve([xhr.status, JSON.parse(xhr.responseText)]); };
    xhr.onerror = function () { reject(new Error('network error on ' + path)); };
    xhr.send(JSON.stringify(body));
  });
}
function show(id, text) { document.getElementById(id).textContent = text; }
show('origin', location.origin + location.pathname);
post('/_dashboards/api/saved_objects/_find?type=index-pattern&per_page=100', {})
  .then(function (r) {
    show('find', r[0] + ': ' + r[1].saved_objects.length + ' index patterns');
    return post('/_dashboards/internal/search/opensearch',
      { params: { index: 'logs-*', body: { query: { match_all: {} } } } });
  })
  .then(function (r) {
    show('search', r[0] + ': ' + r[1].rawResponse.hits.total.value + ' hits');
    show('session', r[1].session);
    var s = document.getElementById('status');
    s.textContent = 'ok';
    s.className = 'ok';
  })
  .catch(function (e) { show('status', 'error: ' + e.message); });
"#;

/// The `osd_sid` cookie of a request, if any.
fn session_of(req: &Recorded) -> Option<String> {
    req.header_all("cookie")
        .iter()
        .flat_map(|c| c.split(';'))
        .filter_map(|c| c.trim().strip_prefix("osd_sid="))
        .map(str::to_string)
        .next()
}

/// A small Dashboards: what its server answers, judged only after the upstream verified the
/// signature (unverified requests never reach a handler).
fn dashboards(host: String) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let sessions = Arc::new(AtomicU64::new(0));
    move |req: &Recorded| {
        let path = req.raw_path.as_str();
        match (req.method.as_str(), path) {
            ("GET", "/_dashboards") | ("GET", "/_dashboards/") => {
                Reply::redirect(302, &format!("https://{host}/_dashboards/app/home#/"))
            }
            ("GET", "/_dashboards/app/home") => {
                let sid = session_of(req).unwrap_or_else(|| {
                    format!("sid-{}", sessions.fetch_add(1, Ordering::SeqCst) + 1)
                });
                Reply::bytes(200, "text/html; charset=utf-8", HOME_HTML).set_cookie(&format!(
                    "osd_sid={sid}; Max-Age=3600; Path=/_dashboards; Domain={host}; Secure; HttpOnly; SameSite=Lax"
                ))
            }
            ("GET", "/_dashboards/bundles/app.js") => {
                Reply::bytes(200, "application/javascript; charset=utf-8", APP_JS)
            }
            ("POST", p)
                if p.starts_with("/_dashboards/api/")
                    || p.starts_with("/_dashboards/internal/") =>
            {
                // What Dashboards' server does without these.
                if req.header("osd-xsrf").is_none() {
                    return Reply::json(
                        400,
                        &serde_json::json!({"statusCode":400,"error":"Bad Request","message":"Request must contain a osd-xsrf header."}),
                    );
                }
                let Some(sid) = session_of(req) else {
                    return Reply::json(
                        401,
                        &serde_json::json!({"statusCode":401,"error":"Unauthorized","message":"no session"}),
                    );
                };
                if p == "/_dashboards/api/saved_objects/_find" {
                    Reply::json(
                        200,
                        &serde_json::json!({"page":1,"per_page":100,"total":2,"saved_objects":[
                            {"type":"index-pattern","id":"logs","attributes":{"title":"logs-*"}},
                            {"type":"index-pattern","id":"metrics","attributes":{"title":"metrics-*"}}]}),
                    )
                } else {
                    Reply::json(
                        200,
                        &serde_json::json!({"session": sid, "rawResponse":{"took":3,"timed_out":false,
                            "hits":{"total":{"value":3,"relation":"eq"},"hits":[]}}}),
                    )
                }
            }
            _ => Reply::json(
                404,
                &serde_json::json!({"statusCode":404,"error":"Not Found"}),
            ),
        }
    }
}

/// Runs Chromium headless on `url` with `profile` as its user data directory, with `mode`
/// (`--dump-dom` or `--screenshot=…`); returns stdout. Bounded to 60 s.
async fn chromium(chrome: &Path, profile: &Path, mode: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new(chrome);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1024,640",
        // Let the XHRs finish before the DOM is dumped or the picture taken.
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(mode)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("chromium finished within 60 s")
        .expect("run chromium");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium failed ({:?}):\n{}\n{}",
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The text of the element with `id` in a dumped DOM.
fn cell(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in:\n{dom}"));
    let start = dom[at..].find('>').unwrap() + at + 1;
    let end = dom[start..].find('<').unwrap() + start;
    dom[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_in_headless_chromium() {
    let Some(chrome) = tools::require(
        TEST,
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    ) else {
        return;
    };
    let up = TestUpstream::start_for("es", creds()).await;
    up.set_handler(dashboards(up.host_name().to_string()));
    // Under a policy that denies restricted indices: Dashboards' pages, bundles, saved objects
    // and searches on allowed indices pass it.
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        r#"{"Statement":[{"Effect":"Allow","Action":"es:*","Resource":"*"},
            {"Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#,
    )
    .unwrap();
    let proxy = TestProxy::start(
        &up,
        &creds(),
        &["--policy", policy.path().to_str().unwrap()],
    )
    .await;
    let url = proxy.url("/_dashboards");
    let profiles = tempfile::tempdir().unwrap();
    let (a, b) = (profiles.path().join("a"), profiles.path().join("b"));
    let dump = vec!["--dump-dom".to_string()];

    // Browser A, first visit.
    let dom_a = chromium(&chrome, &a, &dump, &url).await;
    let seen_a1 = up.take_requests();
    assert_eq!(
        cell(&dom_a, "status"),
        "ok",
        "the page's XHRs succeeded:\n{dom_a}"
    );
    assert_eq!(
        cell(&dom_a, "origin"),
        format!("http://{}/_dashboards/app/home", proxy.addr()),
        "the redirect kept the browser on the proxy"
    );
    assert_eq!(cell(&dom_a, "find"), "200: 2 index patterns");
    assert_eq!(cell(&dom_a, "search"), "200: 3 hits");
    let sid_a = cell(&dom_a, "session");

    // Browser B, its own profile.
    let dom_b = chromium(&chrome, &b, &dump, &url).await;
    let seen_b = up.take_requests();
    assert_eq!(cell(&dom_b, "status"), "ok", "{dom_b}");
    let sid_b = cell(&dom_b, "session");
    assert_ne!(sid_a, sid_b, "each browser has its own session");

    // Browser A again, for the screenshot: it still has its own cookie.
    let shot = tools::artifacts_dir().join("dashboards.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    chromium(
        &chrome,
        &a,
        &[format!("--screenshot={}", shot.display())],
        &url,
    )
    .await;
    let seen_a2 = up.take_requests();

    for (who, seen) in [("A", &seen_a1), ("B", &seen_b), ("A again", &seen_a2)] {
        let paths: Vec<String> = seen
            .iter()
            .map(|r| format!("{} {}", r.method, r.path_and_query()))
            .collect();
        // Chromium may ask for /favicon.ico too; everything the app needs must be there.
        for needed in [
            "GET /_dashboards",
            "GET /_dashboards/app/home",
            "GET /_dashboards/bundles/app.js",
            "POST /_dashboards/api/saved_objects/_find?type=index-pattern&per_page=100",
            "POST /_dashboards/internal/search/opensearch",
        ] {
            assert!(
                paths.iter().any(|p| p == needed),
                "browser {who}: {needed} did not arrive: {paths:?}"
            );
        }
        for r in seen.iter() {
            assert!(
                r.verified(),
                "browser {who}: {} {} not verified: {:?}",
                r.method,
                r.raw_path,
                r.verification
            );
        }
        for r in seen.iter().filter(|r| r.method == "POST") {
            assert_eq!(r.header("osd-xsrf"), Some("osd-fetch"), "{who}");
            assert_eq!(r.header("osd-version"), Some("2.19.1"), "{who}");
            assert!(r
                .header("authorization")
                .unwrap()
                .starts_with("AWS4-HMAC-SHA256 "));
        }
    }
    let sessions = |seen: &[Recorded]| -> Vec<Option<String>> {
        seen.iter()
            .filter(|r| r.raw_path.starts_with("/_dashboards"))
            .map(session_of)
            .collect()
    };
    // A's first visit: no cookie before the home page set it, A's afterwards.
    let a1 = sessions(&seen_a1);
    assert_eq!(a1[0], None, "a fresh browser sends no cookie");
    assert!(
        a1.iter()
            .skip(2)
            .all(|s| s.as_deref() == Some(sid_a.as_str())),
        "{a1:?}"
    );
    // B never sees A's cookie: the proxy shares nothing between clients.
    let b = sessions(&seen_b);
    assert_eq!(b[0], None, "browser B starts without a cookie: {b:?}");
    assert!(
        b.iter()
            .skip(2)
            .all(|s| s.as_deref() == Some(sid_b.as_str())),
        "{b:?}"
    );
    // A's second visit carries A's cookie from the start (kept in A's profile).
    let a2 = sessions(&seen_a2);
    assert!(
        a2.iter().all(|s| s.as_deref() == Some(sid_a.as_str())),
        "{a2:?}"
    );

    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000);
    eprintln!("screenshot: {}", shot.display());
    proxy.stop().await;
}
