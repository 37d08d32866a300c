//! The build-and-run layer: turns a [`Config`] (plain data) into running parts and runs them.
//! The binary, `sigv4-proxy check` and the tests all go through it:
//!
//! - [`build_route`] loads what a route's configuration names (CA bundle, policy, htpasswd,
//!   bearer tokens, the listener's certificate) and matches it against `HTTPS_PROXY`;
//! - [`build_proxy`] adds the AWS credentials and the region and makes the route's [`Proxy`];
//! - [`App`] binds the admin listener and every route's listener, reloads on SIGHUP, and drains
//!   on shutdown; [`run`] is what `main` calls.
//!
//! A file that cannot be loaded is a configuration error (exit 64), found before anything binds.

use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use aws_credential_types::provider::SharedCredentialsProvider;
use hyper_util::client::proxy::matcher::Matcher;
use tokio::task::JoinHandle;

use crate::auth::{Authenticator, BearerTokens, Htpasswd};
use crate::config::{no_region_message, Config, PolicySource, RouteConfig};
use crate::credentials::{self, load_sdk_config, CredentialCache};
use crate::error::{ConfigError, StartError};
use crate::listeners::{BuildRoute, BuiltRoute, Listeners};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::{Proxy, ProxyParts};
use crate::server::{self, ServerOptions};
use crate::signing::Signer;
use crate::upstream::{self, build_client, load_pem_certificates, UpstreamOptions};
use crate::{admin, memory, signals};

/// What the process takes from its surroundings rather than from its configuration.
#[derive(Clone)]
pub struct Environment {
    /// Where AWS credentials come from.
    pub credentials: CredentialSource,
    /// `HTTPS_PROXY`/`NO_PROXY`, as AWS tools honour them.
    pub egress: Arc<Matcher>,
}

/// Where a route's AWS credentials come from.
#[derive(Clone)]
pub enum CredentialSource {
    /// The AWS default chain (with the route's profile, and `--role-arn` on top).
    DefaultChain,
    /// A provider given by the caller (the tests' fixed keys); the region must be configured.
    Provider(SharedCredentialsProvider),
}

impl Environment {
    /// The process's own: the default credential chain and the egress proxy variables.
    pub fn from_process() -> Environment {
        Environment {
            credentials: CredentialSource::DefaultChain,
            egress: Arc::new(Matcher::from_env()),
        }
    }

    /// Credentials from `provider` and no egress proxy, whatever the process's environment says.
    pub fn with_provider(provider: SharedCredentialsProvider) -> Environment {
        Environment {
            credentials: CredentialSource::Provider(provider),
            egress: Arc::new(Matcher::builder().build()),
        }
    }
}

/// A route with the files its configuration names loaded: everything but credentials.
#[derive(Clone)]
pub struct Route {
    pub config: RouteConfig,
    pub policy: Option<Arc<Policy>>,
    pub auth: Option<Arc<Authenticator>>,
    /// The listener's certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How the endpoint is reached: `--connect-to`, the CA bundle, the timeouts, the egress proxy.
    pub upstream: UpstreamOptions,
}

impl Route {
    /// The listener settings this route asks for (routes sharing a listener agree on them).
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            tls: self.tls.clone(),
            header_read_timeout: self.config.header_read_timeout,
            max_header_size: self.config.max_header_size,
            max_connections: self.config.max_connections,
            drain_timeout: self.config.drain_timeout,
        }
    }
}

