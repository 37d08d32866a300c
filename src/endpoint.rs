//! The upstream endpoint: URL → scheme, host, port, service (`es`/`aoss`) and region.
//!
//! Managed domains look like `search-NAME-ID.REGION.es.amazonaws.com` (or `vpc-…`), serverless
//! collections like `ID.REGION.aoss.amazonaws.com`; China uses `.amazonaws.com.cn`. Anything else
//! (a custom domain, an IP address) names its service and region explicitly.

use std::fmt;
use std::str::FromStr;

/// The AWS service a request is signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Amazon OpenSearch Service managed domains.
    Es,
    /// Amazon OpenSearch Serverless collections.
    Aoss,
}

impl Service {
    /// The signing name in the credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Es => "es",
            Service::Aoss => "aoss",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signing_name())
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "es" => Ok(Service::Es),
            "aoss" => Ok(Service::Aoss),
            other => Err(format!(
                "unknown service `{other}`: expected `es` or `aoss`"
            )),
        }
    }
}

/// A parsed endpoint URL. Only `https` is accepted for real endpoints; `http` is refused
/// because a signed request over plain text would leak the session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name (or IP literal, without brackets) used for SNI, certificate checks and `Host`.
    pub host: String,
    /// Port; 443 unless the URL names another.
    pub port: u16,
    /// Whether the URL named the port explicitly (then `Host` carries it).
    pub explicit_port: bool,
    /// Service inferred from the host name, if it is an AWS one.
    pub inferred_service: Option<Service>,
    /// Region inferred from the host name, if it is an AWS one.
    pub inferred_region: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("endpoint is empty")]
    Empty,
    #[error("endpoint `{0}` uses plain http; sigv4-proxy only forwards over https (the signature and session token would travel in clear text)")]
    PlainHttp(String),
    #[error("endpoint `{0}` has an unsupported scheme; use https://HOST")]
    Scheme(String),
    #[error("endpoint `{url}` is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("endpoint `{0}` has a path, query or user info; give only https://HOST[:PORT] (a path prefix cannot be signed for you)")]
    HasPath(String),
}

impl Endpoint {
    /// Parses `https://host[:port][/]` or a bare `host[:port]`.
    pub fn parse(input: &str) -> Result<Endpoint, EndpointError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(EndpointError::Empty);
        }
        let rest = if let Some((scheme, rest)) = input.split_once("://") {
            match scheme.to_ascii_lowercase().as_str() {
                "https" => rest,
                "http" => return Err(EndpointError::PlainHttp(input.to_string())),
                _ => return Err(EndpointError::Scheme(input.to_string())),
            }
        } else {
            input
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(EndpointError::HasPath(input.to_string()));
        }
        let parsed: http::uri::Authority =
            authority
                .parse()
                .map_err(|e: http::uri::InvalidUri| EndpointError::Invalid {
                    url: input.to_string(),
                    reason: e.to_string(),
                })?;
        let port_text = parsed
            .as_str()
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.contains(']'));
        if let Some(p) = port_text {
            if p.parse::<u16>().map_or(true, |n| n == 0) {
                return Err(EndpointError::Invalid {
                    url: input.to_string(),
                    reason: format!("`{p}` is not a port"),
                });
            }
        }
        let host = parsed
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(EndpointError::Invalid {
                url: input.to_string(),
                reason: "no host name".into(),
            });
        }
        let (inferred_service, inferred_region) = match infer(&host) {
            Some((s, r)) => (Some(s), Some(r)),
            None => (None, None),
        };
        Ok(Endpoint {
            port: parsed.port_u16().unwrap_or(443),
            explicit_port: parsed.port_u16().is_some(),
            host,
            inferred_service,
            inferred_region,
        })
    }

    /// The value of the `Host` header (and the signed `host`): the port only when it was explicit.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.explicit_port {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }

    /// `https://authority`, the base every upstream URI starts with.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

