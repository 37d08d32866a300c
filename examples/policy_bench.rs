//! Times the policy's classification and decision natively, for the requests the benchmark in
//! `bench/` sends: a small GET, a 64 KiB search, a 32 MiB `_bulk` (plain and gzip).
//! `cargo run --release --example policy_bench`. The figures are in docs/performance.md.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sigv4_proxy::policy::{BodySource, InMemory, Policy, RequestFacts};

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"LogsAndApis","Effect":"Allow","Action":"es:*","Resource":["logs*","_*"]},
  {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#;

fn time(label: &str, n: u32, mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(started.elapsed() / n);
    }
    println!(
        "{label}: {:.2} µs per request (best of 5 × {n})",
        best.as_secs_f64() * 1e6
    );
    best
}

fn search_body() -> String {
    // The benchmark's 64 KiB search (bench/bench.py, post_script).
    let clause = r#"{"match":{"message":{"query":"connection refused timeout","operator":"or"}}},"#;
    let (head, tail) = (
        r#"{"size":10,"query":{"bool":{"should":["#,
        r#"{"match_all":{}}]}}}"#,
    );
    let n = (65536 - head.len() - tail.len()) / clause.len();
    format!("{head}{}{tail}", clause.repeat(n))
}

fn bulk_body() -> Vec<u8> {
    // The benchmark's 32 MiB bulk (bench/bench.py, bulk_file).
    let mut out = Vec::with_capacity(32 << 20);
    let mut i = 0u64;
    while out.len() < 32 << 20 {
        write!(
            out,
            "{{\"index\":{{\"_index\":\"logs-2026.11.23\",\"_id\":\"{i}\"}}}}\n{{\"@timestamp\":\"2026-11-23T01:{:02}:{:02}Z\",\"level\":\"info\",\"service\":\"checkout\",\"message\":\"request {i} served in {} ms\",\"bytes\":{}}}\n",
            i / 60 % 60,
            i % 60,
            i % 997,
            i * 7 % 65536
        )
        .unwrap();
        i += 1;
    }
    out
}

/// A body read from its file through a buffer.
struct Spilled<'a>(&'a std::fs::File);

impl BodySource for Spilled<'_> {
    fn len(&self) -> u64 {
        self.0.metadata().unwrap().len()
    }
    fn open(&self) -> std::io::Result<Box<dyn std::io::BufRead + Send + '_>> {
        let mut f = self.0;
        std::io::Seek::rewind(&mut f)?;
        Ok(Box::new(std::io::BufReader::with_capacity(64 * 1024, f)))
    }
}

fn main() {
    let only = std::env::args().nth(1);
    let policy = Policy::from_json(POLICY).unwrap();
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let facts = |method: &'static http::Method, path: &'static str, query: Option<&'static str>| {
        RequestFacts {
            method,
            raw_path: path,
            raw_query: query,
            content_type: Some("application/json"),
            content_encoding: None,
            client_ip: ip,
            principal: None,
        }
    };
    let empty = InMemory(b"");
    if only.as_deref() == Some("get") {
        let f = facts(
            &http::Method::GET,
            "/logs-2026.11.*/_search",
            Some("q=level%3Aerror&size=10"),
        );
        time("GET /logs-2026.11.*/_search?q=…", 2_000_000, || {
            std::hint::black_box(policy.evaluate(&f, Some(&empty as &dyn BodySource)));
        });
        return;
    }
    if only.as_deref() == Some("bulk") {
        let bulk = bulk_body();
        let f = facts(&http::Method::POST, "/_bulk", None);
        let b = InMemory(&bulk);
        time("POST /_bulk, 32 MiB", 20, || {
            std::hint::black_box(policy.evaluate(&f, Some(&b as &dyn BodySource)));
        });
        return;
    }
    let get = facts(&http::Method::GET, "/_cluster/health", None);
    assert!(policy.evaluate(&get, Some(&empty)).is_allowed());
    time("GET /_cluster/health", 200_000, || {
        let plan = policy.plan(&get);
        std::hint::black_box(policy.decide(&plan, &get, Some(&empty)));
    });
    let search = facts(
        &http::Method::GET,
        "/logs-2026.11.*/_search",
        Some("q=level%3Aerror&size=10"),
    );
    time("GET /logs-2026.11.*/_search?q=…", 200_000, || {
        let plan = policy.plan(&search);
        std::hint::black_box(policy.decide(&plan, &search, Some(&empty)));
    });
    let body = search_body();
    let post = facts(&http::Method::POST, "/logs/_search", None);
    let post_body = InMemory(body.as_bytes());
    assert!(policy.evaluate(&post, Some(&post_body)).is_allowed());
    time("POST /logs/_search, 64 KiB query", 2_000, || {
        std::hint::black_box(policy.evaluate(&post, Some(&post_body as &dyn BodySource)));
    });
    let bulk = bulk_body();
    let bulk_facts = facts(&http::Method::POST, "/_bulk", None);
    let plain = InMemory(&bulk);
    assert!(policy.evaluate(&bulk_facts, Some(&plain)).is_allowed());
    let t = time("POST /_bulk, 32 MiB", 5, || {
        std::hint::black_box(policy.evaluate(&bulk_facts, Some(&plain as &dyn BodySource)));
    });
    println!("  {:.0} MB/s", bulk.len() as f64 / t.as_secs_f64() / 1e6);
    // As the proxy reads a bulk past the spill threshold: its file mapped (`SpooledBody::mapped`),
    // and as it did before, through a 64 KiB buffer.
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bulk).unwrap();
    time("POST /_bulk, 32 MiB spilled, mapped", 5, || {
        // SAFETY: the file is this process's own, unlinked, and not written while mapped.
        let mapped = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.unwrap();
        let body = InMemory(&mapped);
        std::hint::black_box(policy.evaluate(&bulk_facts, Some(&body as &dyn BodySource)));
    });
    time(
        "POST /_bulk, 32 MiB spilled, read through 64 KiB",
        5,
        || {
            std::hint::black_box(
                policy.evaluate(&bulk_facts, Some(&Spilled(&file) as &dyn BodySource)),
            );
        },
    );
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&bulk).unwrap();
    let packed = e.finish().unwrap();
    let gz_facts = RequestFacts {
        content_encoding: Some("gzip"),
        ..bulk_facts
    };
    let gz = InMemory(&packed);
    assert!(policy.evaluate(&gz_facts, Some(&gz)).is_allowed());
    let t = time(
        &format!("POST /_bulk, 32 MiB as {} KiB of gzip", packed.len() >> 10),
        5,
        || {
            std::hint::black_box(policy.evaluate(&gz_facts, Some(&gz as &dyn BodySource)));
        },
    );
    println!(
        "  {:.0} MB/s of inflated body",
        bulk.len() as f64 / t.as_secs_f64() / 1e6
    );
}
