//! `sigv4-proxy check ENDPOINT`: walks the path a request takes, one step a line, and says what
//! each failure means and what to do about it — the answer to "I get 403: is it the proxy, my
//! IAM identity, the network policy or the data access policy?".
//!
//! Steps: endpoint (service, region) → credentials (source, key tail, expiry) → identity (STS
//! GetCallerIdentity; `AWS_ENDPOINT_URL_STS` is honoured) → DNS (private or public address;
//! skipped with `--connect-to`) → TCP → TLS (certificate) → one signed read-only request
//! through the proxy's own signing and client ([`crate::proxy::Proxy::send_signed`]) and what its
//! answer means ([`diagnose`]) → clock (the answer's `Date` against the local clock).
//!
//! `✓` passed, `✗` failed, `!` a warning, `·` skipped. [`run`] returns whether nothing failed.

pub mod cert;
pub mod diagnose;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_types::region::Region;
use aws_types::SdkConfig;
use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt;
use tokio::net::TcpStream;

use crate::app::{self, Environment, Route};
use crate::cli::CheckArgs;
use crate::config::RouteConfig;
use crate::credentials::{key_id_tail, load_sdk_config, provider_name, CredentialCache};
use crate::endpoint::Service;
use crate::error::error_chain;
use crate::metrics::{Metrics, Retry};
use crate::proxy::Proxy;
use crate::upstream::root_store;
use cert::{summarize, RecordingVerifier};
use diagnose::{diagnose, policy_principal, Situation, Verdict};

const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Over this the clock is worth a warning; SigV4 itself allows 5 minutes.
const SKEW_WARN: Duration = Duration::from_secs(60);
const SKEW_FAIL: Duration = Duration::from_secs(5 * 60);
/// How much of the answer's body is read.
const BODY_LIMIT: usize = 64 * 1024;

/// Writes the report and counts failures.
struct Report<'w> {
    out: &'w mut dyn Write,
    failures: usize,
    warnings: usize,
}

impl Report<'_> {
    fn line(&mut self, mark: &str, step: &str, text: &str) {
        let mut lines = text.lines();
        let _ = writeln!(self.out, "{mark} {step:<12} {}", lines.next().unwrap_or(""));
        for more in lines {
            let _ = writeln!(self.out, "{:15}{}", "", more.trim_start());
        }
        let _ = self.out.flush();
    }

    fn pass(&mut self, step: &str, text: &str) {
        self.line("✓", step, text);
    }

    fn fail(&mut self, step: &str, text: &str) {
        self.failures += 1;
        self.line("✗", step, text);
    }

    fn warn(&mut self, step: &str, text: &str) {
        self.warnings += 1;
        self.line("!", step, text);
    }

    fn skip(&mut self, step: &str, text: &str) {
        self.line("·", step, text);
    }

    /// An indented line under the step.
    fn detail(&mut self, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.out, "{:15}{line}", "");
        }
    }

    fn fix(&mut self, text: &str) {
        self.detail(&format!("fix: {text}"));
    }
}

