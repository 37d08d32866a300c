//! The in-tree fuzzer: a deterministic (seeded), coverage-free mutation fuzzer over the
//! targets in [`super::fuzz`], run by `cargo test` for a bounded number of iterations.
//!
//! Each target starts from its seeds ([`fuzz::seeds`]) and applies stacked byte and
//! JSON-token mutations (bit flips, inserts, deletes, splices, duplicated lines, inserted
//! `"_index"`/`"index"` keys, index names, unicode, huge numbers, deep nesting). Every input
//! runs under `catch_unwind`; a panic (a crash, or a failed property) fails the test with the
//! seed, the iteration and the input.
//!
//! By default each target runs a fixed number of iterations (about 2 s each in a debug build
//! here), so every run checks the same inputs and a result never depends on the machine's
//! speed; a run that would take over a minute stops early (checking fewer, never failing
//! differently).
//!
//! * `SIGV4_PROXY_FUZZ_ITERATIONS`: iterations per target instead of the defaults;
//! * `SIGV4_PROXY_FUZZ_SECS`: run each target for this many seconds instead (exploring: new
//!   inputs every run on a faster machine);
//! * `SIGV4_PROXY_FUZZ_SEED`: the seed (default fixed, so every run is the same sequence);
//! * `SIGV4_PROXY_FUZZ_CORPUS=DIR`: also write the seeds to `DIR/<target>/` for cargo-fuzz.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::fuzz;

const DEFAULT_SEED: u64 = 0x5167_0000_f022;
/// The longest a default run of one target may take.
const SAFETY_LIMIT: Duration = Duration::from_secs(60);

/// Iterations per target by default: about 2 s each of a debug build on the project's machine.
fn default_iterations(target: &str) -> u64 {
    match target {
        "path" => 1_000,
        "evaluate" => 25_000,
        "body_extractors" => 40_000,
        _ => 60_000,
    }
}
/// Inputs never grow beyond this (paths: beyond [`MAX_PATH_LEN`]).
const MAX_LEN: usize = 8 * 1024;
const MAX_PATH_LEN: usize = 2 * 1024;
/// How many recent mutants are kept to mutate further.
const POOL: usize = 256;

/// splitmix64: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A position in `0..=len`.
    fn pos(&mut self, len: usize) -> usize {
        self.below(len + 1)
    }
}

/// Strings the mutations drop in: index names the policies care about, spelled several ways.
const NAMES: [&str; 16] = [
    "restricted-index",
    "secret-x",
    "test-index",
    "logs-1",
    "other",
    "_all",
    "*",
    "restricted-*",
    "-restricted-index",
    "test-index,restricted-index",
    "\\u0072estricted-index",
    "restricted\\u002dindex",
    "%72estricted-index",
    "<logs-{now/d}>",
    "cluster:restricted-index",
    " restricted-index",
];

const KEYS: [&str; 8] = [
    "_index", "index", "indices", "docs", "actions", "source", "dest", "remote",
];

const TOKENS: [&str; 24] = [
    "\n",
    "\r\n",
    "{}",
    "[]",
    "null",
    "\"\"",
    ",",
    ":",
    "\\",
    "\\\"",
    "%2C",
    "%2F",
    "%",
    "%ZZ",
    "%C3%28",
    "/",
    "/..",
    "?",
    "&source=",
    "&source_content_type=application/json",
    "1e999999999",
    "-0",
    "123456789012345678901234567890",
    "\"\\ud800\"",
];

const UNICODE: [&str; 8] = [
    "é",
    "\u{10ffff}",
    "\u{feff}",
    "\u{0}",
    "\u{2028}",
    "💥",
    "\\u00e9",
    "\\uDFFF",
];

const BYTES: [u8; 16] = [
    0, 0xff, 0xc3, 0x80, 0xed, b'\n', b'\r', b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'*',
];

fn insert(input: &mut Vec<u8>, at: usize, what: &[u8]) {
    input.splice(at..at, what.iter().copied());
}

/// The byte ranges of the lines of `input` (without their `\n`).
fn line_ranges(input: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, input.len()));
    out
}

/// Positions just after a `{` (where a key can go), or anywhere when there is none.
fn after_brace(rng: &mut Rng, input: &[u8]) -> usize {
    let braces: Vec<usize> = input
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'{')
        .map(|(i, _)| i + 1)
        .collect();
    if braces.is_empty() {
        rng.pos(input.len())
    } else {
        *rng.pick(&braces)
    }
}

