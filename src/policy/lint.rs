//! `sigv4-proxy policy check`: what a loaded policy gets wrong, found by asking the policy
//! itself. Errors make the command fail; warnings are worth a look.
//!
//! - A resource no request can ever touch (an index name with capitals or characters index
//!   names cannot have, an API path the proxy knows no API for): in a Deny, it protects nothing.
//! - An Allow on a `_` wildcard (`_*`, `_plugins/*`) that also allows the security plugin's
//!   REST API, where whoever reaches the proxy can map themselves to `all_access`.
//! - A Deny that never takes effect because no Allow reaches what it denies.
//! - A Deny that an alias gets around: the policy allows adding an alias to (or an index
//!   template with an alias onto) the indices the Deny covers, and requests through the alias
//!   are checked by the alias's name.

use std::net::IpAddr;

use super::document::{Effect, Statement, ACTIONS};
use super::pattern::Target;
use super::routes::{Segment, Table};
use super::{BodySource, InMemory, Kind, Policy, RequestFacts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, and the statement it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Sid or `Statement[i]`.
    pub statement: Option<String>,
    pub message: String,
}

/// The alias the bypass probes add.
const PROBE_ALIAS: &str = "sigv4-proxy-check-alias";

/// Lints a loaded policy (the read-only and allow-all policies have nothing to lint).
pub fn check(policy: &Policy) -> Vec<Finding> {
    let Kind::Statements(stmts) = &policy.kind else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in stmts {
        never_matching(s, &mut out);
        opens_security(s, &mut out);
    }
    let contexts = contexts(stmts);
    for s in stmts.iter().filter(|s| s.effect == Effect::Deny) {
        unreachable_deny(s, stmts, &contexts, &mut out);
        alias_bypass(policy, s, &contexts, &mut out);
    }
    out
}

/// Who and from where the probes ask: anonymously and as every user the policy names, from an
/// address outside and one inside every network its conditions name.
struct Context {
    principal: Option<String>,
    ip: IpAddr,
}

fn contexts(stmts: &[Statement]) -> Vec<Context> {
    let mut principals: Vec<Option<String>> = vec![None];
    for s in stmts {
        principals.extend(s.principal_names().into_iter().map(Some));
    }
    if stmts.iter().any(Statement::mentions_principals) {
        principals.push(Some("sigv4-proxy-check-someone-else".into()));
    }
    principals.dedup();
    let mut ips: Vec<IpAddr> = vec!["192.0.2.1".parse().expect("an address")];
    for s in stmts {
        ips.extend(s.sample_ips());
    }
    ips.dedup();
    let mut out = Vec::new();
    for p in &principals {
        for ip in &ips {
            out.push(Context {
                principal: p.clone(),
                ip: *ip,
            });
        }
    }
    out
}

fn finding(severity: Severity, s: &Statement, message: String) -> Finding {
    Finding {
        severity,
        statement: Some(s.label.clone()),
        message,
    }
}

/// Resources that name what no request can touch.
fn never_matching(s: &Statement, out: &mut Vec<Finding>) {
    let severity = match s.effect {
        Effect::Deny => Severity::Error,
        Effect::Allow => Severity::Warning,
    };
    let consequence = match s.effect {
        Effect::Deny => "this Deny protects nothing",
        Effect::Allow => "this Allow allows nothing",
    };
    let mut seen = Vec::new();
    for r in s.resources() {
        if seen.contains(&&r.written) {
            continue;
        }
        seen.push(&r.written);
        let index = r.relative.split('/').next().unwrap_or("");
        let problem = if index.starts_with('_') {
            unknown_api(&r.relative)
        } else if index.chars().any(|c| c.is_ascii_uppercase()) {
            Some(format!(
                "index names are lowercase, so {index:?} names no index"
            ))
        } else if let Some(c) = index.chars().find(|c| "\\\"<>|, #".contains(*c)) {
            Some(format!(
                "no index name holds {c:?}, so {index:?} names no index"
            ))
        } else if index.starts_with(['-', '+']) {
            Some(format!("no index name starts with {:?}", &index[..1]))
        } else {
            None
        };
        if let Some(problem) = problem {
            out.push(finding(
                severity,
                s,
                format!("Resource {:?}: {problem}: {consequence}", r.written),
            ));
        }
    }
}

