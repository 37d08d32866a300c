//! The local access policy: which requests the proxy signs and forwards.
//!
//! A [`Policy`] is IAM policy JSON as people write it for their domains (README.md and
//! docs/policy.md), evaluated by the proxy against every resource a request touches. Which
//! resources those are comes from the route table of all of OpenSearch's REST API
//! ([`routes`]): the path's index parameters, the query parameters that stand for them, and the
//! body wherever it can name indices ([`bodies`]), inflated when compressed ([`encoding`]).
//! What cannot be classified counts as touching every index ([`classify`]), so it is allowed
//! only where the policy allows that action on `*`.
//!
//! Everything here is pure and synchronous. The pipeline:
//!
//! 1. calls [`Policy::plan`] with the [`RequestFacts`]: the route is found, and the plan says
//!    whether the body is needed ([`Plan::needs_body`]);
//! 2. calls [`Policy::decide`] with the plan and, when needed, the body as a [`BodySource`];
//! 3. forwards on [`Decision::Allow`], or answers 403 with the [`Decision::reason`].

mod bodies;
mod classify;
mod document;
mod encoding;
#[doc(hidden)]
pub mod fuzz;
#[cfg(test)]
mod fuzz_tests;
mod json;
pub mod lint;
mod names;
mod pattern;
mod routes;

#[cfg(test)]
mod prop_tests;

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

pub use classify::{BodySource, InMemory, Origin, Touch};
pub use pattern::Target;
pub use routes::Access;

use classify::{Limits, Request, Want};
use document::{Effect, Statement};

/// A parsed, validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    kind: Kind,
    limits: Limits,
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
    /// The query as it is forwarded (RFC 3986 form), without `?`.
    pub raw_query: Option<&'a str>,
    /// `Content-Type`: SMILE, CBOR and YAML bodies cannot be read.
    pub content_type: Option<&'a str>,
    /// `Content-Encoding`: gzip and deflate bodies are inflated to be read.
    pub content_encoding: Option<&'a str>,
    /// The client's address (for `aws:SourceIp` conditions).
    pub client_ip: IpAddr,
    /// The inbound-auth principal (`user` or `token:<line>`), or `None` when inbound auth is
    /// not configured.
    pub principal: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    fn request(&self) -> Request<'a> {
        Request {
            method: self.method,
            raw_path: self.raw_path,
            query: self.raw_query,
            content_type: self.content_type,
            content_encoding: self.content_encoding,
        }
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// The statement that allowed the first resource (Sid or `Statement[i]`),
        /// `"read-only"`, or `None` for [`Policy::allow_all`].
        statement: Option<String>,
        /// The first resource the request touches, e.g. `test-index/_search`.
        resource: String,
    },
    Deny {
        /// A sentence naming action, resource, API, where the resource came from and what
        /// denied it.
        reason: String,
        /// Sid or `Statement[i]` of the denying statement, `"default deny"`, `"read-only"`,
        /// or `None` when no action covers the method.
        statement: Option<String>,
        /// e.g. `es:ESHttpPost`
        action: String,
        /// The denied resource, e.g. `restricted-index/_doc/1` or `*/_search`.
        resource: String,
        /// The operation, e.g. `bulk`.
        api: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// A readable sentence, e.g. `es:ESHttpPost on restricted-index/_doc/1 (bulk, from the
    /// body, line 3) denied by statement "DenyRestricted" (Resource "restricted-index/*")`.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow { .. } => "allowed",
            Decision::Deny { reason, .. } => reason,
        }
    }
}

/// The routes a request's path found, and whether its body is needed to decide.
pub struct Plan {
    inner: Option<classify::Plan>,
}

