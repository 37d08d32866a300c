//! The policy grammar: IAM policy JSON as people write it for their domains,
//! parsed strictly (unknown keys, duplicate keys, unsupported operators are
//! load errors) and compiled into [`Statement`]s.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::pattern::{Glob, Target};
use super::PolicyError;

/// The six data-plane actions, in the canonical spelling.
pub(crate) const ACTIONS: [&str; 6] = [
    "es:ESHttpGet",
    "es:ESHttpHead",
    "es:ESHttpPost",
    "es:ESHttpPut",
    "es:ESHttpDelete",
    "es:ESHttpPatch",
];

// ---------------------------------------------------------------------------
// Raw JSON shape
// ---------------------------------------------------------------------------

/// `T` or `[T, ...]`, keeping serde_json's positioned error messages.
#[derive(Debug)]
pub(crate) struct OneOrMany<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or an array of values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| OneOrMany(vec![t]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = seq.next_element()? {
                    out.push(t);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A JSON object whose duplicate keys are an error (serde's maps keep the last).
#[derive(Debug)]
struct StrictMap<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for StrictMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = StrictMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(o, _)| *o == k) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = map.next_value()?;
                    out.push((k, v));
                }
                Ok(StrictMap(out))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

#[derive(Debug)]
enum RawPrincipal {
    Star,
    Map(StrictMap<OneOrMany<String>>),
}

impl<'de> Deserialize<'de> for RawPrincipal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPrincipal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""*" or an object like {"Proxy": ["user"]}"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "*" {
                    Ok(RawPrincipal::Star)
                } else {
                    Err(E::custom(format!(
                        r#"Principal must be "*" or an object like {{"Proxy": ["user"]}}, not {v:?}"#
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                StrictMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawPrincipal::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(rename = "Version")]
    version: Option<String>,
    #[serde(rename = "Id")]
    _id: Option<String>,
    #[serde(rename = "Statement")]
    statement: OneOrMany<RawStatement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "Sid")]
    sid: Option<String>,
    #[serde(rename = "Effect")]
    effect: String,
    #[serde(rename = "Action")]
    action: Option<OneOrMany<String>>,
    #[serde(rename = "NotAction")]
    not_action: Option<OneOrMany<String>>,
    #[serde(rename = "Resource")]
    resource: Option<OneOrMany<String>>,
    #[serde(rename = "NotResource")]
    not_resource: Option<OneOrMany<String>>,
    #[serde(rename = "Condition")]
    condition: Option<StrictMap<StrictMap<OneOrMany<String>>>>,
    #[serde(rename = "Principal")]
    principal: Option<RawPrincipal>,
    #[serde(rename = "NotPrincipal")]
    not_principal: Option<de::IgnoredAny>,
}

// ---------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Allow,
    Deny,
}

/// One resource pattern, remembering what the author wrote.
#[derive(Clone, Debug)]
pub(crate) struct ResourcePattern {
    pub(crate) glob: Glob,
    /// As written in the policy (used in messages).
    pub(crate) written: String,
    /// Relative to the endpoint, as matched (`restricted-index/*`).
    pub(crate) relative: String,
}

#[derive(Clone, Debug)]
pub(crate) struct IpCondition {
    negated: bool,
    nets: Vec<IpNet>,
}

#[derive(Clone, Debug)]
pub(crate) struct Statement {
    pub(crate) label: String,
    pub(crate) effect: Effect,
    action_globs: Vec<Glob>,
    not_action: bool,
    resources: Vec<ResourcePattern>,
    not_resource: bool,
    conditions: Vec<IpCondition>,
    /// `None`: every principal.
    principals: Option<Vec<Glob>>,
    /// The principals as written, those without wildcards.
    principal_texts: Vec<String>,
}

