//! The local access policy: which requests the proxy signs and forwards.
//!
//! A [`Policy`] is IAM policy JSON as people write it for their domains
//! (see README.md, "Policies"), evaluated by the proxy against everything a
//! request touches: the path's indices *and* the indices named in the bodies
//! of the multi-index APIs (`_bulk`, `_mget`, `_msearch`, `_reindex`,
//! `_aliases`...), which the service's own resource policy cannot see.
//!
//! Everything here is pure and synchronous.  The pipeline:
//!
//! 1. asks [`Policy::needs_body`] whether the body is needed;
//! 2. calls [`Policy::evaluate`] with the [`RequestFacts`] and, when needed, the
//!    body as a [`BufRead`] (memory or temp file);
//! 3. forwards on [`Decision::Allow`], or answers 403 with
//!    [`Decision::error_body`].

mod document;
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod fuzz_tests;
mod indices;
mod pattern;
mod read_only;

#[cfg(test)]
mod prop_tests;

use std::fmt;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use indices::{body_needed, touched_resources, ExtractError, Origin, Touched};
pub use pattern::Target;

use document::{Effect, Statement};

/// A parsed, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    AllowAll,
    ReadOnly,
    Statements(Vec<Statement>),
}

/// What the pipeline knows about a request before reading its body.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a http::Method,
    /// The path as on the wire (percent-encoded), without the query.
    pub raw_path: &'a str,
    /// The query as on the wire, without `?` (not used by the current rules).
    pub raw_query: Option<&'a str>,
    /// The client's address (for `aws:SourceIp` conditions).
    pub client_ip: IpAddr,
    /// The inbound-auth principal (`user` or `token:<line>`), or `None` when
    /// inbound auth is not configured.
    pub principal: Option<&'a str>,
}

/// The outcome of [`Policy::evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// The statement that allowed the request's path (Sid or `Statement[i]`),
        /// `"read-only"`, or `None` for [`Policy::allow_all`].
        statement: Option<String>,
        /// The resource that statement allowed first, e.g. `test-index/_search` (the path's).
        resource: String,
    },
    Deny {
        /// A readable sentence naming action, resource, origin and statement.
        reason: String,
        /// Sid or `Statement[i]` of the denying statement, `"default deny"`,
        /// `"read-only"`, or `None` when the request could not be checked
        /// (unparseable body, bad path, unsupported method).
        statement: Option<String>,
        /// e.g. `es:ESHttpPost`
        action: String,
        /// The denied resource, e.g. `restricted-index/_doc/1` or `*/_search`.
        resource: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// A readable sentence, e.g. `es:ESHttpPost on restricted-index/_doc/1 (from
    /// the _bulk body, line 3) denied by statement "DenyRestricted" (Resource
    /// "restricted-index/*")`.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { .. } => "allowed",
            Decision::Deny { reason, .. } => reason,
        }
    }

    /// For a Deny, the OpenSearch-style 403 body:
    /// `{"error":{"root_cause":[{"type":"security_exception","reason":"…"}],"type":"security_exception","reason":"…"},"status":403}`.
    pub fn error_body(&self) -> Option<String> {
        let Decision::Deny { reason, .. } = self else {
            return None;
        };
        let reason = format!("sigv4-proxy policy: {reason}");
        Some(
            serde_json::json!({
                "error": {
                    "root_cause": [{"type": "security_exception", "reason": reason}],
                    "type": "security_exception",
                    "reason": reason,
                },
                "status": 403,
            })
            .to_string(),
        )
    }
}

/// A policy that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the policy file: {0}")]
    Io(#[source] std::io::Error),
    /// Syntax or shape error; the message includes line and column.
    #[error("invalid policy: {0}")]
    Json(#[source] serde_json::Error),
    #[error("invalid policy: {}{message}", statement.as_deref().map(|s| format!("{}: ", statement_name(s))).unwrap_or_default())]
    Invalid {
        statement: Option<String>,
        message: String,
    },
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        error: Box<PolicyError>,
    },
}

