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
//! - [`proxy`]: the per-request pipeline, top to bottom, and the access log.
//! - [`auth`]: inbound authentication (htpasswd bcrypt users, bearer tokens).
//! - [`policy`]: the local IAM-style access policy, with indices read from paths and bodies.
//! - [`body`]: request bodies hashed while read, spilled to a temp file when large.
//! - [`credentials`]: the AWS default chain behind a refresh-ahead, single-flight cache.
//! - [`signing`]: aws-sigv4 glue and the RFC 3986 query form that keeps wire and signature equal.
//! - [`headers`]: hop-by-hop removal, `Host`, `Location` and `Set-Cookie` rewriting.
//! - [`upstream`]: the pooled rustls client and `--connect-to`.
//! - [`error`]: the one error type, rendered as OpenSearch-style JSON.
//!
//! Around them: [`cli`] (flags), [`config`] (validated configuration), [`endpoint`] (URL →
//! service and region), [`signals`] (SIGTERM/SIGINT).
//!
//! Operations: [`metrics`] (what the proxy counts), [`admin`] (`--admin-listen`: `/healthz`,
//! `/readyz`, `/metrics`), [`check`] (`sigv4-proxy check`: step-by-step diagnosis).

pub mod admin;
pub mod auth;
pub mod body;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod headers;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod signals;
pub mod signing;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::credentials::{load_sdk_config, CredentialCache};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::ServerOptions;

/// Builds the proxy from a validated configuration: loads the AWS configuration (credential
/// chain, region), resolves credentials once to log where they come from, and builds the client.
/// Missing credentials do not stop the proxy: requests get 503 until some appear.
pub async fn build(config: &Config) -> anyhow::Result<Arc<Proxy>> {
    let sdk = load_sdk_config(config.profile.as_deref(), config.region.as_deref()).await;
    let region = config
        .region
        .clone()
        .or_else(|| sdk.region().map(|r| r.to_string()))
        .context("no region: pass --region (it could not be inferred from the endpoint or the AWS configuration)")?;
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
    let metrics = Arc::new(Metrics::new());
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

/// Runs the proxy until `shutdown` completes, then drains in-flight requests.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let proxy = build(&config).await?;
    let admin = match config.admin_listen {
        Some(addr) => {
            let listener = admin::bind(addr).await?;
            tracing::info!(admin = %listener.local_addr()?, "admin listener ready: /healthz /readyz /metrics");
            Some(tokio::spawn(admin::serve(listener, proxy.clone())))
        }
        None => None,
    };
    let listener = server::bind(config.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        endpoint = %config.endpoint.base_url(),
        service = %config.service,
        region = proxy.signer().region(),
        connect_to = ?config.upstream.connect_to,
        "sigv4-proxy ready"
    );
    let options = ServerOptions::from_config(&config);
    server::serve(listener, proxy, options, shutdown).await;
    if let Some(admin) = admin {
        admin.abort();
    }
    Ok(())
}
