//! A small in-memory OpenSearch behind [`super::TestUpstream`]: just enough of the REST API for
//! the official clients and the README's curl examples to do what users do: create an index,
//! bulk-load, refresh, search (match_all, match, term), scroll, count, get and delete documents,
//! delete the index, `_cat/indices`, cluster health and the root info.
//!
//! ```ignore
//! up.set_handler(FakeOpenSearch::new().handler());
//! ```
//!
//! It runs only after the upstream verified the signature, so every answer it gives is an answer
//! to a signed request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::upstream::{Recorded, Reply};

#[derive(Default)]
struct Index {
    /// Documents by id, with the insertion order kept for stable results.
    docs: BTreeMap<String, (u64, Value)>,
}

struct Scroll {
    remaining: Vec<Value>,
    size: usize,
    total: usize,
}

#[derive(Default)]
struct State {
    indices: BTreeMap<String, Index>,
    scrolls: BTreeMap<String, Scroll>,
    next_seq: u64,
    next_scroll: u64,
}

/// The fake cluster; clone it to keep a handle for inspection.
#[derive(Clone, Default)]
pub struct FakeOpenSearch {
    state: Arc<Mutex<State>>,
}

fn error(status: u16, kind: &str, reason: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error":{"root_cause":[{"type":kind,"reason":reason}],"type":kind,"reason":reason},"status":status}),
    )
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

