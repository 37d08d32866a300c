//! The built-in read-only policy: GET and HEAD anywhere, POST only to the
//! read-only search APIs, DELETE only to release a scroll or point in time.

use super::indices::parse_path;

/// Why a request is allowed under the read-only policy, or `None` to deny.
pub(crate) fn allows(method: &http::Method, raw_path: &str) -> bool {
    if method == http::Method::GET || method == http::Method::HEAD {
        return true;
    }
    let Ok(p) = parse_path(raw_path) else {
        return false;
    };
    let api: Vec<&str> = p.api.iter().map(String::as_str).collect();
    if method == http::Method::POST {
        return matches!(
            api.as_slice(),
            ["_search"]
                | ["_search", "template"]
                | ["_search", "scroll"]
                | ["_search", "scroll", _]
                | ["_search", "point_in_time"]
                | ["_pit"]
                | ["_msearch"]
                | ["_msearch", "template"]
                | ["_count"]
                | ["_mget"]
                | ["_field_caps"]
                | ["_explain", _]
                | ["_validate", "query"]
                | ["_render", "template"]
                | ["_render", "template", _]
                | ["_termvectors"]
                | ["_termvectors", _]
                | ["_mtermvectors"]
        );
    }
    if method == http::Method::DELETE {
        // Releasing one's own search contexts (scroll helpers do it in a
        // `finally`), but not every context on the cluster via `_all`.
        return p.index.is_none()
            && match api.as_slice() {
                ["_search", "scroll"] | ["_search", "point_in_time"] => true,
                ["_search", "scroll", id] | ["_search", "point_in_time", id] => *id != "_all",
                _ => false,
            };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn read_only_table() {
        let allowed = [
            (Method::GET, "/"),
            (Method::GET, "/restricted-index/_doc/1"),
            (Method::HEAD, "/idx"),
            (Method::GET, "/_cluster/health"),
            (Method::POST, "/_search"),
            (Method::POST, "/idx,other/_search"),
            (Method::POST, "/_all/_search"),
            (Method::POST, "/idx/_search/template"),
            (Method::POST, "/_msearch"),
            (Method::POST, "/idx/_msearch/template"),
            (Method::POST, "/idx/_count"),
            (Method::POST, "/_mget"),
            (Method::POST, "/idx/_field_caps"),
            (Method::POST, "/idx/_explain/1"),
            (Method::POST, "/idx/_validate/query"),
            (Method::POST, "/_search/scroll"),
            (Method::POST, "/_search/scroll/abc"),
            (Method::POST, "/idx/_search/point_in_time"),
            (Method::POST, "/idx/_pit"),
            (Method::POST, "/_render/template"),
            (Method::POST, "/_render/template/my-template"),
            (Method::POST, "/idx/_termvectors/1"),
            (Method::POST, "/_mtermvectors"),
            (Method::DELETE, "/_search/scroll"),
            (Method::DELETE, "/_search/scroll/abc"),
            (Method::DELETE, "/_search/point_in_time"),
        ];
        for (m, p) in allowed {
            assert!(allows(&m, p), "{m} {p} should be allowed");
        }
        let denied = [
            (Method::POST, "/_bulk"),
            (Method::POST, "/idx/_bulk"),
            (Method::PUT, "/idx"),
            (Method::PUT, "/idx/_doc/1"),
            (Method::POST, "/idx/_doc"),
            (Method::POST, "/idx/_update/1"),
            (Method::DELETE, "/idx"),
            (Method::DELETE, "/idx/_doc/1"),
            (Method::POST, "/_reindex"),
            (Method::POST, "/idx/_delete_by_query"),
            (Method::POST, "/idx/_update_by_query"),
            (Method::POST, "/_aliases"),
            (Method::POST, "/idx/_close"),
            (Method::POST, "/idx/_search/x"),
            (Method::PATCH, "/idx"),
            (Method::OPTIONS, "/"),
            (Method::DELETE, "/_search/scroll/_all"),
            (Method::DELETE, "/_search/point_in_time/_all"),
            (Method::DELETE, "/idx/_search/scroll"),
            (Method::POST, "/_search/../_bulk"),
        ];
        for (m, p) in denied {
            assert!(!allows(&m, p), "{m} {p} should be denied");
        }
    }
}
