//! The policy as a whole: statements, evaluation, messages, and every category of request
//! that once slipped past it.

use super::*;
use http::Method;

pub(crate) fn decide(policy: &Policy, method: Method, path: &str, body: Option<&str>) -> Decision {
    decide_as(policy, method, path, body, "192.0.2.1", None)
}

pub(crate) fn decide_as(
    policy: &Policy,
    method: Method,
    path: &str,
    body: Option<&str>,
    ip: &str,
    principal: Option<&str>,
) -> Decision {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let facts = RequestFacts {
        method: &method,
        raw_path: path,
        raw_query: query,
        content_type: Some("application/json"),
        content_encoding: None,
        client_ip: ip.parse().unwrap(),
        principal,
    };
    // A request without a body has an empty one, as the proxy hands it over.
    let body = InMemory(body.unwrap_or("").as_bytes());
    policy.evaluate(&facts, Some(&body))
}

/// The statement a denial names (`None` for an Allow).
fn denier(d: &Decision) -> Option<&str> {
    match d {
        Decision::Deny { statement, .. } => statement.as_deref(),
        Decision::Allow { .. } => None,
    }
}

/// What the fuzzer found: names OpenSearch reads differently from a plain split and trim.
#[test]
fn names_are_checked_as_opensearch_may_read_them() {
    let allow_list = Policy::from_json(
        r#"{"Statement":{"Sid":"Some","Effect":"Allow","Action":"es:ESHttp*",
            "Resource":["test-index","test-index/*","logs-1","logs-1/*","logs-2","logs-2/*",
                        "logs-*","_aliases","_msearch","_msearch/template"]}}"#,
    )
    .unwrap();
    let denied = |method: Method, path: &str, body: Option<&str>| {
        !matches!(
            decide(&allow_list, method, path, body),
            Decision::Allow { .. }
        )
    };
    // U+2028 is not white space to OpenSearch: `\u2028logs-old` is another index.
    assert!(denied(
        Method::POST,
        "/_aliases",
        Some(r#"{"actions":[{"remove_index":{"index":"\u2028logs-old"}}]}"#)
    ));
    // An alias action's index is one name: `,logs-old` is not `logs-old`.
    assert!(denied(
        Method::POST,
        "/_aliases",
        Some(r#"{"actions":[{"remove_index":{"index":",logs-old"}}]}"#)
    ));
    // Elements of an `indices` array are names; a string is a comma list.
    assert!(denied(
        Method::POST,
        "/_msearch",
        Some("{\"indices\":[\",logs-1\"]}\n{}\n")
    ));
    assert!(!denied(
        Method::POST,
        "/_msearch",
        Some("{\"index\":\"logs-1,logs-2\"}\n{}\n")
    ));
    // `%2F` inside the index segment.
    assert!(denied(
        Method::POST,
        "/test-index%2F/_msearch/template",
        Some("{}\n{}\n")
    ));
    assert!(!denied(Method::GET, "/logs-1,logs-2/_search", None));
}

#[test]
fn paths_too_costly_to_check_are_denied_and_real_index_lists_are_not() {
    let policy = Policy::from_json(
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"es:*","Resource":"*"},
            {"Sid":"NoRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted-index/*"}]}"#,
    )
    .unwrap();
    // 16000 index items, each followed by a 32 KB rest: 500 MB of resources to check.
    let costly = format!(
        "/{}/_doc/{}",
        vec!["a"; 16_000].join(","),
        "x".repeat(32_000)
    );

    match decide(&policy, Method::GET, &costly, None) {
        Decision::Deny {
            reason, statement, ..
        } => {
            assert!(reason.contains("too many to check"), "{reason}");
            assert_eq!(statement.as_deref(), Some("NoRestricted"), "as every index");
        }
        d => panic!("{d:?}"),
    }
    // A thousand daily indices in one search, as Dashboards may send, is checked as usual.
    let days: Vec<String> = (0..1000)
        .map(|d| format!("logs-2026.{:02}.{:02}", d % 12 + 1, d % 28 + 1))
        .collect();
    let search = format!("/{}/_search", days.join(","));
    assert!(matches!(
        decide(&policy, Method::GET, &search, None),
        Decision::Allow { .. }
    ));
    let with_restricted = format!("/{},restricted-index/_search", days.join(","));
    assert!(matches!(
        decide(&policy, Method::GET, &with_restricted, None),
        Decision::Deny { statement: Some(s), .. } if s.contains("NoRestricted")
    ));
}

/// Access-control guide, example 1: allow `es:ESHttp*` on `test-index/*` and `_bulk`.
const GUIDE_BULK: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Principal": {"AWS": ["arn:aws:iam::123456789012:user/test-user"]},
    "Action": ["es:ESHttp*"],
    "Resource": [
      "arn:aws:es:us-west-1:987654321098:domain/my-domain/test-index/*",
      "arn:aws:es:us-west-1:987654321098:domain/my-domain/_bulk"
    ]
  }]
}"#;

/// Access-control guide, example 2: allow everything, deny `restricted-index/*`.
const GUIDE_DENY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "es:*", "Resource": "arn:aws:es:us-west-1:987654321098:domain/my-domain/*"},
    {"Sid": "DenyRestricted", "Effect": "Deny", "Action": "es:*",
     "Resource": "arn:aws:es:us-west-1:987654321098:domain/my-domain/restricted-index/*"}
  ]
}"#;