/// A literal `_…` resource that no route of the table produces (`_bulkk`, `_cluster/helth`).
fn unknown_api(rel: &str) -> Option<String> {
    if rel.contains(['*', '?']) {
        return None;
    }
    let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    // Only routes that do not start with an index have the path itself as a resource.
    let known = Table::get().routes.iter().any(|route| {
        if route.name_positions().next().is_some_and(|(p, _)| p == 0) {
            return false;
        }
        let mut i = 0;

        for seg in &route.segments {
            match seg {
                Segment::Tail => return true,
                Segment::Literal(l) if segs.get(i) == Some(&l.as_str()) => {}
                Segment::Param(_) if i < segs.len() => {}
                _ => return false,
            }
            i += 1;
        }
        i == segs.len()
    });
    (!known).then(|| format!("the proxy knows no API at /{rel}"))
}

/// The security plugin's API, as a resource.
const SECURITY_APIS: [&str; 2] = [
    "_plugins/_security/api/rolesmapping/all_access",
    "_opendistro/_security/api/rolesmapping/all_access",
];

fn opens_security(s: &Statement, out: &mut Vec<Finding>) {
    if s.effect != Effect::Allow || s.is_not_resource() {
        return;
    }
    for r in s.resources() {
        let wildcard_api = r.relative.starts_with('_') && r.relative.contains('*');
        if !wildcard_api {
            continue;
        }
        let opens = SECURITY_APIS
            .iter()
            .any(|api| r.glob.covers(&Target::literal(api)));
        if opens
            && s.applies(
                "es:ESHttpPut",
                None,
                "192.0.2.1".parse().expect("an address"),
            )
        {
            out.push(finding(
                Severity::Warning,
                s,
                format!(
                    "Resource {:?} also allows the security plugin's REST API (_plugins/_security, _opendistro/_security: users, roles, role mappings), where whoever reaches the proxy can map themselves to all_access: list the `_` APIs you need, or add a Deny on `_plugins/_security/*` and `_opendistro/_security/*`",
                    r.written
                ),
            ));
            return;
        }
    }
}

/// A Deny no Allow reaches: what it denies is denied by default already.
fn unreachable_deny(
    d: &Statement,
    stmts: &[Statement],
    contexts: &[Context],
    out: &mut Vec<Finding>,
) {
    if d.is_not_resource() {
        return;
    }
    let applies = |s: &Statement, action: &str| {
        contexts
            .iter()
            .any(|c| s.applies(action, c.principal.as_deref(), c.ip))
    };
    for action in ACTIONS {
        if !applies(d, action) {
            continue;
        }
        for r in d.resources() {
            let denied = Target::wildcard(&r.relative.replace('?', "*"));
            let reached = stmts.iter().filter(|a| a.effect == Effect::Allow).any(|a| {
                applies(a, action)
                    && if a.is_not_resource() {
                        !a.resources().iter().all(|p| p.glob.covers(&denied))
                    } else {
                        a.resources().iter().any(|p| p.glob.overlaps(&denied))
                    }
            });
            if reached {
                return;
            }
        }
    }
    out.push(finding(
        Severity::Warning,
        d,
        "this Deny never takes effect: no Allow reaches what it denies, which the default deny refuses already (a typo in its Resource or Action?)".into(),
    ));
}

/// An index name the pattern covers (`restricted-*` → `restricted-x`), for the probes.
fn sample_index(rel: &str) -> Option<String> {
    let index = rel.split('/').next()?;
    let name = index.replace(['*', '?'], "x");
    let usable = !name.is_empty() && !name.starts_with(['_', '-', '+']) && name != "x";
    usable.then_some(name)
}