impl Plan {
    /// Does deciding need the body? (Only where it can name indices, or, for the read-only
    /// policy, where it can make the request a write.)
    pub fn needs_body(&self) -> bool {
        self.inner.as_ref().is_some_and(classify::Plan::needs_body)
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

/// By default, compressed bodies are inflated to at most this size for reading (the default
/// `--max-body`).
const DEFAULT_INFLATE_LIMIT: u64 = 100 << 20;

impl Policy {
    fn new(kind: Kind) -> Policy {
        Policy {
            kind,
            limits: Limits {
                inflate: DEFAULT_INFLATE_LIMIT,
            },
        }
    }

    /// Parses and validates a policy document.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        Ok(Policy::new(Kind::Statements(document::parse(text)?)))
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

    /// Every operation the route table classifies as reading (GET and HEAD of APIs it does not
    /// know), releasing one's own scroll or point in time; everything that writes denied.
    pub fn read_only() -> Policy {
        Policy::new(Kind::ReadOnly)
    }

    /// Everything allowed (no policy configured).
    pub fn allow_all() -> Policy {
        Policy::new(Kind::AllowAll)
    }

    /// Compressed bodies are inflated to at most `bytes` for reading (`--max-body`); one that
    /// inflates further cannot be read, so it counts as touching every index.
    pub fn with_inflate_limit(mut self, bytes: u64) -> Policy {
        self.limits.inflate = bytes;
        self
    }

    /// True when some statement restricts itself with `"Principal": {"Proxy": ...}`. Such
    /// restrictions are ignored while inbound auth is off (`principal` is `None`), so the
    /// caller should refuse to start (or warn) in that case.
    pub fn uses_proxy_principals(&self) -> bool {
        match &self.kind {
            Kind::Statements(s) => s.iter().any(Statement::mentions_principals),
            _ => false,
        }
    }

    /// Whether every `<prefix><id>` gets one verdict: every resource pattern is decided by the
    /// prefix (a statement's action, principal and conditions do not depend on the resource).
    fn same_for_any_id(&self, prefix: &str) -> bool {
        match &self.kind {
            Kind::Statements(stmts) => stmts.iter().all(|s| s.decided_after(prefix)),
            Kind::AllowAll | Kind::ReadOnly => true,
        }
    }

    fn want(&self) -> Option<Want> {
        match self.kind {
            Kind::AllowAll => None,
            Kind::ReadOnly => Some(Want::Access),
            Kind::Statements(_) => Some(Want::Indices),
        }
    }

    /// Finds the request's routes; the plan says whether [`Policy::decide`] needs the body.
    pub fn plan(&self, req: &RequestFacts) -> Plan {
        Plan {
            inner: self.want().map(|want| classify::plan(&req.request(), want)),
        }
    }

    /// Decides a request. `body` is needed when the plan says so (a missing body counts as
    /// touching every index); it is read as a stream, possibly more than once, and may be
    /// left partly unread after a Deny.
    pub fn decide(
        &self,
        plan: &Plan,
        req: &RequestFacts,
        body: Option<&dyn BodySource>,
    ) -> Decision {
        let same = |prefix: &str| self.same_for_any_id(prefix);
        self.decide_telling(plan, req, body, Some(&same))
    }

    /// [`Policy::decide`], with the classification told which touches share a verdict (`None`:
    /// every touch is judged, as the tests compare).
    fn decide_telling(
        &self,
        plan: &Plan,
        req: &RequestFacts,
        body: Option<&dyn BodySource>,
        same_for_any_id: classify::SameForAnyId<'_>,
    ) -> Decision {
        let path = display_path(req.raw_path);
        if classify::action_for(req.method).is_none() {
            return Decision::Deny {
                reason: format!(
                    "{} requests are not covered by any es:ESHttp* action",
                    req.method
                ),
                statement: None,
                action: format!("es:ESHttp{}", req.method),
                resource: path,
                api: "unknown".into(),
            };
        }
        let (Some(inner), Some(want)) = (&plan.inner, self.want()) else {
            return Decision::Allow {
                statement: None,
                resource: path,
            };
        };
        let mut judge = Judge::new(self, req);
        let sink = &mut |t| judge.touch(t);
        let _ = classify::run(
            inner,
            &req.request(),
            body,
            want,
            self.limits,
            same_for_any_id,
            sink,
        );
        judge.finish(path)
    }

    /// [`Policy::plan`] and [`Policy::decide`] in one.
    pub fn evaluate(&self, req: &RequestFacts, body: Option<&dyn BodySource>) -> Decision {
        let plan = self.plan(req);
        self.decide(&plan, req, body)
    }

    /// Everything [`Policy::evaluate`] looks at, for `sigv4-proxy policy explain`: the
    /// operations, every resource touched and where it came from, the statements that match
    /// each, and the decision.
    pub fn explain(&self, req: &RequestFacts, body: Option<&dyn BodySource>) -> Explanation {
        let decision = self.evaluate(req, body);
        let plan = self.plan(req);
        let mut touches = Vec::new();
        if let (Some(inner), Some(want)) = (&plan.inner, self.want()) {
            let sink = &mut |t| {
                touches.push(self.explain_touch(req, t));
                ControlFlow::Continue(())
            };
            // Every touch told: the listing shows each line of a bulk.
            let _ = classify::run(inner, &req.request(), body, want, self.limits, None, sink);
        }
        Explanation {
            apis: plan.inner.as_ref().map(|p| p.apis()).unwrap_or_default(),
            touches,
            decision,
        }
    }

    fn explain_touch(&self, req: &RequestFacts, touch: Touch) -> ExplainedTouch {
        let mut matches = Vec::new();
        match &self.kind {
            Kind::Statements(stmts) => {
                for s in stmts
                    .iter()
                    .filter(|s| s.applies(touch.action, req.principal, req.client_ip))
                {
                    let hit = match s.effect {
                        Effect::Deny => s.deny_match(&touch.target),
                        Effect::Allow => s.allow_match(&touch.target),
                    };
                    if let Some(pattern) = hit {
                        matches.push(StatementMatch {
                            statement: s.label.clone(),
                            effect: if s.effect == Effect::Allow {
                                "Allow"
                            } else {
                                "Deny"
                            },
                            pattern,
                        });
                    }
                }
            }
            Kind::ReadOnly => matches.push(StatementMatch {
                statement: "read-only".into(),
                effect: if touch.access == Access::Read {
                    "Allow"
                } else {
                    "Deny"
                },
                pattern: format!(
                    "{} {}",
                    touch.api,
                    if touch.access == Access::Read {
                        "reads"
                    } else {
                        "writes"
                    }
                ),
            }),
            Kind::AllowAll => {}
        }
        ExplainedTouch { touch, matches }
    }
}

/// What [`Policy::explain`] found.
#[derive(Debug)]
pub struct Explanation {
    /// The operation each reading of the path found, and its route (`unknown` where none).
    pub apis: Vec<(&'static str, String)>,
    pub touches: Vec<ExplainedTouch>,
    pub decision: Decision,
}

/// One touched resource and the statements that match it.
#[derive(Debug)]
pub struct ExplainedTouch {
    pub touch: Touch,
    pub matches: Vec<StatementMatch>,
}

#[derive(Debug)]
pub struct StatementMatch {
    pub statement: String,
    /// `Allow` or `Deny`.
    pub effect: &'static str,
    /// The pattern that matched, as written (`Resource "restricted-index/*"`).
    pub pattern: String,
}

/// `restricted-index/_search`, `/` for the root: the path as the messages show it.
fn display_path(raw_path: &str) -> String {
    let segs: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| names::decode_generic(s).into_owned())
        .collect();
    if segs.is_empty() {
        "/".into()
    } else {
        segs.join("/")
    }
}

/// `es:ESHttpPost on restricted-index/_doc/2 (bulk, from the body, line 3)`.
fn describe(t: &Touch) -> String {
    let target = t.target.as_str();
    let target = if target.is_empty() { "/" } else { target };
    format!(
        "{} on {} ({}, {})",
        t.action,
        shortened(target),
        t.api,
        t.origin
    )
}

/// Messages show at most this much of a resource (a path can be 64 KiB).
const MAX_SHOWN: usize = 1024;

fn shortened(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_SHOWN {
        return Cow::Borrowed(s);
    }
    let mut end = MAX_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &s[..end], s.len()))
}