fn statement_name(label: &str) -> String {
    if label.starts_with("Statement[") && label.ends_with(']') {
        label.to_string()
    } else {
        format!("statement {label:?}")
    }
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        Ok(Policy {
            kind: Kind::Statements(document::parse(text)?),
        })
    }

    /// Reads, parses and validates a policy file; errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        let path = path.as_ref();
        let wrap = |error| PolicyError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        };
        let text = std::fs::read_to_string(path).map_err(|e| wrap(PolicyError::Io(e)))?;
        Policy::from_json(&text).map_err(wrap)
    }

    /// GET/HEAD anywhere; POST to the read-only search APIs; DELETE of a scroll
    /// or point in time (not `_all`); everything else denied.
    pub fn read_only() -> Policy {
        Policy {
            kind: Kind::ReadOnly,
        }
    }

    /// Everything allowed (no policy configured).
    pub fn allow_all() -> Policy {
        Policy {
            kind: Kind::AllowAll,
        }
    }

    /// Does evaluating this request need its body?  (Only statement policies
    /// look into bodies; see [`body_needed`].)
    pub fn needs_body(&self, method: &http::Method, raw_path: &str) -> bool {
        matches!(self.kind, Kind::Statements(_)) && body_needed(method, raw_path)
    }

    /// True when some statement restricts itself with `"Principal": {"Proxy": ...}`.
    /// Such restrictions are ignored while inbound auth is off (`principal` is
    /// `None`), so the caller should refuse to start (or warn) in that case.
    pub fn uses_proxy_principals(&self) -> bool {
        match &self.kind {
            Kind::Statements(s) => s.iter().any(Statement::mentions_principals),
            _ => false,
        }
    }

    /// Decides a request.  `body` is required when [`Policy::needs_body`] says
    /// so (a missing or unparseable body is denied); it is read at most once,
    /// as a stream, and may be left partly unread after a Deny.
    pub fn evaluate(&self, req: &RequestFacts, body: Option<&mut dyn BufRead>) -> Decision {
        let Some(action) = action_for(req.method) else {
            return Decision::Deny {
                reason: format!(
                    "{} requests are not covered by any es:ESHttp* action",
                    req.method
                ),
                statement: None,
                action: format!("es:ESHttp{}", req.method),
                resource: display_path(req.raw_path),
            };
        };
        match &self.kind {
            Kind::AllowAll => Decision::Allow {
                statement: None,
                resource: display_path(req.raw_path),
            },
            Kind::ReadOnly => {
                if read_only::allows(req.method, req.raw_path) {
                    Decision::Allow {
                        statement: Some("read-only".into()),
                        resource: display_path(req.raw_path),
                    }
                } else {
                    let resource = display_path(req.raw_path);
                    Decision::Deny {
                        reason: format!("{action} on {resource} denied by the read-only policy"),
                        statement: Some("read-only".into()),
                        action: action.into(),
                        resource,
                    }
                }
            }
            Kind::Statements(stmts) => evaluate_statements(stmts, action, req, body),
        }
    }
}

fn action_for(m: &http::Method) -> Option<&'static str> {
    Some(match *m {
        http::Method::GET => "es:ESHttpGet",
        http::Method::HEAD => "es:ESHttpHead",
        http::Method::POST => "es:ESHttpPost",
        http::Method::PUT => "es:ESHttpPut",
        http::Method::DELETE => "es:ESHttpDelete",
        http::Method::PATCH => "es:ESHttpPatch",
        _ => return None,
    })
}

fn display_path(raw_path: &str) -> String {
    match indices::parse_path(raw_path) {
        Ok(p) if !p.literal.is_empty() => p.literal,
        Ok(_) => "/".into(),
        Err(_) => raw_path.to_string(),
    }
}

/// Does the query have a `source` parameter (however it is percent-encoded)?
fn has_source_param(raw_query: Option<&str>) -> bool {
    raw_query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "source"))
}

struct What<'a>(&'a str, &'a Touched);

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.1.target.as_str();
        let target = if target.is_empty() { "/" } else { target };
        write!(f, "{} on {target}", self.0)?;
        match &self.1.origin {
            Origin::Path => Ok(()),
            Origin::AllIndices => {
                f.write_str(" (the path names no index, so it may reach every index)")
            }
            o @ Origin::Body { .. } => write!(f, " ({o})"),
        }
    }
}

