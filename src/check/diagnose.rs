//! What an endpoint's answer to a signed request means, in the user's words: pure functions
//! from (service, status, headers, body) to a verdict, an explanation and fixes.
//!
//! The patterns are the answers AWS sends (see the "Errors the endpoint returns" notes): IAM and
//! resource-policy denials ("User: arn:… is not authorized to perform: es:ESHttpGet"),
//! fine-grained access control (`security_exception` "no permissions for […]"), aoss denials
//! (`x-aoss-response-hint: X01:gw-helper-deny`, network policy or data access policy: aoss does
//! not say which), signature mismatches, expired or unknown credentials, and clock skew.

use http::{HeaderMap, StatusCode};

use crate::endpoint::Service;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

/// The meaning of one answer.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub verdict: Verdict,
    /// One line: what happened, in the user's words.
    pub summary: String,
    /// The endpoint's own message, first line, when it sent one.
    pub aws_said: Option<String>,
    /// More lines the endpoint sent that help (the canonical request it expected).
    pub aws_detail: Vec<String>,
    /// What to do, one item a line.
    pub fixes: Vec<String>,
}

/// What the check knows besides the answer.
#[derive(Debug, Clone, Default)]
pub struct Situation<'a> {
    /// The ARN STS returned for the credentials, if it answered.
    pub identity: Option<&'a str>,
    /// The endpoint host name (for the domain or collection name in fixes).
    pub host: &'a str,
    pub region: &'a str,
}

/// The principal that access policies and role mappings name for `arn`: an assumed-role
/// session (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) is written as its role
/// (`arn:aws:iam::ACCOUNT:role/ROLE`); anything else as is.
pub fn policy_principal(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts.as_slice() {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            if let Some((role, _session)) = rest.split_once('/') {
                return format!("arn:{partition}:iam::{account}:role/{role}");
            }
        }
    }
    arn.to_string()
}

/// `search-logs-abc123.us-east-1.es.amazonaws.com` → `logs` (the part before the last `-` of the
/// first label, without `search-`/`vpc-`); `None` for hosts that are not domain endpoints.
pub fn domain_name(host: &str) -> Option<&str> {
    let first = host.split('.').next()?;
    let rest = first
        .strip_prefix("search-")
        .or_else(|| first.strip_prefix("vpc-"))?;
    rest.rsplit_once('-').map(|(name, _id)| name)
}