/// The byte ranges of the JSON string tokens (contents, without quotes) in `input`.
fn string_ranges(input: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < input.len() && input[j] != b'"' {
                j += if input[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(input.len());
            out.push((start, end));
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Applies one random mutation to `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], max_len: usize) {
    let len = input.len();
    match rng.below(16) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        // Set a byte to an interesting one.
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = *rng.pick(&BYTES);
        }
        // Insert random bytes.
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let at = rng.pos(len);
            insert(input, at, &bytes);
        }
        // Delete a range.
        3 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            input.drain(a..b);
        }
        // Splice in a piece of another corpus entry.
        4 => {
            let other = rng.pick(corpus);
            if !other.is_empty() {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(64)).min(other.len());
                let at = rng.pos(len);
                let cut = (at + rng.below(16)).min(len);
                input.splice(at..cut, other[a..b].iter().copied());
            }
        }
        // Duplicate, drop or swap lines.
        5 => {
            let lines = line_ranges(input);
            let (a, b) = *rng.pick(&lines);
            let mut line = input[a..b].to_vec();
            line.push(b'\n');
            let (at, _) = *rng.pick(&lines);
            insert(input, at, &line);
        }
        6 => {
            let lines = line_ranges(input);
            if lines.len() > 1 {
                let (a, b) = *rng.pick(&lines);
                input.drain(a..(b + 1).min(len));
            }
        }
        7 => {
            let lines = line_ranges(input);
            let x = *rng.pick(&lines);
            let y = *rng.pick(&lines);
            let (first, second) = if x.0 <= y.0 { (x, y) } else { (y, x) };
            if first.1 <= second.0 {
                let mut out = input[..first.0].to_vec();
                out.extend_from_slice(&input[second.0..second.1]);
                out.extend_from_slice(&input[first.1..second.0]);
                out.extend_from_slice(&input[first.0..first.1]);
                out.extend_from_slice(&input[second.1..]);
                *input = out;
            }
        }
        // Insert an `"_index"`-like key with an index name after a `{`.
        8 => {
            let key = rng.pick(&KEYS);
            let name = rng.pick(&NAMES);
            let value = if rng.below(4) == 0 {
                format!("[\"{name}\"]")
            } else {
                format!("\"{name}\"")
            };
            let sep = if rng.below(2) == 0 { "," } else { "" };
            let at = after_brace(rng, input);
            insert(input, at, format!("\"{key}\":{value}{sep}").as_bytes());
        }
        // Replace a JSON string's contents with an index name or key.
        9 => {
            let strings = string_ranges(input);
            if !strings.is_empty() {
                let (a, b) = *rng.pick(&strings);
                let with = if rng.below(3) == 0 {
                    rng.pick(&KEYS)
                } else {
                    rng.pick(&NAMES)
                };
                input.splice(a..b, with.bytes());
            }
        }
        // Replace a known name wherever it stands (also inside paths and query strings).
        10 => {
            let from = rng.pick(&["test-index", "logs-1", "logs-new", "index", "_index"]);
            let to = rng.pick(&NAMES);
            let text = String::from_utf8_lossy(input).replacen(from, to, 1 + rng.below(2));
            *input = text.into_bytes();
        }
        // Unicode: a multi-byte character, an escape, a lone surrogate, or broken UTF-8.
        11 => {
            let at = rng.pos(len);
            if rng.below(4) == 0 {
                let broken: [&[u8]; 4] = [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x92", b"\xed\xa0\x80"];
                let bytes = *rng.pick(&broken);
                insert(input, at, bytes);
            } else {
                insert(input, at, rng.pick(&UNICODE).as_bytes());
            }
        }
        // A structural token, a huge number, a percent escape, a query parameter.
        12 => {
            let at = rng.pos(len);
            insert(input, at, rng.pick(&TOKENS).as_bytes());
        }
        // Deep nesting, past serde_json's recursion limit sometimes.
        13 => {
            let depth = 1 + rng.below(300);
            let (open, close) = if rng.below(2) == 0 {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let a = rng.pos(len);
            let b = a + rng.pos(len - a);
            let mut out = input[..a].to_vec();
            out.extend(open.repeat(depth).bytes());
            out.extend_from_slice(&input[a..b]);
            out.extend(close.repeat(depth).bytes());
            out.extend_from_slice(&input[b..]);
            *input = out;
        }
        // Truncate.
        14 if len > 0 => input.truncate(rng.below(len)),
        // Repeat a chunk (long lines, many actions).
        _ if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(128)).min(len);
            let chunk = input[a..b].repeat(1 + rng.below(32));
            insert(input, b, &chunk);
        }
        _ => insert(input, 0, b"{}"),
    }
    input.truncate(max_len);
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

/// `"..."` with non-printable bytes escaped, for a failure message that can be pasted back.
fn show(input: &[u8]) -> String {
    input.escape_ascii().to_string()
}

/// Fuzzes `target` for its iterations (or `SIGV4_PROXY_FUZZ_SECS` seconds); returns the
/// iterations run.
fn fuzz(target: &str) -> u64 {
    let secs: Option<f64> = std::env::var("SIGV4_PROXY_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok());
    let max_iterations: u64 = match secs {
        Some(_) => u64::MAX,
        None => env_or("SIGV4_PROXY_FUZZ_ITERATIONS", default_iterations(target)),
    };
    let seed: u64 = env_or("SIGV4_PROXY_FUZZ_SEED", DEFAULT_SEED);
    let corpus = fuzz::seeds(target);
    assert!(!corpus.is_empty(), "{target} has seeds");
    if let Ok(dir) = std::env::var("SIGV4_PROXY_FUZZ_CORPUS") {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in corpus.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
    // Each target has its own sequence, decided by the seed and its name only.
    let mut rng = Rng(seed
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
    let started = Instant::now();
    let deadline = started + secs.map_or(SAFETY_LIMIT, Duration::from_secs_f64);
    let max_len = if target == "path" {
        MAX_PATH_LEN
    } else {
        MAX_LEN
    };
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(POOL);
    let mut iterations: u64 = 0;
    let run = |input: &[u8], iteration: u64| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| fuzz::run(target, input))) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!(
                "fuzz target {target}: seed {seed:#x}, iteration {iteration}: {msg}\ninput: b\"{}\"",
                show(input)
            );
        }
    };
    for s in &corpus {
        run(s, 0);
    }
    while iterations < max_iterations && Instant::now() < deadline {
        iterations += 1;
        let mut input = if pool.is_empty() || rng.below(3) == 0 {
            rng.pick(&corpus).clone()
        } else {
            rng.pick(&pool).clone()
        };
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut input, &corpus, max_len);
        }
        run(&input, iterations);
        if pool.len() < POOL {
            pool.push(input);
        } else {
            let i = rng.below(POOL);
            pool[i] = input;
        }
    }
    println!(
        "fuzz {target}: seed {seed:#x}, {iterations} iterations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    iterations
}

/// One `#[test]` per target, so they run in parallel.
macro_rules! fuzz_test {
    ($($test:ident => $target:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            assert!(fuzz($target) > 0);
        }
    )*};
}

fuzz_test! {
    fuzz_policy_document => "policy_document",
    fuzz_body_extractors => "body_extractors",
    fuzz_path => "path",
    fuzz_evaluate => "evaluate",
}

/// The oracle is not vacuous: it finds the names the seeds name, at the places OpenSearch
/// reads them, and only there.
#[test]
fn the_oracle_finds_names_where_opensearch_reads_them() {
    use http::Method;
    let mget_source = "source=%7B%22docs%22%3A%5B%7B%22_index%22%3A%22s%22%7D%5D%7D&source_content_type=application/json";
    type Case<'a> = (Method, &'a str, Option<&'a str>, &'a str, &'a [&'a str]);
    let cases: [Case; 7] = [
        (
            Method::POST,
            "/_bulk",
            None,
            "{\"index\":{\"_index\":\"a\"}}\n{\"index\":{\"_index\":\"doc-line\"}}\n\n{\"delete\":{\"_index\":\"b\",\"_index\":\"c\"}}\n{\"create\":{\"_index\":\"d\"}}\n",
            &["a", "c", "d"],
        ),
        (
            Method::POST,
            "/x,%72estricted-index,-y,z*/_msearch",
            None,
            "\n{\"index\":\"a,b\"}\n{\"index\":\"search-body\"}\n\n{\"index\":\"body-after-empty-header\"}\n{\"indices\":[\"c\"]}\n",
            &["x", "restricted-index", "a", "b", "c"],
        ),
        (
            Method::GET,
            "/_mget",
            None,
            "{\"docs\":[{\"_index\":\"a\"},{\"_id\":\"1\"}]}",
            &["a"],
        ),
        (Method::GET, "/_mget", Some(mget_source), "", &["s"]),
        (
            Method::POST,
            "/_reindex",
            None,
            "{\"source\":{\"index\":\"a,b\",\"query\":{\"term\":{\"_index\":\"q\"}}},\"dest\":{\"index\":\"c\"}}",
            &["a", "b", "c"],
        ),
        (
            Method::POST,
            "/_reindex",
            None,
            "{\"source\":{\"index\":\"far\",\"remote\":{}},\"dest\":{\"index\":\"c\"}}",
            &["c"],
        ),
        (
            Method::POST,
            "/_aliases",
            None,
            "{\"actions\":[{\"add\":{\"index\":\"a\",\"alias\":\"al\"}},{\"remove_index\":{\"indices\":[\"b\"]}}]}",
            &["a", "b"],
        ),
    ];
    for (m, path, query, body, want) in cases {
        assert_eq!(
            fuzz::named_indices(&m, path, query, body.as_bytes()),
            want,
            "{m} {path}"
        );
    }
    let found =
        |m: Method, path: &str, body: &str| fuzz::named_indices(&m, path, None, body.as_bytes());
    // Methods OpenSearch refuses on an API read no body.
    assert!(found(
        Method::GET,
        "/_bulk",
        "{\"index\":{\"_index\":\"a\"}}\n{}\n"
    )
    .is_empty());
    assert!(found(Method::GET, "/_all/_search", "").is_empty());
    // The categories that once slipped past the policy.
    let with_query = |m: Method, path: &str, q: &str, body: &str| {
        fuzz::named_indices(&m, path, Some(q), body.as_bytes())
    };
    assert_eq!(found(Method::GET, "/_x,a/_search", ""), ["a"]);
    assert_eq!(
        with_query(Method::GET, "/_search", "index=a,b", ""),
        ["a", "b"]
    );
    assert!(with_query(Method::GET, "/_cluster/stats", "index=a", "").is_empty());
    assert_eq!(
        found(
            Method::POST,
            "/t/doc/_bulk",
            "{\"index\":{\"_index\":\"a\"}}\n{}\n"
        ),
        ["t", "a"]
    );
    assert_eq!(
        found(Method::PUT, "/t/_alias/x", "{\"index\":\"a\"}"),
        ["t", "a"]
    );
    assert_eq!(
        found(
            Method::PUT,
            "/_index_template/x",
            "{\"index_patterns\":[\"a\",\"b*\"]}"
        ),
        ["a"]
    );
    assert_eq!(found(Method::POST, "/_plugins/_ism/add/a", "{}"), ["a"]);
    assert_eq!(
        with_query(
            Method::POST,
            "/_dashboards/api/console/proxy",
            "path=/a/_doc/1&method=delete",
            ""
        ),
        ["a"]
    );
    assert_eq!(
        found(
            Method::POST,
            "/_dashboards/internal/search/opensearch",
            "{\"params\":{\"index\":\"a,b\"}}"
        ),
        ["a", "b"]
    );
}

/// The property checks can fail: a policy that lets a denied name through is caught.
#[test]
fn the_evaluate_target_rejects_seeds_that_name_denied_indices() {
    use super::fuzz::{decide, DENY_POLICY};
    use super::Policy;
    use http::Method;
    let deny = Policy::from_json(DENY_POLICY).unwrap();
    let allowed = |m: Method, path: &str, body: &str| {
        decide(&deny, &m, path, None, None, Some(body.as_bytes())).is_allowed()
    };
    assert!(allowed(
        Method::POST,
        "/_bulk",
        "{\"index\":{\"_index\":\"test-index\"}}\n{}\n"
    ));
    assert!(!allowed(
        Method::POST,
        "/_bulk",
        "{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n"
    ));
    assert!(!allowed(Method::GET, "/secret-stuff/_doc/1", ""));
    assert!(!allowed(Method::DELETE, "/restricted-index", ""));
    // The check itself can fail: a policy that lets the denied name through is caught.
    let target = http::uri::PathAndQuery::from_static("/restricted-index");
    let not_denied = |n: &str| n != "restricted-index";
    fuzz::check_allowed_names(&deny, &Method::DELETE, &target, b"", &not_denied);
    let caught = catch_unwind(|| {
        fuzz::check_allowed_names(
            &Policy::allow_all(),
            &Method::DELETE,
            &target,
            b"",
            &not_denied,
        )
    });
    assert!(caught.is_err(), "allow-all lets restricted-index through");
}