fn evaluate_statements(
    stmts: &[Statement],
    action: &'static str,
    req: &RequestFacts,
    body: Option<&mut dyn BufRead>,
) -> Decision {
    let applicable: Vec<&Statement> = stmts
        .iter()
        .filter(|s| s.applies(action, req.principal, req.client_ip))
        .collect();
    let (denies, allows): (Vec<&Statement>, Vec<&Statement>) = applicable
        .into_iter()
        .partition(|s| s.effect == Effect::Deny);
    // The first statement that allowed something, and what.
    let mut allowed_by: Option<(String, String)> = None;
    let mut check = |t: Touched| -> Option<Decision> {
        for s in &denies {
            if let Some(pattern) = s.deny_match(&t.target) {
                return Some(Decision::Deny {
                    reason: format!(
                        "{} denied by {} ({pattern})",
                        What(action, &t),
                        statement_name(&s.label)
                    ),
                    statement: Some(s.label.clone()),
                    action: action.into(),
                    resource: t.target.to_string(),
                });
            }
        }
        match allows.iter().find(|s| s.allows(&t.target)) {
            Some(s) => {
                allowed_by.get_or_insert_with(|| (s.label.clone(), t.target.to_string()));
                None
            }
            None => Some(Decision::Deny {
                reason: format!(
                    "{}: no statement allows {} (default deny)",
                    What(action, &t),
                    if t.target.is_wildcard() {
                        "every index it may reach"
                    } else {
                        "it"
                    }
                ),
                statement: Some("default deny".into()),
                action: action.into(),
                resource: t.target.to_string(),
            }),
        }
    };
    if body_needed(req.method, req.raw_path) && has_source_param(req.raw_query) {
        // Without a body, OpenSearch reads `_mget`, `_msearch`, … bodies from `?source=`.
        let resource = display_path(req.raw_path);
        return Decision::Deny {
            reason: format!(
                "{action} on {resource} denied: the indices of this API are read from its body, \
                 and a `source` query parameter can stand for the body; send the body as the request body"
            ),
            statement: None,
            action: action.into(),
            resource,
        };
    }
    match indices::for_each_resource(req.method, req.raw_path, body, &mut check) {
        Ok(Some(deny)) => deny,
        Ok(None) => {
            let (statement, resource) = match allowed_by {
                Some((s, r)) => (Some(s), r),
                None => (None, display_path(req.raw_path)),
            };
            Decision::Allow {
                statement,
                resource,
            }
        }
        Err(e) => {
            let resource = display_path(req.raw_path);
            Decision::Deny {
                reason: format!("{action} on {resource} denied: cannot tell what it touches: {e}"),
                statement: None,
                action: action.into(),
                resource,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::io::Cursor;

    pub(crate) fn decide(
        policy: &Policy,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Decision {
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
        let facts = RequestFacts {
            method: &method,
            raw_path: path,
            raw_query: None,
            client_ip: ip.parse().unwrap(),
            principal,
        };
        let mut cursor = body.map(|b| Cursor::new(b.as_bytes().to_vec()));
        policy.evaluate(&facts, cursor.as_mut().map(|c| c as &mut dyn BufRead))
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
            "/{}/{}",
            vec!["a"; 16_000].join(","),
            vec!["x"; 16_000].join("/")
        );
        match decide(&policy, Method::GET, &costly, None) {
            Decision::Deny { reason, .. } => {
                assert!(reason.contains("too many to check"), "{reason}")
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
            "es:ESHttpPost on restricted-index/_doc/2 (from the _bulk body, line 3): no statement allows it (default deny)"
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
            "es:ESHttpDelete on restricted-index denied by statement \"DenyRestricted\" \
             (Resource \"arn:aws:es:us-west-1:987654321098:domain/my-domain/restricted-index/*\")"
        );
        assert_eq!(
            decide(&p, Method::GET, "/_search", None).reason(),
            "es:ESHttpGet on */_search (the path names no index, so it may reach every index) denied by \
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
            "es:ESHttpPost on restricted-index/_doc/1 (from the _bulk body, line 3) denied by statement \
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
            "es:ESHttpGet on */_search (the path names no index, so it may reach every index): \
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
        let d =
            |m: Method, ip: &str, who: Option<&str>| decide_as(&p, m, "/idx/_doc/1", None, ip, who);
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

    #[test]
    fn a_body_in_the_source_query_parameter_is_denied() {
        let p = Policy::from_json(GUIDE_DENY).unwrap();
        let facts = |path: &'static str, query: &'static str| RequestFacts {
            method: &Method::GET,
            raw_path: path,
            raw_query: Some(query),
            client_ip: "192.0.2.1".parse().unwrap(),
            principal: None,
        };
        let mget = "source=%7B%22docs%22%3A%5B%7B%22_index%22%3A%22restricted-index%22%2C%22_id%22%3A%221%22%7D%5D%7D&source_content_type=application/json";
        for (path, query) in [
            ("/_mget", mget),
            (
                "/_msearch",
                "%73ource=x&source_content_type=application/x-ndjson",
            ),
            ("/test-index/_mget", "source="),
        ] {
            let d = p.evaluate(&facts(path, query), Some(&mut Cursor::new(Vec::new())));
            assert!(!d.is_allowed(), "{path}?{query}");
            assert!(
                d.reason().contains("`source` query parameter"),
                "{}",
                d.reason()
            );
        }
        // Elsewhere `source` is an ordinary parameter (e.g. a search body, which is not read).
        let d = p.evaluate(&facts("/test-index/_search", "source=%7B%7D"), None);
        assert!(d.is_allowed(), "{d:?}");
        let d = p.evaluate(
            &facts("/_mget", "sources=1"),
            Some(&mut Cursor::new(Vec::new())),
        );
        assert!(d.is_allowed(), "{d:?}");
    }

    #[test]
    fn unparseable_or_missing_bodies_are_denied() {
        let p = Policy::from_json(GUIDE_DENY).unwrap();
        let d = decide(
            &p,
            Method::POST,
            "/_bulk",
            Some("{\"index\":{\"_index\":\"test-index\"}}\n{}\n{oops\n"),
        );
        assert!(!d.is_allowed());
        let Decision::Deny {
            statement, reason, ..
        } = &d
        else {
            unreachable!()
        };
        assert_eq!(*statement, None);
        assert!(reason.contains("line 3"), "{reason}");
        assert!(
            reason.starts_with("es:ESHttpPost on _bulk denied: cannot tell what it touches"),
            "{reason}"
        );
        assert!(!decide(&p, Method::POST, "/_bulk", None).is_allowed());
        assert!(p.needs_body(&Method::POST, "/_bulk"));
        assert!(!Policy::read_only().needs_body(&Method::POST, "/_bulk"));
        assert!(!Policy::allow_all().needs_body(&Method::POST, "/_bulk"));
    }

    #[test]
    fn read_only_and_allow_all() {
        let ro = Policy::read_only();
        assert!(decide(&ro, Method::GET, "/restricted-index/_search", None).is_allowed());
        assert!(decide(&ro, Method::POST, "/x/_search", None).is_allowed());
        let d = decide(&ro, Method::POST, "/_bulk", Some("junk"));
        assert_eq!(
            d.reason(),
            "es:ESHttpPost on _bulk denied by the read-only policy"
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
    fn error_body_is_opensearch_style() {
        let p = Policy::from_json(GUIDE_DENY).unwrap();
        let d = decide(&p, Method::DELETE, "/restricted-index", None);
        let v: serde_json::Value = serde_json::from_str(&d.error_body().unwrap()).unwrap();
        assert_eq!(v["status"], 403);
        assert_eq!(v["error"]["type"], "security_exception");
        assert!(v["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("\"DenyRestricted\""));
        assert_eq!(v["error"]["root_cause"][0]["type"], "security_exception");
        let allow = Decision::Allow {
            statement: None,
            resource: String::new(),
        };
        assert_eq!(allow.error_body(), None);
    }

    #[test]
    fn files_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("policy.json");
        std::fs::write(&f, GUIDE_DENY).unwrap();
        assert!(Policy::from_file(&f).is_ok());
        std::fs::write(&f, "{\"Statement\": [\n  {\"Effect\": \"Allow\", \"Action\": \"*\", \"Resource\": \"*\",}\n]}").unwrap();
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
}
