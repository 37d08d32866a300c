//! Integration tests.

mod support;

mod sigv4_verifier;
