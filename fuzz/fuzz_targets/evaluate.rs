//! `cargo +nightly fuzz run evaluate`: sigv4_proxy::policy::fuzz::evaluate (see src/policy/fuzz.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sigv4_proxy::policy::fuzz::evaluate(data));
