//! Integration tests.

mod fakes;
mod support;

mod admin;
mod browser;
mod check;
mod cli;
mod clients;
mod compare;
mod core;
mod credentials;
mod deploy;
mod ops;
mod policy;
mod resilience;
mod sigv4_verifier;
mod upstream_selftest;
