//! `cargo +nightly fuzz run path`: sigv4_proxy::policy::fuzz::path (see src/policy/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigv4_proxy::policy::fuzz::path(data));
