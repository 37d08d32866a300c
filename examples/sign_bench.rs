//! Times `Signer::sign` natively (callgrind cannot: valgrind hides SHA-NI, so SHA-256 looks
//! several times dearer under it than it is). `cargo run --release --example sign_bench`.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use sigv4_proxy::endpoint::Service;
use sigv4_proxy::signing::{SignInput, Signer};

fn main() {
    let signer = Signer::new(Service::Es, "us-east-1");
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "bench/secret",
        Some("token".into()),
        None,
        "bench",
    );
    let input = SignInput {
        method: "GET",
        path: "/logs-2026.11.*/_search",
        query: Some("q=level%3Aerror&size=10"),
        host: "search-bench-x.us-east-1.es.amazonaws.com",
        content_type: Some("application/json"),
        payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    };
    let n = 200_000u32;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..n {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + u64::from(i % 3));
            let mut headers = http::HeaderMap::new();
            signer.sign(&input, &creds, t, &mut headers).unwrap();
            std::hint::black_box(headers);
        }
        best = best.min(started.elapsed());
    }
    println!(
        "Signer::sign: {:.2} µs per call (best of 5 × {n})",
        best.as_secs_f64() * 1e6 / f64::from(n)
    );
}
