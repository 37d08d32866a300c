//! `cargo +nightly fuzz run policy_document`: sigv4_proxy::policy::fuzz::policy_document (see src/policy/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigv4_proxy::policy::fuzz::policy_document(data));
