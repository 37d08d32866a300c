//! Command-line interface (clap derive). Every flag can also come from an environment variable
//! `SIGV4_PROXY_<NAME>`; the validated form lives in [`crate::config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// `0.1.0 (abc1234)`: the package version and the git revision it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SIGV4_PROXY_GIT_REV"),
    ")"
);

/// The end of `--help`, and the man page's EXAMPLES, ENVIRONMENT and EXIT STATUS sections: each
/// `HEADING:` line at column 0 starts a section.
pub const AFTER_LONG_HELP: &str = "\
EXAMPLES:
  A domain, for curl and any OpenSearch client on this machine:
    sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com
    curl 'localhost:9200/_cat/indices?v'

  A serverless collection with a named profile:
    sigv4-proxy --profile prod https://0123abcd.eu-west-1.aoss.amazonaws.com

  The domain's own Dashboards, in a browser at http://localhost:9200/_dashboards/:
    sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com

  A collection behind a VPC endpoint, reached over VPN without the VPC's DNS:
    sigv4-proxy --connect-to vpce-0abc.aoss.us-east-1.vpce.amazonaws.com:443 \\
      https://0123abcd.us-east-1.aoss.amazonaws.com

  Read-only access for a team, with passwords, on every interface:
    sigv4-proxy --listen 0.0.0.0:9200 --htpasswd /etc/sigv4-proxy/htpasswd --read-only \\
      --admin-listen 127.0.0.1:9600 https://search-logs-abc123.us-east-1.es.amazonaws.com

  Diagnose a 403, then check a running proxy's health (container HEALTHCHECK):
    sigv4-proxy check https://search-logs-abc123.us-east-1.es.amazonaws.com
    sigv4-proxy health --url http://127.0.0.1:9600/healthz

  Shell completions and this manual:
    sigv4-proxy completions bash > /etc/bash_completion.d/sigv4-proxy
    sigv4-proxy man > sigv4-proxy.1

ENVIRONMENT:
  Every flag has a variable SIGV4_PROXY_<FLAG> (shown with each flag); flags win. Credentials
  come from the AWS default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
  AWS_PROFILE and ~/.aws/config (SSO, credential_process, role_arn), AWS_WEB_IDENTITY_TOKEN_FILE
  with AWS_ROLE_ARN (EKS IRSA), the container endpoint (ECS task roles, EKS Pod Identity), then
  EC2 instance metadata. RUST_LOG overrides -v.

EXIT STATUS:
  0 after a clean shutdown (SIGTERM/SIGINT); 64 when the configuration is invalid (the reason is
  printed); 1 on other failures. `check` and `health` exit 0 when everything passed, 1 otherwise.
";

#[derive(Debug, Parser)]
#[command(
    name = "sigv4-proxy",
    version = VERSION,
    about = "A SigV4-signing reverse proxy for Amazon OpenSearch Service and OpenSearch Serverless",
    long_about = "Accepts unsigned HTTP requests (curl, OpenSearch Dashboards, any OpenSearch client), signs each \
with AWS SigV4 using credentials from the AWS default provider chain, and forwards it over TLS to an Amazon \
OpenSearch Service domain (service `es`) or an OpenSearch Serverless collection (service `aoss`). Responses \
stream back unchanged, except that redirects and cookies are pointed at the proxy so a browser stays on it.",
    after_help = "EXAMPLES:\n  \
sigv4-proxy https://search-logs-abc123.us-east-1.es.amazonaws.com\n  \
curl 'localhost:9200/_cat/indices?v'\n\n  \
sigv4-proxy --profile prod https://0123abcd.eu-west-1.aoss.amazonaws.com\n  \
sigv4-proxy check https://search-logs-abc123.us-east-1.es.amazonaws.com\n\n\
More examples, the environment and exit status: --help, or `sigv4-proxy man`.",
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

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose the path to the endpoint step by step (credentials, identity, DNS, TCP, TLS, one
    /// signed request) and say what each failure means. Exit status 0 when everything passed.
    Check(CheckArgs),
    /// Ask a running proxy's admin listener whether it is alive (for container HEALTHCHECKs in
    /// images without a shell or curl). Exit status 0 on a 2xx answer, 1 otherwise.
    Health(HealthArgs),
    /// Print a completion script for SHELL to stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print this manual page (roff) to stdout: `sigv4-proxy man > sigv4-proxy.1`.
    Man,
}

