//! Header rules at the proxy's two edges: what goes upstream (no hop-by-hop, no client
//! credentials, the endpoint's `Host`) and what comes back (no hop-by-hop, redirects and cookies
//! pointed at the proxy so a browser stays on it).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers of RFC 9110 §7.6.1 plus the de-facto ones (`Keep-Alive`,
/// `Proxy-Connection`). `Transfer-Encoding` is connection framing too: hyper sets its own.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Makes the client's headers fit to forward: hop-by-hop and `Proxy-*` removed, `Expect`
/// answered here, the client's own `Authorization`, `Host`, `Content-Length` and any `x-amz-*`
/// dropped (the signer sets its own). Everything end-to-end stays, repeated headers in order.
pub fn prepare_request_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            n.starts_with("proxy-") || n.starts_with("x-amz-")
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    for name in [
        header::EXPECT,
        header::AUTHORIZATION,
        header::HOST,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
}

/// How the client reached the proxy, so redirects and cookies can point back at it.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// `http` or `https` (the listener's scheme).
    pub scheme: &'static str,
    /// The authority the client used (its `Host` header), e.g. `localhost:9200`.
    pub authority: String,
    /// `""` or `/prefix`: the route's path prefix, added back to redirects and cookie paths.
    pub path_prefix: String,
}

/// Cleans the endpoint's response headers for the client: hop-by-hop removed, `Location` and
/// `Set-Cookie` rewritten so a browser stays on the proxy.
pub fn prepare_response_headers(
    headers: &mut HeaderMap,
    endpoint_authority: &str,
    client: &ClientView,
) {
    strip_hop_by_hop(headers);
    if let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        if let Some(rewritten) = rewrite_location(location, endpoint_authority, client) {
            if let Ok(value) = HeaderValue::from_str(&rewritten) {
                headers.insert(header::LOCATION, value);
            }
        }
    }
    if headers.contains_key(header::SET_COOKIE) {
        let host = endpoint_authority
            .split(':')
            .next()
            .unwrap_or(endpoint_authority);
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| match v.to_str() {
                Ok(s) => {
                    let cookie = rewrite_set_cookie(s, host, client.scheme == "http");
                    let cookie = prefix_cookie_path(&cookie, &client.path_prefix);
                    HeaderValue::from_str(&cookie).unwrap_or_else(|_| v.clone())
                }
                Err(_) => v.clone(),
            })
            .collect();
        headers.remove(header::SET_COOKIE);
        for cookie in cookies {
            headers.append(header::SET_COOKIE, cookie);
        }
    }
}

