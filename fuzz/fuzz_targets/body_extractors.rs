//! `cargo +nightly fuzz run body_extractors`: sigv4_proxy::policy::fuzz::body_extractors (see src/policy/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigv4_proxy::policy::fuzz::body_extractors(data));