/// `sigv4-proxy health`: where to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// The admin listener's liveness URL (plain http; see --admin-listen).
    #[arg(
        long,
        env = "SIGV4_PROXY_HEALTH_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:9600/healthz"
    )]
    pub url: String,

    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    pub timeout: String,
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
        default_value = "127.0.0.1:9200"
    )]
    pub listen: SocketAddr,

    /// Signing service; inferred from the endpoint host when not given.
    #[arg(long, env = "SIGV4_PROXY_SERVICE", value_enum)]
    pub service: Option<ServiceArg>,

    /// AWS region; inferred from the endpoint host, else taken from the AWS config chain.
    #[arg(long, env = "SIGV4_PROXY_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// AWS profile to take credentials from (default: the default chain, AWS_PROFILE, …).
    #[arg(long, env = "SIGV4_PROXY_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// IAM role to assume (STS AssumeRole) with the credentials of the default chain; refreshed
    /// before it expires like any temporary credentials.
    #[arg(long, env = "SIGV4_PROXY_ROLE_ARN", value_name = "ARN")]
    pub role_arn: Option<String>,

    /// Session name for --role-arn (shows in CloudTrail and in the assumed-role ARN).
    #[arg(
        long,
        env = "SIGV4_PROXY_ROLE_SESSION_NAME",
        value_name = "NAME",
        requires = "role_arn"
    )]
    pub role_session_name: Option<String>,

    /// External ID for --role-arn, when the role's trust policy requires one.
    #[arg(
        long,
        env = "SIGV4_PROXY_EXTERNAL_ID",
        value_name = "ID",
        requires = "role_arn"
    )]
    pub external_id: Option<String>,

    /// Lifetime of the --role-arn session (15m to 12h; default 1h, STS's default).
    #[arg(
        long,
        env = "SIGV4_PROXY_ROLE_DURATION",
        value_name = "DURATION",
        requires = "role_arn"
    )]
    pub role_duration: Option<String>,

    /// Extra PEM root certificates trusted for the endpoint, on top of the web PKI roots.
    #[arg(long, env = "SIGV4_PROXY_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,

    /// Open TCP connections to HOST:PORT instead of the endpoint's address; TLS SNI, the
    /// certificate check, Host and the signature stay the endpoint's (VPC endpoints, tunnels).
    #[arg(long, env = "SIGV4_PROXY_CONNECT_TO", value_name = "HOST:PORT")]
    pub connect_to: Option<String>,

    /// Largest request body accepted (e.g. 100MiB, 10MB); larger bodies get 413.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_BODY",
        value_name = "SIZE",
        default_value = "100MiB"
    )]
    pub max_body: String,

    /// Request bodies larger than this are spooled to an anonymous temporary file.
    #[arg(
        long,
        env = "SIGV4_PROXY_SPILL_THRESHOLD",
        value_name = "SIZE",
        default_value = "1MiB"
    )]
    pub spill_threshold: String,

    /// Timeout for the TCP connect to the endpoint.
    #[arg(
        long,
        env = "SIGV4_PROXY_CONNECT_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub connect_timeout: String,

    /// How long to wait for the endpoint's response headers (Dashboards queries may run 300 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_RESPONSE_TIMEOUT",
        value_name = "DURATION",
        default_value = "305s"
    )]
    pub response_timeout: String,

    /// TLS handshake with the endpoint, once the TCP connection (or proxy tunnel) is up.
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_HANDSHAKE_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub tls_handshake_timeout: String,

    /// Pooled connections to the endpoint idle longer than this are closed (AWS load balancers
    /// close theirs after 60 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_POOL_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "50s"
    )]
    pub pool_idle_timeout: String,

    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept (slow clients, slowloris).
    #[arg(
        long,
        env = "SIGV4_PROXY_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub header_read_timeout: String,

    /// How long a client may pause while sending a request body; then 408.
    #[arg(
        long,
        env = "SIGV4_PROXY_BODY_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub body_idle_timeout: String,

    /// Bound on a whole request, from its headers to the last byte of the response; `off` for
    /// none (Dashboards queries may run 300 s).
    #[arg(
        long,
        env = "SIGV4_PROXY_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "off"
    )]
    pub request_timeout: String,

    /// Largest request head (request line plus headers) a client may send; larger gets 431.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_HEADER_SIZE",
        value_name = "SIZE",
        default_value = "64KiB"
    )]
    pub max_header_size: String,

    /// Client connections served at once on each listener; more wait to be accepted until one
    /// closes.
    #[arg(
        long,
        env = "SIGV4_PROXY_MAX_CONNECTIONS",
        value_name = "N",
        default_value = "4096"
    )]
    pub max_connections: usize,

    /// Serve this endpoint under a path prefix (e.g. /logs): requests below it are forwarded
    /// with the prefix removed, redirects and cookie paths get it added back. Several
    /// `[[route]]`s in a --config file can share one listener this way.
    #[arg(long, env = "SIGV4_PROXY_PATH_PREFIX", value_name = "PREFIX")]
    pub path_prefix: Option<String>,

    /// TOML configuration file: every flag has a key (its long name, e.g. `response-timeout`),
    /// and `[[route]]` tables serve several endpoints. Flags and environment variables override
    /// the file. SIGHUP reloads it.
    #[arg(long, env = "SIGV4_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How long in-flight requests may run on after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "SIGV4_PROXY_DRAIN_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub drain_timeout: String,

    /// Local access policy: an IAM policy document (the grammar of domain access policies)
    /// checked before signing, against the indices in the path and in _bulk/_mget/_msearch/…
    /// bodies. Default: everything the endpoint allows.
    #[arg(
        long,
        env = "SIGV4_PROXY_POLICY",
        value_name = "FILE",
        conflicts_with = "read_only"
    )]
    pub policy: Option<PathBuf>,

    /// Allow only reads: GET, HEAD and the read-only POST APIs (_search, _msearch, _count,
    /// _mget, scroll, point in time, …); deny everything else.
    #[arg(long, env = "SIGV4_PROXY_READ_ONLY")]
    pub read_only: bool,

    /// Require HTTP Basic authentication from clients, checked against an Apache htpasswd
    /// file with bcrypt entries (`htpasswd -B`).
    #[arg(long, env = "SIGV4_PROXY_HTPASSWD", value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,

    /// Require a bearer token from clients (`Authorization: Bearer …`); one token a line.
    #[arg(long, env = "SIGV4_PROXY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS on the listener with this PEM certificate chain (needs --tls-key).
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(
        long,
        env = "SIGV4_PROXY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Listen on a non-loopback address without --htpasswd or --token-file. Anyone who can
    /// reach the port then acts with this proxy's AWS identity.
    #[arg(long, env = "SIGV4_PROXY_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Serve /healthz, /readyz and /metrics on this address (its own port, never the proxy's).
    /// Keep it on loopback: it has no authentication.
    #[arg(long, env = "SIGV4_PROXY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, env = "SIGV4_PROXY_VERBOSE")]
    pub verbose: u8,

    /// Log format.
    #[arg(
        long,
        env = "SIGV4_PROXY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
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
