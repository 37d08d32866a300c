//! Validated configuration: what the command line (and later the config file) said, checked
//! and turned into ready-to-use values before anything binds. An invalid configuration exits
//! with status 64 and the reason.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use crate::body::{BodyLimits, Payload};
use crate::cli::{Cli, LogFormat, ProxyArgs, ServiceArg};
use crate::config_file::{self, Origin, LISTENER_KEYS};
use crate::endpoint::{Endpoint, Service};
pub use crate::error::ConfigError;

/// Everything the process runs: one [`RouteConfig`] per route, and the process-wide settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub routes: Vec<RouteConfig>,
    /// The `--config` file, read again on SIGHUP.
    pub file: Option<PathBuf>,
    pub verbose: u8,
    pub log_format: LogFormat,
    /// `--workers`: a count, or `None` for `auto` (see [`crate::workers`]).
    pub workers: Option<usize>,
}

/// One route, validated: an endpoint, where it listens, and how it is reached and guarded. The
/// files it names (CA bundle, policy, htpasswd, tokens, server certificate) are paths here;
/// [`crate::app::build_route`] loads them.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub endpoint: Endpoint,
    pub service: Service,
    /// `None` when neither the flag nor the host name says; the AWS config chain decides.
    pub region: Option<String>,
    pub listen: SocketAddr,
    pub profile: Option<String>,
    /// `--role-arn`: a role assumed on top of the default chain.
    pub role: Option<AssumeRole>,
    /// `--connect-to`: where to open TCP connections instead of resolving the endpoint's host.
    pub connect_to: Option<(String, u16)>,
    /// `--ca-bundle`: more trusted roots for the endpoint's certificate.
    pub ca_bundle: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub body: BodyLimits,
    /// `--unsigned-payload`: bodies are signed as `UNSIGNED-PAYLOAD`, not hashed.
    pub payload: Payload,
    pub response_timeout: Duration,
    pub drain_timeout: Duration,
    /// The local access policy.
    pub policy: PolicySource,
    /// Inbound authentication: either, both or neither.
    pub htpasswd: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// HTTPS on the listener.
    pub tls: Option<TlsFiles>,
    /// `""` or `/prefix` (no trailing slash): where this endpoint sits on its listener.
    pub path_prefix: String,
    /// Bound on a whole request, headers in to last byte out; `None`: unbounded.
    pub request_timeout: Option<Duration>,
    /// Listener settings; routes sharing a listener must agree on them.
    pub header_read_timeout: Duration,
    pub max_header_size: usize,
    pub max_connections: usize,
    /// Where `/healthz`, `/readyz` and `/metrics` are served (`--admin-listen`).
    pub admin_listen: Option<SocketAddr>,
    /// Where the route was configured, for errors about it.
    pub origin: Origin,
}

/// Where the local access policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// None: whatever the endpoint allows goes through.
    None,
    /// `--read-only`: the built-in policy that allows reads only.
    ReadOnly,
    /// `--policy FILE`.
    File(PathBuf),
}

/// `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An IAM role to assume with the credentials of the default chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    pub arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    /// `None`: STS's default (one hour).
    pub duration: Option<Duration>,
}

impl AssumeRole {
    fn from_args(args: &ProxyArgs) -> Result<Option<AssumeRole>, ConfigError> {
        let Some(arn) = args.role_arn.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let is_role_arn = arn.starts_with("arn:")
            && arn.split(':').count() == 6
            && arn
                .split(':')
                .nth(5)
                .is_some_and(|r| r.starts_with("role/") && r.len() > 5);
        if !is_role_arn {
            return Err(ConfigError(format!(
                "--role-arn `{arn}` is not a role ARN like arn:aws:iam::123456789012:role/search-reader"
            )));
        }
        let session_name = args
            .role_session_name
            .clone()
            .unwrap_or_else(|| "sigv4-proxy".into());
        let valid_name = (2..=64).contains(&session_name.len())
            && session_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !valid_name {
            return Err(ConfigError(format!(
                "--role-session-name `{session_name}` must be 2 to 64 characters of letters, digits and +=,.@_-"
            )));
        }
        let duration = args
            .role_duration
            .as_deref()
            .map(|d| parse_duration("--role-duration", d))
            .transpose()?;
        if let Some(d) = duration {
            if d < Duration::from_secs(15 * 60) || d > Duration::from_secs(12 * 3600) {
                return Err(ConfigError(format!(
                    "--role-duration {} is outside what STS allows (15m to 12h, and at most the role's maximum session duration)",
                    humantime::format_duration(d)
                )));
            }
        }
        Ok(Some(AssumeRole {
            arn: arn.to_string(),
            session_name,
            external_id: args.external_id.clone(),
            duration,
        }))
    }
}

