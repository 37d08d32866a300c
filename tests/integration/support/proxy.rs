//! Runs the proxy for a test: in-process (`app::App`, as the binary starts it, with explicit
//! credentials) or as the real binary (`CARGO_BIN_EXE_sigv4-proxy`) with its own environment.
//! Both listen on `127.0.0.1:0` and forward to a [`TestUpstream`] through `--connect-to`, so the
//! endpoint keeps its AWS-looking host name for SNI, the certificate, `Host` and the signature.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use sigv4_proxy::app::{App, Environment};
use sigv4_proxy::config::Config;
use sigv4_proxy::proxy::Proxy;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::sigv4::Creds;
use super::upstream::TestUpstream;

/// A proxy running inside the test process.
pub struct TestProxy {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The arguments that point a proxy at `up`: its AWS-looking URL, `--connect-to` its socket,
/// `--ca-bundle` its test CA, and an ephemeral listen port.
pub fn upstream_args(up: &TestUpstream) -> Vec<String> {
    vec![
        format!("https://{}", up.host_name()),
        "--connect-to".into(),
        up.addr().to_string(),
        "--ca-bundle".into(),
        up.ca_bundle_path().display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]
}

/// Credentials in the form the proxy's cache takes.
pub fn provider(creds: &Creds) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        creds.access_key.clone(),
        creds.secret.clone(),
        creds.token.clone(),
        None,
        "test",
    ))
}

/// Sets the workers the in-process proxies share (the count is process-wide) before the first
/// proxy is built: two whatever the machine (`auto` is one on two CPUs), so that they meet what
/// a multi-worker proxy meets, such as a pool per worker. Returns the count.
pub fn in_process_workers() -> usize {
    sigv4_proxy::workers::configure(Some(2))
}

impl TestProxy {
    /// Starts a proxy in front of `up` signing with `creds`; `extra` are more command-line flags.
    pub async fn start(up: &TestUpstream, creds: &Creds, extra: &[&str]) -> TestProxy {
        Self::start_with_provider(up, provider(creds), extra).await
    }

    pub async fn start_with_provider(
        up: &TestUpstream,
        provider: SharedCredentialsProvider,
        extra: &[&str],
    ) -> TestProxy {
        let mut argv: Vec<String> = vec!["sigv4-proxy".into()];
        // Flags given in `extra` replace the defaults that point at `up`.
        let defaults = upstream_args(up);
        argv.push(defaults[0].clone());
        for pair in defaults[1..].chunks(2) {
            if !extra.contains(&pair[0].as_str()) {
                argv.extend_from_slice(pair);
            }
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        // The harness waits at most 10 s for a stop; a test that leaves a request hanging should
        // not hold it for the default 30 s.
        if !extra.contains(&"--drain-timeout") {
            argv.extend(["--drain-timeout".into(), "5s".into()]);
        }
        in_process_workers();
        let argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
        let config = Config::load(&argv).expect("valid test configuration");
        let app = App::start(argv, config, Environment::with_provider(provider))
            .await
            .expect("proxy started");
        let addr = *app.bound().values().next().expect("one listener");
        let proxy = app.routes().first().expect("one route").clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        TestProxy {
            addr,
            proxy,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Starts the graceful shutdown and waits (bounded) for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("proxy stopped within 10 s")
                .expect("server task");
        }
    }

    /// Begins shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The admin endpoints of an in-process proxy, on their own loopback port.
pub struct TestAdmin {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestAdmin {
    pub async fn start(proxy: &Arc<Proxy>) -> TestAdmin {
        let listener = sigv4_proxy::admin::bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind admin");
        let addr = listener.local_addr().unwrap();
        let routes = {
            let proxy = proxy.clone();
            Arc::new(move || vec![proxy.clone()]) as sigv4_proxy::admin::Routes
        };
        let task = tokio::spawn(sigv4_proxy::admin::serve(
            listener,
            routes,
            proxy.metrics().clone(),
        ));
        TestAdmin { addr, task }
    }

    pub async fn get(&self, path: &str) -> super::http::Resp {
        super::http::get(self.addr, path).await
    }

    pub async fn metrics(&self) -> String {
        let resp = self.get("/metrics").await;
        assert_eq!(resp.status, 200);
        assert!(resp
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"));
        resp.text()
    }
}

impl Drop for TestAdmin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real binary, started with a clean environment plus `env`; killed on drop.
pub struct ProxyProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Everything the process wrote to stderr so far (collected in the background).
    pub stderr: Arc<std::sync::Mutex<String>>,
    /// The collector, done when the process has closed its stderr.
    collector: Option<tokio::task::JoinHandle<()>>,
}

/// A minimal environment: no AWS variables from the developer's shell, no IMDS look-ups, and
/// config files pointed at nothing unless the test says otherwise.
pub fn clean_env() -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_default(),
        ),
        ("HOME".to_string(), "/nonexistent".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        (
            "AWS_CONFIG_FILE".to_string(),
            "/nonexistent/config".to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".to_string(),
            "/nonexistent/credentials".to_string(),
        ),
        ("RUST_LOG".to_string(), "info".to_string()),
        ("NO_COLOR".to_string(), "1".to_string()),
    ];
    env.retain(|(_, v)| !v.is_empty());
    env
}

impl ProxyProcess {
    /// Runs the binary with `args` and `env` (on top of [`clean_env`]) and waits until it logs
    /// that it is ready, reading the bound address from that line.
    pub async fn start(args: &[String], env: &[(String, String)]) -> ProxyProcess {
        Self::start_inner(args, env, false, true).await
    }