#[test]
fn guide_example_bulk_body_cannot_escape_the_allowed_index() {
    let p = Policy::from_json(GUIDE_BULK).unwrap();
    let sneaky = "{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"title\":\"ok\"}\n\
                  {\"index\":{\"_index\":\"restricted-index\",\"_id\":\"2\"}}\n{\"title\":\"nope\"}\n";
    let d = decide(&p, Method::POST, "/_bulk", Some(sneaky));
    assert!(!d.is_allowed());
    assert_eq!(
        d.reason(),
        "es:ESHttpPost on restricted-index/_doc/2 (bulk, from the body, line 3): no statement allows it (default deny)"
    );
    let Decision::Deny {
        statement,
        action,
        resource,
        ..
    } = &d
    else {
        unreachable!()
    };
    assert_eq!(statement.as_deref(), Some("default deny"));
    assert_eq!(action, "es:ESHttpPost");
    assert_eq!(resource, "restricted-index/_doc/2");

    let fine = "{\"index\":{\"_index\":\"test-index\",\"_id\":\"1\"}}\n{\"title\":\"ok\"}\n\
                {\"delete\":{\"_index\":\"test-index\",\"_id\":\"2\"}}\n";
    assert_eq!(
        decide(&p, Method::POST, "/_bulk", Some(fine)),
        Decision::Allow {
            statement: Some("Statement[0]".into()),
            resource: "_bulk".into()
        }
    );
    // The path form with a default index is fine too, the other index is not.
    assert!(decide(
        &p,
        Method::POST,
        "/test-index/_bulk",
        Some("{\"index\":{}}\n{}\n")
    )
    .is_allowed());
    assert!(!decide(
        &p,
        Method::POST,
        "/restricted-index/_bulk",
        Some("{\"index\":{}}\n{}\n")
    )
    .is_allowed());
    // Allows stay as narrow as written: `test-index/*` is not the index itself.
    assert!(!decide(&p, Method::PUT, "/test-index", None).is_allowed());
    assert!(decide(&p, Method::PUT, "/test-index/_doc/1", None).is_allowed());
}

