//! Integration tests.

mod fakes;
mod support;

mod cli;
mod core;
mod credentials;
mod ops;
mod policy;
mod resilience;
mod sigv4_verifier;
mod upstream_selftest;