/// Why no region could be found, for a configuration whose endpoint host names none and that
/// has no `--region`: the places it is looked for, the profile by its name.
pub fn no_region_message(profile: Option<&str>) -> String {
    let profile = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
        .unwrap_or_else(|| "default".to_string());
    format!(
        "no region: the endpoint host does not name one; pass --region REGION, set AWS_REGION, \
         or set `region` in the AWS profile `{profile}` (~/.aws/config or AWS_CONFIG_FILE)"
    )
}

impl RouteConfig {
    /// One route from its flags (file routes get their [`Origin`] from [`Config::load`]).
    pub fn from_args(args: &ProxyArgs) -> Result<RouteConfig, ConfigError> {
        let raw = args.endpoint.as_deref().ok_or_else(|| {
            ConfigError("no endpoint given: pass the domain or collection URL, e.g. `sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com`".into())
        })?;
        let endpoint = Endpoint::parse(raw).map_err(|e| ConfigError(e.to_string()))?;
        let service = match (args.service, endpoint.inferred_service) {
            (Some(ServiceArg::Es), _) => Service::Es,
            (Some(ServiceArg::Aoss), _) => Service::Aoss,
            (None, Some(s)) => s,
            (None, None) => {
                return Err(ConfigError(format!(
                    "cannot tell the service from `{}`: it is not an Amazon OpenSearch host \
                     (*.REGION.es.amazonaws.com or *.REGION.aoss.amazonaws.com), so it needs --service es|aoss \
                     (the region comes from --region, else AWS_REGION or the AWS profile's `region`)",
                    endpoint.host
                )))
            }
        };
        let region = args
            .region
            .clone()
            .or_else(|| endpoint.inferred_region.clone());
        if let Some(r) = &region {
            if r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(ConfigError(format!(
                    "--region `{r}` is not a region name like us-east-1"
                )));
            }
        }
        let connect_to = args
            .connect_to
            .as_deref()
            .map(parse_host_port)
            .transpose()?;
        let max_body = parse_size("--max-body", &args.max_body)?;
        let policy = match (&args.policy, args.read_only) {
            (Some(path), _) => PolicySource::File(path.clone()),
            (None, true) => PolicySource::ReadOnly,
            (None, false) => PolicySource::None,
        };
        let authenticated = args.htpasswd.is_some() || args.token_file.is_some();
        if !authenticated && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
            return Err(ConfigError(format!(
                "refusing to listen on {} without inbound authentication: anyone who can reach it would act with this \
                 proxy's AWS identity. Add --htpasswd FILE or --token-file FILE, listen on 127.0.0.1, or pass \
                 --allow-unauthenticated if something else already restricts who can connect",
                args.listen
            )));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let spill = parse_size("--spill-threshold", &args.spill_threshold)?;
        let max_header_size = parse_size("--max-header-size", &args.max_header_size)?;
        // hyper's read buffer has a floor of 8 KiB (and asserts it).
        if !(8 * 1024..=16 * 1024 * 1024).contains(&max_header_size) {
            return Err(ConfigError(format!(
                "--max-header-size `{}` must be between 8KiB and 16MiB",
                args.max_header_size
            )));
        }
        if args.max_connections == 0 {
            return Err(ConfigError("--max-connections must be at least 1".into()));
        }
        let path_prefix = args
            .path_prefix
            .as_deref()
            .map(parse_path_prefix)
            .transpose()?
            .unwrap_or_default();
        Ok(RouteConfig {
            endpoint,
            service,
            region,
            listen: args.listen,
            profile: args.profile.clone(),
            role: AssumeRole::from_args(args)?,
            connect_to,
            ca_bundle: args.ca_bundle.clone(),
            connect_timeout: parse_duration("--connect-timeout", &args.connect_timeout)?,
            tls_handshake_timeout: parse_duration(
                "--tls-handshake-timeout",
                &args.tls_handshake_timeout,
            )?,
            pool_idle_timeout: parse_duration("--pool-idle-timeout", &args.pool_idle_timeout)?,
            body: BodyLimits {
                max: max_body,
                spill_threshold: usize::try_from(spill).unwrap_or(usize::MAX),
                idle_timeout: Some(parse_duration(
                    "--body-idle-timeout",
                    &args.body_idle_timeout,
                )?),
            },
            payload: if args.unsigned_payload {
                Payload::Unsigned
            } else {
                Payload::Signed
            },
            response_timeout: parse_duration("--response-timeout", &args.response_timeout)?,
            drain_timeout: parse_duration("--drain-timeout", &args.drain_timeout)?,
            policy,
            htpasswd: args.htpasswd.clone(),
            token_file: args.token_file.clone(),
            tls,
            path_prefix,
            request_timeout: parse_optional_duration("--request-timeout", &args.request_timeout)?,
            header_read_timeout: parse_duration(
                "--header-read-timeout",
                &args.header_read_timeout,
            )?,
            max_header_size: usize::try_from(max_header_size).unwrap_or(usize::MAX),
            max_connections: args.max_connections,
            admin_listen: args.admin_listen,
            origin: Origin::default(),
        })
    }
}