type Applicable<'p> = (Vec<&'p Statement>, Vec<&'p Statement>);

/// Decides touch by touch; the first that fails decides the request.
struct Judge<'p> {
    policy: &'p Policy,
    principal: Option<&'p str>,
    ip: IpAddr,
    /// The Deny and Allow statements that apply to each of the six actions, found once.
    applicable: [Option<Applicable<'p>>; 6],
    first: Option<(Option<String>, String)>,
    denied: Option<Decision>,
}

impl<'p> Judge<'p> {
    fn new(policy: &'p Policy, req: &RequestFacts<'p>) -> Self {
        Judge {
            policy,
            principal: req.principal,
            ip: req.client_ip,
            applicable: Default::default(),
            first: None,
            denied: None,
        }
    }

    fn deny(&mut self, t: &Touch, reason: String, statement: &str) -> ControlFlow<()> {
        self.denied = Some(Decision::Deny {
            reason,
            statement: Some(statement.to_string()),
            action: t.action.to_string(),
            resource: t.target.to_string(),
            api: t.api.to_string(),
        });
        ControlFlow::Break(())
    }

    fn touch(&mut self, t: Touch) -> ControlFlow<()> {
        match &self.policy.kind {
            Kind::AllowAll => ControlFlow::Continue(()),
            Kind::ReadOnly => {
                if t.access == Access::Write {
                    let reason = format!(
                        "{} denied by the read-only policy (not a read)",
                        describe(&t)
                    );
                    return self.deny(&t, reason, "read-only");
                }
                self.first
                    .get_or_insert_with(|| (Some("read-only".into()), t.target.to_string()));
                ControlFlow::Continue(())
            }
            Kind::Statements(stmts) => {
                let (principal, ip) = (self.principal, self.ip);
                let slot = document::ACTIONS
                    .iter()
                    .position(|a| *a == t.action)
                    .unwrap_or_default();
                let (denies, allows) = self.applicable[slot].get_or_insert_with(|| {
                    stmts
                        .iter()
                        .filter(|s| s.applies(t.action, principal, ip))
                        .partition(|s| s.effect == Effect::Deny)
                });
                let denied: Option<(&'p Statement, String)> = denies
                    .iter()
                    .find_map(|s| s.deny_match(&t.target).map(|p| (*s, p)));
                let allowed: Option<&'p Statement> =
                    allows.iter().copied().find(|s| s.allows(&t.target));
                if let Some((s, pattern)) = denied {
                    let reason = format!(
                        "{} denied by {} ({pattern})",
                        describe(&t),
                        statement_name(&s.label)
                    );
                    return self.deny(&t, reason, &s.label);
                }
                match allowed {
                    Some(s) => {
                        if self.first.is_none() {
                            self.first = Some((Some(s.label.clone()), t.target.to_string()));
                        }
                        ControlFlow::Continue(())
                    }
                    None => {
                        let reason = format!(
                            "{}: no statement allows {} (default deny)",
                            describe(&t),
                            if t.target.is_wildcard() {
                                "every index it may reach"
                            } else {
                                "it"
                            }
                        );
                        self.deny(&t, reason, "default deny")
                    }
                }
            }
        }
    }

    fn finish(self, path: String) -> Decision {
        if let Some(d) = self.denied {
            return d;
        }
        let (statement, resource) = self.first.unwrap_or((None, path));
        Decision::Allow {
            statement,
            resource,
        }
    }
}

#[cfg(test)]
mod tests;