/// Runs every step, writing the report to `out`; `true` when no step failed.
pub async fn run(args: &CheckArgs, out: &mut dyn Write) -> bool {
    let mut report = Report {
        out,
        failures: 0,
        warnings: 0,
    };
    let _ = writeln!(
        report.out,
        "sigv4-proxy check {}",
        args.proxy.endpoint.as_deref().unwrap_or("")
    );
    steps(args, &mut report).await;
    let summary = match (report.failures, report.warnings) {
        (0, 0) => "All checks passed.".to_string(),
        (0, w) => format!("All checks passed, with {w} warning{}.", plural(w)),
        (f, 0) => format!("{f} check{} failed.", plural(f)),
        (f, w) => format!("{f} check{} failed, {w} warning{}.", plural(f), plural(w)),
    };
    let _ = writeln!(report.out, "{summary}");
    report.failures == 0
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

async fn steps(args: &CheckArgs, report: &mut Report<'_>) {
    // --- endpoint ---
    let route = match RouteConfig::from_args(&args.proxy)
        .and_then(|config| app::build_route(&config, &Environment::from_process()))
    {
        Ok(route) => route,
        Err(err) => {
            report.fail("endpoint", &err.to_string());
            return;
        }
    };
    let config = &route.config;
    let sdk = load_sdk_config(config.profile.as_deref(), config.region.as_deref()).await;
    let (region, region_source) = match (&args.proxy.region, &config.region, sdk.region()) {
        (Some(r), _, _) => (r.clone(), "--region"),
        (None, Some(r), _) => (r.clone(), "the host name"),
        (None, None, Some(r)) => (r.to_string(), "the AWS configuration"),
        (None, None, None) => {
            report.fail(
                "endpoint",
                &format!("{}: no region", config.endpoint.base_url()),
            );
            report.fix(&crate::config::no_region_message(config.profile.as_deref()));
            return;
        }
    };
    let service_source = if args.proxy.service.is_some() {
        "--service"
    } else {
        "the host name"
    };
    report.pass(
        "endpoint",
        &format!(
            "{} → service {} (from {service_source}), region {region} (from {region_source})",
            config.endpoint.base_url(),
            config.service
        ),
    );

    // --- credentials and identity ---
    let credentials = credentials_step(&sdk, config.profile.as_deref(), report).await;
    let identity = match &credentials {
        Some(c) => identity_step(&sdk, &region, c, report).await,
        None => {
            report.skip("identity", "skipped: no credentials");
            None
        }
    };

    // --- DNS, TCP, TLS ---
    let reachable = network_steps(&route, report).await;

    // --- one signed request, and the clock ---
    let Some(credentials) = credentials else {
        report.skip("request", "skipped: no credentials to sign with");
        return;
    };
    if !reachable {
        report.skip("request", "skipped: the endpoint is not reachable");
        return;
    }
    let path = args.path.clone().unwrap_or_else(|| match config.service {
        Service::Es => "/".into(),
        Service::Aoss => "/_cat/indices".into(),
    });
    let provider = SharedCredentialsProvider::new(credentials);
    let metrics = Arc::new(Metrics::new());
    let proxy = match app::proxy_for(
        &route,
        CredentialCache::new(provider),
        region.clone(),
        metrics,
    ) {
        Ok(p) => p,
        Err(err) => {
            report.fail("request", &format!("cannot build the client: {err}"));
            return;
        }
    };
    let situation = Situation {
        identity: identity.as_deref(),
        host: &config.endpoint.host,
        region: &region,
    };
    request_step(&proxy, config.service, &path, &situation, report).await;
}

async fn credentials_step(
    sdk: &SdkConfig,
    profile: Option<&str>,
    report: &mut Report<'_>,
) -> Option<Credentials> {
    let Some(provider) = sdk.credentials_provider() else {
        report.fail(
            "credentials",
            "the AWS configuration has no credentials provider",
        );
        return None;
    };
    let result = tokio::time::timeout(STEP_TIMEOUT, provider.provide_credentials()).await;
    let fix = "configure one source of the default chain: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), \
               a profile in ~/.aws/config or ~/.aws/credentials (--profile / AWS_PROFILE; `aws sso login` for SSO), \
               web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), container credentials, or an EC2 instance role";
    match result {
        Err(_) => {
            report.fail(
                "credentials",
                &format!(
                    "the provider chain did not answer within {}",
                    humantime::format_duration(STEP_TIMEOUT)
                ),
            );
            report.fix(fix);
            None
        }
        Ok(Err(err)) => {
            report.fail("credentials", &format!("none found: {}", error_chain(&err)));
            if let Some(p) = profile {
                report.detail(&format!("(profile `{p}`)"));
            }
            report.fix(fix);
            None
        }
        Ok(Ok(c)) => {
            let kind = if c.session_token().is_some() {
                "temporary (with session token)"
            } else {
                "long-term"
            };
            let expiry = match c.expiry() {
                None => "no expiry".to_string(),
                Some(e) => match e.duration_since(SystemTime::now()) {
                    Ok(left) => format!(
                        "expire {} (in {})",
                        humantime::format_rfc3339_seconds(e),
                        humantime::format_duration(Duration::from_secs(left.as_secs()))
                    ),
                    Err(_) => {
                        report.fail(
                            "credentials",
                            &format!(
                                "{}, key {}: expired at {}",
                                provider_name(&c),
                                key_id_tail(c.access_key_id()),
                                humantime::format_rfc3339_seconds(e)
                            ),
                        );
                        report.fix("refresh them (`aws sso login`, a new session)");
                        return None;
                    }
                },
            };
            report.pass(
                "credentials",
                &format!(
                    "{}, key {}, {kind}, {expiry}",
                    provider_name(&c),
                    key_id_tail(c.access_key_id())
                ),
            );
            Some(c)
        }
    }
}

/// STS GetCallerIdentity with the credentials found: who AWS thinks they are.
async fn identity_step(
    sdk: &SdkConfig,
    region: &str,
    credentials: &Credentials,
    report: &mut Report<'_>,
) -> Option<String> {
    use aws_sdk_sts::error::ProvideErrorMetadata;
    let conf = aws_sdk_sts::config::Builder::from(sdk)
        .region(Region::new(region.to_string()))
        .credentials_provider(credentials.clone())
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    let client = aws_sdk_sts::Client::from_conf(conf);
    let answer = tokio::time::timeout(STEP_TIMEOUT, client.get_caller_identity().send()).await;
    match answer {
        Err(_) => {
            report.warn(
                "identity",
                "STS did not answer in time; the identity stays unknown (not counted as a failure)",
            );
            None
        }
        Ok(Ok(out)) => {
            let arn = out.arn().unwrap_or("(no ARN)").to_string();
            report.pass(
                "identity",
                &format!("{arn} (account {})", out.account().unwrap_or("?")),
            );
            let principal = policy_principal(&arn);
            if principal != arn {
                report.detail(&format!(
                    "access policies and role mappings name it as {principal}"
                ));
            }
            Some(arn)
        }
        Ok(Err(err)) => match err.code() {
            Some(code) => {
                let message = err.message().unwrap_or("").to_string();
                let meaning = match code {
                    "InvalidClientTokenId" => "AWS does not know this access key or session token",
                    "ExpiredToken" => "the session token has expired",
                    "SignatureDoesNotMatch" => {
                        "the secret key does not belong to the access key id"
                    }
                    _ => "",
                };
                if matches!(code, "Throttling" | "RegionDisabledException") {
                    report.warn("identity", &format!("STS: {code}: {message}"));
                    return None;
                }
                let text = if meaning.is_empty() {
                    format!("STS refused the credentials: {code}: {message}")
                } else {
                    format!("STS refused the credentials: {meaning} ({code})")
                };
                report.fail("identity", &text);
                report
                    .fix("fix the credentials first: every signed request will fail the same way");
                None
            }
            None => {
                report.warn(
                    "identity",
                    &format!(
                        "could not reach STS: {}; the identity stays unknown (not counted as a failure)",
                        error_chain(&err)
                    ),
                );
                None
            }
        },
    }
}

/// `loopback`, `private` (RFC 1918, shared address space, link-local, IPv6 unique local) or
/// `public`.
pub fn address_kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b)) {
                "private"
            } else {
                "public"
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                "private"
            } else {
                "public"
            }
        }
    }
}

