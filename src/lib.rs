//! # sigv4-proxy
//!
//! A reverse proxy that signs every request with AWS SigV4 for Amazon OpenSearch Service
//! (`es`) and OpenSearch Serverless (`aoss`). The binary (`src/main.rs`) and the tests both use
//! this library.
//!
//! # Layout
//!
//! A request flows through the modules in this order:
//!
//! - [`server`]: listeners, HTTP/1.1 + HTTP/2 connections, inbound TLS, graceful shutdown.
//! - [`workers`]: threads with a runtime each (`--workers`); each connection lives on one of them.
//! - [`proxy`]: the per-request pipeline, top to bottom, and the access log.
//! - [`auth`]: inbound authentication (htpasswd bcrypt users, bearer tokens).
//! - [`policy`]: the local IAM-style access policy, with indices read from paths and bodies.
//! - [`body`]: request bodies hashed while read, spilled to a temp file when large.
//! - [`credentials`]: the AWS default chain behind a refresh-ahead, single-flight cache.
//! - [`signing`]: SigV4 with a cached signing key, and the RFC 3986 query form that keeps wire
//!   and signature equal.
//! - [`headers`]: hop-by-hop removal, `Host`, `Location` and `Set-Cookie` rewriting.
//! - [`upstream`]: the pooled rustls client and `--connect-to`.
//! - [`error`]: the one error type, rendered as OpenSearch-style JSON.
//!
//! Around them: [`cli`] (flags), [`config_file`] (`--config` TOML and `[[route]]`s),
//! [`config`] (validated configuration), [`listeners`] (one listener per address, SIGHUP
//! reload), [`endpoint`] (URL → service and region), [`signals`] (SIGTERM/SIGINT/SIGHUP),
//! [`logging`] (stderr through a batching writer thread).
//!
//! Operations: [`metrics`] (what the proxy counts), [`admin`] (`--admin-listen`: `/healthz`,
//! `/readyz`, `/metrics`), [`check`] (`sigv4-proxy check`: step-by-step diagnosis), [`health`]
//! (`sigv4-proxy health`: the admin listener asked from inside a container).

pub mod admin;
pub mod auth;
pub mod body;
pub mod check;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod headers;
pub mod health;
pub mod listeners;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod policy_tool;
pub mod proxy;

pub mod server;
pub mod signals;
pub mod signing;
pub mod upstream;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::config_file::Settings;
use crate::credentials::{load_sdk_config, CredentialCache};
use crate::listeners::{BuildProxy, Listeners};
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// `--version`: the package version and, when built from a git checkout, the revision
/// (`0.1.0 (git 0ec3c28)`; see `build.rs`).
pub const VERSION: &str = env!("SIGV4_PROXY_VERSION");

