//! Which resources does a request touch?  From the path (index expressions with
//! comma lists, wildcards, `_all`, exclusions, date math) and, for the
//! multi-index APIs, from the body (`_bulk`, `_mget`, `_mtermvectors`,
//! `_msearch`, `_msearch/template`, `_reindex`, `_aliases`).
//!
//! Bodies are read from a [`BufRead`]; NDJSON bodies are streamed line by line
//! and the document lines of `_bulk` / the search lines of `_msearch` are skipped
//! without being kept in memory.

use std::fmt;
use std::io::BufRead;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::document::OneOrMany;
use super::pattern::Target;

/// The longest `_bulk` action line / `_msearch` header line we accept (they are small JSON objects).
const MAX_META_LINE: usize = 1 << 20;

/// Where a touched resource came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The request path.
    Path,
    /// The path names no index, so the API reaches every index.
    AllIndices,
    /// A body of a multi-index API.
    Body {
        api: &'static str,
        /// `line 3`, `docs[2]`, `source.index`, `actions[0].add`...
        place: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Path => f.write_str("the path"),
            Origin::AllIndices => {
                f.write_str("the path names no index, so it may reach every index")
            }
            Origin::Body { api, place } => write!(f, "from the {api} body, {place}"),
        }
    }
}

/// One resource a request touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    pub target: Target,
    pub origin: Origin,
}