/// DNS, TCP and TLS; `true` when a TLS session could be opened.
async fn network_steps(route: &Route, report: &mut Report<'_>) -> bool {
    let config = &route.config;
    let host = &config.endpoint.host;
    let addrs: Vec<SocketAddr> = match &config.connect_to {
        Some((to_host, to_port)) => {
            report.skip(
                "DNS",
                &format!("skipped: --connect-to {to_host}:{to_port} replaces the address of {host} (TLS, Host and signature stay {host}'s)"),
            );
            match resolve(to_host, *to_port).await {
                Ok(a) => a,
                Err(err) => {
                    report.fail(
                        "TCP",
                        &format!("cannot resolve the --connect-to host {to_host}: {err}"),
                    );
                    return false;
                }
            }
        }
        None => match resolve(host, config.endpoint.port).await {
            Ok(addrs) => {
                let kinds: Vec<&str> = addrs.iter().map(|a| address_kind(a.ip())).collect();
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                let meaning = if kinds.iter().all(|k| *k == "private") {
                    "private addresses: a VPC domain or a VPC endpoint, reachable only from inside the VPC (or over VPN, Direct Connect, peering)"
                } else if kinds.iter().all(|k| *k == "loopback") {
                    "loopback"
                } else if config.service == Service::Aoss {
                    "public addresses: the public endpoint (a network policy that allows only VPC endpoints still refuses requests from here)"
                } else {
                    "public addresses: a public domain"
                };
                report.pass("DNS", &format!("{host} → {} ({meaning})", list.join(", ")));
                addrs
            }
            Err(err) => {
                report.fail("DNS", &format!("cannot resolve {host}: {err}"));
                report.fix("check the name; a collection behind a VPC endpoint resolves only inside its VPC: from elsewhere use a resolver in the VPC or --connect-to ADDRESS:443 (VPN, tunnel)");
                return false;
            }
        },
    };

    // --- TCP ---
    let timeout = route.upstream.connect_timeout;
    let mut errors = Vec::new();
    let mut connected = None;
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                connected = Some((stream, *addr, started.elapsed()));
                break;
            }
            Ok(Err(e)) => errors.push((*addr, e.to_string(), e.kind())),
            Err(_) => errors.push((
                *addr,
                format!("timed out after {}", humantime::format_duration(timeout)),
                std::io::ErrorKind::TimedOut,
            )),
        }
    }
    let Some((stream, addr, took)) = connected else {
        let text: Vec<String> = errors.iter().map(|(a, e, _)| format!("{a}: {e}")).collect();
        report.fail("TCP", &format!("cannot connect: {}", text.join("; ")));
        if errors
            .iter()
            .any(|(_, _, k)| *k == std::io::ErrorKind::TimedOut)
        {
            report.fix("packets are dropped on the way: a VPC domain's or VPC endpoint's security group must allow inbound 443 from this machine, and outside the VPC you need VPN, Direct Connect or a tunnel (--connect-to)");
        } else {
            report.fix(
                "nothing accepts connections there: check the port and the --connect-to address",
            );
        }
        return false;
    };
    report.pass(
        "TCP",
        &format!("connected to {addr} in {} ms", took.as_millis()),
    );

    // --- TLS ---
    tls_step(route, stream, report).await
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!(
            "no answer within {}",
            humantime::format_duration(STEP_TIMEOUT)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("no address".into())
            } else {
                Ok(addrs)
            }
        }
    }
}