fn alias_bypass(policy: &Policy, d: &Statement, contexts: &[Context], out: &mut Vec<Finding>) {
    if d.is_not_resource() {
        return;
    }
    let mut names: Vec<String> = d
        .resources()
        .iter()
        .filter_map(|r| sample_index(&r.relative))
        .collect();
    names.dedup();
    for name in names {
        let probes: [(http::Method, String, String); 3] = [
            (
                http::Method::POST,
                "/_aliases".into(),
                format!(
                    r#"{{"actions":[{{"add":{{"index":"{name}","alias":"{PROBE_ALIAS}"}}}}]}}"#
                ),
            ),
            (
                http::Method::PUT,
                format!("/{name}/_alias/{PROBE_ALIAS}"),
                String::new(),
            ),
            (
                http::Method::PUT,
                "/_index_template/sigv4-proxy-check".into(),
                format!(
                    r#"{{"index_patterns":["{name}*"],"template":{{"aliases":{{"{PROBE_ALIAS}":{{}}}}}}}}"#
                ),
            ),
        ];
        for c in contexts {
            let ask = |method: &http::Method, path: &str, body: &str| {
                let facts = RequestFacts {
                    method,
                    raw_path: path,
                    raw_query: None,
                    content_type: Some("application/json"),
                    content_encoding: None,
                    client_ip: c.ip,
                    principal: c.principal.as_deref(),
                };
                let body = InMemory(body.as_bytes());
                policy.evaluate(&facts, Some(&body as &dyn BodySource))
            };
            // Is the index itself denied to this context at all?
            let direct = ask(&http::Method::GET, &format!("/{name}/_search"), "");
            if direct.is_allowed() {
                continue;
            }
            let through = ask(&http::Method::GET, &format!("/{PROBE_ALIAS}/_search"), "");
            if !through.is_allowed() {
                continue;
            }
            for (method, path, body) in &probes {
                let d2 = ask(method, path, body);
                if let super::Decision::Allow { statement, .. } = d2 {
                    let who = match &c.principal {
                        Some(p) => format!(" for {p:?}"),
                        None => String::new(),
                    };
                    out.push(finding(
                        Severity::Error,
                        d,
                        format!(
                            "can be bypassed through an alias: the policy allows {method} {path}{who} ({}), which puts an alias onto {name:?}, and a search through the alias is checked by the alias's name, which this Deny does not cover; deny alias changes on these indices (e.g. Deny es:ESHttpPut and es:ESHttpPost on \"{name}/_alias*\" and \"_aliases\", and index templates)",
                            statement.map(|s| format!("allowed by {}", super::statement_name(&s))).unwrap_or_default()
                        ),
                    ));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(text: &str) -> Vec<String> {
        check(&Policy::from_json(text).unwrap())
            .into_iter()
            .map(|f| {
                format!(
                    "{:?} {}: {}",
                    f.severity,
                    f.statement.unwrap_or_default(),
                    f.message
                )
            })
            .collect()
    }

    #[test]
    fn a_sound_policy_has_nothing_to_say() {
        let f = lint(
            r#"{"Statement":[
                {"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"},
                {"Sid":"DenyRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted*"}]}"#,
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn resources_that_match_nothing() {
        let f = lint(
            r#"{"Statement":[
                {"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"},
                {"Sid":"Caps","Effect":"Deny","Action":"es:*","Resource":"Restricted-Index/*"},
                {"Sid":"Typo","Effect":"Allow","Action":"es:*","Resource":["_bulkk","_cluster/health","logs,x"]}]}"#,
        );
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(
            f[0].starts_with(
                "Error Caps: Resource \"Restricted-Index/*\": index names are lowercase"
            ),
            "{f:?}"
        );
        assert!(
            f[1].starts_with(
                "Warning Typo: Resource \"_bulkk\": the proxy knows no API at /_bulkk"
            ),
            "{f:?}"
        );
        assert!(f[2].contains("no index name holds ','"), "{f:?}");
    }

    #[test]
    fn an_allow_on_underscore_apis_opens_the_security_plugin() {
        let f = lint(
            r#"{"Statement":[{"Sid":"Apis","Effect":"Allow","Action":"es:ESHttp*","Resource":["logs-*","_*"]}]}"#,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with(
                "Warning Apis: Resource \"_*\" also allows the security plugin's REST API"
            ),
            "{f:?}"
        );
        assert!(lint(
            r#"{"Statement":[{"Effect":"Allow","Action":"es:*","Resource":["_search","_bulk"]}]}"#
        )
        .is_empty());
    }

    #[test]
    fn denies_no_allow_reaches() {
        let f = lint(
            r#"{"Statement":[
                {"Effect":"Allow","Action":"es:ESHttpGet","Resource":"logs-*"},
                {"Sid":"Pointless","Effect":"Deny","Action":"es:*","Resource":"secret-*"}]}"#,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("Warning Pointless: this Deny never takes effect"),
            "{f:?}"
        );
    }

    #[test]
    fn a_deny_an_alias_gets_around() {
        // Reads of restricted-* are denied, but adding an alias to it is not.
        let f = lint(
            r#"{"Statement":[
                {"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"},
                {"Sid":"NoReads","Effect":"Deny","Action":"es:ESHttpGet","Resource":"restricted-*"}]}"#,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with(
                "Error NoReads: can be bypassed through an alias: the policy allows POST /_aliases"
            ),
            "{f:?}"
        );
        // Denying every action on the indices closes it: adding the alias names the index.
        let f = lint(
            r#"{"Statement":[
                {"Sid":"All","Effect":"Allow","Action":"es:*","Resource":"*"},
                {"Sid":"NoRestricted","Effect":"Deny","Action":"es:*","Resource":"restricted-*"}]}"#,
        );
        assert!(f.is_empty(), "{f:?}");
    }
}