/// The request's resources could not be determined (bad path, unparseable body...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractError(pub String);

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExtractError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyApi {
    Bulk,
    /// `_mget` or `_mtermvectors`
    Mget(&'static str),
    /// `_msearch` or `_msearch/template`
    Msearch(&'static str),
    Reindex,
    Aliases,
}

/// The decoded request path, split into the index expression and the API part.
#[derive(Debug)]
pub(crate) struct ParsedPath {
    /// The targets named by the index expression, when the path starts with one.
    pub(crate) index: Option<Vec<Target>>,
    /// The segments after the index expression (or all segments).
    pub(crate) api: Vec<String>,
    /// The decoded path without leading `/` (empty for `/`).
    pub(crate) literal: String,
}

/// Percent-decodes each `/`-separated segment (so `%2F` stays inside its
/// segment, as in the date-math name `%3Clogs-%7Bnow%2Fd%7D%3E`) and drops empty
/// segments.
pub(crate) fn parse_path(raw_path: &str) -> Result<ParsedPath, ExtractError> {
    let raw = raw_path.split(['?', '#']).next().unwrap_or("");
    let mut segs = Vec::new();
    for s in raw.split('/').filter(|s| !s.is_empty()) {
        let d = percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map_err(|_| {
                ExtractError(format!(
                    "the path segment {s:?} is not UTF-8 once percent-decoded"
                ))
            })?;
        if d == "." || d == ".." {
            return Err(ExtractError(format!(
                "the path {raw_path:?} has a dot segment"
            )));
        }
        segs.push(d.into_owned());
    }
    let literal = segs.join("/");
    let names_index = segs
        .first()
        .is_some_and(|f| !f.starts_with('_') || f == "_all");
    if names_index {
        let index = index_items(&segs[0])?;
        Ok(ParsedPath {
            index: Some(index),
            api: segs[1..].to_vec(),
            literal,
        })
    } else {
        Ok(ParsedPath {
            index: None,
            api: segs,
            literal,
        })
    }
}

/// Expands an index expression (`a,b`, `logs-*`, `_all`, `-excluded`,
/// `<logs-{now/d}>`) into targets.  Exclusions are dropped: they only narrow
/// what a wildcard reaches, so ignoring them is conservative.
///
/// An item with white space around it is checked both as it is and trimmed: whether
/// OpenSearch trims a name depends on where it stands (a JSON body's names are taken as they
/// are; `\u{2028}logs-old` is a valid name of its own), so the request must pass either way.
pub(crate) fn index_items(expr: &str) -> Result<Vec<Target>, ExtractError> {
    let mut out = Vec::new();
    let items = expr.split(',').flat_map(|raw| {
        let trimmed = raw.trim();
        std::iter::once(raw).chain((trimmed != raw).then_some(trimmed))
    });
    for item in items {
        if item.is_empty() || item.starts_with('-') {
            continue;
        }
        let item = item.strip_prefix('+').unwrap_or(item);
        if item == "_all" {
            out.push(Target::wildcard("*"));
        } else if item.len() >= 2 && item.starts_with('<') && item.ends_with('>') {
            out.push(date_math(&item[1..item.len() - 1]).ok_or_else(|| {
                ExtractError(format!("the date-math index name {item:?} is malformed"))
            })?);
        } else if item.contains('/') {
            // No index name holds a `/` (`%2F` in a path): OpenSearch refuses it, and the
            // policy's resources, which use `/` to separate index and API, cannot judge it.
            return Err(ExtractError(format!(
                "the index name {item:?} contains `/`"
            )));
        } else {
            out.push(Target::wildcard(item));
        }
    }
    if out.is_empty() {
        // Only exclusions (or nothing): OpenSearch applies them to every index.
        out.push(Target::wildcard("*"));
    }
    Ok(out)
}

/// A name where OpenSearch takes one (a bulk action's or an `_mget` doc's `_index`,
/// `dest.index`, an alias action's index and alias): checked split at commas, as elsewhere, and
/// also whole, as OpenSearch reads it, so the request must pass either way.
fn name_items(name: &str) -> Result<Vec<Target>, ExtractError> {
    let mut out = index_items(name)?;
    if name.contains(',') {
        out.push(Target::wildcard(name));
    }
    Ok(out)
}

/// `logs-{now/d}` → `logs-*`; `\{` escapes; a `*` in the static text is a wildcard.
fn date_math(inner: &str) -> Option<Target> {
    let mut t = Target::literal("");
    let mut depth = 0usize;
    let mut chars = inner.chars();
    let mut lit = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth == 0 => lit.push(chars.next()?),
            '\\' => {
                chars.next()?;
            }
            '{' => {
                if depth == 0 {
                    t.push_lit(&lit);
                    lit.clear();
                    t.push_any();
                }
                depth += 1;
            }
            '}' => depth = depth.checked_sub(1)?,
            '*' if depth == 0 => {
                t.push_lit(&lit);
                lit.clear();
                t.push_any();
            }
            c if depth == 0 => lit.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    t.push_lit(&lit);
    Some(t)
}

fn body_api(api: &[String]) -> Option<BodyApi> {
    let a: Vec<&str> = api.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["_bulk"] => Some(BodyApi::Bulk),
        ["_mget"] => Some(BodyApi::Mget("_mget")),
        ["_mtermvectors"] => Some(BodyApi::Mget("_mtermvectors")),
        ["_msearch"] => Some(BodyApi::Msearch("_msearch")),
        ["_msearch", "template"] => Some(BodyApi::Msearch("_msearch/template")),
        ["_reindex"] => Some(BodyApi::Reindex),
        ["_aliases"] => Some(BodyApi::Aliases),
        _ => None,
    }
}

/// APIs that, without an index in the path, reach every index, or reach
/// indices named where the proxy cannot see them (SQL/PPL query text, async
/// search parameters, transform/rollup/alerting jobs, snapshot restores).
fn reaches_all_indices(api: &[String]) -> bool {
    let a: Vec<&str> = api.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["_search"] | ["_search", "template"] => true,
        ["_plugins" | "_opendistro", plugin, ..] => matches!(
            *plugin,
            "_sql"
                | "_ppl"
                | "_query"
                | "_async_query"
                | "_asynchronous_search"
                | "_transform"
                | "_rollup"
                | "_alerting"
        ),
        ["_snapshot", .., "_restore"] => true,
        [first, ..] => matches!(
            *first,
            "_count"
                | "_field_caps"
                | "_validate"
                | "_delete_by_query"
                | "_update_by_query"
                | "_mapping"
                | "_mappings"
                | "_settings"
                | "_stats"
                | "_refresh"
                | "_flush"
                | "_forcemerge"
                | "_cache"
                | "_segments"
                | "_recovery"
                | "_alias"
                | "_rank_eval"
                | "_search_shards"
                | "_shard_stores"
                | "_upgrade"
        ),
        [] => false,
    }
}

/// Does the policy need the request body to decide?  True for the
/// multi-index APIs whose bodies name indices (`_bulk`, `_mget`,
/// `_mtermvectors`, `_msearch`, `_msearch/template`, `_reindex`, `_aliases`),
/// for any method but HEAD.  A path that does not parse needs no body (it is
/// denied on its own).
pub fn body_needed(method: &http::Method, raw_path: &str) -> bool {
    if method == http::Method::HEAD {
        return false;
    }
    parse_path(raw_path).is_ok_and(|p| body_api(&p.api).is_some())
}

/// The most bytes of resource text a path may make its index items stand for (each item joined
/// with the rest of the path).
const MAX_PATH_TARGETS: usize = 1 << 20;