#[test]
fn guide_example_deny_covers_index_and_wildcards() {
    let p = Policy::from_json(GUIDE_DENY).unwrap();
    for (m, path) in [
        (Method::GET, "/_all/_search"),
        (Method::GET, "/*/_search"),
        (Method::GET, "/r*/_search"),
        (Method::GET, "/_search"),
        (Method::GET, "/test-index,restricted-index/_search"),
        (Method::GET, "/restricted-index/_search"),
        (Method::DELETE, "/restricted-index"),
        (Method::DELETE, "/_all"),
        (Method::GET, "/_count"),
        (Method::GET, "/%72estricted-index/_doc/1"),
        (Method::POST, "/_plugins/_sql"),
        (Method::POST, "/_snapshot/repo/snap/_restore"),
    ] {
        let d = decide(&p, m.clone(), path, None);
        assert!(!d.is_allowed(), "{m} {path} must be denied");
        let Decision::Deny { statement, .. } = &d else {
            unreachable!()
        };
        assert_eq!(statement.as_deref(), Some("DenyRestricted"), "{m} {path}");
    }
    assert_eq!(
        decide(&p, Method::DELETE, "/restricted-index", None).reason(),
        "es:ESHttpDelete on restricted-index (indices.delete, from the path) denied by statement \"DenyRestricted\" \
         (Resource \"arn:aws:es:us-west-1:987654321098:domain/my-domain/restricted-index/*\")"
    );
    assert_eq!(
        decide(&p, Method::GET, "/_search", None).reason(),
        "es:ESHttpGet on */_search (search, the request names no index, so it may reach every index) denied by \
         statement \"DenyRestricted\" (Resource \"arn:aws:es:us-west-1:987654321098:domain/my-domain/restricted-index/*\")"
    );
    for (m, path) in [
        (Method::GET, "/test-index/_search"),
        (Method::GET, "/test-*/_search"),
        (Method::DELETE, "/test-index"),
        (Method::GET, "/_cluster/health"),
        (Method::GET, "/"),
        (Method::GET, "/restricted-index2/_search"),
    ] {
        assert!(
            decide(&p, m.clone(), path, None).is_allowed(),
            "{m} {path} must be allowed"
        );
    }
    // Bodies too.
    let d = decide(
        &p,
        Method::POST,
        "/_bulk",
        Some("{\"index\":{\"_index\":\"test-index\"}}\n{}\n{\"delete\":{\"_index\":\"restricted-index\",\"_id\":\"1\"}}\n"),
    );
    assert_eq!(
        d.reason(),
        "es:ESHttpPost on restricted-index/_doc/1 (bulk, from the body, line 3) denied by statement \
         \"DenyRestricted\" (Resource \"arn:aws:es:us-west-1:987654321098:domain/my-domain/restricted-index/*\")"
    );
    assert!(!decide(
        &p,
        Method::POST,
        "/_msearch",
        Some("{\"index\":\"r*\"}\n{}\n")
    )
    .is_allowed());
    assert!(!decide(&p, Method::POST, "/_msearch", Some("{}\n{}\n")).is_allowed());
    assert!(decide(&p, Method::POST, "/test-index/_msearch", Some("{}\n{}\n")).is_allowed());
    assert!(!decide(
        &p,
        Method::POST,
        "/_mget",
        Some(r#"{"docs":[{"_index":"restricted-index","_id":"1"}]}"#)
    )
    .is_allowed());
    assert!(!decide(
        &p,
        Method::POST,
        "/_reindex",
        Some(r#"{"source":{"index":"restricted-index"},"dest":{"index":"test-index"}}"#)
    )
    .is_allowed());
    assert!(!decide(
        &p,
        Method::POST,
        "/_aliases",
        Some(r#"{"actions":[{"add":{"index":"restricted-index","alias":"innocent"}}]}"#)
    )
    .is_allowed());
    assert!(!decide(
        &p,
        Method::POST,
        "/_aliases",
        Some(r#"{"actions":[{"remove_index":{"index":"restricted-index"}}]}"#)
    )
    .is_allowed());
    assert!(decide(
        &p,
        Method::POST,
        "/_aliases",
        Some(r#"{"actions":[{"add":{"index":"test-index","alias":"test-alias"}}]}"#)
    )
    .is_allowed());
}

#[test]
fn deny_wildcard_patterns() {
    let p = Policy::from_json(
        r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
                         {"Effect":"Deny","Action":"*","Resource":"restricted-*"}]}"#,
    )
    .unwrap();
    for path in [
        "/_all/_search",
        "/*/_search",
        "/r*/_search",
        "/_search",
        "/restricted-index",
    ] {
        assert!(!decide(&p, Method::GET, path, None).is_allowed(), "{path}");
    }
    assert!(decide(&p, Method::GET, "/test-*/_search", None).is_allowed());
    // Date math that may resolve into the denied names.
    assert!(!decide(
        &p,
        Method::GET,
        "/%3Crestricted-%7Bnow%2Fd%7D%3E/_search",
        None
    )
    .is_allowed());
    assert!(decide(&p, Method::GET, "/%3Clogs-%7Bnow%2Fd%7D%3E/_search", None).is_allowed());
}

#[test]
fn explicit_deny_wins_and_actions_matter() {
    let p = Policy::from_json(
        r#"{"Statement":[{"Sid":"All","Effect":"Allow","Action":"es:ESHttp*","Resource":"*"},
                         {"Sid":"NoDelete","Effect":"Deny","Action":"es:ESHttpDelete","Resource":"*"}]}"#,
    )
    .unwrap();
    assert!(decide(&p, Method::GET, "/x", None).is_allowed());
    let d = decide(&p, Method::DELETE, "/x", None);
    assert!(matches!(&d, Decision::Deny { statement: Some(s), .. } if s == "NoDelete"));
    let d = decide(&p, Method::OPTIONS, "/x", None);
    assert!(!d.is_allowed());
    assert!(d.reason().contains("OPTIONS"), "{}", d.reason());
}

#[test]
fn reads_only_what_was_allowed() {
    let p = Policy::from_json(
        r#"{"Statement":{"Effect":"Allow","Action":["es:ESHttpGet","es:ESHttpPost"],"Resource":["logs-*","_search"]}}"#,
    )
    .unwrap();
    assert!(decide(&p, Method::GET, "/logs-2024/_search", None).is_allowed());
    assert!(decide(&p, Method::GET, "/logs-*/_search", None).is_allowed());
    assert!(!decide(&p, Method::GET, "/l*/_search", None).is_allowed());
    // `_search` at the root reaches every index, not only logs-*.
    let d = decide(&p, Method::GET, "/_search", None);
    assert_eq!(
        d.reason(),
        "es:ESHttpGet on */_search (search, the request names no index, so it may reach every index): \
         no statement allows every index it may reach (default deny)"
    );
    assert!(!decide(&p, Method::PUT, "/logs-1/_doc/1", None).is_allowed());
}

#[test]
fn conditions_and_principals() {
    let p = Policy::from_json(
        r#"{"Statement":[
            {"Sid":"Office","Effect":"Allow","Action":"*","Resource":"*",
             "Condition":{"IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:db8::/32"]}}},
            {"Sid":"Dash","Effect":"Allow","Action":"es:ESHttpGet","Resource":"*","Principal":{"Proxy":"dashboards-user"}},
            {"Sid":"NoGuestWrites","Effect":"Deny","NotAction":["es:ESHttpGet","es:ESHttpHead"],"Resource":"*",
             "Principal":{"Proxy":["guest"]}}
        ]}"#,
    )
    .unwrap();
    assert!(p.uses_proxy_principals());
    let d = |m: Method, ip: &str, who: Option<&str>| decide_as(&p, m, "/idx/_doc/1", None, ip, who);
    assert!(d(Method::PUT, "2001:db8::5", Some("admin")).is_allowed());
    assert!(d(Method::PUT, "203.0.113.9", Some("admin")).is_allowed());
    assert!(!d(Method::PUT, "198.51.100.1", Some("admin")).is_allowed());
    assert!(d(Method::GET, "198.51.100.1", Some("dashboards-user")).is_allowed());
    assert!(!d(Method::GET, "198.51.100.1", Some("someone-else")).is_allowed());
    assert!(!d(Method::PUT, "203.0.113.9", Some("guest")).is_allowed());
    assert!(d(Method::GET, "203.0.113.9", Some("guest")).is_allowed());
    // Without inbound users, Principal is ignored: both statements apply to everyone.
    assert!(d(Method::GET, "198.51.100.1", None).is_allowed());
    assert!(!d(Method::PUT, "203.0.113.9", None).is_allowed());
    assert!(!Policy::from_json(GUIDE_DENY)
        .unwrap()
        .uses_proxy_principals());
}

