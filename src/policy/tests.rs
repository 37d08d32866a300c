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
        "es:ESHttpPost on _bulk (bulk, from the path) denied by the read-only policy (bulk changes data)"
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