/// Calls `f` with every resource the request touches, path first, then the
/// body's.  Stops early (returning `Ok(Some(b))`) when `f` returns `Some`.
pub(crate) fn for_each_resource<B>(
    method: &http::Method,
    raw_path: &str,
    body: Option<&mut dyn BufRead>,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, ExtractError> {
    let path = parse_path(raw_path)?;
    let rest = path.api.join("/");
    let mut emit_path = |t: Target, origin: Origin| f(Touched { target: t, origin });
    match &path.index {
        Some(items) if items.len().saturating_mul(rest.len() + 1) > MAX_PATH_TARGETS => {
            // Each index item is checked with the rest of the path: thousands of items before
            // a long rest would cost seconds of CPU. No real request comes near this.
            return Err(ExtractError(format!(
                "{} indices in the path, each followed by {} bytes: too many to check",
                items.len(),
                rest.len()
            )));
        }
        Some(items) => {
            for item in items {
                let t = if rest.is_empty() {
                    item.clone()
                } else {
                    item.join(&format!("/{rest}"))
                };
                if let Some(b) = emit_path(t, Origin::Path) {
                    return Ok(Some(b));
                }
            }
        }
        None => {
            if let Some(b) = emit_path(Target::literal(&path.literal), Origin::Path) {
                return Ok(Some(b));
            }
            if reaches_all_indices(&path.api) {
                let t = Target::wildcard("*").join(&format!("/{rest}"));
                if let Some(b) = emit_path(t, Origin::AllIndices) {
                    return Ok(Some(b));
                }
            }
        }
    }
    if method == http::Method::HEAD {
        return Ok(None);
    }
    let Some(api) = body_api(&path.api) else {
        return Ok(None);
    };
    let Some(body) = body else {
        return Err(ExtractError(format!(
            "the body was not provided, and the indices of a {} request are in its body",
            api_name(api)
        )));
    };
    let defaults = path.index.as_deref();
    let res = match api {
        BodyApi::Bulk => bulk(body, defaults, f),
        BodyApi::Msearch(name) => msearch(name, body, defaults, f),
        BodyApi::Mget(name) => mget(name, body, defaults, f),
        BodyApi::Reindex => reindex(body, f),
        BodyApi::Aliases => aliases(body, f),
    };
    res.map_err(|e| ExtractError(format!("cannot read the {} body: {}", api_name(api), e)))
}

fn api_name(api: BodyApi) -> &'static str {
    match api {
        BodyApi::Bulk => "_bulk",
        BodyApi::Mget(n) | BodyApi::Msearch(n) => n,
        BodyApi::Reindex => "_reindex",
        BodyApi::Aliases => "_aliases",
    }
}

/// Collects every touched resource (for tests, logging and debugging).
pub fn touched_resources(
    method: &http::Method,
    raw_path: &str,
    body: Option<&mut dyn BufRead>,
) -> Result<Vec<Touched>, ExtractError> {
    let mut out = Vec::new();
    for_each_resource::<()>(method, raw_path, body, &mut |t| {
        out.push(t);
        None
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Line reading
// ---------------------------------------------------------------------------

struct Lines<'a> {
    r: &'a mut dyn BufRead,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(r: &'a mut dyn BufRead) -> Self {
        Lines { r, line: 0 }
    }

    /// Reads the next line (without its `\n`) into `buf`, or discards it when
    /// `buf` is `None`.  Returns the 1-based line number, `None` at the end.
    fn next(&mut self, mut buf: Option<&mut Vec<u8>>) -> Result<Option<usize>, String> {
        if let Some(b) = buf.as_deref_mut() {
            b.clear();
        }
        let mut got_any = false;
        loop {
            let avail = match self.r.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the body failed: {e}")),
            };
            if avail.is_empty() {
                if !got_any {
                    return Ok(None);
                }
                break;
            }
            got_any = true;
            let (take, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if let Some(b) = buf.as_deref_mut() {
                if b.len() + take > MAX_META_LINE {
                    return Err(format!(
                        "line {} is longer than {MAX_META_LINE} bytes",
                        self.line + 1
                    ));
                }
                b.extend_from_slice(&avail[..take]);
            }
            let consumed = if done { take + 1 } else { take };
            self.r.consume(consumed);
            if done {
                break;
            }
        }
        self.line += 1;
        Ok(Some(self.line))
    }
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_whitespace())
}

fn id_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// _bulk
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BulkOp {
    Index,
    Create,
    Update,
    Delete,
}

#[derive(Deserialize)]
struct BulkMeta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
}

struct BulkLine {
    op: BulkOp,
    meta: BulkMeta,
}

impl<'de> Deserialize<'de> for BulkLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BulkLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an action object like {"index":{"_index":"..."}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BulkLine, A::Error> {
                let Some(k) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("empty action object"));
                };
                let op = match k.as_str() {
                    "index" => BulkOp::Index,
                    "create" => BulkOp::Create,
                    "update" => BulkOp::Update,
                    "delete" => BulkOp::Delete,
                    other => {
                        return Err(de::Error::custom(format!("unknown bulk action {other:?}")))
                    }
                };
                let meta = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("more than one action on one line"));
                }
                Ok(BulkLine { op, meta })
            }
        }
        d.deserialize_map(V)
    }
}

