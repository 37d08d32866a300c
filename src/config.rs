//! Validated configuration: what the command line (and later the config file) said, checked
//! and turned into ready-to-use values before anything binds. An invalid configuration exits
//! with status 64 and the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authenticator, BearerTokens, Htpasswd};
use crate::policy::Policy;

use crate::body::{BodyLimits, Payload};
use crate::cli::{ProxyArgs, ServiceArg};
use crate::endpoint::{Endpoint, Service};
use crate::upstream::{load_pem_certificates, UpstreamOptions};

/// A validated proxy configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: Endpoint,
    pub service: Service,
    /// `None` when neither the flag nor the host name says; the AWS config chain decides.
    pub region: Option<String>,
    pub listen: SocketAddr,
    pub profile: Option<String>,
    /// `--role-arn`: a role assumed on top of the default chain.
    pub role: Option<AssumeRole>,
    pub upstream: UpstreamOptions,
    pub body: BodyLimits,
    /// `--unsigned-payload`: bodies are signed as `UNSIGNED-PAYLOAD`, not hashed.
    pub payload: Payload,
    pub response_timeout: Duration,
    pub drain_timeout: Duration,
    /// The local access policy; `None` lets through whatever the endpoint allows.
    pub policy: Option<Arc<Policy>>,
    /// Inbound authentication; `None` when neither --htpasswd nor --token-file is given.
    pub auth: Option<Arc<Authenticator>>,
    /// HTTPS on the listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
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
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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

impl Config {
    pub fn from_args(args: &ProxyArgs) -> Result<Config, ConfigError> {
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
        let extra_roots = match &args.ca_bundle {
            Some(path) => load_pem_certificates(path).map_err(ConfigError)?,
            None => Vec::new(),
        };
        let max_body = parse_size("--max-body", &args.max_body)?;
        let policy = match (&args.policy, args.read_only) {
            (Some(path), _) => Some(Arc::new(
                Policy::from_file(path)
                    .map_err(|e| ConfigError(format!("--policy: {e}")))?
                    .with_inflate_limit(max_body),
            )),
            (None, true) => Some(Arc::new(Policy::read_only().with_inflate_limit(max_body))),
            (None, false) => None,
        };
        let htpasswd = args
            .htpasswd
            .as_ref()
            .map(Htpasswd::from_file)
            .transpose()
            .map_err(|e| ConfigError(format!("--htpasswd: {e}")))?;
        let tokens = args
            .token_file
            .as_ref()
            .map(BearerTokens::from_file)
            .transpose()
            .map_err(|e| ConfigError(format!("--token-file: {e}")))?;
        let auth = Authenticator::new(htpasswd, tokens);
        let auth = auth.is_enabled().then(|| Arc::new(auth));
        if auth.is_none() && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
            return Err(ConfigError(format!(
                "refusing to listen on {} without inbound authentication: anyone who can reach it would act with this \
                 proxy's AWS identity. Add --htpasswd FILE or --token-file FILE, listen on 127.0.0.1, or pass \
                 --allow-unauthenticated if something else already restricts who can connect",
                args.listen
            )));
        }
        if auth.is_none() && policy.as_ref().is_some_and(|p| p.uses_proxy_principals()) {
            return Err(ConfigError(
                "--policy names \"Proxy\" principals, but no inbound users are configured: add --htpasswd or --token-file \
                 (without them every statement would apply to everyone)"
                    .into(),
            ));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::server::load_server_tls(cert, key).map_err(ConfigError)?)
            }
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
        Ok(Config {
            endpoint,
            service,
            region,
            listen: args.listen,
            profile: args.profile.clone(),
            role: AssumeRole::from_args(args)?,
            upstream: UpstreamOptions {
                connect_to,
                extra_roots,
                connect_timeout: parse_duration("--connect-timeout", &args.connect_timeout)?,
                tls_handshake_timeout: parse_duration(
                    "--tls-handshake-timeout",
                    &args.tls_handshake_timeout,
                )?,
                idle_timeout: parse_duration("--pool-idle-timeout", &args.pool_idle_timeout)?,
                ..UpstreamOptions::default()
            },
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
            auth,
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
        })
    }
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

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["sigv4-proxy"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        Config::from_args(&cli.proxy)
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
        // The region may come later, from AWS_REGION or the profile (see lib::build).
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
        assert!(c.policy.is_some() && c.auth.is_none());
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
        assert_eq!(c.upstream.connect_to, Some(("10.0.0.1".into(), 8443)));
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
}