/// Loads what `config` names. Errors say which file and why, located in the config file when the
/// route came from one.
pub fn build_route(config: &RouteConfig, env: &Environment) -> Result<Route, ConfigError> {
    let locate = |msg: String| config.origin.locate(&msg);
    let extra_roots = match &config.ca_bundle {
        Some(path) => load_pem_certificates(path).map_err(locate)?,
        None => Vec::new(),
    };
    let inflate_limit = config.body.max;
    let policy = match &config.policy {
        PolicySource::File(path) => Some(
            Policy::from_file(path)
                .map_err(|e| locate(format!("--policy: {e}")))?
                .with_inflate_limit(inflate_limit),
        ),
        PolicySource::ReadOnly => Some(Policy::read_only().with_inflate_limit(inflate_limit)),
        PolicySource::None => None,
    };
    let htpasswd = config
        .htpasswd
        .as_ref()
        .map(Htpasswd::from_file)
        .transpose()
        .map_err(|e| locate(format!("--htpasswd: {e}")))?;
    let tokens = config
        .token_file
        .as_ref()
        .map(BearerTokens::from_file)
        .transpose()
        .map_err(|e| locate(format!("--token-file: {e}")))?;
    let auth = Authenticator::new(htpasswd, tokens);
    let auth = auth.is_enabled().then(|| Arc::new(auth));
    if auth.is_none() && policy.as_ref().is_some_and(|p| p.uses_proxy_principals()) {
        return Err(locate(
            "--policy names \"Proxy\" principals, but no inbound users are configured: add --htpasswd or --token-file \
             (without them every statement would apply to everyone)"
                .into(),
        ));
    }
    let tls = match &config.tls {
        Some(files) => Some(server::load_server_tls(&files.cert, &files.key).map_err(locate)?),
        None => None,
    };
    let (host, port) = match &config.connect_to {
        Some((host, port)) => (host.clone(), *port),
        None => (config.endpoint.host.clone(), config.endpoint.port),
    };
    let egress_proxy = match upstream::egress_proxy_for(&env.egress, &host, port).map_err(locate)? {
        Some(proxy) => {
            tracing::info!(endpoint = %config.endpoint.base_url(), proxy = %proxy, "connecting through the proxy in HTTPS_PROXY");
            Some(env.egress.clone())
        }
        None => None,
    };
    Ok(Route {
        config: config.clone(),
        policy: policy.map(Arc::new),
        auth,
        tls,
        upstream: UpstreamOptions {
            connect_to: config.connect_to.clone(),
            extra_roots,
            connect_timeout: config.connect_timeout,
            tls_handshake_timeout: config.tls_handshake_timeout,
            idle_timeout: config.pool_idle_timeout,
            egress_proxy,
            ..UpstreamOptions::default()
        },
    })
}

/// The route's proxy, signing with `credentials` for `region` and counting into `metrics`.
pub fn proxy_for(
    route: &Route,
    credentials: CredentialCache,
    region: String,
    metrics: Arc<Metrics>,
) -> Result<Proxy, StartError> {
    let mut upstream = route.upstream.clone();
    upstream.open_connections = Some(metrics.upstream_connections());
    let client = build_client(&upstream)
        .map_err(|e| StartError::Setup(format!("TLS client configuration: {e}")))?;
    let config = &route.config;
    Ok(Proxy::new(ProxyParts {
        endpoint: config.endpoint.clone(),
        signer: Signer::new(config.service, region),
        client,
        credentials,
        limits: config.body,
        payload: config.payload,
        response_timeout: config.response_timeout,
        inbound_tls: route.tls.is_some(),
        listen: config.listen,
        policy: route.policy.clone(),
        auth: route.auth.clone(),
        path_prefix: config.path_prefix.clone(),
        request_timeout: config.request_timeout,
        metrics,
    }))
}

/// Sets up the route's AWS credentials and builds its proxy. The SDK configuration is loaded at
/// once only when the region or `--role-arn` needs it, else only if the environment has no
/// credentials. Credentials are resolved once to log where they come from; missing ones do not
/// stop the proxy: requests get 503 until some appear.
pub async fn build_proxy(
    route: &Route,
    env: &Environment,
    metrics: Arc<Metrics>,
) -> Result<Arc<Proxy>, StartError> {
    let config = &route.config;
    let no_region = || ConfigError(no_region_message(config.profile.as_deref()));
    let (region, provider) = match (&env.credentials, &config.region, &config.role) {
        (CredentialSource::Provider(provider), region, _) => {
            (region.clone().ok_or_else(no_region)?, provider.clone())
        }
        // Nothing else needs the SDK configuration: it is loaded only if the environment has
        // no credentials.
        (CredentialSource::DefaultChain, Some(region), None) => (
            region.clone(),
            credentials::default_chain(config.profile.clone(), Some(region.clone())),
        ),
        (CredentialSource::DefaultChain, _, role) => {
            let sdk = load_sdk_config(config.profile.as_deref(), config.region.as_deref()).await;
            let region = config
                .region
                .clone()
                .or_else(|| sdk.region().map(|r| r.to_string()))
                .ok_or_else(no_region)?;
            let mut provider = sdk.credentials_provider().ok_or_else(|| {
                StartError::Setup("the AWS configuration has no credentials provider".into())
            })?;
            if let Some(role) = role {
                tracing::info!(
                    role_arn = %role.arn,
                    session_name = %role.session_name,
                    "assuming the role with the credentials of the default chain"
                );
                provider = credentials::assume_role(role, &sdk, provider).await;
            }
            (region, provider)
        }
    };
    let credentials = CredentialCache::new(metrics.count_credentials(provider));
    if let Err(err) = credentials.get().await {
        tracing::warn!(cause = %err, "no AWS credentials yet; requests will get 503 until credentials can be loaded");
    }
    Ok(Arc::new(proxy_for(route, credentials, region, metrics)?))
}

