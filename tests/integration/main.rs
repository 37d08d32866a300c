//! Integration tests.

mod support;

mod sigv4_verifier;
mod upstream_selftest;