async fn tls_step(route: &Route, stream: TcpStream, report: &mut Report<'_>) -> bool {
    let config = &route.config;
    let host = &config.endpoint.host;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let built = root_store(&route.upstream)
        .map_err(|e| e.to_string())
        .and_then(|roots| {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())
        });
    let verifier = match built {
        Ok(v) => Arc::new(RecordingVerifier::new(v)),
        Err(err) => {
            report.fail("TLS", &format!("cannot set up TLS: {err}"));
            return false;
        }
    };
    let tls = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => {
            let mut c = b
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            c
        }
        Err(err) => {
            report.fail("TLS", &format!("cannot set up TLS: {err}"));
            return false;
        }
    };
    let server_name = match rustls::pki_types::ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(err) => {
            report.fail("TLS", &format!("`{host}` is not a TLS server name: {err}"));
            return false;
        }
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let handshake =
        tokio::time::timeout(STEP_TIMEOUT, connector.connect(server_name, stream)).await;
    let presented = verifier.presented().as_deref().and_then(summarize);
    let describe = |c: &cert::CertSummary| {
        let until = c
            .not_after
            .map(|t| format!(", valid until {}", humantime::format_rfc3339_seconds(t)))
            .unwrap_or_default();
        format!("certificate {}, issued by {}{until}", c.subject, c.issuer)
    };
    match handshake {
        Ok(Ok(tls)) => {
            let (_, session) = tls.get_ref();
            let version = match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
                Some(v) => format!("{v:?}"),
                None => "TLS".into(),
            };
            let alpn = session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "http/1.1".into());
            let cert = presented.as_ref().map(describe).unwrap_or_default();
            report.pass("TLS", &format!("{version}, {alpn}; {cert}"));
            true
        }
        Err(_) => {
            report.fail(
                "TLS",
                &format!(
                    "no handshake within {}: something at that address is not a TLS server",
                    humantime::format_duration(STEP_TIMEOUT)
                ),
            );
            false
        }
        Ok(Err(err)) => {
            let text = err.to_string();
            report.fail("TLS", &format!("handshake failed: {text}"));
            if let Some(c) = &presented {
                report.detail(&format!("the server presented: {}", describe(c)));
                if !c.dns_names.is_empty() {
                    report.detail(&format!("for names: {}", c.dns_names.join(", ")));
                }
            }
            if text.contains("UnknownIssuer") {
                report.fix("the certificate is not signed by a public CA: a TLS-inspecting proxy or firewall (its CA is the issuer above) or a private CA; pass --ca-bundle FILE with that CA if you trust it");
            } else if text.contains("NotValidForName") {
                report.fix(&format!("the certificate is not for {host}: with --connect-to, the address must serve the endpoint's own certificate (a VPC endpoint does; another load balancer does not)"));
            } else if text.contains("Expired") || text.contains("NotValidYet") {
                report.fix(
                    "check this machine's clock; otherwise the server's certificate is out of date",
                );
            }
            false
        }
    }
}