/// The running process: the admin listener and every route's listener.
pub struct App {
    /// The command line the configuration came from: SIGHUP loads it (and its file) again.
    argv: Vec<OsString>,
    metrics: Arc<Metrics>,
    listeners: Listeners,
    /// As first configured; changes take effect at the next restart.
    admin_listen: Option<SocketAddr>,
    workers: Option<usize>,
    admin: Option<(SocketAddr, JoinHandle<()>)>,
    /// What the admin listener reports on: every route, as of the last (re)load.
    routes: Arc<RwLock<Vec<Arc<Proxy>>>>,
    trimmer: JoinHandle<()>,
}

impl App {
    /// Builds every route and binds the admin listener, then the routes' listeners (so the
    /// admin listener is up before they say they are ready).
    pub async fn start(
        argv: Vec<OsString>,
        config: Config,
        env: Environment,
    ) -> Result<App, StartError> {
        let metrics = Arc::new(Metrics::new());
        let build: BuildRoute = {
            let metrics = metrics.clone();
            Arc::new(move |config: RouteConfig| {
                let (metrics, env) = (metrics.clone(), env.clone());
                Box::pin(async move {
                    let route = build_route(&config, &env)?;
                    Ok(BuiltRoute {
                        proxy: build_proxy(&route, &env, metrics).await?,
                        server: route.server_options(),
                    })
                })
            })
        };
        let admin_listen = config.admin_address()?;
        let routes = Arc::new(RwLock::new(Vec::new()));
        let admin = match admin_listen {
            Some(addr) => {
                let listener = admin::bind(addr)
                    .await
                    .map_err(|source| StartError::Listen { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| StartError::Listen { addr, source })?;
                tracing::info!(admin = %bound, "admin listener ready: /healthz /readyz /metrics");
                let routes = routes.clone();
                let current: admin::Routes =
                    Arc::new(move || routes.read().map(|r| r.clone()).unwrap_or_default());
                let task = tokio::spawn(admin::serve(listener, current, metrics.clone()));
                Some((bound, task))
            }
            None => None,
        };
        let listeners = match Listeners::start(&config, build).await {
            Ok(listeners) => listeners,
            Err(err) => {
                if let Some((_, admin)) = admin {
                    admin.abort();
                }
                return Err(err);
            }
        };
        let trimmer = tokio::spawn(memory::release_when_idle(metrics.clone()));
        let app = App {
            argv,
            metrics,
            listeners,
            admin_listen,
            workers: config.workers,
            admin,
            routes,
            trimmer,
        };
        app.publish_routes();
        Ok(app)
    }

    /// The address each configured `listen` address is bound to (they differ for port 0).
    pub fn bound(&self) -> HashMap<SocketAddr, SocketAddr> {
        self.listeners.bound()
    }

    /// Where the admin listener is bound, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// Every route now.
    pub fn routes(&self) -> Vec<Arc<Proxy>> {
        self.listeners.all_routes()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn publish_routes(&self) {
        if let Ok(mut current) = self.routes.write() {
            *current = self.listeners.all_routes();
        }
    }

    /// Loads the command line and its config file again and switches to them, or changes
    /// nothing and says why.
    pub async fn reload(&mut self) -> Result<(), StartError> {
        let config = Config::load(&self.argv)?;
        if config.admin_address().ok().flatten() != self.admin_listen {
            tracing::warn!(
                "admin-listen changed in the configuration; it takes effect at the next restart"
            );
        }
        if config.workers != self.workers {
            tracing::warn!(
                "workers changed in the configuration; it takes effect at the next restart"
            );
        }
        self.listeners.reload(&config).await?;
        self.publish_routes();
        tracing::info!(file = ?config.file, "configuration reloaded");
        Ok(())
    }

    /// Serves until `shutdown` completes, reloading on SIGHUP, then drains in-flight requests.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut reload = signals::reload();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = reload.recv() => {
                    if let Err(err) = self.reload().await {
                        tracing::error!(cause = %err, "reload rejected; the previous configuration keeps running");
                    }
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops accepting and drains in-flight requests (within `--drain-timeout`).
    pub async fn shutdown(self) {
        self.listeners.shutdown().await;
        self.trimmer.abort();
        if let Some((_, admin)) = self.admin {
            admin.abort();
        }
    }
}

/// Starts the proxy and runs it until `shutdown` completes. `argv` is the command line `config`
/// came from.
pub async fn run(
    argv: Vec<OsString>,
    config: Config,
    env: Environment,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    App::start(argv, config, env).await?.run(shutdown).await;
    Ok(())
}