/// Without a body, OpenSearch reads the body of these APIs from `?source=` (with
/// `source_content_type`): the proxy reads it there too.
#[test]
fn a_body_in_the_source_query_parameter_is_read() {
    let p = Policy::from_json(GUIDE_DENY).unwrap();
    let mget = "source=%7B%22docs%22%3A%5B%7B%22_index%22%3A%22restricted-index%22%2C%22_id%22%3A%221%22%7D%5D%7D&source_content_type=application/json";
    let d = decide(&p, Method::GET, &format!("/_mget?{mget}"), Some(""));
    assert_eq!(denier(&d), Some("DenyRestricted"), "{d:?}");
    assert!(
        d.reason().contains("from the body, docs[0]"),
        "{}",
        d.reason()
    );
    let search = "source=%7B%22query%22%3A%7B%22terms%22%3A%7B%22f%22%3A%7B%22index%22%3A%22restricted-index%22%2C%22id%22%3A%221%22%2C%22path%22%3A%22p%22%7D%7D%7D%7D&source_content_type=application/json";
    let d = decide(
        &p,
        Method::GET,
        &format!("/test-index/_search?{search}"),
        Some(""),
    );
    assert_eq!(denier(&d), Some("DenyRestricted"), "{d:?}");
    // Not JSON: cannot tell, so every index.
    let d = decide(
        &p,
        Method::GET,
        "/_msearch?%73ource=x&source_content_type=application/x-ndjson",
        Some(""),
    );
    assert_eq!(denier(&d), Some("DenyRestricted"), "{d:?}");
    assert!(
        d.reason().contains("cannot tell which indices"),
        "{}",
        d.reason()
    );
    // What it names otherwise is allowed; `sources` is not `source`.
    let fine = "source=%7B%22docs%22%3A%5B%7B%22_index%22%3A%22test-index%22%2C%22_id%22%3A%221%22%7D%5D%7D&source_content_type=application/json";
    assert!(decide(&p, Method::GET, &format!("/_mget?{fine}"), Some("")).is_allowed());
    assert!(decide(&p, Method::GET, "/test-index/_mget?sources=1", Some("")).is_allowed());
}

/// A body that cannot be read, or is missing, counts as touching every index: allowed only
/// where the policy allows the action on `*`.
#[test]
fn unreadable_or_missing_bodies_touch_every_index() {
    let p = Policy::from_json(GUIDE_DENY).unwrap();
    let d = decide(
        &p,
        Method::POST,
        "/_bulk",
        Some("{\"index\":{\"_index\":\"test-index\"}}\n{}\n{oops\n"),
    );
    assert_eq!(denier(&d), Some("DenyRestricted"));
    let reason = d.reason();
    assert!(
        reason.starts_with("es:ESHttpPost on */_bulk (bulk, cannot tell which indices, so all: the body cannot be read: line 3:"),
        "{reason}"
    );
    let not_read = RequestFacts {
        method: &Method::POST,
        raw_path: "/_bulk",
        raw_query: None,
        content_type: None,
        content_encoding: None,
        client_ip: "192.0.2.1".parse().unwrap(),
        principal: None,
    };
    let d = p.evaluate(&not_read, None);
    assert_eq!(denier(&d), Some("DenyRestricted"));
    assert!(
        d.reason().contains("the body was not read"),
        "{}",
        d.reason()
    );

    // Where `*` is allowed, so is what cannot be read (the endpoint answers it).
    let everything =
        Policy::from_json(r#"{"Statement":{"Effect":"Allow","Action":"es:*","Resource":"*"}}"#)
            .unwrap();
    assert!(decide(&everything, Method::POST, "/_bulk", Some("{oops\n")).is_allowed());
    let facts = |m: &'static Method, path: &'static str| RequestFacts {
        method: m,
        raw_path: path,
        raw_query: None,
        content_type: None,
        content_encoding: None,
        client_ip: "192.0.2.1".parse().unwrap(),
        principal: None,
    };
    assert!(p.plan(&facts(&Method::POST, "/_bulk")).needs_body());
    assert!(p.plan(&facts(&Method::POST, "/logs/_search")).needs_body());
    assert!(!p.plan(&facts(&Method::GET, "/logs/_doc/1")).needs_body());
    assert!(
        !p.plan(&facts(&Method::PUT, "/logs/_doc/1")).needs_body(),
        "a document names no index"
    );
    assert!(!Policy::read_only()
        .plan(&facts(&Method::POST, "/_bulk"))
        .needs_body());
    assert!(Policy::read_only()
        .plan(&facts(&Method::DELETE, "/_search/scroll"))
        .needs_body());
    assert!(!Policy::allow_all()
        .plan(&facts(&Method::POST, "/_bulk"))
        .needs_body());
    // SMILE, CBOR and YAML bodies are not read: every index.
    let body = InMemory(b"{\"index\":{\"_index\":\"test-index\"}}\n{}\n");
    let smile = RequestFacts {
        content_type: Some("application/smile"),
        ..facts(&Method::POST, "/_bulk")
    };
    let d = p.evaluate(&smile, Some(&body));
    assert!(d.reason().contains("application/smile"), "{}", d.reason());
}

#[test]
fn read_only_and_allow_all() {
    let ro = Policy::read_only();
    assert!(decide(&ro, Method::GET, "/restricted-index/_search", None).is_allowed());
    assert!(decide(&ro, Method::POST, "/x/_search", None).is_allowed());
    let d = decide(&ro, Method::POST, "/_bulk", Some("junk"));
    assert_eq!(
        d.reason(),
        "es:ESHttpPost on _bulk (bulk, from the path) denied by the read-only policy (not a read)"
    );
    assert!(matches!(&d, Decision::Deny { statement: Some(s), .. } if s == "read-only"));
    let all = Policy::allow_all();
    assert_eq!(
        decide(&all, Method::DELETE, "/_all", None),
        Decision::Allow {
            statement: None,
            resource: "_all".into()
        }
    );
}

#[test]
fn files_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("policy.json");
    std::fs::write(&f, GUIDE_DENY).unwrap();
    assert!(Policy::from_file(&f).is_ok());
    std::fs::write(
        &f,
        "{\"Statement\": [\n  {\"Effect\": \"Allow\", \"Action\": \"*\", \"Resource\": \"*\",}\n]}",
    )
    .unwrap();
    let e = Policy::from_file(&f).unwrap_err().to_string();
    assert!(e.contains("policy.json") && e.contains("line 2"), "{e}");
    let e = Policy::from_file(dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.json") && e.contains("cannot read"),
        "{e}"
    );
    let e = Policy::from_json(r#"{"Statement":{"Sid":"S1","Effect":"Allow","Action":"es:ESHttpGet","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("invalid policy: statement \"S1\": Condition operator \"Bool\""),
        "{e}"
    );
}

