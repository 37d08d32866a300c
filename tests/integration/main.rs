//! Integration tests.

mod support;

mod admin;
mod check;
mod cli;
mod core;
mod policy;
mod sigv4_verifier;
mod upstream_selftest;