impl Statement {
    /// Does this statement apply to the request at all (action, principal, conditions)?
    pub(crate) fn applies(&self, action: &str, principal: Option<&str>, ip: IpAddr) -> bool {
        let a = action.to_ascii_lowercase();
        let hit = self.action_globs.iter().any(|g| g.matches(&a));
        if hit == self.not_action {
            return false;
        }
        if let (Some(allowed), Some(p)) = (&self.principals, principal) {
            if !allowed.iter().any(|g| g.matches(p)) {
                return false;
            }
        }
        let ip = normalize_ip(ip);
        self.conditions.iter().all(|c| {
            let inside = c.nets.iter().any(|n| n.contains(&ip));
            inside != c.negated
        })
    }

    /// Whether the statement's resources match `<prefix><anything>` alike, whatever follows.
    pub(crate) fn decided_after(&self, prefix: &str) -> bool {
        self.resources
            .iter()
            .all(|r| r.glob.decided_after(prefix).is_some())
    }

    /// For a Deny statement: which pattern (as written) may reach the target?
    pub(crate) fn deny_match(&self, t: &Target) -> Option<String> {
        if self.not_resource {
            if self.resources.iter().any(|r| r.glob.covers(t)) {
                None
            } else {
                Some(self.not_resource_text())
            }
        } else {
            self.resources
                .iter()
                .find(|r| r.glob.overlaps(t))
                .map(|r| format!("Resource {:?}", r.written))
        }
    }

    /// For an Allow statement: does it allow every resource the target stands for?
    pub(crate) fn allows(&self, t: &Target) -> bool {
        if self.not_resource {
            !self.resources.iter().any(|r| r.glob.overlaps(t))
        } else {
            self.resources.iter().any(|r| r.glob.covers(t))
        }
    }

    /// For an Allow statement: the pattern (as written) that allows every resource the
    /// target stands for.
    pub(crate) fn allow_match(&self, t: &Target) -> Option<String> {
        if !self.allows(t) {
            return None;
        }
        if self.not_resource {
            Some(self.not_resource_text())
        } else {
            self.resources
                .iter()
                .find(|r| r.glob.covers(t))
                .map(|r| format!("Resource {:?}", r.written))
        }
    }

    /// `NotResource "a", "b"`: a NotResource statement's patterns as written, for messages.
    fn not_resource_text(&self) -> String {
        let written: Vec<String> = self
            .resources
            .iter()
            .map(|r| format!("{:?}", r.written))
            .collect();
        format!("NotResource {}", written.join(", "))
    }

    pub(crate) fn mentions_principals(&self) -> bool {
        self.principals.is_some()
    }

    pub(crate) fn resources(&self) -> &[ResourcePattern] {
        &self.resources
    }

    pub(crate) fn is_not_resource(&self) -> bool {
        self.not_resource
    }

    /// The inbound users this statement names without wildcards (`Principal: {"Proxy": …}`).
    pub(crate) fn principal_names(&self) -> Vec<String> {
        self.principal_texts.clone()
    }