impl Config {
    /// The command line `argv` (program name first), the environment, and the `--config` file
    /// it names, validated. Files the routes name are read later, by [`crate::app`].
    pub fn load(argv: &[OsString]) -> Result<Config, ConfigError> {
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| ConfigError(e.to_string()))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError(e.to_string()))?;
        let Some(path) = cli.proxy.config.clone() else {
            return Ok(Config {
                routes: vec![RouteConfig::from_args(&cli.proxy)?],
                file: None,
                verbose: cli.proxy.verbose,
                log_format: cli.proxy.log_format,
                workers: crate::workers::parse(&cli.proxy.workers).map_err(ConfigError)?,
            });
        };
        let file = config_file::read(&path, argv, &matches)?;
        let mut routes = Vec::new();
        for route in file.routes {
            let locate = |msg: String| route.origin.locate(&msg);
            let matches = Cli::command()
                .try_get_matches_from(&route.words)
                .map_err(|e| locate(e.to_string()))?;
            let cli = Cli::from_arg_matches(&matches).map_err(|e| locate(e.to_string()))?;
            let mut config = RouteConfig::from_args(&cli.proxy).map_err(|e| locate(e.0))?;
            config.origin = route.origin;
            routes.push(config);
        }
        check_listeners(&path, &routes)?;
        let top = Cli::command()
            .try_get_matches_from(&file.process_words)
            .ok()
            .and_then(|m| Cli::from_arg_matches(&m).ok())
            .map(|c| c.proxy)
            .unwrap_or(cli.proxy);
        Ok(Config {
            routes,
            file: Some(path.clone()),
            verbose: top.verbose,
            log_format: top.log_format,
            workers: crate::workers::parse(&top.workers)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?,
        })
    }

    /// The listen addresses of the routes, in order, each once.
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for c in &self.routes {
            if !addrs.contains(&c.listen) {
                addrs.push(c.listen);
            }
        }
        addrs
    }

    /// The admin listener is one per process: every route must name the same address (set it
    /// at the top level of a config file).
    pub fn admin_address(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let mut addresses: Vec<_> = self.routes.iter().map(|r| r.admin_listen).collect();
        addresses.dedup();
        match addresses.as_slice() {
            [] => Ok(None),
            [one] => Ok(*one),
            _ => Err(ConfigError(
                "admin-listen is one per process: set it once, at the top level of the config file, not per route".into(),
            )),
        }
    }
}

