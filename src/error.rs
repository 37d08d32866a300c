//! One error type for everything the proxy answers itself, rendered once as OpenSearch-style JSON:
//! `{"error":{"type":"…","reason":"…"},"status":N}`, with an `x-sigv4-proxy-error` header so a
//! client can tell a proxy error from one the endpoint sent.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Header on every response the proxy synthesises; its value is the error type.
pub const PROXY_ERROR_HEADER: &str = "x-sigv4-proxy-error";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request target or a header cannot be forwarded as it is.
    #[error("{0}")]
    BadRequest(String),
    /// Inbound authentication failed.
    #[error("{reason}")]
    Unauthorized {
        reason: String,
        /// One `WWW-Authenticate` value per accepted scheme.
        challenges: Vec<HeaderValue>,
    },
    /// The local access policy denied the request.
    #[error("{0}")]
    Forbidden(String),
    /// The request body is larger than `--max-body`.
    #[error("request body is larger than the limit of {limit} bytes (--max-body)")]
    PayloadTooLarge { limit: u64 },
    /// No route on this listener serves the request's path.
    #[error("{0}")]
    NotFound(String),
    /// The request headers are larger than allowed.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The client stopped sending its body or sent a malformed one.
    #[error("could not read the request body: {0}")]
    ClientBody(String),
    /// The client took too long to send its body.
    #[error("the client did not send the request body in time ({0})")]
    ClientTimeout(String),
    /// The upstream could not be reached or the TLS handshake failed.
    #[error("{0}")]
    BadGateway(String),
    /// No usable AWS credentials.
    #[error("{0}")]
    NoCredentials(String),
    /// The proxy is at its limit or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or an I/O failure on this machine (temp files, …).
    #[error("{0}")]
    Internal(String),
}

/// A configuration that cannot run: a flag, a file it names, or the config file is wrong.
/// The binary exits with status 64 (EX_USAGE) and the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Why the proxy could not start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is wrong (exit 64), including what only the AWS side could complete,
    /// such as the region.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Something on this machine failed while setting up (the TLS client, the runtime).
    #[error("{0}")]
    Setup(String),
}

/// `outer: inner: root` for any error with sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The first error of type `T` in `err`'s chain of sources, `err` included.
pub fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ProxyError::NoCredentials(_) | ProxyError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.type` field, in OpenSearch's snake_case style.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "illegal_argument_exception",
            ProxyError::Unauthorized { .. } => "authentication_exception",
            ProxyError::Forbidden(_) => "security_exception",
            ProxyError::NotFound(_) => "no_route_exception",
            ProxyError::PayloadTooLarge { .. } => "request_entity_too_large_exception",
            ProxyError::HeadersTooLarge(_) => "request_header_fields_too_large_exception",
            ProxyError::ClientBody(_) => "client_body_exception",
            ProxyError::ClientTimeout(_) => "client_timeout_exception",
            ProxyError::BadGateway(_) => "upstream_unreachable_exception",
            ProxyError::NoCredentials(_) => "credentials_unavailable_exception",
            ProxyError::Unavailable(_) => "proxy_unavailable_exception",
            ProxyError::GatewayTimeout(_) => "upstream_timeout_exception",
            ProxyError::Internal(_) => "proxy_internal_exception",
        }
    }

    /// The JSON body, `{"error":{"type","reason"},"status"}`.
    pub fn body(&self) -> String {
        let reason = self.to_string();
        serde_json::json!({
            "error": {
                "root_cause": [{"type": self.kind(), "reason": reason}],
                "type": self.kind(),
                "reason": reason,
            },
            "status": self.status().as_u16(),
        })
        .to_string()
    }

    /// Renders the error as a complete response with any body type built from bytes.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut response = Response::new(B::from(Bytes::from(self.body())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        headers.insert(PROXY_ERROR_HEADER, HeaderValue::from_static(self.kind()));
        if let ProxyError::Unauthorized { challenges, .. } = &self {
            for challenge in challenges {
                headers.append(header::WWW_AUTHENTICATE, challenge.clone());
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_opensearch_style_json_with_status_and_marker_header() {
        let err = ProxyError::PayloadTooLarge { limit: 10 };
        let resp: Response<Bytes> = err.into_response();
        assert_eq!(resp.status(), 413);
        assert_eq!(
            resp.headers()[PROXY_ERROR_HEADER],
            "request_entity_too_large_exception"
        );
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["status"], 413);
        assert_eq!(v["error"]["type"], "request_entity_too_large_exception");
        assert!(v["error"]["reason"].as_str().unwrap().contains("10 bytes"));
        assert_eq!(
            v["error"]["root_cause"][0]["type"],
            "request_entity_too_large_exception"
        );
    }

    #[test]
    fn reasons_are_json_escaped() {
        let resp: Response<Bytes> =
            ProxyError::BadRequest("bad \"quote\"\n".into()).into_response();
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["error"]["reason"], "bad \"quote\"\n");
    }
}