/// Builds the proxy from a validated configuration: sets up the AWS credential chain (the SDK
/// configuration is loaded at once only when the region or `--role-arn` needs it, else only if
/// the environment has no credentials), resolves credentials once to log where they come from,
/// and builds the client.
/// Missing credentials do not stop the proxy: requests get 503 until some appear.
/// Every route's proxy counts into `metrics`.
pub async fn build(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Proxy>> {
    let (region, provider) = match (&config.region, &config.role) {
        // Nothing else needs the SDK configuration: it is loaded only if the environment has no
        // credentials.
        (Some(region), None) => (
            region.clone(),
            credentials::default_chain(config.profile.clone(), Some(region.clone())),
        ),
        _ => {
            let sdk = load_sdk_config(config.profile.as_deref(), config.region.as_deref()).await;
            let region = config
                .region
                .clone()
                .or_else(|| sdk.region().map(|r| r.to_string()))
                .ok_or_else(|| {
                    config::ConfigError(config::no_region_message(config.profile.as_deref()))
                })?;
            let mut provider = sdk
                .credentials_provider()
                .context("the AWS configuration has no credentials provider")?;
            if let Some(role) = &config.role {
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
    Ok(Arc::new(Proxy::with_metrics(
        config,
        credentials,
        region,
        metrics,
    )?))
}

/// Runs the proxy until `shutdown` completes, then drains in-flight requests. `argv` is the
/// command line the settings came from: SIGHUP loads it (and its `--config` file) again.
/// `settings` should have been through [`with_egress_proxy`].
pub async fn run(
    argv: Vec<std::ffi::OsString>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let build: BuildProxy = {
        let metrics = metrics.clone();
        Arc::new(move |config: Config| {
            let metrics = metrics.clone();
            Box::pin(async move { build(&config, metrics).await })
        })
    };
    let admin_listen = admin_address(&settings)?;
    let workers = settings.workers;
    // What the admin listener reports on: every route, as of the last (re)load. The admin
    // listener is up before the proxy's listeners say they are ready.
    let routes = Arc::new(std::sync::RwLock::new(Vec::new()));
    let admin = match admin_listen {
        Some(addr) => {
            let listener = admin::bind(addr).await?;
            tracing::info!(admin = %listener.local_addr()?, "admin listener ready: /healthz /readyz /metrics");
            let routes = routes.clone();
            let current: admin::Routes =
                Arc::new(move || routes.read().map(|r| r.clone()).unwrap_or_default());
            Some(tokio::spawn(admin::serve(
                listener,
                current,
                metrics.clone(),
            )))
        }
        None => None,
    };
    let mut listeners = Listeners::start(&settings, build).await?;
    if let Ok(mut current) = routes.write() {
        *current = listeners.all_routes();
    }
    let trimmer = tokio::spawn(memory::release_when_idle(metrics.clone()));
    let mut reload = signals::reload();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = reload.recv() => {
                let loaded = Settings::load(&argv).and_then(with_egress_proxy);
                let result = match loaded {
                    Ok(settings) => {
                        if admin_address(&settings).ok().flatten() != admin_listen {
                            tracing::warn!("admin-listen changed in the configuration; it takes effect at the next restart");
                        }
                        if settings.workers != workers {
                            tracing::warn!("workers changed in the configuration; it takes effect at the next restart");
                        }
                        listeners.reload(&settings).await
                    }
                    Err(err) => Err(err.into()),
                };
                match result {
                    Ok(()) => {
                        if let Ok(mut current) = routes.write() {
                            *current = listeners.all_routes();
                        }
                        tracing::info!(file = ?settings.file, "configuration reloaded")
                    }
                    Err(err) => tracing::error!(cause = format!("{err:#}"), "reload rejected; the previous configuration keeps running"),
                }
            }
        }
    }
    listeners.shutdown().await;
    trimmer.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(())
}

/// The admin listener is one per process: every route must name the same address (set it at
/// the top level of a config file).
fn admin_address(settings: &Settings) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let mut addresses: Vec<_> = settings.routes.iter().map(|r| r.admin_listen).collect();
    addresses.dedup();
    match addresses.as_slice() {
        [] => Ok(None),
        [one] => Ok(*one),
        _ => Err(config::ConfigError(
            "admin-listen is one per process: set it once, at the top level of the config file, not per route".into(),
        )
        .into()),
    }
}

/// Adds `HTTPS_PROXY`/`NO_PROXY` from the environment to every route, as AWS tools honour
/// them, and logs the routes that use it. A proxy other than `http://` is a configuration error.
pub fn with_egress_proxy(mut settings: Settings) -> Result<Settings, config::ConfigError> {
    let matcher = Arc::new(hyper_util::client::proxy::matcher::Matcher::from_env());
    for config in &mut settings.routes {
        let (host, port) = match &config.upstream.connect_to {
            Some((host, port)) => (host.clone(), *port),
            None => (config.endpoint.host.clone(), config.endpoint.port),
        };
        match upstream::egress_proxy_for(&matcher, &host, port).map_err(config::ConfigError)? {
            Some(proxy) => {
                tracing::info!(endpoint = %config.endpoint.base_url(), proxy = %proxy, "connecting through the proxy in HTTPS_PROXY");
                config.upstream.egress_proxy = Some(matcher.clone());
            }
            None => config.upstream.egress_proxy = None,
        }
    }
    Ok(settings)
}