impl FakeOpenSearch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handler to give [`super::TestUpstream::set_handler`].
    pub fn handler(&self) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
        let this = self.clone();
        move |req| this.answer(req)
    }

    /// Names of the indices that exist now.
    pub fn indices(&self) -> Vec<String> {
        self.lock().indices.keys().cloned().collect()
    }

    /// Open scroll contexts.
    pub fn open_scrolls(&self) -> usize {
        self.lock().scrolls.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn answer(&self, req: &Recorded) -> Reply {
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(req.raw_query.as_deref().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        // As OpenSearch's HTTP layer does, a gzip or deflate body is inflated first.
        let raw = match inflated(req) {
            Ok(raw) => raw,
            Err(e) => {
                return Reply::json(
                    400,
                    &json!({"error": format!("bad compressed body: {e}"), "status": 400}),
                )
            }
        };
        let body: Value = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        let segments: Vec<String> = req
            .raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        let mut st = self.lock();
        match (method, seg.as_slice()) {
            ("GET" | "HEAD", []) => Reply::json(
                200,
                &json!({"name":"fake-node","cluster_name":"123456789012:logs","cluster_uuid":"fake",
                    "version":{"distribution":"opensearch","number":"2.19.0","build_type":"tar",
                        "lucene_version":"9.12.1","minimum_wire_compatibility_version":"7.10.0",
                        "minimum_index_compatibility_version":"7.0.0"},
                    "tagline":"The OpenSearch Project: https://opensearch.org/"}),
            ),
            ("GET", ["_cluster", "health"]) => Reply::json(
                200,
                &json!({"cluster_name":"123456789012:logs","status":"green","number_of_nodes":1}),
            ),
            ("GET", ["_cat", "indices"]) => cat_indices(&st, &query),
            ("POST" | "PUT", ["_bulk"]) => bulk(&mut st, None, &raw),
            ("POST" | "PUT", [index, "_bulk"]) => bulk(&mut st, Some(index), &raw),
            ("GET" | "POST", ["_search", "scroll"]) => {
                let id = body["scroll_id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| query.get("scroll_id").cloned());
                match id {
                    Some(id) => scroll_next(&mut st, &id),
                    None => error(
                        400,
                        "action_request_validation_exception",
                        "scrollId is missing",
                    ),
                }
            }
            ("DELETE", ["_search", "scroll"]) => {
                let ids: Vec<String> = match &body["scroll_id"] {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect(),
                    _ => Vec::new(),
                };
                let freed = ids
                    .iter()
                    .filter(|id| st.scrolls.remove(*id).is_some())
                    .count();
                Reply::json(200, &json!({"succeeded": true, "num_freed": freed}))
            }
            ("GET" | "POST", ["_search"]) => search(&mut st, None, &query, &body),
            ("GET" | "POST", [index, "_search"]) => search(&mut st, Some(index), &query, &body),
            ("GET" | "POST", [index, "_count"]) => match matching(&st, Some(index), &body) {
                Ok(hits) => Reply::json(200, &json!({"count": hits.len(), "_shards": shards()})),
                Err(reply) => reply,
            },
            ("GET" | "POST", ["_refresh"]) | ("GET" | "POST", [_, "_refresh"]) => {
                Reply::json(200, &json!({"_shards": shards()}))
            }
            ("PUT" | "POST", [index, "_doc", id]) | ("PUT" | "POST", [index, "_create", id]) => {
                let (index, id) = (index.to_string(), id.to_string());
                let created = put_doc(&mut st, &index, Some(id.clone()), body);
                doc_result(&index, &created.0, created.1)
            }
            ("POST", [index, "_doc"]) => {
                let index = index.to_string();
                let created = put_doc(&mut st, &index, None, body);
                doc_result(&index, &created.0, created.1)
            }
            ("GET", [index, "_doc", id]) => {
                match st.indices.get(*index).and_then(|i| i.docs.get(*id)) {
                    Some((_, source)) => Reply::json(
                        200,
                        &json!({"_index":index,"_id":id,"_version":1,"found":true,"_source":source}),
                    ),
                    None => Reply::json(404, &json!({"_index":index,"_id":id,"found":false})),
                }
            }
            ("DELETE", [index, "_doc", id]) => {
                let removed = st
                    .indices
                    .get_mut(*index)
                    .and_then(|i| i.docs.remove(*id))
                    .is_some();
                let result = if removed { "deleted" } else { "not_found" };
                Reply::json(
                    if removed { 200 } else { 404 },
                    &json!({"_index":index,"_id":id,"result":result,"_shards":shards()}),
                )
            }
            ("PUT", [index]) if !index.starts_with('_') => {
                if st.indices.contains_key(*index) {
                    return error(
                        400,
                        "resource_already_exists_exception",
                        &format!("index [{index}/fake] already exists"),
                    );
                }
                st.indices.insert(index.to_string(), Index::default());
                Reply::json(
                    200,
                    &json!({"acknowledged":true,"shards_acknowledged":true,"index":index}),
                )
            }
            ("HEAD", [index]) => Reply::status(if st.indices.contains_key(*index) {
                200
            } else {
                404
            }),
            ("GET", [index]) if st.indices.contains_key(*index) => Reply::json(
                200,
                &json!({ *index: {"aliases":{},"mappings":{},"settings":{}}}),
            ),
            ("DELETE", [index]) => {
                let names: Vec<String> = index.split(',').map(String::from).collect();
                if names.iter().any(|n| !st.indices.contains_key(n)) {
                    return error(
                        404,
                        "index_not_found_exception",
                        &format!("no such index [{index}]"),
                    );
                }
                for n in names {
                    st.indices.remove(&n);
                }
                Reply::json(200, &json!({"acknowledged": true}))
            }
            _ if seg.first().is_some_and(|s| !s.starts_with('_')) => error(
                404,
                "index_not_found_exception",
                &format!("no such index [{}]", seg[0]),
            ),
            _ => error(
                400,
                "illegal_argument_exception",
                &format!("fake OpenSearch: no handler for {method} {}", req.raw_path),
            ),
        }
    }
}

fn shards() -> Value {
    json!({"total":1,"successful":1,"failed":0})
}

fn doc_result(index: &str, id: &str, created: bool) -> Reply {
    Reply::json(
        if created { 201 } else { 200 },
        &json!({"_index":index,"_id":id,"_version":1,"result": if created {"created"} else {"updated"},
            "_shards":shards(),"_seq_no":0,"_primary_term":1}),
    )
}

/// Stores a document; returns its id and whether it is new.
fn put_doc(st: &mut State, index: &str, id: Option<String>, source: Value) -> (String, bool) {
    st.next_seq += 1;
    let seq = st.next_seq;
    let id = id.unwrap_or_else(|| format!("auto-{seq}"));
    let docs = &mut st.indices.entry(index.to_string()).or_default().docs;
    let created = docs.insert(id.clone(), (seq, source)).is_none();
    (id, created)
}

/// The request body, inflated when its `Content-Encoding` is gzip or deflate.
fn inflated(req: &Recorded) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let encoding = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| v.to_ascii_lowercase());
    let mut out = Vec::new();
    match encoding.as_deref().map(str::trim) {
        Some("gzip") => {
            flate2::read::MultiGzDecoder::new(&req.body[..]).read_to_end(&mut out)?;
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(&req.body[..]).read_to_end(&mut out)?;
        }
        _ => out = req.body.to_vec(),
    }
    Ok(out)
}

fn bulk(st: &mut State, default_index: Option<&str>, body: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    while let Some(line) = lines.next() {
        let Ok(action) = serde_json::from_str::<Value>(line) else {
            return error(400, "parse_exception", "bulk: an action line is not JSON");
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return error(400, "parse_exception", "bulk: empty action");
        };
        let index = meta["_index"]
            .as_str()
            .or(default_index)
            .unwrap_or("")
            .to_string();
        let id = meta["_id"].as_str().map(String::from);
        let item = match op.as_str() {
            "index" | "create" | "update" => {
                let source: Value = lines
                    .next()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(Value::Null);
                let source = if op == "update" {
                    source["doc"].clone()
                } else {
                    source
                };
                let (id, created) = put_doc(st, &index, id, source);
                json!({"_index":index,"_id":id,"_version":1,
                    "result": if created {"created"} else {"updated"},
                    "status": if created {201} else {200}, "_shards":shards()})
            }
            "delete" => {
                let id = id.unwrap_or_default();
                let removed = st
                    .indices
                    .get_mut(&index)
                    .and_then(|i| i.docs.remove(&id))
                    .is_some();
                json!({"_index":index,"_id":id,"result": if removed {"deleted"} else {"not_found"},
                    "status": if removed {200} else {404}})
            }
            other => {
                return error(
                    400,
                    "illegal_argument_exception",
                    &format!("bulk: unknown action {other}"),
                )
            }
        };
        items.push(json!({ op.as_str(): item }));
    }
    Reply::json(200, &json!({"took":1,"errors":false,"items":items}))
}

