//! `sigv4-proxy policy explain` and `sigv4-proxy policy check`: the policy simulator and the
//! linter, as reports on stdout.

use std::io::{Read, Write};

use crate::cli::{PolicyCheckArgs, PolicyExplainArgs};
use crate::policy::lint::{self, Severity};
use crate::policy::{Access, BodySource, Decision, InMemory, Policy, RequestFacts};
use crate::signing::wire_query;

/// Why a report could not be made (a file that cannot be read, a malformed request).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Explains one request; `Ok(true)` when the policy allows it.
pub fn explain(args: &PolicyExplainArgs, out: &mut dyn Write) -> Result<bool, UsageError> {
    let policy = match &args.policy {
        Some(path) => Policy::from_file(path).map_err(|e| UsageError(e.to_string()))?,
        None => Policy::read_only(),
    };
    let method = http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| UsageError(format!("{:?} is not an HTTP method", args.method)))?;
    let target: http::uri::PathAndQuery = args
        .path
        .parse()
        .map_err(|e| UsageError(format!("{:?} is not a request path: {e}", args.path)))?;
    let query = target
        .query()
        .map(wire_query)
        .transpose()
        .map_err(|e| UsageError(e.to_string()))?;
    let body = match args.body.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| UsageError(format!("reading the body from standard input: {e}")))?;
            b
        }
        Some(file) => std::fs::read(file).map_err(|e| UsageError(format!("--body {file}: {e}")))?,
    };
    let facts = RequestFacts {
        method: &method,
        raw_path: target.path(),
        raw_query: query.as_deref(),
        content_type: Some(&args.content_type),
        content_encoding: args.content_encoding.as_deref(),
        client_ip: args.source_ip,
        principal: args.user.as_deref(),
    };
    let body = InMemory(&body);
    let e = policy.explain(&facts, Some(&body as &dyn BodySource));
    let allowed = e.decision.is_allowed();
    let written = if args.json {
        let touches: Vec<serde_json::Value> = e
            .touches
            .iter()
            .map(|t| {
                serde_json::json!({
                    "action": t.touch.action,
                    "api": t.touch.api,
                    "access": if t.touch.access == Access::Read { "read" } else { "write" },
                    "resource": t.touch.target.as_str(),
                    "from": t.touch.origin.to_string(),
                    "every_index_because_unclassified": t.touch.origin.is_unclassified(),
                    "statements": t.matches.iter().map(|m| serde_json::json!({
                        "statement": m.statement, "effect": m.effect, "matched": m.pattern,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let decision = match &e.decision {
            Decision::Allow {
                statement,
                resource,
            } => serde_json::json!({
                "decision": "allow", "statement": statement, "resource": resource,
            }),
            Decision::Deny {
                reason,
                statement,
                action,
                resource,
                api,
            } => serde_json::json!({
                "decision": "deny", "statement": statement, "action": action,
                "resource": resource, "api": api, "reason": reason,
            }),
        };
        let report = serde_json::json!({
            "request": format!("{method} {target}"),
            "apis": e.apis.iter().map(|(api, route)| serde_json::json!({"api": api, "route": route})).collect::<Vec<_>>(),
            "touches": touches,
            "result": decision,
        });
        writeln!(out, "{report:#}")
    } else {
        text_report(out, &method, &target, &e)
    };
    written.map_err(|err| UsageError(format!("writing the report: {err}")))?;
    Ok(allowed)
}

fn text_report(
    out: &mut dyn Write,
    method: &http::Method,
    target: &http::uri::PathAndQuery,
    e: &crate::policy::Explanation,
) -> std::io::Result<()> {
    writeln!(out, "request: {method} {target}")?;
    let mut apis: Vec<String> = e
        .apis
        .iter()
        .map(|(api, route)| format!("{api} ({route})"))
        .collect();
    apis.dedup();
    writeln!(
        out,
        "API: {}",
        apis.join("; as a server that decodes the path first reads it: ")
    )?;
    writeln!(out, "touches:")?;
    for (i, t) in e.touches.iter().enumerate() {
        let resource = t.touch.target.as_str();
        writeln!(
            out,
            "  {}. {} {} ({}, {})",
            i + 1,
            t.touch.action,
            if resource.is_empty() { "/" } else { resource },
            t.touch.api,
            if t.touch.access == Access::Read {
                "reads"
            } else {
                "writes"
            }
        )?;
        writeln!(out, "     {}", t.touch.origin)?;
        if t.matches.is_empty() {
            writeln!(out, "     no statement matches (default deny)")?;
        }
        for m in &t.matches {
            writeln!(out, "     {} {:?}: {}", m.effect, m.statement, m.pattern)?;
        }
    }
    match &e.decision {
        Decision::Allow {
            statement,
            resource,
        } => writeln!(
            out,
            "decision: ALLOW{}",
            statement
                .as_deref()
                .map(|s| format!(" ({s:?} allows {resource}, and every resource above is allowed)"))
                .unwrap_or_default()
        ),
        Decision::Deny { reason, .. } => writeln!(out, "decision: DENY: {reason}"),
    }
}

/// Lints a policy file; `Ok(true)` when it has no errors.
pub fn check(args: &PolicyCheckArgs, out: &mut dyn Write) -> Result<bool, UsageError> {
    let write = |out: &mut dyn Write, text: String| {
        writeln!(out, "{text}").map_err(|e| UsageError(format!("writing the report: {e}")))
    };
    let file = args.file.display();
    let policy = match Policy::from_file(&args.file) {
        Ok(p) => p,
        Err(e) => {
            write(out, format!("error: {e}"))?;
            write(out, format!("{file}: does not load"))?;
            return Ok(false);
        }
    };
    let findings = lint::check(&policy);
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    for f in &findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let statement = f
            .statement
            .as_deref()
            .map(|s| format!("statement {s:?}: "))
            .unwrap_or_default();
        write(out, format!("{level}: {statement}{}", f.message))?;
    }
    let warnings = findings.len() - errors;
    write(
        out,
        format!(
            "{file}: loads; {errors} error{}, {warnings} warning{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        ),
    )?;
    Ok(errors == 0)
}
