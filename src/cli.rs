//! Command-line interface (clap derive). Every flag can also come from an environment variable
//! `SIGV4_PROXY_<NAME>`; the validated form lives in [`crate::config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// `--version`: the package version and, when built from a git checkout, the revision
/// (`0.1.0 (git 0ec3c28)`; see `build.rs`).
pub const VERSION: &str = env!("SIGV4_PROXY_VERSION");

/// `--help`'s closing text: what a man page has under EXAMPLES, FILES, ENVIRONMENT, SIGNALS and
/// EXIT STATUS. Every `--flag` named here must be a flag of the proxy (a test checks that each
/// has its `SIGV4_PROXY_*` variable).
const AFTER_LONG_HELP: &str = "\
Examples:
  Sign for a domain on localhost:9200, then use curl, Dashboards or any client:
    sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com
    curl 'localhost:9200/_cat/indices?v'

  A Serverless collection with a named AWS profile, reads only:
    sigv4-proxy --profile prod --read-only https://0123abcd.eu-west-1.aoss.amazonaws.com

  A collection behind a VPC endpoint (TLS, Host and signature stay the collection's):
    sigv4-proxy --connect-to vpce-0abc.aoss.us-east-1.vpce.amazonaws.com:443 \\
      https://0123abcd.us-east-1.aoss.amazonaws.com

  In a container or on a shared host: listen on every interface, require bearer tokens, serve
  /healthz, /readyz and /metrics on their own port:
    sigv4-proxy --listen 0.0.0.0:9200 --token-file /run/secrets/tokens \\
      --admin-listen 127.0.0.1:9901 https://search-logs-abc123.us-east-1.es.amazonaws.com

  Several endpoints from one file (SIGHUP reloads it):
    sigv4-proxy --config /etc/sigv4-proxy/sigv4-proxy.toml

  Diagnose a 403 or a timeout step by step:
    sigv4-proxy check https://search-logs-abc123.us-east-1.es.amazonaws.com

Environment:
  Every flag can be set as SIGV4_PROXY_<FLAG> (shown with each flag). Credentials come from the
  AWS default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, AWS_PROFILE and
  ~/.aws/config, AWS_WEB_IDENTITY_TOKEN_FILE (EKS IRSA), AWS_CONTAINER_CREDENTIALS_* (ECS, EKS
  Pod Identity), EC2 instance metadata. HTTPS_PROXY and NO_PROXY send the upstream connection
  through an HTTP CONNECT proxy. RUST_LOG overrides the log filter. TOKIO_WORKER_THREADS, when
  set, is the worker count for --workers auto; MALLOC_ARENA_MAX, when set, replaces the
  proxy's own limit of two glibc malloc arenas.

Signals:
  SIGTERM, SIGINT  stop accepting; in-flight requests finish within --drain-timeout
  SIGHUP           reload the --config file and the files it names; a bad file is rejected and
                   the running configuration stays

Exit status:
  0 after a clean shutdown, 64 when the configuration is invalid (with the reason on stderr),
  1 on any other failure. `check` and `health` exit 0 on success and 1 otherwise.

See also:
  sigv4-proxy help check, sigv4-proxy help health; the user guide, README.md.";

#[derive(Debug, Parser)]
#[command(
    name = "sigv4-proxy",
    version = VERSION,
    about = "A SigV4-signing reverse proxy for Amazon OpenSearch Service and OpenSearch Serverless",
    long_about = "Accepts unsigned HTTP requests (curl, OpenSearch Dashboards, any OpenSearch client), signs each \
with AWS SigV4 using credentials from the AWS default provider chain, and forwards it over TLS to an Amazon \
OpenSearch Service domain (service `es`) or an OpenSearch Serverless collection (service `aoss`).

It listens on 127.0.0.1:9200 unless told otherwise, and refuses a non-loopback address without \
inbound authentication (--htpasswd, --token-file) or --allow-unauthenticated, as whoever reaches \
the port acts with the proxy's AWS identity.",
    after_help = "Examples:\n  \
sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com\n  \
curl 'localhost:9200/_cat/indices?v'\n  \
sigv4-proxy check https://search-logs-abc123.us-east-1.es.amazonaws.com\n\n\
`sigv4-proxy --help` shows more examples, the environment, signals and exit status.",
    after_long_help = AFTER_LONG_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose the path to the endpoint step by step (credentials, identity, DNS, TCP, TLS, one
    /// signed request) and say what each failure means. Exit status 0 when everything passed.
    Check(Box<CheckArgs>),
    /// Ask a running proxy's admin listener whether it is healthy: exit 0 on HTTP 200, 1 on
    /// anything else. For container health checks and exec probes, where there is no shell or
    /// curl.
    Health(HealthArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = "Examples:\n  \
sigv4-proxy completions bash > /etc/bash_completion.d/sigv4-proxy\n  \
sigv4-proxy completions zsh > \"${fpath[1]}/_sigv4-proxy\"\n  \
sigv4-proxy completions fish > ~/.config/fish/completions/sigv4-proxy.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `sigv4-proxy man > sigv4-proxy.1; man ./sigv4-proxy.1`.
    Man,
    /// Explain what a policy decides for a request, or lint a policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `sigv4-proxy policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show what the policy decides for one request and why: the API, every index it touches
    /// and where each came from, the statements that match each, the decision. Exit status 0
    /// when allowed, 1 when denied.
    #[command(after_help = "Examples:\n  \
sigv4-proxy policy explain --policy policy.json GET '/logs-*/_search?q=error'\n  \
sigv4-proxy policy explain --policy policy.json POST /_bulk --body bulk.ndjson\n  \
gzip -c bulk.ndjson | sigv4-proxy policy explain --policy policy.json POST /_bulk --body - --content-encoding gzip\n  \
sigv4-proxy policy explain --read-only DELETE /_search/scroll --body scroll.json")]
    Explain(PolicyExplainArgs),
    /// Load and lint a policy file: resources that can never match, `_` wildcards that open the
    /// security plugin's API, Deny statements that never take effect or that an alias gets
    /// around. Exit status 1 when it has errors (or does not load).
    Check(PolicyCheckArgs),
}

/// `sigv4-proxy policy explain`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyExplainArgs {
    /// The policy file (IAM policy JSON).
    #[arg(long, value_name = "FILE", required_unless_present = "read_only")]
    pub policy: Option<PathBuf>,
    /// Explain the built-in read-only policy instead.
    #[arg(long, conflicts_with = "policy")]
    pub read_only: bool,
    /// The request's method (GET, POST, …).
    pub method: String,
    /// The request's path and query as a client sends them (`/logs-*/_search?q=x`).
    pub path: String,
    /// The request body: a file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-")]
    pub body: Option<String>,
    /// The body's Content-Type.
    #[arg(long, value_name = "TYPE", default_value = "application/json")]
    pub content_type: String,
    /// The body's Content-Encoding (`gzip`, `deflate`).
    #[arg(long, value_name = "CODING")]
    pub content_encoding: Option<String>,
    /// The inbound user the request comes from (an htpasswd user, or `token:N`), for
    /// `Principal` statements.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The client's address, for `aws:SourceIp` conditions.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub source_ip: std::net::IpAddr,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sigv4-proxy policy check`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    pub file: PathBuf,
}

/// `sigv4-proxy check`: the proxy's own flags, plus what to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub proxy: ProxyArgs,

    /// The read-only request to send (default: `/` for es, `/_cat/indices` for aoss).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
}