    /// An address inside each network the conditions name (to probe the policy with).
    pub(crate) fn sample_ips(&self) -> Vec<IpAddr> {
        self.conditions
            .iter()
            .flat_map(|c| c.nets.iter().map(|n| n.network()))
            .collect()
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, from a dual-stack listener) is its IPv4 address.
pub(crate) fn normalize_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub(crate) fn parse(text: &str) -> Result<Vec<Statement>, PolicyError> {
    let raw: RawPolicy = serde_json::from_str(text).map_err(PolicyError::Json)?;
    match raw.version.as_deref() {
        None | Some("2012-10-17") | Some("2008-10-17") => {}
        Some(v) => {
            return Err(PolicyError::Invalid {
                statement: None,
                message: format!("unknown Version {v:?} (use \"2012-10-17\")"),
            })
        }
    }
    if raw.statement.0.is_empty() {
        return Err(PolicyError::Invalid {
            statement: None,
            message: "the policy has no statements (it would deny everything)".into(),
        });
    }
    raw.statement
        .0
        .into_iter()
        .enumerate()
        .map(|(i, s)| compile(i, s))
        .collect()
}

fn compile(index: usize, raw: RawStatement) -> Result<Statement, PolicyError> {
    let label = raw
        .sid
        .clone()
        .unwrap_or_else(|| format!("Statement[{index}]"));
    let err = |message: String| PolicyError::Invalid {
        statement: Some(label.clone()),
        message,
    };
    let effect = match raw.effect.as_str() {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        other => {
            return Err(err(format!(
                "Effect must be \"Allow\" or \"Deny\", not {other:?}"
            )))
        }
    };
    if raw.not_principal.is_some() {
        return Err(err(
            "NotPrincipal is not supported; use Principal {\"Proxy\": [...]}".into(),
        ));
    }

    let (actions, not_action) = match (raw.action, raw.not_action) {
        (Some(a), None) => (a.0, false),
        (None, Some(a)) => (a.0, true),
        (Some(_), Some(_)) => return Err(err("has both Action and NotAction".into())),
        (None, None) => return Err(err("has no Action (or NotAction)".into())),
    };
    let key = if not_action { "NotAction" } else { "Action" };
    if actions.is_empty() {
        return Err(err(format!("{key} is an empty list")));
    }
    let mut action_globs = Vec::new();
    for a in &actions {
        action_globs.push(compile_action(a).map_err(|m| err(format!("{key} {a:?}: {m}")))?);
    }

    let (resources, not_resource) = match (raw.resource, raw.not_resource) {
        (Some(r), None) => (r.0, false),
        (None, Some(r)) => (r.0, true),
        (Some(_), Some(_)) => return Err(err("has both Resource and NotResource".into())),
        (None, None) => return Err(err("has no Resource (or NotResource)".into())),
    };
    let key = if not_resource {
        "NotResource"
    } else {
        "Resource"
    };
    if resources.is_empty() {
        return Err(err(format!("{key} is an empty list")));
    }
    let mut patterns = Vec::new();
    for r in &resources {
        let rel = relative_resource(r).map_err(|m| err(format!("{key} {r:?}: {m}")))?;
        patterns.push(ResourcePattern {
            glob: Glob::new(&rel),
            written: r.clone(),
            relative: rel.clone(),
        });
        // The deliberate difference from IAM: a Deny on `name/*` also covers `name`.
        if effect == Effect::Deny && !not_resource {
            if let Some(stem) = rel.strip_suffix("/*") {
                patterns.push(ResourcePattern {
                    glob: Glob::new(stem),
                    written: r.clone(),
                    relative: stem.to_string(),
                });
            }
        }
    }

    let mut conditions = Vec::new();
    for (op, keys) in raw.condition.map(|c| c.0).unwrap_or_default() {
        let negated = match op.as_str() {
            "IpAddress" => false,
            "NotIpAddress" => true,
            other => {
                return Err(err(format!(
                    "Condition operator {other:?} is not supported (only IpAddress and NotIpAddress on aws:SourceIp)"
                )))
            }
        };
        if keys.0.is_empty() {
            return Err(err(format!("Condition {op} has no keys")));
        }
        for (k, values) in keys.0 {
            if !k.eq_ignore_ascii_case("aws:SourceIp") {
                return Err(err(format!(
                    "Condition key {k:?} in {op} is not supported (only aws:SourceIp)"
                )));
            }
            if values.0.is_empty() {
                return Err(err(format!("Condition {op} {k} has no values")));
            }
            let mut nets = Vec::new();
            for v in &values.0 {
                nets.push(parse_net(v).ok_or_else(|| {
                    err(format!(
                        "Condition {op} {k}: {v:?} is not an IP address or CIDR"
                    ))
                })?);
            }
            conditions.push(IpCondition { negated, nets });
        }
    }

    let mut principal_texts = Vec::new();
    let principals = match raw.principal {
        None | Some(RawPrincipal::Star) => None,
        Some(RawPrincipal::Map(m)) => {
            let mut proxy: Option<Vec<Glob>> = None;
            for (k, v) in m.0 {
                match k.as_str() {
                    // Requests reach the domain signed as the proxy's single IAM identity,
                    // so AWS principals mean nothing here: they do not restrict.
                    "AWS" => {}
                    "Proxy" => {
                        if v.0.is_empty() {
                            return Err(err("Principal Proxy is an empty list".into()));
                        }
                        principal_texts.extend(
                            v.0.iter()
                                .filter(|p| !p.contains(['*', '?']))
                                .cloned(),
                        );
                        proxy = Some(v.0.iter().map(|p| Glob::new(p)).collect());
                    }
                    other => {
                        return Err(err(format!(
                            "Principal type {other:?} is not supported (use \"Proxy\" for the proxy's users)"
                        )))
                    }
                }
            }
            proxy
        }
    };

    Ok(Statement {
        label,
        effect,
        action_globs,
        not_action,
        resources: patterns,
        not_resource,
        conditions,
        principals,
        principal_texts,
    })
}

fn compile_action(a: &str) -> Result<Glob, String> {
    let lower = a.to_ascii_lowercase();
    if lower.starts_with("aoss:") {
        return Err("OpenSearch Serverless data access is written with the es:ESHttp* actions here too (e.g. es:ESHttpGet)".into());
    }
    let glob = Glob::new(&lower);
    if !ACTIONS
        .iter()
        .any(|x| glob.matches(&x.to_ascii_lowercase()))
    {
        return Err("matches none of es:ESHttpGet/Head/Post/Put/Delete/Patch (the proxy only sees HTTP data-plane requests)".into());
    }
    Ok(glob)
}

/// `arn:aws:es:region:acct:domain/name/rest` → `rest`; `/x` → `x`; `domain/name` alone → `*`.
fn relative_resource(r: &str) -> Result<String, String> {
    if r.is_empty() {
        return Err("empty resource".into());
    }
    if r.contains("${") {
        return Err("policy variables (${...}) are not supported".into());
    }
    if let Some(rest) = r.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() != 5 {
            return Err("not an ARN of the form arn:aws:es:REGION:ACCOUNT:domain/NAME/...".into());
        }
        if parts[1] == "aoss" {
            return Err("collection ARNs are not supported; write the index path relative to the endpoint (e.g. \"my-index/*\")".into());
        }
        if parts[1] != "es" && parts[1] != "*" {
            return Err(format!("service {:?} is not es", parts[1]));
        }
        let Some(path) = parts[4].strip_prefix("domain/") else {
            return Err("the ARN's resource must start with domain/NAME".into());
        };
        return Ok(match path.split_once('/') {
            None => "*".into(),
            Some((_, "")) => "*".into(),
            Some((_, rest)) => rest.into(),
        });
    }
    let rel = r.strip_prefix('/').unwrap_or(r);
    if rel.is_empty() {
        return Err("empty resource".into());
    }
    Ok(rel.to_string())
}