/// `https://ENDPOINT/path` → `SCHEME://PROXY/path`; relative locations and other hosts are
/// left alone (they already keep the browser where it is, or were meant to leave).
pub fn rewrite_location(
    location: &str,
    endpoint_authority: &str,
    client: &ClientView,
) -> Option<String> {
    let prefix = client.path_prefix.as_str();
    if location.starts_with('/') && !location.starts_with("//") {
        return (!prefix.is_empty()).then(|| format!("{prefix}{location}"));
    }
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let authority = authority.to_ascii_lowercase();
    let endpoint = endpoint_authority.to_ascii_lowercase();
    let same = authority == endpoint
        || authority.strip_suffix(":443") == Some(endpoint.as_str())
        || endpoint.strip_suffix(":443") == Some(authority.as_str());
    if !same {
        return None;
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    let tail = if tail.starts_with('/') || prefix.is_empty() {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Some(format!(
        "{}://{}{prefix}{tail}",
        client.scheme, client.authority
    ))
}

/// `Path=/x` → `Path=/prefix/x` under a route's path prefix, so the browser sends the cookie
/// back to the proxy's path for it.
pub fn prefix_cookie_path(cookie: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        return cookie.to_string();
    }
    let mut parts = cookie.split("; ");
    let mut out = parts.next().unwrap_or("").to_string();
    for attr in parts {
        out.push_str("; ");
        match attr.split_once('=') {
            Some((name, value))
                if name.trim().eq_ignore_ascii_case("path") && value.starts_with('/') =>
            {
                let value = value.trim_end_matches('/');
                out.push_str(&format!("{name}={prefix}{value}"));
                if value.is_empty() {
                    out.push('/');
                }
            }
            _ => out.push_str(attr),
        }
    }
    out
}

/// Drops a `Domain` attribute that names the endpoint (the cookie then belongs to the proxy's
/// host), and on a plain-http listener drops `Secure` (the browser would discard the cookie)
/// together with `SameSite=None`, which browsers accept only on secure cookies.
pub fn rewrite_set_cookie(cookie: &str, endpoint_host: &str, plain_http: bool) -> String {
    let mut parts = cookie.split(';');
    let mut out = parts.next().unwrap_or("").trim().to_string();
    for attr in parts {
        let attr = attr.trim();
        let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
        let name_lc = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if name_lc == "domain" {
            let domain = value.trim_start_matches('.').to_ascii_lowercase();
            if endpoint_host == domain || endpoint_host.ends_with(&format!(".{domain}")) {
                continue;
            }
        }
        if plain_http
            && (name_lc == "secure"
                || (name_lc == "samesite" && value.eq_ignore_ascii_case("none")))
        {
            continue;
        }
        if attr.is_empty() {
            continue;
        }
        out.push_str("; ");
        out.push_str(attr);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_headers_lose_hop_by_hop_and_client_credentials_only() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic Zm9v"),
            ("proxy-foo", "1"),
            ("expect", "100-continue"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=evil"),
            ("x-amz-date", "20200101T000000Z"),
            ("x-amz-security-token", "stolen"),
            ("host", "localhost:9200"),
            ("content-length", "5"),
            ("x-opaque-id", "abc"),
            ("accept-encoding", "gzip"),
            ("osd-xsrf", "true"),
            ("content-type", "application/json"),
            ("cookie", "a=1"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("user-agent", "curl/8"),
        ]);
        prepare_request_headers(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept-encoding",
                "content-type",
                "cookie",
                "osd-xsrf",
                "user-agent",
                "x-multi",
                "x-opaque-id"
            ]
        );
        let multi: Vec<_> = h.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two"]);
    }

    fn client() -> ClientView {
        ClientView {
            scheme: "http",
            authority: "localhost:9200".into(),
            path_prefix: String::new(),
        }
    }

    #[test]
    fn a_path_prefix_is_added_back_to_redirects_and_cookie_paths() {
        let ep = "search-x.us-east-1.es.amazonaws.com";
        let c = ClientView {
            path_prefix: "/logs".into(),
            ..client()
        };
        assert_eq!(
            rewrite_location(
                "https://search-x.us-east-1.es.amazonaws.com/_dashboards/app",
                ep,
                &c
            )
            .as_deref(),
            Some("http://localhost:9200/logs/_dashboards/app")
        );
        assert_eq!(
            rewrite_location("https://search-x.us-east-1.es.amazonaws.com?x=1", ep, &c).as_deref(),
            Some("http://localhost:9200/logs/?x=1")
        );
        assert_eq!(
            rewrite_location("/_dashboards/app", ep, &c).as_deref(),
            Some("/logs/_dashboards/app")
        );
        assert_eq!(rewrite_location("app/home", ep, &c), None);
        assert_eq!(rewrite_location("//other/x", ep, &c), None);
        assert_eq!(
            prefix_cookie_path("a=1; Path=/_dashboards; HttpOnly", "/logs"),
            "a=1; Path=/logs/_dashboards; HttpOnly"
        );
        assert_eq!(
            prefix_cookie_path("a=1; Path=/", "/logs"),
            "a=1; Path=/logs/"
        );
        assert_eq!(prefix_cookie_path("a=1; Path=/x", ""), "a=1; Path=/x");
    }

    #[test]
    fn location_on_the_endpoint_points_back_at_the_proxy() {
        let ep = "search-x.us-east-1.es.amazonaws.com";
        assert_eq!(
            rewrite_location(
                "https://search-x.us-east-1.es.amazonaws.com/_dashboards/app/home#/",
                ep,
                &client()
            )
            .as_deref(),
            Some("http://localhost:9200/_dashboards/app/home#/")
        );
        assert_eq!(
            rewrite_location(
                "https://SEARCH-X.us-east-1.es.amazonaws.com:443",
                ep,
                &client()
            )
            .as_deref(),
            Some("http://localhost:9200/")
        );
        assert_eq!(
            rewrite_location("/_dashboards/app/home", ep, &client()),
            None
        );
        assert_eq!(
            rewrite_location("https://signin.aws.amazon.com/x", ep, &client()),
            None
        );
    }

    #[test]
    fn response_headers_rewrite_location_and_cookies() {
        let mut h = map(&[
            ("connection", "close"),
            ("location", "https://search-x.us-east-1.es.amazonaws.com/_dashboards/app/home"),
            ("set-cookie", "security_authentication=abc; Domain=search-x.us-east-1.es.amazonaws.com; Path=/_dashboards; Secure; HttpOnly; SameSite=None"),
            ("set-cookie", "other=1; Domain=example.com; Path=/"),
        ]);
        prepare_response_headers(&mut h, "search-x.us-east-1.es.amazonaws.com", &client());
        assert!(h.get("connection").is_none());
        assert_eq!(h["location"], "http://localhost:9200/_dashboards/app/home");
        let cookies: Vec<_> = h
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            cookies,
            [
                "security_authentication=abc; Path=/_dashboards; HttpOnly",
                "other=1; Domain=example.com; Path=/"
            ]
        );
    }

    #[test]
    fn https_listener_keeps_secure_cookies() {
        let c = rewrite_set_cookie(
            "a=1; Secure; SameSite=None; Domain=.amazonaws.com",
            "x.us-east-1.es.amazonaws.com",
            false,
        );
        assert_eq!(c, "a=1; Secure; SameSite=None");
    }
}