    /// Like [`ProxyProcess::start`] for `--log-format json`, where the ready line is JSON.
    pub async fn start_json(args: &[String], env: &[(String, String)]) -> ProxyProcess {
        Self::start_inner(args, env, true, true).await
    }

    /// Like [`ProxyProcess::start`] without `RUST_LOG`, so `-v`/`-vv` pick the log level as
    /// they do for users (the harness otherwise sets `RUST_LOG=info`).
    pub async fn start_without_rust_log(args: &[String], env: &[(String, String)]) -> ProxyProcess {
        Self::start_inner(args, env, false, false).await
    }

    async fn start_inner(
        args: &[String],
        env: &[(String, String)],
        json: bool,
        rust_log: bool,
    ) -> ProxyProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigv4-proxy"));
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in clean_env().iter().chain(env.iter()) {
            cmd.env(k, v);
        }
        if !rust_log {
            cmd.env_remove("RUST_LOG");
        }
        let mut child = cmd.spawn().expect("spawn sigv4-proxy");
        let stderr = child.stderr.take().expect("stderr");
        let collected = Arc::new(std::sync::Mutex::new(String::new()));
        let (ready_tx, ready_rx) = oneshot::channel::<SocketAddr>();
        let sink = collected.clone();
        let collector = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut ready_tx = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = if json {
                    ready_address_json(&line)
                } else {
                    ready_address(&line)
                } {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(20), ready_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.kill().await;
                panic!(
                    "sigv4-proxy did not become ready; stderr:\n{}",
                    collected.lock().unwrap()
                );
            }
        };
        ProxyProcess {
            child,
            addr,
            stderr: collected,
            collector: Some(collector),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// What the proxy has logged and this side has read so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What the proxy has logged, once its log has been quiet for a moment: the proxy writes its
    /// log in batches (at most one write per `sigv4_proxy::logging::GATHER`), so a line logged
    /// before a response may reach the pipe just after it. Bounded: 5 s.
    pub async fn settled_stderr(&self) -> String {
        let quiet = sigv4_proxy::logging::GATHER * 5;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut seen = self.stderr.lock().unwrap().len();
        loop {
            tokio::time::sleep(quiet).await;
            let now = self.stderr.lock().unwrap().len();
            if now == seen || tokio::time::Instant::now() > deadline {
                return self.stderr();
            }
            seen = now;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status, and for the last of its log to
    /// be read: the proxy writes what it still holds as it exits, so [`ProxyProcess::stderr`]
    /// is complete after this.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exited within 15 s after SIGTERM")
            .expect("wait");
        if let Some(collector) = self.collector.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), collector).await;
        }
        status
    }
}

/// The `listen=ADDR` field of the "sigv4-proxy ready" log line.
fn ready_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("sigv4-proxy ready") {
        return None;
    }
    let at = line.find("listen=")? + "listen=".len();
    let rest = line[at..].trim_start_matches('"');
    let end = rest.find([' ', '"']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn ready_address_json(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "sigv4-proxy ready" {
        return None;
    }
    v["listen"].as_str()?.parse().ok()
}