fn bulk<B>(
    r: &mut dyn BufRead,
    defaults: Option<&[Target]>,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, String> {
    let mut lines = Lines::new(r);
    let mut buf = Vec::new();
    while let Some(n) = lines.next(Some(&mut buf))? {
        // OpenSearch skips blank lines where it expects an action.
        if is_blank(&buf) {
            continue;
        }
        let line: BulkLine = serde_json::from_slice(&buf).map_err(|e| format!("line {n}: {e}"))?;
        let targets = match &line.meta.index {
            Some(expr) => name_items(expr).map_err(|e| format!("line {n}: {e}"))?,
            None => defaults
                .ok_or_else(|| {
                    format!("line {n}: the action has no _index and the path names no index")
                })?
                .to_vec(),
        };
        let id = line.meta.id.as_ref().map(id_text);
        let suffix = match (line.op, id) {
            (BulkOp::Index, Some(id)) | (BulkOp::Delete, Some(id)) => format!("/_doc/{id}"),
            (BulkOp::Create, Some(id)) => format!("/_create/{id}"),
            (BulkOp::Update, Some(id)) => format!("/_update/{id}"),
            (BulkOp::Update, None) => "/_update".to_string(),
            _ => "/_doc".to_string(),
        };
        for t in targets {
            let touched = Touched {
                target: t.join(&suffix),
                origin: Origin::Body {
                    api: "_bulk",
                    place: format!("line {n}"),
                },
            };
            if let Some(b) = f(touched) {
                return Ok(Some(b));
            }
        }
        // The document / partial-update line follows, whatever it contains.
        if line.op != BulkOp::Delete && lines.next(None)?.is_none() {
            break;
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// _msearch, _msearch/template
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct MsearchHeader {
    index: Option<IndexList>,
    indices: Option<IndexList>,
}

/// `"a,b"` or `["a", "b"]`: OpenSearch splits a string at its commas, but takes each element
/// of an array as one name.
#[derive(Deserialize)]
#[serde(untagged)]
enum IndexList {
    Expression(String),
    Names(Vec<String>),
}

impl IndexList {
    fn targets(&self) -> Result<Vec<Target>, ExtractError> {
        match self {
            IndexList::Expression(expr) => index_items(expr),
            IndexList::Names(names) => {
                let mut out = Vec::new();
                for name in names {
                    out.extend(name_items(name)?);
                }
                Ok(out)
            }
        }
    }
}

fn msearch<B>(
    api: &'static str,
    r: &mut dyn BufRead,
    defaults: Option<&[Target]>,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, String> {
    let all = [Target::wildcard("*")];
    let defaults = defaults.unwrap_or(&all);
    let mut lines = Lines::new(r);
    let mut buf = Vec::new();
    let mut first = true;
    while let Some(n) = lines.next(Some(&mut buf))? {
        // OpenSearch skips one empty line at the very start of the body only.
        if std::mem::take(&mut first) && buf.is_empty() {
            continue;
        }
        let mut targets = Vec::new();
        let mut named = false;
        if !is_blank(&buf) {
            let h: MsearchHeader =
                serde_json::from_slice(&buf).map_err(|e| format!("line {n}: {e}"))?;
            for list in h.index.iter().chain(&h.indices) {
                let found = list.targets().map_err(|e| format!("line {n}: {e}"))?;
                named |= !found.is_empty();
                targets.extend(found);
            }
        }
        if !named {
            targets = defaults.to_vec();
        }
        for t in targets {
            let touched = Touched {
                target: t.join("/_search"),
                origin: Origin::Body {
                    api,
                    place: format!("line {n}"),
                },
            };
            if let Some(b) = f(touched) {
                return Ok(Some(b));
            }
        }
        // The search body follows.
        if lines.next(None)?.is_none() {
            break;
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------

/// Skips leading whitespace; true when nothing else is left.
fn skip_blank(r: &mut dyn BufRead) -> Result<bool, String> {
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the body failed: {e}")),
        };
        if buf.is_empty() {
            return Ok(true);
        }
        let n = buf.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let all = n == buf.len();
        r.consume(n);
        if !all {
            return Ok(false);
        }
    }
}

/// Parses a JSON body; `None` for an empty body (the API then touches nothing more).
fn json_body<T: de::DeserializeOwned>(r: &mut dyn BufRead) -> Result<Option<T>, String> {
    if skip_blank(r)? {
        return Ok(None);
    }
    serde_json::from_reader(r)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct MgetBody {
    docs: Option<Vec<MgetDoc>>,
}

#[derive(Deserialize)]
struct MgetDoc {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
}

fn mget<B>(
    api: &'static str,
    r: &mut dyn BufRead,
    defaults: Option<&[Target]>,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, String> {
    let Some(body) = json_body::<MgetBody>(r)? else {
        return Ok(None);
    };
    for (i, doc) in body.docs.unwrap_or_default().into_iter().enumerate() {
        let targets = match &doc.index {
            Some(expr) => name_items(expr).map_err(|e| format!("docs[{i}]: {e}"))?,
            None => defaults
                .ok_or_else(|| format!("docs[{i}] has no _index and the path names no index"))?
                .to_vec(),
        };
        let suffix = match &doc.id {
            Some(id) => format!("/_doc/{}", id_text(id)),
            None => "/_doc".to_string(),
        };
        for t in targets {
            let touched = Touched {
                target: t.join(&suffix),
                origin: Origin::Body {
                    api,
                    place: format!("docs[{i}]"),
                },
            };
            if let Some(b) = f(touched) {
                return Ok(Some(b));
            }
        }
    }
    Ok(None)
}

#[derive(Deserialize)]
struct ReindexBody {
    source: Option<ReindexSource>,
    dest: Option<ReindexDest>,
    script: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ReindexSource {
    index: Option<IndexList>,
}

#[derive(Deserialize)]
struct ReindexDest {
    index: Option<String>,
}

fn reindex<B>(
    r: &mut dyn BufRead,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, String> {
    let Some(body) = json_body::<ReindexBody>(r)? else {
        return Err("the body is empty (source.index and dest.index are required)".into());
    };
    let sources = body
        .source
        .and_then(|s| s.index)
        .ok_or("source.index is missing")?;
    let dest = body
        .dest
        .and_then(|d| d.index)
        .ok_or("dest.index is missing")?;
    let mut out = Vec::new();
    for t in sources
        .targets()
        .map_err(|e| format!("source.index: {e}"))?
    {
        out.push((t.join("/_search"), "source.index"));
    }
    for t in name_items(&dest).map_err(|e| format!("dest.index: {e}"))? {
        out.push((t.join("/_doc"), "dest.index"));
    }
    if body.script.is_some() {
        // A script can set ctx._index and write anywhere.
        out.push((
            Target::wildcard("*/_doc"),
            "script (it can set ctx._index to any index)",
        ));
    }
    for (target, place) in out {
        let touched = Touched {
            target,
            origin: Origin::Body {
                api: "_reindex",
                place: place.to_string(),
            },
        };
        if let Some(b) = f(touched) {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

#[derive(Deserialize)]
struct AliasesBody {
    actions: Option<Vec<AliasAction>>,
}

struct AliasAction {
    kind: &'static str,
    spec: AliasSpec,
}

#[derive(Deserialize)]
struct AliasSpec {
    index: Option<OneOrMany<String>>,
    indices: Option<OneOrMany<String>>,
    alias: Option<OneOrMany<String>>,
    aliases: Option<OneOrMany<String>>,
}

impl<'de> Deserialize<'de> for AliasAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AliasAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an alias action like {"add":{"index":"...","alias":"..."}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AliasAction, A::Error> {
                let Some(k) = map.next_key::<String>()? else {
                    return Err(de::Error::custom("empty alias action"));
                };
                let kind = match k.as_str() {
                    "add" => "add",
                    "remove" => "remove",
                    "remove_index" => "remove_index",
                    other => {
                        return Err(de::Error::custom(format!("unknown alias action {other:?}")))
                    }
                };
                let spec = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "more than one alias action in one object",
                    ));
                }
                Ok(AliasAction { kind, spec })
            }
        }
        d.deserialize_map(V)
    }
}

fn aliases<B>(
    r: &mut dyn BufRead,
    f: &mut dyn FnMut(Touched) -> Option<B>,
) -> Result<Option<B>, String> {
    let Some(body) = json_body::<AliasesBody>(r)? else {
        return Ok(None);
    };
    for (i, action) in body.actions.unwrap_or_default().into_iter().enumerate() {
        let place = format!("actions[{i}].{}", action.kind);
        let s = action.spec;
        let indices: Vec<String> = s
            .index
            .into_iter()
            .chain(s.indices)
            .flat_map(|v| v.0)
            .collect();
        let names: Vec<String> = s
            .alias
            .into_iter()
            .chain(s.aliases)
            .flat_map(|v| v.0)
            .collect();
        if indices.is_empty() {
            return Err(format!("{place} names no index"));
        }
        let mut out = Vec::new();
        for expr in &indices {
            for t in name_items(expr).map_err(|e| format!("{place}: {e}"))? {
                // remove_index deletes the index itself.
                out.push(if action.kind == "remove_index" {
                    t
                } else {
                    t.join("/_aliases")
                });
            }
        }
        for expr in &names {
            for t in name_items(expr).map_err(|e| format!("{place}: {e}"))? {
                out.push(t.join("/_aliases"));
            }
        }
        for target in out {
            let touched = Touched {
                target,
                origin: Origin::Body {
                    api: "_aliases",
                    place: place.clone(),
                },
            };
            if let Some(b) = f(touched) {
                return Ok(Some(b));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(method: Method, path: &str, body: Option<&str>) -> Result<Vec<String>, ExtractError> {
        let mut reader = body.map(|b| std::io::Cursor::new(b.as_bytes().to_vec()));
        let r = reader.as_mut().map(|c| c as &mut dyn BufRead);
        touched_resources(&method, path, r)
            .map(|v| v.into_iter().map(|t| t.target.to_string()).collect())
    }

    fn ok(method: Method, path: &str, body: Option<&str>) -> Vec<String> {
        res(method, path, body).unwrap()
    }

    #[test]
    fn paths() {
        assert_eq!(ok(Method::GET, "/", None), [""]);
        assert_eq!(
            ok(Method::GET, "/_cluster/health", None),
            ["_cluster/health"]
        );
        assert_eq!(
            ok(Method::DELETE, "/restricted-index", None),
            ["restricted-index"]
        );
        assert_eq!(
            ok(Method::GET, "//restricted-index//_search", None),
            ["restricted-index/_search"]
        );
        assert_eq!(
            ok(Method::GET, "/a,b/_search?q=x", None),
            ["a/_search", "b/_search"]
        );
        assert_eq!(ok(Method::GET, "/_all/_search", None), ["*/_search"]);
        assert_eq!(ok(Method::GET, "/_search", None), ["_search", "*/_search"]);
        assert_eq!(
            ok(Method::GET, "/_search/template", None),
            ["_search/template", "*/_search/template"]
        );
        assert_eq!(
            ok(Method::POST, "/_search/scroll", None),
            ["_search/scroll"]
        );
        assert_eq!(ok(Method::GET, "/_count", None), ["_count", "*/_count"]);
        assert_eq!(
            ok(Method::POST, "/_plugins/_sql", None),
            ["_plugins/_sql", "*/_plugins/_sql"]
        );
        assert_eq!(
            ok(Method::POST, "/_snapshot/repo/snap/_restore", None),
            [
                "_snapshot/repo/snap/_restore",
                "*/_snapshot/repo/snap/_restore"
            ]
        );
        assert_eq!(
            ok(Method::GET, "/_plugins/_security/authinfo", None),
            ["_plugins/_security/authinfo"]
        );
        assert_eq!(
            ok(Method::GET, "/logs-*,-logs-secret/_search", None),
            ["logs-*/_search"]
        );
        assert_eq!(ok(Method::GET, "/-secret/_search", None), ["*/_search"]);
        assert_eq!(
            ok(Method::PUT, "/test-index/_doc/a%2Fb", None),
            ["test-index/_doc/a/b"]
        );
        assert_eq!(
            ok(Method::POST, "/idx/_delete_by_query", None),
            ["idx/_delete_by_query"]
        );
        let t = touched_resources(&Method::GET, "/r*/_search", None).unwrap();
        assert!(t[0].target.is_wildcard());
        let t = touched_resources(&Method::GET, "/test-index/_doc/a*b", None).unwrap();
        assert!(
            !t[0].target.is_wildcard(),
            "a * in a document id is literal"
        );
        assert!(res(Method::GET, "/test-index/../restricted-index/_search", None).is_err());
        assert!(res(Method::GET, "/%2E%2E/x", None).is_err());
        assert!(res(Method::GET, "/%FF/_search", None).is_err());
    }

    #[test]
    fn date_math_names() {
        assert_eq!(
            ok(Method::GET, "/%3Clogs-%7Bnow%2Fd%7D%3E/_search", None),
            ["logs-*/_search"]
        );
        assert_eq!(
            ok(
                Method::GET,
                "/%3Clogs-%7Bnow%2Fd%7Byyyy.MM.dd%7C%2B12%3A00%7D%7D%3E/_search",
                None
            ),
            ["logs-*/_search"]
        );
        assert_eq!(
            ok(
                Method::GET,
                r"/%3Celastic%5C%7BON%5C%7D-%7Bnow%2FM%7D%3E",
                None
            ),
            ["elastic{ON}-*"]
        );
        let t = touched_resources(&Method::GET, "/%3Clogs-%7Bnow%2Fd%7D%3E/_search", None).unwrap();
        assert!(t[0].target.is_wildcard());
        assert!(res(Method::GET, "/%3Clogs-%7Bnow%2Fd%3E/_search", None).is_err());
    }

    #[test]
    fn body_needed_for_multi_index_apis_only() {
        for (m, p, want) in [
            (Method::POST, "/_bulk", true),
            (Method::PUT, "/idx/_bulk", true),
            (Method::GET, "/_mget", true),
            (Method::POST, "/idx/_mtermvectors", true),
            (Method::POST, "/_msearch", true),
            (Method::GET, "/idx/_msearch/template", true),
            (Method::POST, "/_reindex", true),
            (Method::POST, "/_aliases", true),
            (Method::HEAD, "/_bulk", false),
            (Method::POST, "/idx/_search", false),
            (Method::POST, "/_search/template", false),
            (Method::DELETE, "/idx", false),
            (Method::POST, "/idx/_doc", false),
            (Method::POST, "/_bulk/x", false),
        ] {
            assert_eq!(body_needed(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn bulk_actions_and_source_lines() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n",
            "{\"delete\":{\"_index\":\"restricted-index\",\"_id\":\"x\"}}\n",
            "\n",
            "{\"create\":{\"_index\":\"b\",\"_id\":2}}\n",
            "{\"delete\":{\"_index\":\"restricted-index\"}}\n",
            "{ \"update\" : { \"_id\" : \"3\" } }\r\n",
            "{\"doc\":{\"index\":{\"_index\":\"restricted-index\"}}}\n",
            "{\"delete\":{\"_index\":\"c\",\"_id\":\"4\"}}\n",
            "{\"index\":{}}\n",
            "\n",
        );
        // Lines 2 and 5 look like actions on restricted-index, but they are the
        // documents of the `index` and `create` before them (as OpenSearch reads them).
        assert_eq!(
            ok(Method::POST, "/dflt/_bulk", Some(body)),
            [
                "dflt/_bulk",
                "a/_doc/1",
                "b/_create/2",
                "dflt/_update/3",
                "c/_doc/4",
                "dflt/_doc",
            ]
        );
        let t = touched_resources(
            &Method::POST,
            "/_bulk",
            Some(&mut std::io::Cursor::new(b"{\"index\":{\"_index\":\"a\"}}\n{}\n{\"delete\":{\"_index\":\"restr\\u0069cted-index\",\"_id\":1}}".to_vec())),
        )
        .unwrap();
        assert_eq!(t[2].target.as_str(), "restricted-index/_doc/1");
        assert_eq!(
            t[2].origin,
            Origin::Body {
                api: "_bulk",
                place: "line 3".into()
            }
        );
    }

    #[test]
    fn bulk_errors() {
        for body in [
            "{\"index\":{}}\n{}\n", // no index anywhere
            "{\"index\":{\"_index\":\"a\"},\"delete\":{\"_index\":\"b\"}}\n", // two actions
            "{\"upsert\":{\"_index\":\"a\"}}\n", // unknown action
            "{\"index\":{\"_index\":\"a\",\"_index\":\"b\"}}\n", // duplicate key
            "[{\"index\":{}}]\n",
            "{\"index\":{\"_index\":\"a\"}} trailing\n",
            "{\"index\":{/* c */\"_index\":\"a\"}}\n",
            "not json\n",
            "{\"index\":{\"_index\":5}}\n",
        ] {
            assert!(res(Method::POST, "/_bulk", Some(body)).is_err(), "{body}");
        }
        assert!(
            res(Method::POST, "/_bulk", None).is_err(),
            "a needed body must be provided"
        );
        assert_eq!(ok(Method::POST, "/_bulk", Some("")), ["_bulk"]);
        assert_eq!(ok(Method::HEAD, "/_bulk", None), ["_bulk"]);
    }

    #[test]
    fn msearch_headers() {
        let body = concat!(
            "\n",
            "{\"index\":\"a,b\"}\n",
            "{\"query\":{\"match_all\":{}}}\n",
            "{}\n",
            "{\"index\":\"restricted-index\"}\n",
            "{\"indices\":[\"c\",\"d*\"]}\n",
            "{}\n",
            "\n",
            "{}\n",
        );
        assert_eq!(
            ok(Method::POST, "/_msearch", Some(body)),
            [
                "_msearch",
                "a/_search",
                "b/_search",
                "*/_search",
                "c/_search",
                "d*/_search",
                "*/_search"
            ]
        );
        assert_eq!(
            ok(
                Method::POST,
                "/dflt/_msearch/template",
                Some("{}\n{\"id\":\"t\"}\n")
            ),
            ["dflt/_msearch/template", "dflt/_search"]
        );
        assert!(res(Method::POST, "/_msearch", Some("{\"index\":1}\n{}\n")).is_err());
        assert!(res(
            Method::POST,
            "/_msearch",
            Some("{\"index\":\"a\",\"index\":\"b\"}\n{}\n")
        )
        .is_err());
    }

    #[test]
    fn mget_docs() {
        let body = r#"{"docs":[{"_index":"a","_id":"1"},{"_id":2,"_source":false},{"_index":"restricted-index","_id":"3"}],"ids":["x"]}"#;
        assert_eq!(
            ok(Method::GET, "/dflt/_mget", Some(body)),
            [
                "dflt/_mget",
                "a/_doc/1",
                "dflt/_doc/2",
                "restricted-index/_doc/3"
            ]
        );
        assert!(res(Method::GET, "/_mget", Some(r#"{"docs":[{"_id":"1"}]}"#)).is_err());
        assert!(res(
            Method::GET,
            "/_mget",
            Some(r#"{"docs":[{"_index":"a","_index":"b"}]}"#)
        )
        .is_err());
        assert!(res(Method::GET, "/_mget", Some(r#"{"docs":"#)).is_err());
        assert_eq!(ok(Method::GET, "/idx/_mget", Some("  \n")), ["idx/_mget"]);
        assert_eq!(
            ok(
                Method::POST,
                "/_mtermvectors",
                Some(r#"{"docs":[{"_index":"a","_id":"1"}]}"#)
            ),
            ["_mtermvectors", "a/_doc/1"]
        );
    }

    #[test]
    fn reindex_bodies() {
        assert_eq!(
            ok(
                Method::POST,
                "/_reindex",
                Some(
                    r#"{"source":{"index":["a","b*"],"query":{"match_all":{}}},"dest":{"index":"c"}}"#
                )
            ),
            ["_reindex", "a/_search", "b*/_search", "c/_doc"]
        );
        assert_eq!(
            ok(
                Method::POST,
                "/_reindex",
                Some(
                    r#"{"source":{"index":"a,restricted-index"},"dest":{"index":"c"},"script":{"source":"ctx._index='x'"}}"#
                )
            ),
            [
                "_reindex",
                "a/_search",
                "restricted-index/_search",
                "c/_doc",
                "*/_doc"
            ]
        );
        assert!(res(Method::POST, "/_reindex", Some(r#"{"dest":{"index":"c"}}"#)).is_err());
        assert!(res(
            Method::POST,
            "/_reindex",
            Some(r#"{"source":{"index":"a"}}"#)
        )
        .is_err());
        assert!(res(Method::POST, "/_reindex", Some("")).is_err());
    }

    #[test]
    fn aliases_bodies() {
        let body = r#"{"actions":[
            {"add":{"index":"a","alias":"al"}},
            {"remove":{"indices":["b","c*"],"aliases":["x","y"]}},
            {"remove_index":{"index":"restricted-index"}}]}"#;
        assert_eq!(
            ok(Method::POST, "/_aliases", Some(body)),
            [
                "_aliases",
                "a/_aliases",
                "al/_aliases",
                "b/_aliases",
                "c*/_aliases",
                "x/_aliases",
                "y/_aliases",
                "restricted-index"
            ]
        );
        assert_eq!(ok(Method::GET, "/_aliases", Some("")), ["_aliases"]);
        assert!(res(
            Method::POST,
            "/_aliases",
            Some(r#"{"actions":[{"add":{"alias":"x"}}]}"#)
        )
        .is_err());
        assert!(res(
            Method::POST,
            "/_aliases",
            Some(r#"{"actions":[{"rename":{"index":"x"}}]}"#)
        )
        .is_err());
        assert!(res(
            Method::POST,
            "/_aliases",
            Some(r#"{"actions":[{"add":{"index":"a","alias":"x"},"remove_index":{"index":"b"}}]}"#)
        )
        .is_err());
    }

    #[test]
    fn large_bulk_bodies_are_streamed() {
        // Source lines are skipped without being buffered: one 4 MiB document line
        // (larger than MAX_META_LINE) must not be a problem.
        let mut body = String::from("{\"index\":{\"_index\":\"a\"}}\n{\"f\":\"");
        body.push_str(&"x".repeat(4 << 20));
        body.push_str("\"}\n{\"delete\":{\"_index\":\"b\",\"_id\":\"1\"}}\n");
        let mut r =
            std::io::BufReader::with_capacity(8192, std::io::Cursor::new(body.into_bytes()));
        let t = touched_resources(&Method::POST, "/_bulk", Some(&mut r)).unwrap();
        assert_eq!(t.len(), 3);
        // An action line that long is refused.
        let long = format!(
            "{{\"index\":{{\"_index\":\"{}\"}}}}\n",
            "a".repeat(MAX_META_LINE)
        );
        assert!(res(Method::POST, "/_bulk", Some(&long)).is_err());
    }
}