/// The endpoint's message: `message`/`Message`, or an OpenSearch `error.reason`, else the first
/// line of the body (shortened).
pub fn aws_message(body: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["message", "Message"] {
            if let Some(m) = v.get(key).and_then(|m| m.as_str()) {
                return Some(m.to_string());
            }
        }
        if let Some(reason) = v
            .get("error")
            .and_then(|e| e.get("reason"))
            .and_then(|r| r.as_str())
        {
            return Some(reason.to_string());
        }
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Some(e.to_string());
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(shorten(trimmed, 300))
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Diagnoses the answer to `GET path`.
pub fn diagnose(
    service: Service,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    path: &str,
    situation: &Situation<'_>,
) -> Diagnosis {
    let message = aws_message(body);
    let (first_line, rest) = match &message {
        Some(m) => {
            let mut lines = m.lines();
            let first = lines.next().unwrap_or("").trim().to_string();
            let rest: Vec<String> = lines
                .map(|l| l.trim_end().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            (Some(first), rest)
        }
        None => (None, Vec::new()),
    };
    let error_type = header(headers, "x-amzn-errortype")
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    let aoss_hint = header(headers, "x-aoss-response-hint").map(str::to_string);
    let lower = body.to_ascii_lowercase();
    let who = situation
        .identity
        .map(policy_principal)
        .unwrap_or_else(|| "your IAM identity (see `identity` above)".to_string());
    let status_text = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string();

    let mut d = Diagnosis {
        verdict: Verdict::Fail,
        summary: String::new(),
        aws_said: first_line.clone(),
        aws_detail: Vec::new(),
        fixes: Vec::new(),
    };

    if status.is_success() {
        d.verdict = Verdict::Pass;
        d.aws_said = None;
        d.summary = format!(
            "{status_text}: the endpoint accepted the signed request{}",
            cluster_facts(body)
        );
        return d;
    }
    if status == StatusCode::NOT_FOUND {
        d.verdict = Verdict::Pass;
        d.summary = if service == Service::Aoss {
            format!("{status_text}: normal for OpenSearch Serverless, which answers 404 on `/` and on cluster APIs it does not have; the signature and the access policies let the request through")
        } else {
            format!("{status_text}: `{path}` does not exist, but the signature and the access policies let the request through")
        };
        return d;
    }

    if lower.contains("signature we calculated does not match")
        || error_type == "SignatureDoesNotMatch"
        || (error_type == "InvalidSignatureException"
            && !lower.contains("signature expired")
            && !lower.contains("not yet current"))
    {
        d.summary = format!("{status_text}: signature mismatch: the endpoint computed a different signature for this request");
        d.fixes = vec![
            "a skewed clock: see `clock` below (SigV4 allows 5 minutes)".into(),
            "a secret key that does not belong to the access key id: then STS fails the same way in `identity` above".into(),
            "something between here and the endpoint rewrote the request: a TLS-inspecting proxy or a load balancer that changes the path, query or signed headers (host, x-amz-*, content-type)".into(),
            "a sigv4-proxy bug: please report it with this output (the canonical request above is what the endpoint expected)".into(),
        ];
        if let Some(at) = rest
            .iter()
            .position(|l| l.contains("Canonical String for this request"))
        {
            // The endpoint echoes the session token inside it: never print that.
            d.aws_detail = rest[at..]
                .iter()
                .take_while(|l| !l.contains("String-to-Sign"))
                .map(|l| match l.split_once(':') {
                    Some((name, _)) if name.eq_ignore_ascii_case("x-amz-security-token") => {
                        format!("{name}:(redacted)")
                    }
                    _ => l.clone(),
                })
                .collect();
        }
        return d;
    }
    if lower.contains("signature expired") || lower.contains("signature not yet current") {
        d.summary = format!("{status_text}: the signature's time is more than 5 minutes away from the endpoint's clock");
        d.fixes = vec![
            "synchronise this machine's clock (chrony, systemd-timesyncd, ntpdate); see `clock` below".into(),
        ];
        return d;
    }
    if lower.contains("security token included in the request is expired")
        || error_type == "ExpiredTokenException"
    {
        d.summary = format!("{status_text}: the credentials' session token has expired");
        d.fixes = vec![
            "get fresh credentials: `aws sso login`, a new `aws sts assume-role`, or renew whatever sets AWS_SESSION_TOKEN".into(),
            "a running proxy refreshes by itself only when its source can (profile with role_arn or SSO, web identity, container, instance metadata); static environment variables cannot be refreshed".into(),
        ];
        return d;
    }
    if lower.contains("security token included in the request is invalid")
        || error_type == "UnrecognizedClientException"
    {
        d.summary = format!("{status_text}: AWS does not recognise these credentials");
        d.fixes = vec![
            "the access key was deleted or deactivated, or belongs to another partition (aws, aws-cn, aws-us-gov)".into(),
            "temporary keys (ASIA…) need their session token: set AWS_SESSION_TOKEN with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
        ];
        return d;
    }
    if lower.contains("missing authentication token")
        || error_type == "MissingAuthenticationTokenException"
    {
        d.summary =
            format!("{status_text}: the request reached the endpoint without its signature");
        d.fixes = vec![
            "something between here and the endpoint removed the Authorization header (a proxy or load balancer)".into(),
        ];
        return d;
    }
    if lower.contains("is not authorized to perform") {
        let action = if service == Service::Aoss {
            "aoss:APIAccessAll".to_string()
        } else {
            let m = first_line.as_deref().unwrap_or("");
            m.split("perform: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(|a| a.trim_end_matches([',', '.']).to_string())
                .unwrap_or_else(|| "es:ESHttpGet".into())
        };
        let resource = match (service, domain_name(situation.host)) {
            (Service::Es, Some(name)) => {
                format!("arn:aws:es:{}:ACCOUNT:domain/{name}/*", situation.region)
            }
            (Service::Es, None) => "the domain (arn:aws:es:REGION:ACCOUNT:domain/NAME/*)".into(),
            (Service::Aoss, _) => "the collection".into(),
        };
        d.summary = format!("{status_text}: denied by IAM: an identity-based policy, a permissions boundary or SCP, or the domain's resource-based access policy does not allow {action}");
        d.fixes = vec![
            format!("allow {action} on {resource} for {who} in its IAM policy"),
            format!("and check the domain's access policy: it must not deny {who}, and if it lists principals, include it"),
        ];
        return d;
    }
    if lower.contains("no permissions for") || lower.contains("security_exception") {
        let what = first_line
            .as_deref()
            .and_then(|m| m.split("no permissions for ").nth(1))
            .and_then(|r| r.split(" and User").next())
            .map(str::to_string);
        d.summary = format!(
            "{status_text}: denied by fine-grained access control: the signature and IAM were fine, but {who} is mapped to no OpenSearch role that allows {}",
            what.as_deref().unwrap_or("this request")
        );
        d.fixes = vec![
            format!("map {who} as a backend role to an OpenSearch role with the needed permissions: Dashboards → Security → Roles → (role) → Mapped users, or PUT _plugins/_security/api/rolesmapping/ROLE as the master user"),
            "or make this IAM identity the domain's master user (Security configuration → fine-grained access control)".into(),
        ];
        return d;
    }
    if service == Service::Aoss && status == StatusCode::FORBIDDEN {
        let collection = situation.host.split('.').next().unwrap_or("the collection");
        d.summary = match &aoss_hint {
            Some(hint) => format!("{status_text} ({hint}): denied by the collection's network policy or by its data access policy; aoss does not say which"),
            None => format!("{status_text}: denied by OpenSearch Serverless: the network policy, the data access policy or IAM (aoss:APIAccessAll)"),
        };
        d.fixes = vec![
            format!("network policy: it must allow access to this collection ({collection}) from where you are: public access, or the VPC endpoint you connect through"),
            format!("data access policy: it must grant {who} the permissions this request needs (e.g. aoss:DescribeIndex, aoss:ReadDocument on index/COLLECTION/*); policies name roles, not assumed-role sessions"),
            "IAM: the identity needs aoss:APIAccessAll on the collection".into(),
        ];
        return d;
    }
    if status == StatusCode::FORBIDDEN {
        d.summary = format!("{status_text}: the endpoint refused the request");
        d.fixes = vec![format!(
            "check the IAM policy of {who} and the domain's access policy"
        )];
        return d;
    }
    if status == StatusCode::BAD_REQUEST && lower.contains("x-amz-content-sha256") {
        d.summary = format!("{status_text}: the endpoint did not accept the body hash header (x-amz-content-sha256); a sigv4-proxy bug or a middlebox changed it");
        return d;
    }
    if status == StatusCode::UNAUTHORIZED {
        d.summary = format!("{status_text}: the domain wants other authentication (fine-grained access control with HTTP basic auth or Cognito, without IAM)");
        d.fixes = vec![
            "enable IAM authentication on the domain, or map this IAM identity as the master user"
                .into(),
        ];
        return d;
    }
    if status.is_server_error() {
        d.summary = format!("{status_text}: the endpoint is failing (overloaded, red cluster, or a load balancer without healthy nodes); the proxy and the credentials are not the cause");
        return d;
    }
    if status.is_redirection() {
        d.verdict = Verdict::Warn;
        d.summary = format!(
            "{status_text}: a redirect to {}; the endpoint answered, try another --path",
            header(headers, "location").unwrap_or("(no Location)")
        );
        return d;
    }
    d.summary = format!("{status_text}: unexpected answer");
    d
}

/// ` (cluster NAME, OpenSearch 2.13.0)` from the root document of a domain, if it is one.
fn cluster_facts(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    let name = v.get("cluster_name").and_then(|n| n.as_str());
    let version = v
        .get("version")
        .and_then(|ver| ver.get("number"))
        .and_then(|n| n.as_str());
    let distribution = v
        .get("version")
        .and_then(|ver| ver.get("distribution"))
        .and_then(|d| d.as_str())
        .map(|d| if d == "opensearch" { "OpenSearch" } else { d })
        .unwrap_or("version");
    match (name, version) {
        (Some(n), Some(ver)) => format!(" (cluster {n}, {distribution} {ver})"),
        (Some(n), None) => format!(" (cluster {n})"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(service: Service, status: u16, headers: &[(&str, &str)], body: &str) -> Diagnosis {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        diagnose(
            service,
            StatusCode::from_u16(status).unwrap(),
            &map,
            body,
            "/",
            &Situation {
                identity: Some("arn:aws:sts::123456789012:assumed-role/dev/alice"),
                host: "search-logs-abc123.us-east-1.es.amazonaws.com",
                region: "us-east-1",
            },
        )
    }

    #[test]
    fn assumed_role_sessions_are_named_by_their_role() {
        assert_eq!(
            policy_principal("arn:aws:sts::123456789012:assumed-role/dev/alice"),
            "arn:aws:iam::123456789012:role/dev"
        );
        assert_eq!(
            policy_principal("arn:aws-cn:sts::1:assumed-role/r/s"),
            "arn:aws-cn:iam::1:role/r"
        );
        assert_eq!(
            policy_principal("arn:aws:iam::1:user/bob"),
            "arn:aws:iam::1:user/bob"
        );
    }

    #[test]
    fn domain_names_come_from_the_host() {
        assert_eq!(
            domain_name("search-my-logs-abc123.us-east-1.es.amazonaws.com"),
            Some("my-logs")
        );
        assert_eq!(domain_name("vpc-x-1.eu-west-1.es.amazonaws.com"), Some("x"));
        assert_eq!(domain_name("abc.us-east-1.aoss.amazonaws.com"), None);
    }

    #[test]
    fn iam_denials_name_the_action_and_the_role() {
        let d = run(
            Service::Es,
            403,
            &[],
            r#"{"Message":"User: arn:aws:sts::123456789012:assumed-role/dev/alice is not authorized to perform: es:ESHttpGet because no identity-based policy allows the es:ESHttpGet action"}"#,
        );
        assert_eq!(d.verdict, Verdict::Fail);
        assert!(
            d.summary.contains("denied by IAM") && d.summary.contains("es:ESHttpGet"),
            "{}",
            d.summary
        );
        assert!(
            d.fixes[0].contains("arn:aws:es:us-east-1:ACCOUNT:domain/logs/*"),
            "{:?}",
            d.fixes
        );
        assert!(
            d.fixes[0].contains("arn:aws:iam::123456789012:role/dev"),
            "{:?}",
            d.fixes
        );
    }

    #[test]
    fn fgac_denials_name_the_permission() {
        let body = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"no permissions for [cluster:monitor/main] and User [name=arn:aws:iam::123456789012:role/dev, backend_roles=[arn:aws:iam::123456789012:role/dev], requestedTenant=null]"}],"type":"security_exception","reason":"no permissions for [cluster:monitor/main] and User [name=arn:aws:iam::123456789012:role/dev, backend_roles=[arn:aws:iam::123456789012:role/dev], requestedTenant=null]"},"status":403}"#;
        let d = run(Service::Es, 403, &[], body);
        assert!(
            d.summary.contains("fine-grained access control")
                && d.summary.contains("[cluster:monitor/main]"),
            "{}",
            d.summary
        );
    }

    #[test]
    fn aoss_denials_say_both_policies_are_possible() {
        let d = run(
            Service::Aoss,
            403,
            &[("x-aoss-response-hint", "X01:gw-helper-deny")],
            r#"{"status":403,"request-id":"x","error":{"reason":"403 Forbidden","type":"Forbidden"}}"#,
        );
        assert!(
            d.summary.contains("X01:gw-helper-deny")
                && d.summary.contains("network policy")
                && d.summary.contains("data access policy"),
            "{}",
            d.summary
        );
    }

    #[test]
    fn signature_mismatch_shows_the_expected_canonical_request() {
        let body = serde_json::json!({"message": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'GET\n/\n\nhost:x\nx-amz-security-token:SECRETTOKEN\n\nhost;x-amz-security-token\nabc'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n...'\n"}).to_string();
        let d = run(
            Service::Es,
            403,
            &[("x-amzn-ErrorType", "InvalidSignatureException")],
            &body,
        );
        assert!(d.summary.contains("signature mismatch"), "{}", d.summary);
        assert!(
            d.aws_detail.iter().any(|l| l.contains("Canonical String")),
            "{:?}",
            d.aws_detail
        );
        assert!(!d.aws_detail.iter().any(|l| l.contains("String-to-Sign")));
        assert!(d
            .aws_detail
            .contains(&"x-amz-security-token:(redacted)".to_string()));
        assert!(!format!("{d:?}").contains("SECRETTOKEN"));
    }

    #[test]
    fn token_and_clock_failures_are_told_apart() {
        let d = run(
            Service::Es,
            403,
            &[],
            r#"{"message":"The security token included in the request is expired"}"#,
        );
        assert!(d.summary.contains("expired"), "{}", d.summary);
        let d = run(
            Service::Es,
            403,
            &[],
            r#"{"message":"The security token included in the request is invalid."}"#,
        );
        assert!(d.summary.contains("does not recognise"), "{}", d.summary);
        let d = run(
            Service::Es,
            403,
            &[("x-amzn-ErrorType", "InvalidSignatureException")],
            r#"{"message":"Signature expired: 20240101T000000Z is now earlier than 20240101T000500Z (20240101T001000Z - 5 min.)"}"#,
        );
        assert!(d.summary.contains("clock"), "{}", d.summary);
        // aoss hides the message; the error type header still tells.
        let d = run(
            Service::Aoss,
            403,
            &[("x-amzn-ErrorType", "ExpiredTokenException")],
            r#"{"status":403,"error":{"reason":"403 Forbidden","type":"Forbidden"}}"#,
        );
        assert!(d.summary.contains("expired"), "{}", d.summary);
    }

    #[test]
    fn success_and_aoss_404_pass() {
        let d = run(
            Service::Es,
            200,
            &[],
            r#"{"cluster_name":"123:logs","version":{"distribution":"opensearch","number":"2.13.0"}}"#,
        );
        assert_eq!(d.verdict, Verdict::Pass);
        assert!(
            d.summary.ends_with("(cluster 123:logs, OpenSearch 2.13.0)"),
            "{}",
            d.summary
        );
        let d = run(Service::Aoss, 404, &[], "");
        assert_eq!(d.verdict, Verdict::Pass);
        assert!(d.summary.contains("normal for OpenSearch Serverless"));
    }
}
