//! Integration tests.

mod fakes;
mod support;

mod cli;
mod core;
mod credentials;
mod policy;
mod sigv4_verifier;
mod upstream_selftest;