/// Documents of `index` (all indices when `None`; `a,b` and `logs-*` work) matching the
/// body's query: `match_all`, `match`, `term` (a field equal to, or for text containing, a value).
fn matching(st: &State, index: Option<&str>, body: &Value) -> Result<Vec<Value>, Reply> {
    let names: Vec<&String> = match index {
        None | Some("_all") | Some("*") => st.indices.keys().collect(),
        Some(pattern) => {
            let mut names = Vec::new();
            for p in pattern.split(',') {
                if let Some(prefix) = p.strip_suffix('*') {
                    names.extend(st.indices.keys().filter(|k| k.starts_with(prefix)));
                } else if let Some((k, _)) = st.indices.get_key_value(p) {
                    names.push(k);
                } else {
                    return Err(error(
                        404,
                        "index_not_found_exception",
                        &format!("no such index [{p}]"),
                    ));
                }
            }
            names
        }
    };
    let condition: Option<(String, Value)> = ["match", "term"].iter().find_map(|kind| {
        body["query"][kind]
            .as_object()
            .and_then(|o| o.iter().next())
            .map(|(field, v)| {
                let wanted = v
                    .get("query")
                    .or_else(|| v.get("value"))
                    .unwrap_or(v)
                    .clone();
                (field.clone(), wanted)
            })
    });
    let mut hits: Vec<(u64, Value)> = Vec::new();
    for name in names {
        for (id, (seq, source)) in &st.indices[name].docs {
            let keep = match &condition {
                None => true,
                Some((field, wanted)) => match (&source[field.as_str()], wanted) {
                    (Value::String(have), Value::String(want)) => {
                        have.to_lowercase()
                            .split_whitespace()
                            .any(|w| w == want.to_lowercase())
                            || have == want
                    }
                    (have, want) => have == want,
                },
            };
            if keep {
                hits.push((
                    *seq,
                    json!({"_index":name,"_id":id,"_score":1.0,"_source":source}),
                ));
            }
        }
    }
    hits.sort_by_key(|(seq, _)| *seq);
    Ok(hits.into_iter().map(|(_, h)| h).collect())
}

fn search(
    st: &mut State,
    index: Option<&str>,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Reply {
    let hits = match matching(st, index, body) {
        Ok(h) => h,
        Err(reply) => return reply,
    };
    let size = query
        .get("size")
        .and_then(|s| s.parse().ok())
        .or_else(|| body["size"].as_u64().map(|s| s as usize))
        .unwrap_or(10);
    let from = query
        .get("from")
        .and_then(|s| s.parse().ok())
        .or_else(|| body["from"].as_u64().map(|s| s as usize))
        .unwrap_or(0);
    let total = hits.len();
    let mut rest: Vec<Value> = hits.into_iter().skip(from).collect();
    let page: Vec<Value> = rest.drain(..size.min(rest.len())).collect();
    let mut answer = json!({"took":1,"timed_out":false,"_shards":shards(),
        "hits":{"total":{"value":total,"relation":"eq"},"max_score":1.0,"hits":page}});
    if query.contains_key("scroll") {
        st.next_scroll += 1;
        let id = format!("FakeScroll{}", st.next_scroll);
        st.scrolls.insert(
            id.clone(),
            Scroll {
                remaining: rest,
                size,
                total,
            },
        );
        answer["_scroll_id"] = json!(id);
    }
    Reply::json(200, &answer)
}

fn scroll_next(st: &mut State, id: &str) -> Reply {
    let Some(scroll) = st.scrolls.get_mut(id) else {
        return error(
            404,
            "search_context_missing_exception",
            &format!("No search context found for id [{id}]"),
        );
    };
    let page: Vec<Value> = scroll
        .remaining
        .drain(..scroll.size.min(scroll.remaining.len()))
        .collect();
    Reply::json(
        200,
        &json!({"_scroll_id":id,"took":1,"timed_out":false,"_shards":shards(),
            "hits":{"total":{"value":scroll.total,"relation":"eq"},"max_score":1.0,"hits":page}}),
    )
}

fn cat_indices(st: &State, query: &BTreeMap<String, String>) -> Reply {
    let rows: Vec<(String, usize)> = st
        .indices
        .iter()
        .map(|(name, i)| (name.clone(), i.docs.len()))
        .collect();
    if query.get("format").map(String::as_str) == Some("json") {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(n, c)| json!({"health":"green","status":"open","index":n,"docs.count":c.to_string()}))
            .collect();
        return Reply::json(200, &Value::Array(rows));
    }
    let mut text = String::new();
    if query.contains_key("v") {
        text.push_str("health status index docs.count\n");
    }
    for (name, count) in rows {
        text.push_str(&format!("green  open   {name} {count}\n"));
    }
    Reply::text(200, text)
}