/// `sigv4-proxy health`: one GET to the admin listener.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
HEALTHCHECK CMD [\"/sigv4-proxy\", \"health\"]\n  \
sigv4-proxy health --url http://127.0.0.1:9901/readyz")]
pub struct HealthArgs {
    /// The admin endpoint to ask: /healthz (the process serves; for liveness) or /readyz
    /// (credentials valid and the endpoint answering; for readiness). Plain http only.
    #[arg(
        long,
        env = "SIGV4_PROXY_HEALTH_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:9901/healthz"
    )]
    pub url: String,

    /// Give up after this long (connect, send and read together); then exit 1.
    #[arg(
        long,
        env = "SIGV4_PROXY_HEALTH_TIMEOUT",
        value_name = "DURATION",
        default_value = "3s"
    )]
    pub timeout: String,
}

/// Everything that configures a proxy.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// HTTPS URL of the domain or collection (a bare host name is accepted too).
    #[arg(env = "SIGV4_PROXY_ENDPOINT", value_name = "ENDPOINT")]
    pub endpoint: Option<String>,

    /// Address to listen on. Defaults to OpenSearch's own port on loopback.
    #[arg(
        long,
        env = "SIGV4_PROXY_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9200",
        help_heading = "Listener"
    )]
    pub listen: SocketAddr,

    /// Signing service; inferred from the endpoint host when not given.
    #[arg(
        long,
        env = "SIGV4_PROXY_SERVICE",
        value_enum,
        help_heading = "Upstream"
    )]
    pub service: Option<ServiceArg>,

    /// AWS region; inferred from the endpoint host, else taken from the AWS config chain.
    #[arg(
        long,
        env = "SIGV4_PROXY_REGION",
        value_name = "REGION",
        help_heading = "Upstream"
    )]
    pub region: Option<String>,

    /// AWS profile to take credentials from (default: the default chain, AWS_PROFILE, …).
    #[arg(
        long,
        env = "SIGV4_PROXY_PROFILE",
        value_name = "NAME",
        help_heading = "Credentials"
    )]
    pub profile: Option<String>,

    /// IAM role to assume (STS AssumeRole) with the credentials of the default chain; refreshed
    /// before it expires like any temporary credentials.
    #[arg(
        long,
        env = "SIGV4_PROXY_ROLE_ARN",
        value_name = "ARN",
        help_heading = "Credentials"
    )]
    pub role_arn: Option<String>,

    /// Session name for --role-arn (shows in CloudTrail and in the assumed-role ARN).
    #[arg(
        long,
        env = "SIGV4_PROXY_ROLE_SESSION_NAME",
        value_name = "NAME",
        requires = "role_arn",
        help_heading = "Credentials"
    )]
    pub role_session_name: Option<String>,

    /// External ID for --role-arn, when the role's trust policy requires one.
    #[arg(
        long,
        env = "SIGV4_PROXY_EXTERNAL_ID",
        value_name = "ID",
        requires = "role_arn",
        help_heading = "Credentials"
    )]
    pub external_id: Option<String>,

    /// Lifetime of the --role-arn session (15m to 12h; default 1h, STS's default).
    #[arg(
        long,
        env = "SIGV4_PROXY_ROLE_DURATION",
        value_name = "DURATION",
        requires = "role_arn",
        help_heading = "Credentials"
    )]
    pub role_duration: Option<String>,

    /// Extra PEM root certificates trusted for the endpoint, on top of the web PKI roots.
    #[arg(
        long,
        env = "SIGV4_PROXY_CA_BUNDLE",
        value_name = "FILE",
        help_heading = "Upstream"
    )]
    pub ca_bundle: Option<PathBuf>,

    /// Open TCP connections to HOST:PORT instead of the endpoint's address; TLS SNI, the
    /// certificate check, Host and the signature stay the endpoint's (VPC endpoints, tunnels).
    #[arg(
        long,
        env = "SIGV4_PROXY_CONNECT_TO",
        value_name = "HOST:PORT",
        help_heading = "Upstream"
    )]
    pub connect_to: Option<String>,

    /// Largest request body accepted (e.g. 100MiB, 10MB); larger bodies get 413.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_BODY",
        value_name = "SIZE",
        default_value = "100MiB",
        help_heading = "Limits and timeouts"
    )]
    pub max_body: String,

    /// Sign requests without their bodies: `x-amz-content-sha256: UNSIGNED-PAYLOAD` instead of
    /// the body's SHA-256, so no body is hashed (a fifth of the proxy's work on a 64 KiB
    /// search), and bodies over --spill-threshold with a Content-Length go on to the endpoint
    /// as they arrive (unless the policy reads them); such a body is sent once, never retried.
    /// The signature then does not cover the body; TLS still protects it on the way. OpenSearch
    /// Serverless (aoss) accepts it; for managed domains (es) AWS does not document it: try it
    /// against yours first.
    #[arg(long, env = "SIGV4_PROXY_UNSIGNED_PAYLOAD", help_heading = "Upstream")]
    pub unsigned_payload: bool,

    /// Request bodies larger than this are spooled to an anonymous temporary file.
    #[arg(
        long,
        env = "SIGV4_PROXY_SPILL_THRESHOLD",
        value_name = "SIZE",
        default_value = "1MiB",
        help_heading = "Limits and timeouts"
    )]
    pub spill_threshold: String,

    /// Timeout for the TCP connect to the endpoint.
    #[arg(
        long,
        env = "SIGV4_PROXY_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        help_heading = "Limits and timeouts"
    )]
    pub connect_timeout: String,

    /// How long to wait for the endpoint's response headers once the request body has gone, and
    /// for the endpoint to take each piece of the body (Dashboards queries may run 300 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_RESPONSE_TIMEOUT",
        value_name = "DURATION",
        default_value = "305s",
        help_heading = "Limits and timeouts"
    )]
    pub response_timeout: String,

    /// TLS handshake with the endpoint, once the TCP connection (or proxy tunnel) is up.
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_HANDSHAKE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        help_heading = "Limits and timeouts"
    )]
    pub tls_handshake_timeout: String,

    /// Pooled connections to the endpoint idle longer than this are closed (AWS load balancers
    /// close theirs after 60 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_POOL_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "50s",
        help_heading = "Limits and timeouts"
    )]
    pub pool_idle_timeout: String,

    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept (slow clients, slowloris).
    #[arg(
        long,
        env = "SIGV4_PROXY_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        help_heading = "Limits and timeouts"
    )]
    pub header_read_timeout: String,

    /// How long a client may pause while sending a request body; then 408.
    #[arg(
        long,
        env = "SIGV4_PROXY_BODY_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s",
        help_heading = "Limits and timeouts"
    )]
    pub body_idle_timeout: String,

    /// Bound on a whole request, from its headers to the last byte of the response; `off` for
    /// none (Dashboards queries may run 300 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "off",
        help_heading = "Limits and timeouts"
    )]
    pub request_timeout: String,

    /// Largest request head (request line plus headers) a client may send; larger gets 431.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_HEADER_SIZE",
        value_name = "SIZE",
        default_value = "64KiB",
        help_heading = "Limits and timeouts"
    )]
    pub max_header_size: String,

    /// Client connections served at once on each listener; more wait to be accepted until one
    /// closes.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "4096",
        help_heading = "Limits and timeouts"
    )]
    pub max_connections: usize,

    /// Worker threads serving client connections, each with its own runtime and its own
    /// connections to the endpoint: a number, or `auto` (half the CPUs this process may use,
    /// rounded up; cgroup CPU limits count). Process-wide; a change takes effect at restart.
    #[arg(
        long,
        env = "SIGV4_PROXY_WORKERS",
        value_name = "N|auto",
        default_value = "auto",
        help_heading = "Limits and timeouts"
    )]
    pub workers: String,

    /// Serve this endpoint under a path prefix (e.g. /logs): requests below it are forwarded
    /// with the prefix removed, redirects and cookie paths get it added back. Several
    /// `[[route]]`s in a --config file can share one listener this way.
    #[arg(
        long,
        env = "SIGV4_PROXY_PATH_PREFIX",
        value_name = "PREFIX",
        help_heading = "Listener"
    )]
    pub path_prefix: Option<String>,

    /// TOML configuration file: every flag has a key (its long name, e.g. `response-timeout`),
    /// and `[[route]]` tables serve several endpoints. Flags and environment variables override
    /// the file. SIGHUP reloads it.
    #[arg(
        long,
        env = "SIGV4_PROXY_CONFIG",
        value_name = "FILE",
        help_heading = "Listener"
    )]
    pub config: Option<PathBuf>,

    /// How long in-flight requests may run on after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "SIGV4_PROXY_DRAIN_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s",
        help_heading = "Limits and timeouts"
    )]
    pub drain_timeout: String,

    /// Local access policy: an IAM policy document (the grammar of domain access policies)
    /// checked before signing, against the indices in the path and in _bulk/_mget/_msearch/…
    /// bodies. Default: everything the endpoint allows.
    #[arg(
        long,
        env = "SIGV4_PROXY_POLICY",
        value_name = "FILE",
        conflicts_with = "read_only",
        help_heading = "Security"
    )]
    pub policy: Option<PathBuf>,

    /// Allow only reads: GET, HEAD and the read-only POST APIs (_search, _msearch, _count,
    /// _mget, scroll, point in time, …); deny everything else.
    #[arg(long, env = "SIGV4_PROXY_READ_ONLY", help_heading = "Security")]
    pub read_only: bool,

    /// Require HTTP Basic authentication from clients, checked against an Apache htpasswd
    /// file with bcrypt entries (`htpasswd -B`).
    #[arg(
        long,
        env = "SIGV4_PROXY_HTPASSWD",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub htpasswd: Option<PathBuf>,

    /// Require a bearer token from clients (`Authorization: Bearer …`); one token a line.
    #[arg(
        long,
        env = "SIGV4_PROXY_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Security"
    )]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS on the listener with this PEM certificate chain (needs --tls-key).
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "Security"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Security"
    )]
    pub tls_key: Option<PathBuf>,

    /// Listen on a non-loopback address without --htpasswd or --token-file. Anyone who can
    /// reach the port then acts with this proxy's AWS identity.
    #[arg(
        long,
        env = "SIGV4_PROXY_ALLOW_UNAUTHENTICATED",
        help_heading = "Security"
    )]
    pub allow_unauthenticated: bool,

    /// Serve /healthz, /readyz and /metrics on this address (its own port, never the proxy's).
    /// Keep it on loopback: it has no authentication.
    #[arg(
        long,
        env = "SIGV4_PROXY_ADMIN_LISTEN",
        value_name = "ADDR",
        help_heading = "Listener"
    )]
    pub admin_listen: Option<SocketAddr>,

    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, env = "SIGV4_PROXY_VERBOSE", help_heading = "Logging")]
    pub verbose: u8,

    /// Log format.
    #[arg(
        long,
        env = "SIGV4_PROXY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
}