fn parse_net(v: &str) -> Option<IpNet> {
    let v = v.trim();
    if let Ok(n) = v.parse::<IpNet>() {
        return Some(n.trunc());
    }
    v.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn one(stmt: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":{stmt}}}"#)
    }

    #[test]
    fn statement_object_or_array_and_string_or_array() {
        let a = parse(&one(r#"{"Effect":"Allow","Action":"es:*","Resource":"*"}"#)).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].label, "Statement[0]");
        let b = parse(&one(
            r#"[{"Sid":"A","Effect":"Allow","Action":["es:ESHttpGet","es:ESHttpHead"],"Resource":["a/*","b"]},
                {"Effect":"Deny","Action":"*","Resource":"c/*"}]"#,
        ))
        .unwrap();
        assert_eq!(b[0].label, "A");
        assert_eq!(b[1].label, "Statement[1]");
        assert_eq!(b[1].effect, Effect::Deny);
        // Deny `c/*` also covers `c`
        assert!(b[1].deny_match(&Target::literal("c")).is_some());
        assert!(!b[0].allows(&Target::literal("a")));
        assert!(b[0].allows(&Target::literal("a/x")));
    }

    #[test]
    fn actions_are_case_insensitive_and_validated() {
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"ES:eshttpget","Resource":"*"}"#,
        ))
        .unwrap()[0];
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(s.applies("es:ESHttpGet", None, ip));
        assert!(!s.applies("es:ESHttpPost", None, ip));
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"es:ESHttp*","Resource":"*"}"#,
        ))
        .unwrap()[0];
        assert!(s.applies("es:ESHttpPatch", None, ip));
        let s = &parse(&one(
            r#"{"Effect":"Allow","NotAction":"es:ESHttpDelete","Resource":"*"}"#,
        ))
        .unwrap()[0];
        assert!(s.applies("es:ESHttpGet", None, ip));
        assert!(!s.applies("es:ESHttpDelete", None, ip));

        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"es:ESHttpGett","Resource":"*"}"#,
        ));
        assert!(
            e.contains("es:ESHttpGett") && e.contains("matches none"),
            "{e}"
        );
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"aoss:ReadDocument","Resource":"*"}"#,
        ));
        assert!(e.contains("es:ESHttp"), "{e}");
        let e = err_of(&one(r#"{"Effect":"Allow","Action":[],"Resource":"*"}"#));
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn arn_resources() {
        let cases = [
            (
                "arn:aws:es:us-east-1:123456789012:domain/my-domain/test-index/*",
                "test-index/x",
                true,
            ),
            (
                "arn:aws:es:us-east-1:123456789012:domain/my-domain/test-index/*",
                "other/x",
                false,
            ),
            (
                "arn:aws:es:us-east-1:123456789012:domain/my-domain",
                "anything/at/all",
                true,
            ),
            (
                "arn:aws:es:us-east-1:123456789012:domain/my-domain/*",
                "",
                true,
            ),
            ("arn:aws-cn:es:*:*:domain/*", "x", true),
            ("/_bulk", "_bulk", true),
        ];
        for (res, target, expect) in cases {
            let s = &parse(&one(&format!(
                r#"{{"Effect":"Allow","Action":"*","Resource":"{res}"}}"#
            )))
            .unwrap()[0];
            assert_eq!(
                s.allows(&Target::literal(target)),
                expect,
                "{res} vs {target}"
            );
        }
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::bucket/*"}"#,
        ));
        assert!(e.contains("not es"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"arn:aws:es:r:a:collection/x"}"#,
        ));
        assert!(e.contains("domain/NAME"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"${aws:username}/*"}"#,
        ));
        assert!(e.contains("policy variables"), "{e}");
    }

    #[test]
    fn not_resource() {
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"*","NotResource":"secret*"}"#,
        ))
        .unwrap()[0];
        assert!(s.allows(&Target::literal("public/_search")));
        assert!(!s.allows(&Target::literal("secret/_search")));
        assert!(!s.allows(&Target::wildcard("*/_search")));
        let d = &parse(&one(
            r#"{"Effect":"Deny","Action":"*","NotResource":"public*"}"#,
        ))
        .unwrap()[0];
        assert!(d.deny_match(&Target::literal("public/_search")).is_none());
        assert!(d.deny_match(&Target::literal("secret/_search")).is_some());
        assert!(d.deny_match(&Target::wildcard("p*/_search")).is_some());
    }

    #[test]
    fn ip_conditions() {
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*",
                "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32","192.0.2.7"]}}}"#,
        ))
        .unwrap()[0];
        let ok = |ip: &str| s.applies("es:ESHttpGet", None, ip.parse().unwrap());
        assert!(ok("10.1.2.3"));
        assert!(ok("::ffff:10.1.2.3"));
        assert!(ok("2001:db8::1"));
        assert!(ok("192.0.2.7"));
        assert!(!ok("192.0.2.8"));
        assert!(!ok("11.0.0.1"));
        let s = &parse(&one(r#"{"Effect":"Deny","Action":"*","Resource":"*",
                "Condition":{"NotIpAddress":{"AWS:SOURCEIP":["10.0.0.0/8","127.0.0.1"]}}}"#))
        .unwrap()[0];
        let hit = |ip: &str| s.applies("es:ESHttpGet", None, ip.parse().unwrap());
        assert!(hit("8.8.8.8"));
        assert!(!hit("10.9.9.9"));
        assert!(!hit("127.0.0.1"));
    }

    #[test]
    fn conditions_are_never_silently_ignored() {
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIp":"1.2.3.4"}}}"#,
        ));
        assert!(e.contains("StringEquals"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceVpc":"vpc-1"}}}"#,
        ));
        assert!(e.contains("aws:SourceVpc"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}"#,
        ));
        assert!(e.contains("10.0.0.0/33"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"1.1.1.1"},"IpAddress":{"aws:SourceIp":"2.2.2.2"}}}"#,
        ));
        assert!(e.contains("duplicate key"), "{e}");
    }

    #[test]
    fn principals() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Principal":{"Proxy":["dashboards-user","token:3"]}}"#,
        ))
        .unwrap()[0];
        assert!(s.mentions_principals());
        assert!(s.applies("es:ESHttpGet", Some("dashboards-user"), ip));
        assert!(s.applies("es:ESHttpGet", Some("token:3"), ip));
        assert!(!s.applies("es:ESHttpGet", Some("other"), ip));
        assert!(
            s.applies("es:ESHttpGet", None, ip),
            "ignored without inbound users"
        );
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}"#,
        ))
        .unwrap()[0];
        assert!(!s.mentions_principals());
        let s = &parse(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Principal":{"AWS":"arn:aws:iam::1:role/x"}}"#,
        ))
        .unwrap()[0];
        assert!(s.applies("es:ESHttpGet", Some("anyone"), ip));
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Principal":{"Service":"x"}}"#,
        ));
        assert!(e.contains("Service"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","NotPrincipal":"*"}"#,
        ));
        assert!(e.contains("NotPrincipal"), "{e}");
    }

    #[test]
    fn structural_errors_are_clear() {
        let e = err_of("{\n \"Statement\": [ {\"Effect\":\"Allow\",\n \"Action\":\"*\", \"Resource\":\"*\", \"Condtion\":{}} ]}");
        assert!(e.contains("Condtion") && e.contains("line 3"), "{e}");
        let e = err_of(&one(
            r#"{"Effect":"Allow","Action":"*","Resource":"*","Effect":"Deny"}"#,
        ));
        assert!(e.contains("duplicate field"), "{e}");
        let e = err_of(&one(r#"{"Effect":"allow","Action":"*","Resource":"*"}"#));
        assert!(e.contains("Effect"), "{e}");
        let e = err_of(&one(r#"{"Effect":"Allow","Resource":"*"}"#));
        assert!(e.contains("no Action"), "{e}");
        let e = err_of(&one(r#"{"Effect":"Allow","Action":"*"}"#));
        assert!(e.contains("no Resource"), "{e}");
        let e = err_of(&one(
            r#"{"Sid":"X","Effect":"Allow","Action":"*","Resource":"*","NotResource":"a"}"#,
        ));
        assert!(e.contains("\"X\"") && e.contains("both"), "{e}");
        let e = err_of(&one("[]"));
        assert!(e.contains("no statements"), "{e}");
        let e = err_of(r#"{"Version":"2013-01-01","Statement":[]}"#);
        assert!(e.contains("Version"), "{e}");
        let e = err_of("{\"Statement\": [ }");
        assert!(e.contains("line 1 column"), "{e}");
    }
}
