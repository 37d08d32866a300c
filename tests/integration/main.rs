//! Integration tests.

mod support;

mod cli;
mod core;
mod policy;
mod sigv4_verifier;
mod upstream_selftest;