/// The three policies the attack tests use: allow `logs-*` and the `_` APIs, deny
/// `restricted*`; allow everything, deny `restricted-index/*`; read-only.
fn attack_policies() -> [(&'static str, Policy); 3] {
    [
        (
            "logs and APIs",
            Policy::from_json(
                r#"{"Statement":[
                    {"Sid":"Logs","Effect":"Allow","Action":"es:*","Resource":["logs-*","_*"]},
                    {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#,
            )
            .unwrap(),
        ),
        ("guide", Policy::from_json(GUIDE_DENY).unwrap()),
        ("read-only", Policy::read_only()),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn with_encoding(
    policy: &Policy,
    method: Method,
    path: &str,
    encoding: &str,
    body: &[u8],
) -> Decision {
    let facts = RequestFacts {
        method: &method,
        raw_path: path,
        raw_query: None,
        content_type: Some("application/x-ndjson"),
        content_encoding: Some(encoding),
        client_ip: "192.0.2.1".parse().unwrap(),
        principal: None,
    };
    policy.evaluate(&facts, Some(&InMemory(body)))
}

/// Requests that read, write, delete or re-point `restricted-index`, one per way in: each is
/// refused by the two statement policies (and, where it writes, by the read-only one).
#[test]
fn every_way_into_a_denied_index_is_refused() {
    #[rustfmt::skip]
    let attacks: &[(Method, &str, &str, bool)] = &[
        // (method, target, body, writes)
        // A first segment that starts with `_` but is no API: an index list.
        (Method::POST, "/_foo,restricted-index/_bulk?ignore_unavailable=true", "{\"index\":{}}\n{}\n", true),
        (Method::GET, "/_nothing,restricted-index/_search?ignore_unavailable=true&expand_wildcards=all", "", false),
        (Method::DELETE, "/_x,restricted-index", "", true),
        (Method::POST, "/%5Fx,restricted-index/_doc", "{}", true),
        // Legacy typed endpoints.
        (Method::POST, "/logs-1/doc/_bulk", "{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n", true),
        (Method::POST, "/logs-1/doc/_mget", "{\"docs\":[{\"_index\":\"restricted-index\",\"_id\":\"1\"}]}", false),
        (Method::GET, "/restricted-index/doc/1", "", false),
        // Index names in query parameters.
        (Method::GET, "/_search?index=restricted-index", "", false),
        (Method::POST, "/_bulk?index=restricted-index", "{\"index\":{}}\n{}\n", true),
        (Method::GET, "/_mget?index=restricted-index&ids=1", "", false),
        (Method::POST, "/_mtermvectors?index=restricted-index&ids=1", "", false),
        (Method::POST, "/_plugins/_ism/add?index=restricted-index", "{\"policy_id\":\"p\"}", true),
        (Method::GET, "/_cat/indices?index=restricted-index", "", false),
        // Index names in bodies.
        (Method::PUT, "/logs-1/_alias/innocent", "{\"index\":\"restricted-index\"}", true),
        (Method::PUT, "/_alias/innocent", "{\"index\":\"restricted-index\"}", true),
        (Method::POST, "/_aliases", "{\"actions\":[{\"add\":{\"index\":\"logs-1\",\"alias\":\"a\",\"filter\":{\"terms\":{\"f\":{\"index\":\"restricted-index\",\"id\":\"1\",\"path\":\"p\"}}}}}]}", true),
        (Method::PUT, "/_plugins/_ism/policies/p", "{\"policy\":{\"states\":[],\"ism_template\":[{\"index_patterns\":[\"restricted*\"]}]}}", true),
        (Method::POST, "/_plugins/_ism/add/restricted-index", "{\"policy_id\":\"p\"}", true),
        (Method::POST, "/_plugins/_ml/_train/kmeans", "{\"input_index\":[\"restricted-index\"],\"input_query\":{\"query\":{\"match_all\":{}}}}", true),
        (Method::POST, "/_plugins/_ml/_predict/kmeans/m1", "{\"input_index\":[\"restricted-index\"]}", false),
        (Method::POST, "/_plugins/_anomaly_detection/detectors", "{\"name\":\"d\",\"indices\":[\"restricted-index\"]}", true),
        (Method::POST, "/_plugins/_alerting/monitors", "{\"inputs\":[{\"search\":{\"indices\":[\"restricted-index\"],\"query\":{}}}]}", true),
        (Method::PUT, "/_index_template/t", "{\"index_patterns\":[\"restricted*\"],\"template\":{\"aliases\":{\"pub\":{}}}}", true),
        (Method::PUT, "/_template/t", "{\"index_patterns\":\"restricted-*\",\"aliases\":{\"pub\":{}}}", true),
        (Method::PUT, "/_component_template/c", "{\"template\":{\"aliases\":{\"pub\":{}}}}", true),
        (Method::PUT, "/_snapshot/repo/snap", "{\"indices\":\"restricted-index\"}", true),
        (Method::PUT, "/_snapshot/repo/snap", "", true),
        (Method::POST, "/_snapshot/repo/snap/_restore", "{\"indices\":\"logs-1\",\"rename_pattern\":\"(.+)\",\"rename_replacement\":\"restricted-index$1\"}", true),
        (Method::PUT, "/_data_stream/restricted-index", "", true),
        (Method::PUT, "/restricted-index/_clone/copy", "", true),
        (Method::PUT, "/logs-1/_clone/restricted-index", "", true),
        (Method::POST, "/logs-1/_split/s", "{\"aliases\":{\"restricted-index\":{}}}", true),
        (Method::POST, "/logs-1/_shrink/restricted-index", "", true),
        (Method::POST, "/innocent/_rollover/restricted-index", "", true),
        (Method::POST, "/logs-alias/_rollover", "", true),
        (Method::POST, "/_cluster/reroute", "{\"commands\":[{\"cancel\":{\"index\":\"restricted-index\",\"shard\":0,\"node\":\"n\"}}]}", true),
        (Method::POST, "/_reindex", "{\"source\":{\"index\":\"logs-1\",\"query\":{\"terms\":{\"f\":{\"index\":\"restricted-index\",\"id\":\"1\",\"path\":\"p\"}}}},\"dest\":{\"index\":\"logs-2\"}}", true),
        // Searches whose queries read another index.
        (Method::POST, "/logs-1/_search", "{\"query\":{\"terms\":{\"u\":{\"index\":\"restricted-index\",\"id\":\"1\",\"path\":\"f\"}}}}", false),
        (Method::POST, "/logs-1/_search", "{\"query\":{\"more_like_this\":{\"like\":[{\"_index\":\"restricted-index\",\"_id\":\"1\"}]}}}", false),
        (Method::POST, "/logs-1/_count", "{\"query\":{\"percolate\":{\"field\":\"q\",\"index\":\"restricted-index\",\"id\":\"1\"}}}", false),
        (Method::POST, "/logs-1/_search/template", "{\"source\":{\"query\":{\"terms\":{\"u\":{\"index\":\"{{i}}\",\"id\":\"1\",\"path\":\"f\"}}}},\"params\":{\"i\":\"restricted-index\"}}", false),
        // An empty index list, or a field that means all.
        (Method::GET, "//_search", "", false),
        (Method::GET, "/_search?index=", "", false),
        (Method::GET, "/_search", "", false),
        (Method::POST, "/_msearch", "{\"index\":[]}\n{}\n", false),
        // Dashboards' console proxy and internal searches; Kibana's.
        (Method::POST, "/_dashboards/api/console/proxy?path=%2Frestricted-index%2F_search&method=GET", "", false),
        (Method::POST, "/_dashboards/api/console/proxy?path=restricted-index&method=delete", "", true),
        (Method::POST, "/_dashboards/api/console/proxy?path=%2F_bulk&method=POST", "{\"index\":{\"_index\":\"restricted-index\"}}\n{}\n", true),
        (Method::POST, "/_dashboards/internal/search/opensearch", "{\"params\":{\"index\":\"restricted-index\",\"body\":{}}}", false),
        (Method::POST, "/_dashboards/internal/bsearch", "{\"batch\":[{\"request\":{\"params\":{\"index\":\"restricted-index\"}}}]}", false),
        (Method::POST, "/_dashboards/internal/_msearch", "{\"searches\":[{\"header\":{\"index\":\"restricted-index\"},\"body\":{}}]}", false),
        (Method::POST, "/_plugin/kibana/api/console/proxy?path=/restricted-index/_search&method=GET", "", false),
        (Method::GET, "/_plugin/kibana/elasticsearch/restricted-index/_search", "", false),
        // Unknown APIs and segments a server may read differently.
        (Method::POST, "/_plugins/_unheard_of/run", "{\"target\":\"restricted-index\"}", true),
        (Method::GET, "/logs-1/../restricted-index/_search", "", false),
        (Method::GET, "/logs-1%2F..%2F..%2Frestricted-index/_search", "", false),
        (Method::GET, "/_sql?format=json", "", false),
    ];
    for (name, policy) in attack_policies() {
        for (m, target, body, writes) in attacks {
            if name == "read-only" && !writes {
                continue;
            }
            let d = decide(&policy, m.clone(), target, Some(body));
            assert!(!d.is_allowed(), "{name}: {m} {target} {body} was allowed");
        }
    }
    // Compressed: the same bulk, gzip and deflate.
    let bulk = b"{\"index\":{\"_index\":\"logs-1\"}}\n{}\n{\"delete\":{\"_index\":\"restricted-index\",\"_id\":\"1\"}}\n";
    for (name, policy) in attack_policies() {
        let d = with_encoding(&policy, Method::POST, "/_bulk", "gzip", &gzip(bulk));
        assert!(!d.is_allowed(), "{name}");
    }
    // Under --read-only, releasing every scroll or point in time.
    let ro = Policy::read_only();
    for (m, target, body) in [
        (
            Method::DELETE,
            "/_search/scroll",
            "{\"scroll_id\":\"_all\"}",
        ),
        (
            Method::DELETE,
            "/_search/scroll",
            "{\"scroll_id\":[\"abc\",\"_all\"]}",
        ),
        (Method::DELETE, "/_search/scroll", "_all"),
        (Method::DELETE, "/_search/scroll?scroll_id=_all", ""),
        (Method::DELETE, "/_search/scroll/abc,_all", ""),
        (
            Method::DELETE,
            "/_search/point_in_time",
            "{\"pit_id\":[\"_all\"]}",
        ),
        (Method::DELETE, "/_search/point_in_time/_all", ""),
        (Method::GET, "/_refresh", ""),
        (Method::GET, "/_plugins/_notifications/feature/test/c1", ""),
    ] {
        let d = decide(&ro, m.clone(), target, Some(body));
        assert!(!d.is_allowed(), "read-only: {m} {target} {body}");
    }
}

/// Harmless traffic through the same APIs still passes: clients' bulks and searches (also
/// compressed), scrolls, Dashboards, plugin APIs whose bodies name allowed indices.
#[test]
fn harmless_traffic_on_allowed_indices_passes() {
    #[rustfmt::skip]
    let fine: &[(Method, &str, &str, bool)] = &[
        (Method::POST, "/_bulk", "{\"index\":{\"_index\":\"logs-1\",\"_id\":\"1\"}}\n{\"msg\":\"x\"}\n{\"delete\":{\"_index\":\"logs-2\",\"_id\":\"1\"}}\n", true),
        (Method::POST, "/logs-1/_bulk?refresh=true", "{\"index\":{}}\n{\"a\":1}\n", true),
        (Method::POST, "/logs-1/_search", "{\"query\":{\"bool\":{\"filter\":[{\"term\":{\"index\":\"a field named index\"}},{\"terms\":{\"index\":[\"v\"]}}]}},\"aggs\":{\"t\":{\"terms\":{\"field\":\"_index\"}}}}", false),
        (Method::GET, "/logs-*/_search?q=level:error&size=10", "", false),
        (Method::GET, "/%3Clogs-%7Bnow%2Fd%7D%3E/_search", "", false),
        (Method::POST, "/logs-1/_search?scroll=1m", "{\"size\":100}", false),
        (Method::POST, "/_search/scroll", "{\"scroll\":\"1m\",\"scroll_id\":\"FGluY2x1ZGVfY29udGV4dF91dWlk\"}", false),
        (Method::DELETE, "/_search/scroll", "{\"scroll_id\":[\"FGluY2x1ZGVfY29udGV4dF91dWlk\"]}", false),
        (Method::POST, "/_msearch", "{\"index\":\"logs-1\"}\n{\"query\":{\"match_all\":{}}}\n{\"index\":[\"logs-2\"]}\n{}\n", false),
        (Method::POST, "/_mget", "{\"docs\":[{\"_index\":\"logs-1\",\"_id\":\"1\"}]}", false),
        (Method::PUT, "/logs-1/_alias/logs-current", "", true),
        (Method::POST, "/_aliases", "{\"actions\":[{\"add\":{\"index\":\"logs-1\",\"alias\":\"logs-all\"}}]}", true),
        (Method::PUT, "/logs-3", "{\"settings\":{\"index\":{\"number_of_shards\":1}},\"mappings\":{\"properties\":{\"terms\":{\"type\":\"keyword\",\"index\":false}}},\"aliases\":{\"logs-w\":{}}}", true),
        (Method::PUT, "/_index_template/logs", "{\"index_patterns\":[\"logs-*\"],\"template\":{\"settings\":{\"index\":{\"number_of_shards\":1}}}}", true),
        (Method::PUT, "/_plugins/_ism/policies/rollover", "{\"policy\":{\"states\":[{\"name\":\"hot\",\"actions\":[{\"rollover\":{\"min_index_age\":\"1d\"}}]}],\"ism_template\":[{\"index_patterns\":[\"logs-*\"]}]}}", true),
        (Method::POST, "/_plugins/_ism/add/logs-1", "{\"policy_id\":\"rollover\"}", true),
        (Method::POST, "/_plugins/_anomaly_detection/detectors", "{\"name\":\"d\",\"indices\":[\"logs-1\"],\"time_field\":\"t\"}", true),
        (Method::PUT, "/_snapshot/repo/snap", "{\"indices\":\"logs-1,logs-2\"}", true),
        (Method::GET, "/_cluster/health", "", false),
        (Method::GET, "/_cat/indices?v", "", false),
        (Method::HEAD, "/logs-1", "", false),
        (Method::POST, "/_dashboards/api/console/proxy?path=%2Flogs-1%2F_search&method=GET", "", false),
        (Method::POST, "/_dashboards/internal/search/opensearch", "{\"params\":{\"index\":\"logs-*\",\"body\":{\"query\":{\"match_all\":{}}}}}", false),
        (Method::POST, "/_dashboards/internal/bsearch", "{\"batch\":[{\"request\":{\"params\":{\"index\":\"logs-*\",\"body\":{}}},\"options\":{\"strategy\":\"opensearch\"}}]}", false),
        (Method::GET, "/_dashboards/app/discover", "", false),
        (Method::GET, "/_dashboards/1234/bundles/core/core.entry.js", "", false),
        (Method::POST, "/_dashboards/api/saved_objects/_bulk_get", "[{\"type\":\"index-pattern\",\"id\":\"1\"}]", false),
        (Method::GET, "/_dashboards/api/index_patterns/_fields_for_wildcard?pattern=logs-*&meta_fields=_source", "", false),
    ];
    for (name, policy) in attack_policies() {
        for (m, target, body, writes) in fine {
            if name == "read-only" && *writes {
                continue;
            }
            let d = decide(&policy, m.clone(), target, Some(body));
            assert!(
                d.is_allowed(),
                "{name}: {m} {target} {body}: {}",
                d.reason()
            );
        }
        let bulk = b"{\"index\":{\"_index\":\"logs-1\"}}\n{}\n";
        if name != "read-only" {
            for encoding in ["gzip", "x-gzip"] {
                let d = with_encoding(&policy, Method::POST, "/_bulk", encoding, &gzip(bulk));
                assert!(d.is_allowed(), "{name}: {}", d.reason());
            }
        }
    }
}

/// A decompression bomb is not inflated past the bound: it counts as every index.
#[test]
fn compressed_bodies_are_bounded() {
    let guide = Policy::from_json(GUIDE_DENY).unwrap();
    let mut bomb = b"{\"index\":{\"_index\":\"logs-1\"}}\n{\"x\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b'a', 64 << 20));
    bomb.extend_from_slice(b"\"}\n");
    let packed = gzip(&bomb);
    let d = with_encoding(&guide, Method::POST, "/_bulk", "gzip", &packed);
    assert_eq!(denier(&d), Some("DenyRestricted"));
    assert!(d.reason().contains("inflates past"), "{}", d.reason());
    let d = with_encoding(&guide, Method::POST, "/_bulk", "br", b"...");
    assert!(d.reason().contains("`br`"), "{}", d.reason());
    // The bound is --max-body: a smaller one refuses what the default allows.
    let small = Policy::from_json(GUIDE_DENY)
        .unwrap()
        .with_inflate_limit(1000);
    let mut body = b"{\"index\":{\"_index\":\"logs-1\"}}
{\"x\":\""
        .to_vec();
    body.extend(std::iter::repeat_n(b'a', 2000));
    body.extend_from_slice(
        b"\"}
",
    );
    let body = &body[..];
    assert!(with_encoding(&guide, Method::POST, "/_bulk", "gzip", &gzip(body)).is_allowed());
    assert!(!with_encoding(&small, Method::POST, "/_bulk", "gzip", &gzip(body)).is_allowed());
}

/// The 403 says which API, which index (or that it cannot tell, so all) and which statement.
#[test]
fn denials_say_api_index_and_statement() {
    let p = Policy::from_json(GUIDE_DENY).unwrap();
    let d = decide(&p, Method::PATCH, "/_plugins/_unheard_of/run", Some("{}"));
    assert_eq!(denier(&d), Some("DenyRestricted"));
    assert!(
        d.reason().starts_with("es:ESHttpPatch on */_plugins/_unheard_of/run (unknown, cannot tell which indices, so all: the proxy knows no PATCH /_plugins/_unheard_of/run API"),
        "{}",
        d.reason()
    );
    let Decision::Deny { api, resource, .. } = decide(
        &p,
        Method::PUT,
        "/logs-1/_alias/a",
        Some("{\"index\":\"restricted-index\"}"),
    ) else {
        panic!()
    };
    assert_eq!(
        (api.as_str(), resource.as_str()),
        ("indices.put_alias", "restricted-index/_alias")
    );
}
