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
//! Around them: [`cli`] (flags), [`config_file`] (`--config` TOML and `[[route]]`s as flags),
//! [`config`] (the validated configuration, plain data), [`app`] (builds the running parts from
//! it and runs them: the binary, `check` and the tests all start there), [`listeners`] (one listener per address, SIGHUP
//! reload), [`endpoint`] (URL → service and region), [`signals`] (SIGTERM/SIGINT/SIGHUP),
//! [`logging`] (stderr through a batching writer thread).
//!
//! Operations: [`metrics`] (what the proxy counts), [`admin`] (`--admin-listen`: `/healthz`,
//! `/readyz`, `/metrics`), [`check`] (`sigv4-proxy check`: step-by-step diagnosis), [`health`]
//! (`sigv4-proxy health`: the admin listener asked from inside a container).

pub mod admin;
pub mod app;
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

pub use cli::VERSION;
