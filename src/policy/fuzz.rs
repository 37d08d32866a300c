//! Fuzzing entry points over the policy grammar, path parsing, the body index extractors and
//! full evaluation. Each takes arbitrary bytes and must never panic; [`evaluate`] also checks
//! that nothing it allows names a denied index. Two drivers call them: the in-tree, seeded
//! mutation fuzzer that runs in `cargo test` (`fuzz_tests.rs`), and the cargo-fuzz targets in
//! `fuzz/` (libFuzzer). Not part of the proxy's API.

use std::io::{BufRead, BufReader};

use http::Method;

use super::{BodySource, Decision, InMemory, Policy, RequestFacts, Touch};

/// The fuzz targets, by name: the same names as the cargo-fuzz targets in `fuzz/`.
pub const TARGETS: [&str; 4] = ["policy_document", "body_extractors", "path", "evaluate"];

/// Runs the target called `name` (one of [`TARGETS`]) on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "policy_document" => policy_document(data),
        "body_extractors" => body_extractors(data),
        "path" => path(data),
        "evaluate" => evaluate(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// Everything allowed, but `restricted-index` (and below it) and every `secret-*` denied.
pub const DENY_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"AllowAll","Effect":"Allow","Action":"es:*","Resource":"*"},
  {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":["restricted-index","restricted-index/*"]},
  {"Sid":"DenySecret","Effect":"Deny","Action":["es:ESHttp*"],"Resource":"arn:aws:es:us-east-1:123456789012:domain/d/secret-*"}
]}"#;

/// Only `test-index` and `logs-*` (and the multi-index APIs at the root) allowed.
pub const ALLOW_LIST_POLICY: &str = r#"{"Statement":{"Sid":"AllowSome","Effect":"Allow","Action":"es:ESHttp*",
  "Resource":["test-index","test-index/*","logs-*","_bulk","_mget","_mtermvectors","_msearch","_msearch/template","_reindex","_aliases"]}}"#;

/// The denied names of [`DENY_POLICY`], decided without the policy code.
fn denied_by_deny_policy(name: &str) -> bool {
    name == "restricted-index" || name.starts_with("secret-")
}

/// The allowed names of [`ALLOW_LIST_POLICY`], decided without the policy code.
fn allowed_by_allow_list(name: &str) -> bool {
    name == "test-index" || name.starts_with("logs-")
}

fn policies() -> &'static (Policy, Policy) {
    static P: std::sync::OnceLock<(Policy, Policy)> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        (
            Policy::from_json(DENY_POLICY).expect("DENY_POLICY parses"),
            Policy::from_json(ALLOW_LIST_POLICY).expect("ALLOW_LIST_POLICY parses"),
        )
    })
}

fn facts<'a>(
    method: &'a Method,
    raw_path: &'a str,
    raw_query: Option<&'a str>,
    principal: Option<&'a str>,
) -> RequestFacts<'a> {
    RequestFacts {
        method,
        raw_path,
        raw_query,
        content_type: Some("application/json"),
        content_encoding: None,
        client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
        principal,
    }
}

/// Evaluates one request with its body in memory.
pub fn decide(
    policy: &Policy,
    method: &Method,
    raw_path: &str,
    raw_query: Option<&str>,
    principal: Option<&str>,
    body: Option<&[u8]>,
) -> Decision {
    let body = body.map(InMemory);
    policy.evaluate(
        &facts(method, raw_path, raw_query, principal),
        body.as_ref().map(|b| b as &dyn BodySource),
    )
}

/// Every resource a request touches, as a statement policy sees them.
pub fn touched(
    method: &Method,
    raw_path: &str,
    raw_query: Option<&str>,
    body: Option<&dyn BodySource>,
) -> Vec<Touch> {
    let (deny, _) = policies();
    deny.explain(&facts(method, raw_path, raw_query, None), body)
        .touches
        .into_iter()
        .map(|t| t.touch)
        .collect()
}

/// A Deny always says why, naming the action; an Allow never does.
fn check_decision(d: &Decision) {
    match d {
        Decision::Allow { .. } => assert_eq!(d.reason(), "allowed"),
        Decision::Deny { reason, action, .. } => {
            assert!(
                reason.contains(action.as_str()) || reason.contains("not covered"),
                "{d:?}"
            )
        }
    }
}

/// A body read through a reader of `capacity` bytes (so extractors meet every split).
struct Chunked<'a>(&'a [u8], usize);

impl BodySource for Chunked<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(BufReader::with_capacity(self.1, self.0)))
    }
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// The policy document parser: any text either loads or is an error; a loaded policy decides
/// a few requests without panicking.
pub fn policy_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match Policy::from_json(text) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = policy.uses_proxy_principals();
    let bulk: &[u8] = b"{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n";
    for (method, path, body) in [
        (&Method::GET, "/", None),
        (&Method::GET, "/restricted-index/_search", None),
        (&Method::DELETE, "/_all", None),
        (&Method::POST, "/_bulk", Some(bulk)),
        (&Method::OPTIONS, "/", None),
    ] {
        for principal in [None, Some("alice"), Some("token:3")] {
            check_decision(&decide(&policy, method, path, None, principal, body));
        }
    }
}

/// The APIs [`body_extractors`] picks from with its first byte.
const BODY_APIS: [(Method, &str); 26] = [
    (Method::POST, "/_bulk"),
    (Method::PUT, "/test-index/_bulk"),
    (Method::GET, "/_mget"),
    (Method::POST, "/test-index/_mget"),
    (Method::POST, "/_mtermvectors"),
    (Method::POST, "/_msearch"),
    (Method::GET, "/test-index,logs-1/_msearch"),
    (Method::POST, "/_msearch/template"),
    (Method::POST, "/_reindex"),
    (Method::POST, "/_aliases"),
    (Method::PUT, "/_index_template/t"),
    (Method::PUT, "/_template/t"),
    (Method::PUT, "/_component_template/c"),
    (Method::POST, "/_search"),
    (Method::HEAD, "/_bulk"),
    (Method::POST, "/%3Clogs-%7Bnow%2Fd%7D%3E/_bulk"),
    (Method::PUT, "/test-index/_alias/a"),
    (Method::PUT, "/logs-1"),
    (Method::PUT, "/_snapshot/repo/snap"),
    (Method::POST, "/_snapshot/repo/snap/_restore"),
    (Method::PUT, "/_plugins/_ism/policies/p"),
    (Method::POST, "/_plugins/_anomaly_detection/detectors"),
    (Method::POST, "/_dashboards/internal/search/opensearch"),
    (
        Method::POST,
        "/_dashboards/api/console/proxy?path=/_bulk&method=POST",
    ),
    (Method::POST, "/test-index/_search/template"),
    (Method::DELETE, "/_search/scroll"),
];

/// The body index extractors (`_bulk`, `_mget`, `_msearch`, `_reindex`, `_aliases`, and
/// template paths): the first byte picks the API, the rest is the body. Reading the body in
/// one piece or a byte at a time must give the same answer.
pub fn body_extractors(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (method, path) = &BODY_APIS[usize::from(pick) % BODY_APIS.len()];
    let whole = touched(method, path, None, Some(&InMemory(body)));
    let capacity = 1 + usize::from(pick >> 4) % 5;
    let chunked = touched(method, path, None, Some(&Chunked(body, capacity)));
    assert_eq!(
        whole, chunked,
        "{method} {path}: reading the body {capacity} byte(s) at a time changed the result"
    );
}

/// Path classification: any path gives its resources without panicking, and a request whose
/// body the policy needs is never allowed without it (it counts as touching every index).
pub fn path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let (deny, _) = policies();
    for method in &METHODS {
        let _ = touched(method, path, query, None);
        for policy in [deny, &Policy::read_only()] {
            let f = facts(method, path, query, None);
            let needed = policy.plan(&f).needs_body();
            let d = decide(policy, method, path, query, None, None);
            check_decision(&d);
            if needed {
                assert!(!d.is_allowed(), "{method} {raw:?} allowed without its body");
            }
        }
    }
}

/// Full evaluation of `METHOD TARGET\nBODY` (the target as in a request line: path and
/// query). Properties: never panics; nothing [`DENY_POLICY`] allows names a denied index, and
/// nothing [`ALLOW_LIST_POLICY`] allows names an index outside its list, where "names" is
/// what [`named_indices`] finds.
pub fn evaluate(data: &[u8]) {
    let (line, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return;
    };
    let Ok(method) = Method::from_bytes(&line[..sp]) else {
        return;
    };
    // What hyper hands the proxy: an origin-form target split into path and query.
    let Ok(target) = http::uri::PathAndQuery::try_from(&line[sp + 1..]) else {
        return;
    };
    let (deny, allow_list) = policies();
    let not_denied = |n: &str| !denied_by_deny_policy(n);
    check_allowed_names(deny, &method, &target, body, &not_denied);
    check_allowed_names(allow_list, &method, &target, body, &allowed_by_allow_list);
}

/// Panics when `policy` allows the request although it names an index that `ok` refuses.
pub fn check_allowed_names(
    policy: &Policy,
    method: &Method,
    target: &http::uri::PathAndQuery,
    body: &[u8],
    ok: &dyn Fn(&str) -> bool,
) {
    let (path, query) = (target.path(), target.query());
    let d = decide(policy, method, path, query, None, Some(body));
    check_decision(&d);
    if !d.is_allowed() {
        return;
    }
    if let Some(bad) = named_indices(method, path, query, body)
        .into_iter()
        .find(|n| !ok(n))
    {
        panic!(
            "allowed, yet it names the index {bad:?}: {method} {target}\n{}",
            String::from_utf8_lossy(body)
        );
    }
}

// ---------------------------------------------------------------------------
// The oracle: index names a request certainly names
// ---------------------------------------------------------------------------

/// The concrete index names a request certainly makes OpenSearch use, found by a simple scan
/// that shares no code with the policy: the path's index segment (the first, unless it is an
/// API name; a comma list always is one, whatever it starts with; the index of the APIs that
/// take it later in the path), the `index` query parameter of the APIs that read it where the
/// path has none, and the `_index` / `index` values at the places OpenSearch reads them from
/// (the action lines of `_bulk`, the header lines of `_msearch`, `docs[]._index` of `_mget`,
/// `source.index`/`dest.index` of `_reindex`, `actions[].*.index` of `_aliases`, a put-alias
/// body's `index`, an index template's `index_patterns`), read as OpenSearch does (a
/// JSON-valued line; a duplicate key counts by its last value; a failed line ends the scan).
/// A body given in the `source` query parameter counts where OpenSearch reads it (no body
/// sent, APIs that take their body from `source`). Dashboards' console proxy counts as the
/// request it carries, its internal search as the search of `params.index`.
///
/// It under-approximates on purpose, so that a name it finds is one the request really names:
/// wildcards, `_all`, exclusions (`-x`), `+x`, date math (`<…>`), remote (`cluster:index`)
/// names are skipped, comma lists are split only where OpenSearch splits them, document
/// lines and search bodies are never scanned, and bodies are scanned only for the methods
/// OpenSearch accepts on that API.
pub fn named_indices(method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let segments: Vec<Option<String>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|d| d.into_owned())
        })
        .collect();
    let Some(Some(first)) = segments.first() else {
        return out;
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let m = method.as_str();
    if first == "_dashboards" {
        return dashboards_named(m, &segments, &params, body);
    }
    // An API name never holds a comma; an index list in the first segment is an index list.
    let api_start = if first.starts_with('_') && !first.contains(',') {
        0
    } else {
        first.split(',').for_each(|n| push_name(&mut out, n));
        1
    };
    let api: Vec<&str> = segments[api_start..]
        .iter()
        .map(|s| s.as_deref().unwrap_or("\u{0}"))
        .collect();
    // APIs that name the index later in the path.
    match (m, &api[..]) {
        ("POST", ["_plugins", "_ism", "add" | "remove" | "change_policy" | "retry", index])
        | ("GET", ["_cluster", "health", index])
        | ("POST" | "PUT", ["_plugins", "_replication", index, _]) => {
            index.split(',').for_each(|n| push_name(&mut out, n));
        }
        _ => {}
    }
    // Without an index in the path, these APIs read `?index=`.
    let reads_index_param = matches!(
        &api[..],
        ["_search"] | ["_count"] | ["_bulk"] | ["_mget"] | ["_msearch"] | ["_mtermvectors"]
    );
    if api_start == 0 && reads_index_param {
        for (_, v) in params.iter().filter(|(k, _)| k == "index") {
            v.split(',').for_each(|n| push_name(&mut out, n));
        }
    }
    // The typed endpoints of OpenSearch 1.x: `/{index}/{type}/_bulk`.
    let api: &[&str] = match (api_start, &api[..]) {
        (1, [_, rest @ ("_bulk" | "_mget" | "_msearch")]) => std::slice::from_ref(rest),
        _ => &api[..],
    };
    let (scan, takes_source_param): (Scan, bool) = match (m, api) {
        ("POST" | "PUT", ["_bulk"]) => (scan_bulk, false),
        ("GET" | "POST", ["_msearch"] | ["_msearch", "template"]) => (scan_msearch, true),
        ("GET" | "POST", ["_mget"] | ["_mtermvectors"]) => (scan_mget, true),
        ("POST", ["_reindex"]) => (scan_reindex, false),
        ("POST", ["_aliases"]) => (scan_aliases, false),
        ("PUT" | "POST", ["_alias" | "_aliases", _]) if api_start == 1 => (scan_put_alias, false),
        ("PUT" | "POST", ["_index_template" | "_template", _]) => (scan_template, false),
        _ => return out,
    };
    if takes_source_param && body.is_empty() {
        // OpenSearch's `contentOrSourceParam`: without a body, `?source=` is the body.
        let source = params.iter().rev().find(|(k, _)| k == "source");
        let typed = params.iter().any(|(k, _)| k == "source_content_type");
        if let (Some((_, source)), true) = (source, typed) {
            scan(source.as_bytes(), &mut out);
        }
        return out;
    }
    scan(body, &mut out);
    out
}

/// Dashboards' console proxy (`?path=&method=`) carries an OpenSearch request; its internal
/// search runs one on `params.index`.
fn dashboards_named(
    m: &str,
    segments: &[Option<String>],
    params: &[(String, String)],
    body: &[u8],
) -> Vec<String> {
    let segs: Vec<&str> = segments
        .iter()
        .map(|s| s.as_deref().unwrap_or("\u{0}"))
        .collect();
    match (m, &segs[..]) {
        ("POST", ["_dashboards", "api", "console", "proxy"]) => {
            let get = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
            let (Some(inner_method), Some(target)) = (get("method"), get("path")) else {
                return Vec::new();
            };
            let Ok(inner_method) = Method::from_bytes(inner_method.to_ascii_uppercase().as_bytes())
            else {
                return Vec::new();
            };
            let target = format!("/{}", target.trim_start_matches('/'));
            let (p, q) = match target.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (target, None),
            };
            named_indices(&inner_method, &p, q.as_deref(), body)
        }
        ("POST", ["_dashboards", "internal", "search", "opensearch"]) => {
            let mut out = Vec::new();
            if let Some(J::Str(index)) = J::parse(body)
                .as_ref()
                .and_then(|b| b.get("params"))
                .and_then(|p| p.get("index"))
            {
                index.split(',').for_each(|n| push_name(&mut out, n));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A put-alias body: `index`, which overrides the path's.
fn scan_put_alias(body: &[u8], out: &mut Vec<String>) {
    if let Some(J::Str(index)) = J::parse(body).as_ref().and_then(|b| b.get("index")) {
        index.split(',').for_each(|n| push_name(out, n));
    }
}

/// An index template's `index_patterns`: the indices it will apply to.
fn scan_template(body: &[u8], out: &mut Vec<String>) {
    match J::parse(body)
        .as_ref()
        .and_then(|b| b.get("index_patterns"))
    {
        Some(J::Str(p)) => push_name(out, p),
        Some(J::Arr(items)) => items
            .iter()
            .filter_map(J::as_str)
            .for_each(|n| push_name(out, n)),
        _ => {}
    }
}

/// Reads the index names of one API's body.
type Scan = fn(&[u8], &mut Vec<String>);

/// Keeps `name` when it is one concrete index name.
fn push_name(out: &mut Vec<String>, name: &str) {
    let special =
        name.is_empty() || name.contains(['*', ':']) || name.starts_with(['-', '+', '<', '_']);
    if !special {
        out.push(name.to_string());
    }
}

/// A JSON value that keeps every member of an object, duplicates included, in order.
enum J {
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
    Other,
}

impl J {
    fn parse(text: &[u8]) -> Option<J> {
        serde_json::from_slice(text).ok()
    }

    /// The last value of `key` (OpenSearch's parsers let a repeated key win).
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn first_member(&self) -> Option<(&str, &J)> {
        match self {
            J::Obj(members) => members.first().map(|(k, v)| (k.as_str(), v)),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<J, E> {
                Ok(J::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<J, E> {
                Ok(J::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<J, E> {
                Ok(J::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<J, E> {
                Ok(J::Other)
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Other)
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(J::Arr(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, J>()? {
                    members.push((k, v));
                }
                Ok(J::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// The lines of an NDJSON body, split at `\n` only (a last line without one counts).
fn ndjson_lines(body: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    if body.ends_with(b"\n") || body.is_empty() {
        lines.pop();
    }
    lines
}

/// JSON's own whitespace, the only thing OpenSearch's parser skips on a line.
fn json_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// `_bulk`: action lines `{"<op>":{"_index":…}}`; a blank action line is skipped; every action
/// but `delete` is followed by one document line, whatever it holds.
fn scan_bulk(body: &[u8], out: &mut Vec<String>) {
    let mut lines = ndjson_lines(body).into_iter();
    while let Some(line) = lines.next() {
        if json_blank(line) {
            continue;
        }
        let Some(action) = J::parse(line) else { return };
        let Some((op, meta)) = action.first_member() else {
            return;
        };
        if !matches!(op, "index" | "create" | "update" | "delete") {
            return;
        }
        if let Some(index) = meta.get("_index").and_then(J::as_str) {
            push_name(out, index);
        }
        if op != "delete" {
            lines.next();
        }
    }
}

/// A string of comma-separated names, or an array of names (as OpenSearch's
/// `nodeStringArrayValue` reads `index`).
fn push_name_list(out: &mut Vec<String>, v: &J) {
    match v {
        J::Str(s) => s.split(',').for_each(|n| push_name(out, n)),
        J::Arr(items) => items
            .iter()
            .filter_map(J::as_str)
            .for_each(|n| push_name(out, n)),
        _ => {}
    }
}

/// `_msearch`: header line, search line, header line, …; only an empty first line is skipped.
fn scan_msearch(body: &[u8], out: &mut Vec<String>) {
    let mut lines = ndjson_lines(body).into_iter().peekable();
    if lines.peek().is_some_and(|l| l.is_empty()) {
        lines.next();
    }
    while let Some(header) = lines.next() {
        if !json_blank(header) {
            let Some(h) = J::parse(header) else { return };
            for key in ["index", "indices"] {
                if let Some(v) = h.get(key) {
                    push_name_list(out, v);
                }
            }
        }
        lines.next();
    }
}

/// `_mget`, `_mtermvectors`: `docs[]._index`.
fn scan_mget(body: &[u8], out: &mut Vec<String>) {
    let Some(b) = J::parse(body) else { return };
    let Some(J::Arr(docs)) = b.get("docs") else {
        return;
    };
    for doc in docs {
        if let Some(index) = doc.get("_index").and_then(J::as_str) {
            push_name(out, index);
        }
    }
}

/// `_reindex`: `source.index` (a list; not when it reads a remote cluster) and `dest.index`.
fn scan_reindex(body: &[u8], out: &mut Vec<String>) {
    let Some(b) = J::parse(body) else { return };
    if let Some(source) = b.get("source") {
        if source.get("remote").is_none() {
            if let Some(v) = source.get("index") {
                push_name_list(out, v);
            }
        }
    }
    if let Some(dest) = b
        .get("dest")
        .and_then(|d| d.get("index"))
        .and_then(J::as_str)
    {
        push_name(out, dest);
    }
}

/// `_aliases`: `actions[].{add,remove,remove_index}.index` / `.indices`, each one name.
fn scan_aliases(body: &[u8], out: &mut Vec<String>) {
    let Some(b) = J::parse(body) else { return };
    let Some(J::Arr(actions)) = b.get("actions") else {
        return;
    };
    for action in actions {
        let Some((_, spec)) = action.first_member() else {
            continue;
        };
        for key in ["index", "indices"] {
            match spec.get(key) {
                Some(J::Str(s)) => push_name(out, s),
                Some(J::Arr(items)) => items
                    .iter()
                    .filter_map(J::as_str)
                    .for_each(|n| push_name(out, n)),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// Valid inputs each target starts from (the in-tree fuzzer's corpus; also written out as a
/// libFuzzer corpus, see README "Fuzzing").
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let texts: Vec<String> = match name {
        "policy_document" => vec![
            DENY_POLICY.into(),
            ALLOW_LIST_POLICY.into(),
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/test-user"]},"Action":["es:ESHttp*"],"Resource":["arn:aws:es:us-west-1:987654321098:domain/my-domain/test-index/*","arn:aws:es:us-west-1:987654321098:domain/my-domain/_bulk"]}]}"#.into(),
            r#"{"Statement":[{"Sid":"Ip","Effect":"Allow","Action":"es:ESHttpGet","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]},"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#.into(),
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Proxy":["alice","token:*"]},"NotAction":"es:ESHttpDelete","NotResource":["secret-*","restricted-index/*"]},{"Effect":"Deny","Principal":"*","Action":"es:ESHttpPut","Resource":"logs-?/_doc/*"}]}"#.into(),
        ],
        "body_extractors" => {
            let bodies: [(u8, &str); 23] = [
                (0, "{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"title\":\"ok\"}\n{\"delete\":{\"_index\":\"logs-1\",\"_id\":2}}\n{\"create\":{\"_index\":\"a,b\"}}\n{}\n{\"update\":{\"_id\":\"3\",\"_index\":\"x\"}}\n{\"doc\":{\"_index\":\"restricted-index\"}}\n"),
                (1, "\n{\"index\":{}}\r\n{\"f\":1}\r\n\n{\"delete\":{\"_id\":\"9\"}}\n"),
                (2, "{\"docs\":[{\"_index\":\"test-index\",\"_id\":\"1\"},{\"_index\":\"logs-*\",\"_id\":[1]},{\"_id\":\"x\"}]}"),
                (3, "{\"ids\":[\"1\",\"2\"],\"docs\":[{\"_id\":\"3\"}]}"),
                (4, "{\"docs\":[{\"_index\":\"test-index\",\"_id\":\"1\",\"fields\":[\"f\"]}]}"),
                (5, "{\"index\":\"test-index\"}\n{\"query\":{\"match_all\":{}}}\n{\"indices\":[\"logs-1\",\"-x\"]}\n{\"query\":{\"term\":{\"_index\":\"restricted-index\"}}}\n{}\n{}\n"),
                (6, "\n{}\n{\"size\":0}\n{\"index\":\"<logs-{now/d}>,%2C\"}\n{}\n"),
                (7, "{\"index\":\"test-index\"}\n{\"id\":\"tpl\",\"params\":{\"index\":\"x\"}}\n"),
                (8, "{\"source\":{\"index\":[\"test-index\",\"logs-1\"],\"query\":{\"term\":{\"_index\":\"y\"}}},\"dest\":{\"index\":\"logs-2\"},\"script\":{\"source\":\"ctx._index='z'\"}}"),
                (9, "{\"actions\":[{\"add\":{\"index\":\"test-index\",\"alias\":\"a\"}},{\"remove\":{\"indices\":[\"logs-1\"],\"aliases\":\"b\"}},{\"remove_index\":{\"index\":\"old\"}}]}"),
                (10, "{\"index_patterns\":[\"restricted-*\"],\"template\":{\"aliases\":{\"public\":{}}}}"),
                (13, "{\"query\":{\"bool\":{\"filter\":[{\"terms\":{\"u\":{\"index\":\"users\",\"id\":\"1\",\"path\":\"f\"}}},{\"more_like_this\":{\"like\":[{\"_index\":\"other\",\"_id\":\"2\"}]}}]}}}"),
                (15, "{\"index\":{\"_id\":\"1\"}}\n{}\n"),
                (16, "{\"index\":\"logs-1,test-index\",\"alias\":\"a\",\"filter\":{\"term\":{\"x\":1}}}"),
                (17, "{\"aliases\":{\"al\":{}},\"settings\":{\"index\":{\"number_of_shards\":1}}}"),
                (18, "{\"indices\":\"test-index,logs-*\",\"include_global_state\":false}"),
                (19, "{\"indices\":\"logs-1\",\"rename_pattern\":\"(.+)\",\"rename_replacement\":\"restored-$1\"}"),
                (20, "{\"policy\":{\"states\":[{\"name\":\"a\",\"actions\":[{\"rollover\":{\"min_index_age\":\"1d\"}}]}],\"ism_template\":[{\"index_patterns\":[\"logs-*\"]}]}}"),
                (21, "{\"name\":\"d\",\"indices\":[\"logs-1\"],\"time_field\":\"t\",\"feature_attributes\":[]}"),
                (22, "{\"params\":{\"index\":\"logs-*\",\"body\":{\"query\":{\"match_all\":{}}}}}"),
                (23, "{\"index\":{\"_index\":\"logs-1\"}}\n{}\n"),
                (24, "{\"source\":\"{\\\"query\\\":{\\\"term\\\":{\\\"f\\\":\\\"{{v}}\\\"}}}\",\"params\":{\"v\":1}}"),
                (25, "{\"scroll_id\":[\"abc\",\"_all\"]}"),
            ];
            return bodies
                .iter()
                .map(|(pick, body)| {
                    let mut v = vec![*pick];
                    v.extend_from_slice(body.as_bytes());
                    v
                })
                .collect();
        }
        "path" => [
            "/",
            "/test-index/_doc/1",
            "/restricted-index,test-index/_search",
            "/_all/_search",
            "/%3Clogs-%7Bnow%2Fd%7D%3E/_search",
            "/%72estricted-index/_doc/a%2Fb",
            "/-restricted-index,logs-*/_count",
            "/_bulk",
            "/test-index/_msearch/template",
            "/_plugins/_sql",
            "/_snapshot/repo/snap/_restore",
            "/_cat/indices?v",
            "//test-index//_mget",
            "/a/../b",
            "/_index_template/t",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "evaluate" => vec![
            "POST /_bulk\n{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"title\":\"ok\"}\n{\"delete\":{\"_index\":\"logs-1\",\"_id\":\"2\"}}\n".into(),
            "POST /_bulk\n{\"index\":{\"_index\":\"restricted-index\",\"_id\":\"2\"}}\n{\"title\":\"nope\"}\n".into(),
            "PUT /test-index/_bulk?refresh=true\n{\"create\":{}}\n{\"_index\":\"restricted-index\"}\n{\"update\":{\"_id\":\"1\"}}\n{\"doc\":{}}\n".into(),
            "GET /_mget\n{\"docs\":[{\"_index\":\"test-index\",\"_id\":\"1\"},{\"_index\":\"logs-1\",\"_id\":\"2\"}]}".into(),
            "POST /test-index/_mget\n{\"ids\":[\"1\"]}".into(),
            "GET /_mget?source=%7B%22docs%22%3A%5B%7B%22_index%22%3A%22test-index%22%2C%22_id%22%3A%221%22%7D%5D%7D&source_content_type=application%2Fjson\n".into(),
            "GET /_msearch?source={\"index\":\"test-index\"}%0A{}%0A&source_content_type=application/x-ndjson\n".into(),
            "POST /_msearch\n{\"index\":\"test-index\"}\n{\"query\":{\"term\":{\"_index\":\"restricted-index\"}}}\n{\"indices\":[\"logs-1\"]}\n{}\n".into(),
            "POST /test-index/_msearch/template\n{}\n{\"id\":\"t\"}\n".into(),
            "POST /_reindex\n{\"source\":{\"index\":\"test-index\"},\"dest\":{\"index\":\"logs-new\"}}".into(),
            "POST /_reindex\n{\"source\":{\"index\":\"restricted-index\",\"remote\":{\"host\":\"https://other:9200\"}},\"dest\":{\"index\":\"logs-copy\"}}".into(),
            "POST /_aliases\n{\"actions\":[{\"add\":{\"index\":\"test-index\",\"alias\":\"logs-alias\"}},{\"remove_index\":{\"index\":\"logs-old\"}}]}".into(),
            "PUT /_index_template/t\n{\"index_patterns\":[\"restricted-*\"]}".into(),
            "GET /_all/_search\n".into(),
            "DELETE /restricted-index\n".into(),
            "GET /test-index,logs-1/_search?q=x\n".into(),
            "GET /%3Clogs-%7Bnow%2Fd%7D%3E/_search\n".into(),
            "HEAD /test-index\n".into(),
            "GET /secret-stuff/_doc/1\n".into(),
            "POST /_foo,restricted-index/_bulk?ignore_unavailable=true\n{\"index\":{}}\n{}\n".into(),
            "GET /_nothing,restricted-index/_search?expand_wildcards=all\n".into(),
            "POST /test-index/doc/_bulk\n{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n".into(),
            "GET /_search?index=restricted-index\n".into(),
            "POST /_bulk?index=test-index\n{\"index\":{}}\n{}\n".into(),
            "PUT /test-index/_alias/innocent\n{\"index\":\"restricted-index\"}".into(),
            "PUT /_index_template/t\n{\"index_patterns\":[\"restricted-index\"],\"template\":{\"aliases\":{\"a\":{}}}}".into(),
            "POST /_plugins/_ism/add/restricted-index\n{\"policy_id\":\"p\"}".into(),
            "POST /_dashboards/api/console/proxy?path=%2Frestricted-index%2F_search&method=GET\n".into(),
            "POST /_dashboards/internal/search/opensearch\n{\"params\":{\"index\":\"restricted-index\",\"body\":{}}}".into(),
            "GET //_search\n".into(),

        ],
        other => panic!("unknown fuzz target {other:?}"),
    };
    texts.into_iter().map(String::into_bytes).collect()
}