/// Routes on one address share a listener: their path prefixes must differ and the listener
/// settings must agree.
fn check_listeners(path: &Path, routes: &[RouteConfig]) -> Result<(), ConfigError> {
    let listener = |r: &RouteConfig| {
        (
            r.tls.clone(),
            r.header_read_timeout,
            r.max_header_size,
            r.max_connections,
            r.drain_timeout,
        )
    };
    for (i, a) in routes.iter().enumerate() {
        for b in routes.iter().skip(i + 1) {
            if a.listen != b.listen {
                continue;
            }
            let (line_a, line_b) = (a.origin.line(), b.origin.line());
            if a.path_prefix == b.path_prefix {
                return Err(ConfigError(format!(
                    "{}: the routes at lines {line_a} and {line_b} both serve {} with path prefix `{}`; give them different `listen` addresses or `path-prefix`es",
                    path.display(),
                    a.listen,
                    if a.path_prefix.is_empty() { "/" } else { &a.path_prefix }
                )));
            }
            if listener(a) != listener(b) {
                return Err(ConfigError(format!(
                    "{}: the routes at lines {line_a} and {line_b} share the listener {} but differ in its settings ({} must be the same on one listener)",
                    path.display(),
                    a.listen,
                    LISTENER_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// `100MiB`, `10MB`, `1048576` → bytes.
pub fn parse_size(flag: &str, text: &str) -> Result<u64, ConfigError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| ConfigError(format!("{flag} `{text}` is not a size like 100MiB: {e}")))
}

/// `30s`, `5m`, `1h 30m` → duration.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| ConfigError(format!("{flag} `{text}` is not a duration like 30s: {e}")))
}

/// Like [`parse_duration`], with `off` (or `none`, `0`) for no limit.
pub fn parse_optional_duration(flag: &str, text: &str) -> Result<Option<Duration>, ConfigError> {
    match text.trim() {
        "off" | "none" | "0" => Ok(None),
        _ => parse_duration(flag, text).map(Some),
    }
}

/// `/logs`, `/logs/` → `/logs`; `/` → `` (no prefix).
pub fn parse_path_prefix(text: &str) -> Result<String, ConfigError> {
    let trimmed = text.trim().trim_end_matches('/');
    let valid = (trimmed.is_empty() || trimmed.starts_with('/'))
        && !trimmed.contains("//")
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    if !valid || (trimmed.is_empty() && !text.trim().starts_with('/')) {
        return Err(ConfigError(format!(
            "--path-prefix `{text}` is not a path like /logs (letters, digits and -._~ between slashes)"
        )));
    }
    Ok(trimmed.to_string())
}

/// `host:port` or `[v6]:port`.
pub fn parse_host_port(text: &str) -> Result<(String, u16), ConfigError> {
    let bad = || ConfigError(format!("--connect-to `{text}` is not HOST:PORT"));
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<RouteConfig, ConfigError> {
        let mut argv = vec!["sigv4-proxy"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        RouteConfig::from_args(&cli.proxy)
    }

    #[test]
    fn aws_hosts_need_no_service_or_region() {
        let c = config(&["https://search-logs-abc.us-east-1.es.amazonaws.com"]).unwrap();
        assert_eq!(c.service, Service::Es);
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9200");
        assert_eq!(c.body.max, 100 * 1024 * 1024);
    }

    #[test]
    fn custom_hosts_need_the_service_and_may_leave_the_region_to_the_aws_config() {
        let err = config(&["https://search.example.com"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs --service es|aoss"), "{err}");
        // The region may come later, from AWS_REGION or the profile (see app::build_proxy).
        let c = config(&["--service", "es", "https://search.example.com"]).unwrap();
        assert_eq!((c.service, c.region.as_deref()), (Service::Es, None));
        let msg = no_region_message(Some("work"));
        assert!(
            msg.contains("--region") && msg.contains("AWS_REGION") && msg.contains("`work`"),
            "{msg}"
        );
        let c = config(&[
            "--service",
            "aoss",
            "--region",
            "eu-west-1",
            "https://search.example.com",
        ])
        .unwrap();
        assert_eq!(
            (c.service, c.region.as_deref()),
            (Service::Aoss, Some("eu-west-1"))
        );
    }

    #[test]
    fn flags_override_inference() {
        let c = config(&[
            "--region",
            "eu-west-1",
            "https://x.us-east-1.aoss.amazonaws.com",
        ])
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.service, Service::Aoss);
    }

    #[test]
    fn role_flags_are_checked() {
        let url = "https://x.us-east-1.es.amazonaws.com";
        assert_eq!(config(&[url]).unwrap().role, None);
        let c = config(&["--role-arn", "arn:aws:iam::123456789012:role/search", url]).unwrap();
        assert_eq!(
            c.role,
            Some(AssumeRole {
                arn: "arn:aws:iam::123456789012:role/search".into(),
                session_name: "sigv4-proxy".into(),
                external_id: None,
                duration: None,
            })
        );
        let c = config(&[
            "--role-arn",
            "arn:aws-cn:iam::123456789012:role/path/search",
            "--role-session-name",
            "laptop@me",
            "--external-id",
            "xyz",
            "--role-duration",
            "2h",
            url,
        ])
        .unwrap()
        .role
        .unwrap();
        assert_eq!(
            (
                c.session_name.as_str(),
                c.external_id.as_deref(),
                c.duration
            ),
            ("laptop@me", Some("xyz"), Some(Duration::from_secs(7200)))
        );
        for (args, flag) in [
            (&["--role-arn", "search-role"][..], "--role-arn"),
            (&["--role-arn", "arn:aws:iam::1:user/bob"][..], "--role-arn"),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::1:role/r",
                    "--role-session-name",
                    "has space",
                ][..],
                "--role-session-name",
            ),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::1:role/r",
                    "--role-duration",
                    "5m",
                ][..],
                "--role-duration",
            ),
        ] {
            let mut argv = args.to_vec();
            argv.push(url);
            let err = config(&argv).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        // The role options need --role-arn (clap says so).
        assert!(
            crate::cli::Cli::try_parse_from(["sigv4-proxy", "--external-id", "x", url]).is_err()
        );
    }

    #[test]
    fn open_listeners_need_inbound_auth() {
        let err = config(&[
            "--listen",
            "0.0.0.0:9200",
            "https://x.us-east-1.es.amazonaws.com",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("refusing to listen on 0.0.0.0:9200") && err.contains("--htpasswd"),
            "{err}"
        );
        assert!(!err.contains("  "), "no runs of spaces: {err}");
        assert!(config(&[
            "--listen",
            "0.0.0.0:9200",
            "--allow-unauthenticated",
            "https://x.us-east-1.es.amazonaws.com"
        ])
        .is_ok());
        assert!(config(&[
            "--listen",
            "[::1]:9200",
            "https://x.us-east-1.es.amazonaws.com"
        ])
        .is_ok());
        let c = config(&["--read-only", "https://x.us-east-1.es.amazonaws.com"]).unwrap();
        assert_eq!(c.policy, PolicySource::ReadOnly);
        assert_eq!((c.htpasswd, c.token_file), (None, None));
    }

    #[test]
    fn sizes_durations_and_connect_to_are_checked() {
        let c = config(&[
            "--max-body",
            "10MB",
            "--connect-to",
            "10.0.0.1:8443",
            "https://x.us-east-1.es.amazonaws.com",
        ])
        .unwrap();
        assert_eq!(c.body.max, 10_000_000);
        assert_eq!(c.connect_to, Some(("10.0.0.1".into(), 8443)));
        assert!(
            config(&["--max-body", "lots", "https://x.us-east-1.es.amazonaws.com"])
                .unwrap_err()
                .to_string()
                .contains("--max-body")
        );
        assert!(config(&[
            "--connect-to",
            "nohost",
            "https://x.us-east-1.es.amazonaws.com"
        ])
        .is_err());
        assert!(config(&[
            "--response-timeout",
            "soon",
            "https://x.us-east-1.es.amazonaws.com"
        ])
        .unwrap_err()
        .to_string()
        .contains("--response-timeout"));
        assert_eq!(parse_host_port("[::1]:443").unwrap(), ("::1".into(), 443));
    }

    /// A config file with `text`, loaded with the command line `args` after `--config`.
    fn load(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = vec!["sigv4-proxy".into(), "--config".into(), path.into()];
        argv.extend(args.iter().map(OsString::from));
        Config::load(&argv)
    }

    #[test]
    fn top_level_keys_are_the_flags_and_flags_win() {
        let s = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\nresponse-timeout = \"20s\"\nread-only = true\nmax-connections = 7\nverbose = 1\n",
            &["--response-timeout", "9s"],
        )
        .unwrap();
        assert_eq!(s.routes.len(), 1);
        let c = &s.routes[0];
        assert_eq!(c.response_timeout, std::time::Duration::from_secs(9));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.policy, PolicySource::ReadOnly);
        assert_eq!(s.verbose, 1);
    }

    #[test]
    fn routes_inherit_the_top_level() {
        let s = load(
            r#"
region = "eu-west-1"
service = "aoss"
[[route]]
endpoint = "https://a.example.com"
listen = "127.0.0.1:9201"
[[route]]
endpoint = "https://b.example.com"
listen = "127.0.0.1:9201"
path-prefix = "/b/"
region = "us-west-2"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.routes[1].region.as_deref(), Some("us-west-2"));
        assert_eq!(s.routes[1].path_prefix, "/b");
        assert_eq!(s.listen_addresses().len(), 1);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\n\n[[route]]\nlisten = \"127.0.0.1:1\"\nresponse_timeout = \"5s\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 5") && err.contains("`response_timeout`"),
            "{err}"
        );
        assert!(err.contains("`response-timeout`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let err = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\n\nconnect-timeout = \"soon\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("--connect-timeout"),
            "{err}"
        );
        let err = load("listen = \"nowhere\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn routes_on_one_listener_need_distinct_prefixes_and_equal_settings() {
        let two = |extra: &str| {
            format!("[[route]]\nendpoint = \"https://a.us-east-1.es.amazonaws.com\"\n[[route]]\nendpoint = \"https://b.us-east-1.es.amazonaws.com\"\n{extra}")
        };
        let err = load(&two(""), &[]).unwrap_err().to_string();
        assert!(err.contains("lines 1 and 3"), "{err}");
        let err = load(&two("path-prefix = \"/b\"\nmax-connections = 3\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-connections"), "{err}");
        assert!(load(&two("path-prefix = \"/b\"\n"), &[]).is_ok());
    }

    #[test]
    fn process_wide_keys_stay_at_the_top() {
        let err = load(
            "[[route]]\nendpoint = \"https://a.us-east-1.es.amazonaws.com\"\nlog-format = \"json\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("whole process"),
            "{err}"
        );
        let err = load("config = \"x.toml\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("cannot be set"), "{err}");
    }

    #[test]
    fn workers_are_set_at_the_top_of_the_file_and_flags_win() {
        let endpoint = "endpoint = \"https://a.us-east-1.es.amazonaws.com\"\n";
        assert_eq!(load(endpoint, &[]).unwrap().workers, None, "auto");
        let file = format!("workers = 3\n{endpoint}");
        assert_eq!(load(&file, &[]).unwrap().workers, Some(3));
        assert_eq!(load(&file, &["--workers", "5"]).unwrap().workers, Some(5));
        assert_eq!(load(&file, &["--workers", "auto"]).unwrap().workers, None);
        let err = load(&format!("workers = 0\n{endpoint}"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("proxy.toml") && err.contains("--workers `0`"),
            "{err}"
        );
        let err = load(&format!("[[route]]\n{endpoint}workers = 2\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole process"), "{err}");
    }
}