/// The man page: clap_mangen's sections from the clap definitions, with `--help`'s examples,
/// environment, signals and exit status as sections of their own (clap_mangen would put them all
/// under one `EXTRA`).
pub fn render_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for (heading, lines) in after_help_sections(AFTER_LONG_HELP) {
        writeln!(out, ".SH \"{}\"", heading.to_uppercase())?;
        writeln!(out, ".nf")?;
        for line in lines {
            let line = line.strip_prefix("  ").unwrap_or(line);
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            let escaped = if escaped.starts_with(['.', '\'']) {
                format!("\\&{escaped}")
            } else {
                escaped
            };
            writeln!(out, "{escaped}")?;
        }
        writeln!(out, ".fi")?;
    }
    man.render_version_section(out)
}

/// `Heading:` lines and the indented lines under them.
fn after_help_sections(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        match (line.strip_suffix(':'), sections.last_mut()) {
            (Some(heading), _) if !line.starts_with(' ') => sections.push((heading, Vec::new())),
            (_, Some((_, lines))) => lines.push(line),
            (_, None) => {}
        }
    }
    for (_, lines) in &mut sections {
        while lines.last().is_some_and(|l| l.trim().is_empty()) {
            lines.pop();
        }
    }
    sections
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceArg {
    /// Amazon OpenSearch Service domain
    Es,
    /// Amazon OpenSearch Serverless collection
    Aoss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_has_a_section_for_each_part_of_the_long_help() {
        let mut out = Vec::new();
        render_man(&mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH UPSTREAM",
            ".SH CREDENTIALS",
            ".SH SECURITY",
            ".SH \"LIMITS AND TIMEOUTS\"",
            ".SH LOGGING",
            ".SH SUBCOMMANDS",
            ".SH \"EXAMPLES\"",
            ".SH \"ENVIRONMENT\"",
            ".SH \"SIGNALS\"",
            ".SH \"EXIT STATUS\"",
            ".SH VERSION",
        ] {
            assert!(man.contains(section), "{section} missing:\n{man}");
        }
        assert!(!man.contains(".SH EXTRA"));
        assert!(man.contains("sigv4\\-proxy \\-\\-config /etc/sigv4\\-proxy/sigv4\\-proxy.toml"));
    }
}
