//! Test support: a throw-away PKI, an independent SigV4 verifier/signer, a fake
//! AWS front end (`TestUpstream`) and a minimal direct HTTPS client.
//!
//! Not every helper is used by every test module yet.
#![allow(dead_code)]

pub mod client;
pub mod connect_proxy;
pub mod docs;
pub mod fake_opensearch;
pub mod sigv4;
pub mod tls;
pub mod upstream;

// Convenience re-exports for test modules (not all used yet).
#[allow(unused_imports)]
pub use client::{signed_headers, signed_headers_with, DirectConnection, DirectResponse};
#[allow(unused_imports)]
pub use sigv4::{Creds, ReceivedRequest, SigError, SigErrorKind, SigningParams, Verified};
#[allow(unused_imports)]
pub use tls::{Alpn, TestPki};
#[allow(unused_imports)]
pub use upstream::{Gate, IdleClose, Recorded, Reply, ReplyBody, TestUpstream};
pub mod http;
pub mod proxy;
pub mod sts;
pub mod tools;
#[allow(unused_imports)]
pub use proxy::{ProxyProcess, TestProxy};