/// `search-x.us-east-1.es.amazonaws.com` → (Es, us-east-1); `id.eu-west-1.aoss.amazonaws.com`
/// → (Aoss, eu-west-1); the same under `amazonaws.com.cn`. FIPS and dual-stack forms
/// (`…es-fips.…`, `….aos.…api.aws`) are not guessed.
fn infer(host: &str) -> Option<(Service, String)> {
    let host = host.trim_end_matches('.');
    let stem = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let mut labels = stem.rsplit('.');
    let service = match labels.next()? {
        "es" => Service::Es,
        "aoss" => Service::Aoss,
        _ => return None,
    };
    let region = labels.next()?;
    // At least one label (the domain or collection) must precede the region.
    labels.next()?;
    if !looks_like_region(region) {
        return None;
    }
    Some((service, region.to_string()))
}

/// Regions are `xx-name-N` (`us-east-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`).
fn looks_like_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inferred(url: &str) -> (Option<Service>, Option<String>) {
        let e = Endpoint::parse(url).unwrap();
        (e.inferred_service, e.inferred_region)
    }

    #[test]
    fn infers_managed_domains() {
        assert_eq!(
            inferred("https://search-logs-abc123.us-east-1.es.amazonaws.com"),
            (Some(Service::Es), Some("us-east-1".into()))
        );
        assert_eq!(
            inferred("vpc-logs-abc123.eu-central-1.es.amazonaws.com"),
            (Some(Service::Es), Some("eu-central-1".into()))
        );
        assert_eq!(
            inferred("https://search-x.us-gov-west-1.es.amazonaws.com/"),
            (Some(Service::Es), Some("us-gov-west-1".into()))
        );
        assert_eq!(
            inferred("https://search-x.cn-north-1.es.amazonaws.com.cn"),
            (Some(Service::Es), Some("cn-north-1".into()))
        );
    }

    #[test]
    fn infers_serverless_collections() {
        assert_eq!(
            inferred("https://0123abcd.us-west-2.aoss.amazonaws.com"),
            (Some(Service::Aoss), Some("us-west-2".into()))
        );
        assert_eq!(
            inferred("https://0123abcd.cn-northwest-1.aoss.amazonaws.com.cn:443"),
            (Some(Service::Aoss), Some("cn-northwest-1".into()))
        );
    }

    #[test]
    fn custom_hosts_infer_nothing() {
        assert_eq!(inferred("https://search.example.com"), (None, None));
        assert_eq!(inferred("https://10.0.0.5:9200"), (None, None));
        assert_eq!(inferred("https://us-east-1.es.amazonaws.com"), (None, None));
        assert_eq!(
            inferred("https://x.notaregion.es.amazonaws.com"),
            (None, None)
        );
    }

    #[test]
    fn authority_keeps_explicit_port_only() {
        let e = Endpoint::parse("https://Search-X.us-east-1.es.amazonaws.com").unwrap();
        assert_eq!(e.authority(), "search-x.us-east-1.es.amazonaws.com");
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("https://localhost:8443").unwrap();
        assert_eq!(e.authority(), "localhost:8443");
        let e = Endpoint::parse("https://[::1]:8443").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority(), "[::1]:8443");
    }

    #[test]
    fn rejects_what_cannot_be_forwarded_safely() {
        assert!(matches!(
            Endpoint::parse("http://x.us-east-1.es.amazonaws.com"),
            Err(EndpointError::PlainHttp(_))
        ));
        assert!(matches!(
            Endpoint::parse("ftp://x"),
            Err(EndpointError::Scheme(_))
        ));
        assert!(matches!(
            Endpoint::parse("https://x.com/prefix"),
            Err(EndpointError::HasPath(_))
        ));
        assert!(matches!(
            Endpoint::parse("https://user@x.com"),
            Err(EndpointError::HasPath(_))
        ));
        assert!(matches!(Endpoint::parse(""), Err(EndpointError::Empty)));
        assert!(matches!(
            Endpoint::parse("https://x.com:99999"),
            Err(EndpointError::Invalid { .. })
        ));
    }
}
