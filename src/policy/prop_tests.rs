//! Property tests: no generated multi-index body naming a denied index is ever
//! allowed, bodies naming only allowed indices are, and arbitrary input never
//! panics (and unparseable input is denied).

use http::Method;
use proptest::prelude::*;
use serde_json::Value;

use super::{BodySource, Decision, InMemory, Policy, RequestFacts};

const DENIED: &str = "restricted-index";
const ALLOWED: [&str; 3] = ["test-index", "logs-1", "other"];

fn deny_policy() -> Policy {
    Policy::from_json(
        r#"{"Statement":[{"Effect":"Allow","Action":"es:*","Resource":"*"},
                          {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted-index/*"}]}"#,
    )
    .unwrap()
}

fn allow_policy() -> Policy {
    Policy::from_json(
        r#"{"Statement":{"Effect":"Allow","Action":"es:ESHttp*",
            "Resource":["test-index/*","logs-1/*","other/*","_bulk","_mget","_msearch"]}}"#,
    )
    .unwrap()
}

/// `PROPTEST_CASES` when set (to run longer, or shorter), else this module's default.
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_CASES={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Allows everything but the documents whose ids start with 9 in test-index: the verdict on a
/// bulk line depends on its id.
fn id_policy() -> Policy {
    Policy::from_json(
        r#"{"Statement":[{"Effect":"Allow","Action":"es:*","Resource":"*"},
                          {"Sid":"DenyNines","Effect":"Deny","Action":"es:*","Resource":"test-index/_doc/9*"}]}"#,
    )
    .unwrap()
}

fn run(policy: &Policy, method: Method, path: &str, body: &[u8]) -> Decision {
    run_with(policy, method, path, None, None, body)
}

fn run_with(
    policy: &Policy,
    method: Method,
    path: &str,
    query: Option<&str>,
    encoding: Option<&str>,
    body: &[u8],
) -> Decision {
    let facts = RequestFacts {
        method: &method,
        raw_path: path,
        raw_query: query,
        content_type: Some("application/x-ndjson"),
        content_encoding: encoding,
        client_ip: "127.0.0.1".parse().unwrap(),
        principal: None,
    };
    policy.evaluate(&facts, Some(&InMemory(body) as &dyn BodySource))
}

/// `name` percent-encoded where `escapes` says (as a path segment or query value).
fn percent(name: &str, escapes: &[bool]) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        let esc = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        if esc || !c.is_ascii_alphanumeric() && !"-_.".contains(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// How a JSON string is spelled: each char raw or `\uXXXX`, `/` maybe as `\/`.
fn spell(s: &str, escapes: &[bool]) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        let esc = escapes
            .get(i % escapes.len().max(1))
            .copied()
            .unwrap_or(false);
        match c {
            '/' if esc => out.push_str("\\/"),
            c if esc => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("  \t ".to_string()),
        Just("\r".to_string()),
    ]
}

fn escapes() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), 1..6)
}

/// An index choice: `None` = the denied index, `Some(i)` = ALLOWED[i].
fn index_choice() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), (0..ALLOWED.len()).prop_map(Some)]
}

fn name(choice: Option<usize>) -> &'static str {
    choice.map_or(DENIED, |i| ALLOWED[i])
}

/// Documents that look like actions/headers on the denied index.
const DECOYS: [&str; 5] = [
    r#"{"index":{"_index":"restricted-index"}}"#,
    r#"{"delete":{"_index":"restricted-index","_id":"1"}}"#,
    r#"{"index":"restricted-index"}"#,
    r#"{"title":"restricted-index"}"#,
    "",
];

#[derive(Clone, Debug)]
struct BulkOp {
    kind: usize,
    index: Option<Option<usize>>, // None: use the path default
    id: Option<u32>,
    ws: (String, String, String),
    esc: Vec<bool>,
    key_esc: bool,
    decoy: usize,
    blank_before: bool,
}

fn bulk_op() -> impl Strategy<Value = BulkOp> {
    (
        0..4usize,
        prop::option::weighted(0.8, index_choice()),
        prop::option::of(0..1000u32),
        (ws(), ws(), ws()),
        escapes(),
        any::<bool>(),
        0..DECOYS.len(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(kind, index, id, ws, esc, key_esc, decoy, blank_before)| BulkOp {
                kind,
                index,
                id,
                ws,
                esc,
                key_esc,
                decoy,
                blank_before,
            },
        )
}

fn render_bulk(ops: &[BulkOp]) -> String {
    let mut out = String::new();
    for op in ops {
        if op.blank_before {
            out.push_str(" \n");
        }
        let kind = ["index", "create", "update", "delete"][op.kind];
        let (a, b, c) = &op.ws;
        let mut fields = Vec::new();
        if let Some(choice) = op.index {
            let key = if op.key_esc {
                "\"_ind\\u0065x\""
            } else {
                "\"_index\""
            };
            fields.push(format!("{key}{a}:{b}{}", spell(name(choice), &op.esc)));
        }
        if let Some(id) = op.id {
            fields.push(format!("\"_id\":{c}\"{id}\""));
        }
        out.push_str(&format!(
            "{a}{{{b}\"{kind}\"{c}:{a}{{{}}}{b}}}{c}\n",
            fields.join(&format!("{b},{c}"))
        ));
        if kind != "delete" {
            out.push_str(DECOYS[op.decoy]);
            out.push('\n');
        }
    }
    out
}

#[derive(Clone, Debug)]
struct Header {
    indices: Vec<Option<usize>>,
    as_array: bool,
    key: &'static str,
    esc: Vec<bool>,
    ws: String,
    decoy: usize,
}

fn header() -> impl Strategy<Value = Header> {
    (
        prop::collection::vec(index_choice(), 1..4),
        any::<bool>(),
        prop_oneof![Just("index"), Just("indices")],
        escapes(),
        ws(),
        0..DECOYS.len(),
    )
        .prop_map(|(indices, as_array, key, esc, ws, decoy)| Header {
            indices,
            as_array,
            key,
            esc,
            ws,
            decoy,
        })
}

fn render_msearch(hs: &[Header]) -> String {
    let mut out = String::new();
    for h in hs {
        let names: Vec<&str> = h.indices.iter().map(|c| name(*c)).collect();
        let value = if h.as_array {
            format!(
                "[{}]",
                names
                    .iter()
                    .map(|n| spell(n, &h.esc))
                    .collect::<Vec<_>>()
                    .join(&format!(",{}", h.ws))
            )
        } else {
            spell(&names.join(","), &h.esc)
        };
        out.push_str(&format!(
            "{{{w}\"{}\"{w}:{w}{value}{w}}}\n",
            h.key,
            w = h.ws
        ));
        out.push_str(DECOYS[h.decoy]);
        out.push('\n');
    }
    out
}

fn render_mget(docs: &[(Option<usize>, u32, Vec<bool>)], ws: &str) -> String {
    let docs: Vec<String> = docs
        .iter()
        .map(|(c, id, esc)| {
            format!(
                "{{{ws}\"_index\":{ws}{},\"_id\":\"{id}\"{ws}}}",
                spell(name(*c), esc)
            )
        })
        .collect();
    format!(
        "{{{ws}\"docs\"{ws}:{ws}[{}]{ws}}}",
        docs.join(&format!(",{ws}\n"))
    )
}

fn all_allowed<T>(v: &[T], f: impl Fn(&T) -> bool) -> bool {
    v.iter().all(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    #[test]
    fn bulk_naming_a_denied_index_is_never_allowed(
        mut ops in prop::collection::vec(bulk_op(), 1..8),
        at in any::<prop::sample::Index>(),
        default_path in any::<bool>(),
    ) {
        let i = at.index(ops.len());
        ops[i].index = Some(None);
        let body = render_bulk(&ops);
        let path = if default_path { "/test-index/_bulk" } else { "/_bulk" };
        for p in [deny_policy(), allow_policy()] {
            let d = run(&p, Method::POST, path, body.as_bytes());
            prop_assert!(!d.is_allowed(), "allowed: {body}");
            if default_path {
                // (without a default index, an earlier action without _index may be refused first)
                prop_assert!(d.reason().contains(DENIED), "{}", d.reason());
            }
        }
    }

    #[test]
    fn bulk_naming_only_allowed_indices_is_allowed(
        mut ops in prop::collection::vec(bulk_op(), 0..8),
        choices in prop::collection::vec(0..ALLOWED.len(), 8),
    ) {
        for (op, c) in ops.iter_mut().zip(choices) {
            if op.index.is_some() {
                op.index = Some(Some(c));
            }
        }
        let body = render_bulk(&ops);
        for p in [deny_policy(), allow_policy()] {
            let d = run(&p, Method::POST, "/test-index/_bulk", body.as_bytes());
            prop_assert!(d.is_allowed(), "{}\n{body}", d.reason());
        }
    }

    #[test]
    fn bulk_lines_share_a_verdict_only_where_the_id_cannot_change_it(
        runs in prop::collection::vec(
            (
                bulk_op(),
                prop::collection::vec(prop::option::weighted(0.9, 0..1000u32), 1..6),
                any::<bool>(),
            ),
            0..5,
        ),
    ) {
        // Runs of lines alike but for their ids, as real bulks are; half of them spelled
        // plainly, into test-index.
        let ops: Vec<BulkOp> = runs
            .iter()
            .flat_map(|(op, ids, plain)| {
                let mut op = op.clone();
                if *plain {
                    (op.esc, op.key_esc, op.index) = (vec![false], false, Some(Some(0)));
                }
                ids.iter().map(move |id| BulkOp { id: *id, ..op.clone() })
            })
            .collect();
        let body = render_bulk(&ops);
        let facts = RequestFacts {
            method: &Method::POST,
            raw_path: "/test-index/_bulk",
            raw_query: None,
            content_type: Some("application/x-ndjson"),
            content_encoding: None,
            client_ip: "127.0.0.1".parse().unwrap(),
            principal: None,
        };
        let source = InMemory(body.as_bytes());
        for p in [deny_policy(), allow_policy(), id_policy()] {
            let plan = p.plan(&facts);
            let fast = p.decide(&plan, &facts, Some(&source));
            let every = p.decide_telling(&plan, &facts, Some(&source), None);
            prop_assert_eq!(fast.is_allowed(), every.is_allowed(), "{}", body);
            prop_assert_eq!(fast.reason(), every.reason());
        }
        let nine = ops.iter().any(|op| {
            matches!(op.kind, 0 | 3)
                && matches!(op.index, None | Some(Some(0)))
                && op.id.is_some_and(|id| id.to_string().starts_with('9'))
        });
        let d = run(&id_policy(), Method::POST, "/test-index/_bulk", body.as_bytes());
        prop_assert_eq!(d.is_allowed(), !nine, "{}\n{}", d.reason(), body);
    }

    #[test]
    fn msearch_naming_a_denied_index_is_never_allowed(
        mut hs in prop::collection::vec(header(), 1..6),
        at in any::<prop::sample::Index>(),
        template in any::<bool>(),
    ) {
        let i = at.index(hs.len());
        let j = at.index(hs[i].indices.len());
        hs[i].indices[j] = None;
        let body = render_msearch(&hs);
        let path = if template { "/_msearch/template" } else { "/_msearch" };
        let d = run(&deny_policy(), Method::POST, path, body.as_bytes());
        prop_assert!(!d.is_allowed(), "allowed: {body}");
        let d = run(&allow_policy(), Method::GET, "/_msearch", body.as_bytes());
        prop_assert!(!d.is_allowed(), "allowed: {body}");
    }

    #[test]
    fn msearch_naming_only_allowed_indices_is_allowed(hs in prop::collection::vec(header(), 0..6)) {
        prop_assume!(all_allowed(&hs, |h| h.indices.iter().all(Option::is_some)));
        let body = render_msearch(&hs);
        for p in [deny_policy(), allow_policy()] {
            let d = run(&p, Method::POST, "/_msearch", body.as_bytes());
            prop_assert!(d.is_allowed(), "{}\n{body}", d.reason());
        }
    }

    #[test]
    fn mget_naming_a_denied_index_is_never_allowed(
        mut docs in prop::collection::vec((index_choice(), 0..100u32, escapes()), 1..6),
        at in any::<prop::sample::Index>(),
        ws in ws(),
    ) {
        let i = at.index(docs.len());
        docs[i].0 = None;
        let body = render_mget(&docs, &ws);
        for p in [deny_policy(), allow_policy()] {
            let d = run(&p, Method::POST, "/_mget", body.as_bytes());
            prop_assert!(!d.is_allowed(), "allowed: {body}");
        }
        let all_ok: Vec<_> = docs.iter().map(|(_, id, e)| (Some(0), *id, e.clone())).collect();
        let d = run(&allow_policy(), Method::POST, "/_mget", render_mget(&all_ok, &ws).as_bytes());
        prop_assert!(d.is_allowed(), "{}", d.reason());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// `?index=` names indices on the APIs that take them in the path, however it is spelled.
    #[test]
    fn index_query_parameters_are_checked(
        choices in prop::collection::vec(index_choice(), 1..4),
        esc in escapes(),
        api in prop_oneof![Just("/_search"), Just("/_count"), Just("/_mget"), Just("/_bulk"), Just("/_msearch")],
    ) {
        let names: Vec<&str> = choices.iter().map(|c| name(*c)).collect();
        let query = format!("index={}", percent(&names.join(","), &esc));
        let denied = choices.contains(&None);
        let d = run_with(&deny_policy(), Method::POST, api, Some(&query), None, b"");
        prop_assert_eq!(d.is_allowed(), !denied, "{} {}?{}: {}", "POST", api, query, d.reason());
    }

    /// A segment in an index position is an index expression, whatever it starts with.
    #[test]
    fn underscore_items_never_hide_a_denied_index(
        choices in prop::collection::vec(index_choice(), 1..4),
        junk in "_[a-z]{0,6}",
        esc in escapes(),
        api in prop_oneof![Just("_search"), Just("_bulk"), Just("_doc/1"), Just("_mapping")],
    ) {
        let names: Vec<&str> = choices.iter().map(|c| name(*c)).collect();
        let path = format!("/{}/{api}", percent(&format!("{junk},{}", names.join(",")), &esc));
        let body = "{\"index\":{}}\n{}\n";
        for p in [deny_policy(), allow_policy()] {
            let d = run(&p, Method::POST, &path, body.as_bytes());
            prop_assert!(!d.is_allowed(), "allowed: {path}");
        }
    }

    /// A put-alias body's `index` overrides the path's: it is what is checked.
    #[test]
    fn put_alias_bodies_name_their_index(
        choices in prop::collection::vec(index_choice(), 1..4),
        esc in escapes(),
        ws in ws(),
    ) {
        let names: Vec<&str> = choices.iter().map(|c| name(*c)).collect();
        let body = format!("{{{ws}\"index\"{ws}:{ws}{}{ws},\"alias\":\"other\"}}", spell(&names.join(","), &esc));
        let d = run(&deny_policy(), Method::PUT, "/test-index/_alias/other", body.as_bytes());
        prop_assert_eq!(d.is_allowed(), !choices.contains(&None), "{}: {}", body, d.reason());
    }

    /// A compressed bulk is decided as the same bulk uncompressed.
    #[test]
    fn compressed_bulks_are_decided_as_sent_plain(ops in prop::collection::vec(bulk_op(), 0..8)) {
        let body = render_bulk(&ops);
        let packed = gzip(body.as_bytes());
        for p in [deny_policy(), allow_policy()] {
            let plain = run(&p, Method::POST, "/test-index/_bulk", body.as_bytes());
            let gz = run_with(&p, Method::POST, "/test-index/_bulk", None, Some("gzip"), &packed);
            prop_assert_eq!(plain.is_allowed(), gz.is_allowed(), "{}\n{}", gz.reason(), body);
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z_*,<>{}/ -]{0,10}".prop_map(Value::from),
        Just(Value::from(DENIED)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![
            "[a-z_]{1,6}",
            Just("_index".to_string()),
            Just("index".to_string()),
            Just("docs".to_string()),
            Just("actions".to_string()),
            Just("add".to_string()),
            Just("source".to_string()),
            Just("dest".to_string()),
            Just("delete".to_string()),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

const BODY_PATHS: [&str; 8] = [
    "/_bulk",
    "/test-index/_bulk",
    "/_msearch",
    "/_msearch/template",
    "/_mget",
    "/_mtermvectors",
    "/_reindex",
    "/_aliases",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic; a body whose first line is not JSON is denied.
    #[test]
    fn arbitrary_bytes_never_panic_and_garbage_is_denied(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        nl in prop::collection::vec(0..400usize, 0..6),
    ) {
        let mut bytes = bytes;
        for i in nl {
            if i < bytes.len() {
                bytes[i] = b'\n';
            }
        }
        let mut garbage = b"x".to_vec();
        garbage.extend_from_slice(&bytes);
        for p in [deny_policy(), allow_policy(), Policy::read_only()] {
            for path in BODY_PATHS {
                let _ = run(&p, Method::POST, path, &bytes);
                let d = run(&p, Method::POST, path, &garbage);
                if !matches!(p.kind, super::Kind::ReadOnly) {
                    prop_assert!(!d.is_allowed(), "{path} allowed garbage");
                }
            }
        }
    }

    /// Arbitrary JSON, as a document or as NDJSON lines, never panics.
    #[test]
    fn arbitrary_json_never_panics(values in prop::collection::vec(arb_json(), 1..5)) {
        let doc = values[0].to_string();
        let lines: String = values.iter().map(|v| format!("{v}\n")).collect();
        for path in BODY_PATHS {
            for body in [&doc, &lines] {
                let d = run(&deny_policy(), Method::POST, path, body.as_bytes());
                let _ = d.reason();
                let _ = run(&allow_policy(), Method::PUT, path, body.as_bytes());
            }
        }
    }

    /// Arbitrary paths never panic.
    #[test]
    fn arbitrary_paths_never_panic(path in "(/[a-z%0-9A-F_*,.<>{}-]{0,8}){0,5}", method in 0..7usize) {
        let m = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS][method].clone();
        for p in [deny_policy(), allow_policy(), Policy::read_only()] {
            let _ = run(&p, m.clone(), &path, b"");

        }
    }
}