async fn request_step(
    proxy: &Proxy,
    service: Service,
    path: &str,
    situation: &Situation<'_>,
    report: &mut Report<'_>,
) {
    let sent = SystemTime::now();
    let answer = tokio::time::timeout(STEP_TIMEOUT, proxy.send_signed(Method::GET, path)).await;
    let response = match answer {
        Err(_) => {
            report.fail(
                "request",
                &format!(
                    "GET {path}: no answer within {}",
                    humantime::format_duration(STEP_TIMEOUT)
                ),
            );
            return;
        }
        Ok(Err(err)) => {
            report.fail("request", &format!("GET {path}: {err}"));
            return;
        }
        Ok(Ok(r)) => r,
    };
    let received = SystemTime::now();
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_some(response.into_body()).await;
    let body = String::from_utf8_lossy(&body);
    let d = diagnose(service, status, &headers, &body, path, situation);
    let text = format!("GET {path} → {}", d.summary);
    match d.verdict {
        Verdict::Pass => report.pass("request", &text),
        Verdict::Warn => report.warn("request", &text),
        Verdict::Fail => report.fail("request", &text),
    }
    if proxy.metrics().retry_count(Retry::Clock) > 0 {
        report.detail("first answer: the signature time was refused; the proxy signed again with the endpoint's time (and keeps doing so), see `clock`");
    }
    if proxy.metrics().retry_count(Retry::Credentials) > 0 {
        report.detail("first answer: the credentials were refused; the proxy loaded new ones and signed again");
    }
    if let Some(said) = &d.aws_said {
        report.detail(&format!("AWS said: {said}"));
    }
    for line in &d.aws_detail {
        report.detail(&format!("  {line}"));
    }
    for fix in &d.fixes {
        report.fix(fix);
    }
    clock_step(&headers, sent, received, report);
}

/// Reads up to [`BODY_LIMIT`] bytes of an answer, bounded in time.
async fn read_some(mut body: crate::proxy::ProxyBody) -> Bytes {
    let mut out = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
                if out.len() >= BODY_LIMIT {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(STEP_TIMEOUT, read).await;
    Bytes::from(out)
}

/// Compares the answer's `Date` with the local clock at the time of the request.
fn clock_step(
    headers: &HeaderMap,
    sent: SystemTime,
    received: SystemTime,
    report: &mut Report<'_>,
) {
    let Some(date) = headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        report.skip("clock", "skipped: the answer has no Date header");
        return;
    };
    // `Date` has whole seconds: the endpoint's time was date + 0.5 s ± 0.5 s, somewhere between
    // sending and receiving; compare with the middle of that window.
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let local = (secs(sent) + secs(received)) / 2.0;
    let offset = (secs(date) + 0.5 - local).round();
    let ahead = offset > 0.0;
    let skew = Duration::from_secs(offset.abs() as u64);
    if skew < Duration::from_secs(2) {
        report.pass(
            "clock",
            "the local clock agrees with the endpoint's (within 2 s)",
        );
        return;
    }
    let text = format!(
        "the local clock is {} {} the endpoint's",
        humantime::format_duration(skew),
        if ahead { "behind" } else { "ahead of" }
    );
    let fix = "synchronise the clock (chrony, systemd-timesyncd, ntpdate); SigV4 signatures are valid for 5 minutes";
    if skew >= SKEW_FAIL {
        report.fail("clock", &text);
        report.detail("the proxy works around it by signing with the endpoint's time once a request is refused, but STS, the AWS CLI and SDKs will fail");
        report.fix(fix);
    } else if skew >= SKEW_WARN {
        report.warn("clock", &text);
        report.fix(fix);
    } else {
        report.pass("clock", &format!("{text}, within what SigV4 allows"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        for (ip, kind) in [
            ("10.0.1.5", "private"),
            ("172.31.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("52.1.2.3", "public"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("fd00::1", "private"),
            ("2600:1f18::1", "public"),
        ] {
            assert_eq!(address_kind(ip.parse().unwrap()), kind, "{ip}");
        }
    }
}
