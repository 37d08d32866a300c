//! A request, classified: the operation it is and every resource it touches, with where each
//! came from.
//!
//! The path is read the way OpenSearch's router reads it (raw segments, fixed ones first) and,
//! where that differs, also the way a server that decodes and normalises paths first would
//! (percent-decoded, empty and dot segments resolved): the request must pass both readings.
//! Then, for the route found: the index parameters of the path, the query parameters that stand
//! for them, "every index" where the API reaches every index without one, and the body where
//! it can name indices. What cannot be classified touches every index (`*`): an unknown route,
//! a body that cannot be read, a name in an index position that is no index name.

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;
use std::ops::ControlFlow;

pub use super::bodies::Place;
use super::bodies::{self, Context, Input, Named};
use super::encoding;
use super::names::{decode_generic, decode_param, index_items};
use super::pattern::Target;
use super::routes::{Access, BodyKind, Found, Segment, Table};

/// A resource a request touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// `es:ESHttpGet` … (for a request Dashboards carries: its own method's).
    pub action: &'static str,
    pub access: Access,
    /// The operation (`bulk`, `indices.put_alias`, `unknown`).
    pub api: &'static str,
    pub target: Target,
    pub origin: Origin,
}

/// Where a touched resource came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The path names it.
    Path,
    /// A query parameter names it (`index`).
    Query(String),
    /// The body names it, at this place (`line 3`, `docs[0]._index`).
    Body(Place),
    /// The request reaches every index (why).
    AllIndices(String),
    /// What the request touches cannot be told, so every index (why).
    CannotTell(String),
    /// Inside the request that another one carries (Dashboards' console: `via`).
    Nested { via: String, origin: Box<Origin> },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Path => f.write_str("from the path"),
            Origin::Query(p) => write!(f, "from the `{p}` query parameter"),
            Origin::Body(Place::Json(p)) if p.is_empty() => f.write_str("from the body"),
            Origin::Body(place) => write!(f, "from the body, {place}"),
            Origin::AllIndices(why) => f.write_str(why),
            Origin::CannotTell(why) => write!(f, "cannot tell which indices, so all: {why}"),
            Origin::Nested { via, origin } => write!(f, "{via}: {origin}"),
        }
    }
}

impl Origin {
    /// Does this touch stand for every index because the request could not be classified?
    pub fn is_unclassified(&self) -> bool {
        match self {
            Origin::CannotTell(_) => true,
            Origin::Nested { origin, .. } => origin.is_unclassified(),
            _ => false,
        }
    }
}

/// The request as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a http::Method,
    /// As on the wire, without the query.
    pub(crate) raw_path: &'a str,
    /// As forwarded, without `?`.
    pub(crate) query: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) content_encoding: Option<&'a str>,
}

/// A request body that can be read (more than once: each reading of the path reads it anew).
pub trait BodySource {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The whole body as one slice, when it is in memory in one piece (read in place).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>>;
}

/// A body in memory.
pub struct InMemory<'a>(pub &'a [u8]);

impl BodySource for InMemory<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(&self) -> std::io::Result<Box<dyn BufRead + Send + '_>> {
        Ok(Box::new(self.0))
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(self.0)
    }
}

/// What the classification is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Every index touched (statement policies).
    Indices,
    /// Only whether anything is written (`--read-only`): bodies are read only where they can
    /// make a read a write (clearing every scroll) or carry another request.
    Access,
}

/// Settings that bound the classification.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The most bytes a compressed body is inflated to for reading.
    pub(crate) inflate: u64,
}

/// How deep requests carried by requests are followed (Dashboards' console carries one).
const MAX_NESTING: usize = 1;

/// Dashboards bodies that carry searches are parsed whole, up to this size.
const MAX_DASHBOARDS_BODY: u64 = 16 << 20;

/// The routes a request's path finds, read as OpenSearch does and, where it differs, as a
/// normalising server would.
pub(crate) struct Plan {
    readings: Vec<Reading>,
    needs_body: bool,
}

struct Reading {
    found: Option<Found<'static>>,
    /// The segments as the router matched them (raw for OpenSearch's reading).
    tokens: Vec<String>,
    /// Each segment decoded, where decoding changes it.
    decoded: Vec<Decoded>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Decoded {
    /// As the token is (it has no escapes).
    Same,
    Changed(String),
    /// A malformed escape: OpenSearch answers 400.
    Malformed,
}

impl Reading {
    /// Segment `i` decoded (`None`: malformed).
    fn decoded(&self, i: usize) -> Option<&str> {
        match self.decoded.get(i)? {
            Decoded::Same => self.tokens.get(i).map(String::as_str),
            Decoded::Changed(d) => Some(d),
            Decoded::Malformed => None,
        }
    }

    /// Segment `i` as messages show it: decoded where it can be.
    fn shown(&self, i: usize) -> &str {
        self.decoded(i).unwrap_or(&self.tokens[i])
    }
}

impl Plan {
    pub(crate) fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// The operation each reading found and its route (`bulk`, `POST /{index}/_bulk`), for
    /// `policy explain`.
    pub(crate) fn apis(&self) -> Vec<(&'static str, String)> {
        self.readings
            .iter()
            .map(|r| match r.found {
                Some(f) => (
                    f.route.api.as_str(),
                    format!("{} {}", f.route.method, f.route.path),
                ),
                None => ("unknown", "no route".to_string()),
            })
            .collect()
    }
}

pub(crate) fn plan(req: &Request<'_>, want: Want) -> Plan {
    let readings = readings(req.method, req.raw_path, true);
    let needs_body = readings.iter().any(|r| {
        r.found
            .and_then(|f| f.route.body)
            .is_some_and(|k| body_matters(k, want))
    });
    Plan {
        readings,
        needs_body,
    }
}

fn body_matters(kind: BodyKind, want: Want) -> bool {
    match want {
        Want::Indices => kind != BodyKind::None,
        Want::Access => matches!(
            kind,
            BodyKind::ClearScroll | BodyKind::DeletePit | BodyKind::Console | BodyKind::KibanaProxy
        ),
    }
}

/// OpenSearch's reading (the router's raw segments: empty ones kept, trailing ones dropped)
/// and the normalised one, when they differ.
fn readings(method: &http::Method, raw_path: &str, dashboards: bool) -> Vec<Reading> {
    let table = Table::get();
    // `/_dashboards/…` and `/_plugin/kibana/…` go to Dashboards (or Kibana) on a managed
    // domain, everything else to OpenSearch: each only ever finds its own routes (a request
    // Dashboards carries is an OpenSearch one).
    let find = |tokens: &[String]| {
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let to_dashboards = dashboards
            && matches!(
                refs.as_slice(),
                ["_dashboards", ..] | ["_plugin", "kibana", ..]
            );
        table.find(method, &refs, &|r| r.dashboards == to_dashboards)
    };

    let raw = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let mut router: Vec<String> = if raw.is_empty() {
        Vec::new()
    } else {
        raw.split('/').map(str::to_string).collect()
    };
    while router.last().is_some_and(String::is_empty) {
        router.pop();
    }
    let decoded = router
        .iter()
        .map(|t| match decode_param(t) {
            Some(Cow::Borrowed(_)) => Decoded::Same,
            Some(Cow::Owned(d)) => Decoded::Changed(d),
            None => Decoded::Malformed,
        })
        .collect();
    let first = Reading {
        found: find(&router),
        decoded,
        tokens: router,
    };
    // Nothing a server could decode, collapse or resolve: one reading is all there is.
    let plain = !raw.contains(['%', '\\', ';'])
        && !raw.contains("//")
        && !raw.split('/').any(|s| s == "." || s == "..");
    if plain {
        return vec![first];
    }
    let mut normal: Vec<String> = Vec::new();
    for seg in raw.split(['/', '\\']).filter(|s| !s.is_empty()) {
        // Servers that take `;…` for a segment's parameters (`/index;v=1/`) drop it.
        let seg = seg.split(';').next().unwrap_or(seg);
        match decode_generic(seg).as_ref() {
            "" | "." => {}
            ".." => {
                normal.pop();
            }
            d => normal.push(d.to_string()),
        }
    }
    let same = first.tokens.len() == normal.len()
        && (0..normal.len())
            .all(|i| first.decoded(i) == Some(normal[i].as_str()) && first.tokens[i] == normal[i]);
    let mut out = vec![first];
    if !same {
        out.push(Reading {
            found: find(&normal),
            decoded: vec![Decoded::Same; normal.len()],
            tokens: normal,
        });
    }
    out
}

/// `es:ESHttpGet` … for a method, `None` for one no action covers (OPTIONS, TRACE...).
pub(crate) fn action_for(m: &http::Method) -> Option<&'static str> {
    Some(match *m {
        http::Method::GET => "es:ESHttpGet",
        http::Method::HEAD => "es:ESHttpHead",
        http::Method::POST => "es:ESHttpPost",
        http::Method::PUT => "es:ESHttpPut",
        http::Method::DELETE => "es:ESHttpDelete",
        http::Method::PATCH => "es:ESHttpPatch",
        _ => return None,
    })
}

/// The sink every touch goes to; `Break` stops the classification.
pub(crate) type TouchSink<'a> = &'a mut dyn FnMut(Touch) -> ControlFlow<()>;

/// Whether the sink's verdict on `<prefix><document id>` is the same for every id (the judge
/// knows it from the policy's patterns): then a run of bulk lines into one index is told once.
/// `None` tells every touch, as `explain` lists them all.
pub(crate) type SameForAnyId<'a> = Option<&'a dyn Fn(&str) -> bool>;

/// Tells `sink` every resource the request touches: each reading of its path in turn, path
/// and query first, then the body's. `body` is needed when [`Plan::needs_body`] says so.
pub(crate) fn run(
    plan: &Plan,
    req: &Request<'_>,
    body: Option<&dyn BodySource>,
    want: Want,
    limits: Limits,
    same_for_any_id: SameForAnyId<'_>,
    sink: TouchSink<'_>,
) -> ControlFlow<()> {
    let Some(action) = action_for(req.method) else {
        return ControlFlow::Continue(());
    };
    for reading in &plan.readings {
        let cx = Classify {
            req,
            action,
            body,
            want,
            limits,
            same_for_any_id,
            depth: 0,
        };
        cx.reading(reading, sink)?;
    }
    ControlFlow::Continue(())
}

struct Classify<'a> {
    req: &'a Request<'a>,
    action: &'static str,
    body: Option<&'a dyn BodySource>,
    want: Want,
    limits: Limits,
    same_for_any_id: SameForAnyId<'a>,
    depth: usize,
}

/// Where an index list was found.
#[derive(Clone, Copy)]
enum ListAt<'a> {
    Path,
    /// A query parameter, by name.
    Query(&'a str),
}

/// Joins segments with `/`, skipping empty ones.
fn joined<'s>(segments: impl Iterator<Item = &'s str>) -> String {
    let mut out = String::new();
    for s in segments.filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(s);
    }
    out
}

fn slash(api: &str) -> String {
    if api.is_empty() {
        String::new()
    } else {
        format!("/{api}")
    }
}

/// The query's parameters as OpenSearch reads them (`&` or `;` between them, `+` a space).
pub(crate) fn query_params(query: Option<&str>) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let Some(q) = query else {
        return Vec::new();
    };
    let q = q.split('#').next().unwrap_or("");
    fn decoded(s: &str) -> Cow<'_, str> {
        if !s.contains(['%', '+']) {
            return Cow::Borrowed(s);
        }
        let s = s.replace('+', " ");
        Cow::Owned(decode_param(&s).map_or_else(|| s.clone(), Cow::into_owned))
    }
    q.split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decoded(k), decoded(v))
        })
        .collect()
}

impl Classify<'_> {
    fn touch(&self, api: &'static str, access: Access, target: Target, origin: Origin) -> Touch {
        Touch {
            action: self.action,
            access,
            api,
            target,
            origin,
        }
    }

    /// Tells `sink` each index an index list names (found `at`), joined with `suffix`; every
    /// index when the list is empty, cannot be read or is too long to check. The items, when
    /// they were told one by one.
    fn index_list(
        &self,
        api: &'static str,
        access: Access,
        value: &str,
        suffix: &str,
        at: ListAt<'_>,
        sink: TouchSink<'_>,
    ) -> ControlFlow<(), Option<Vec<Target>>> {
        let every = |origin| self.touch(api, access, Target::wildcard("*").join(suffix), origin);
        if value.trim().is_empty() {
            let why = match at {
                ListAt::Path => "an empty index list in the path means every index".to_string(),
                ListAt::Query(key) => format!("an empty `{key}` parameter means every index"),
            };
            sink(every(Origin::AllIndices(why)))?;
            return ControlFlow::Continue(None);
        }
        match index_items(value) {
            Ok(items) if too_costly(items.len(), suffix) => {
                let place = match at {
                    ListAt::Path => "the path".to_string(),
                    ListAt::Query(key) => format!("`{key}`"),
                };
                let why = format!(
                    "{} indices in {place}, each followed by {} bytes: too many to check",
                    items.len(),
                    suffix.len()
                );
                sink(every(Origin::CannotTell(why)))?;
                ControlFlow::Continue(None)
            }
            Ok(items) => {
                for t in &items {
                    let origin = match at {
                        ListAt::Path => Origin::Path,
                        ListAt::Query(key) => Origin::Query(key.to_string()),
                    };
                    sink(self.touch(api, access, t.join(suffix), origin))?;
                }
                ControlFlow::Continue(Some(items))
            }
            Err(e) => {
                sink(every(Origin::CannotTell(e.0)))?;
                ControlFlow::Continue(None)
            }
        }
    }

    fn reading(&self, reading: &Reading, sink: TouchSink<'_>) -> ControlFlow<()> {
        let display: Vec<&str> = (0..reading.tokens.len())
            .map(|i| reading.shown(i))
            .collect();
        let Some(found) = reading.found else {
            return self.unknown(&display, sink);
        };
        let route = found.route;
        let api: &'static str = route.api.as_str();
        let access = route.access;
        let positions: Vec<(usize, &str)> = route.name_positions().collect();
        // The API part of the resources: the path without its index names.
        let api_part = joined(
            display
                .iter()
                .enumerate()
                .filter(|(i, _)| !positions.iter().any(|(p, _)| p == i))
                .map(|(_, s)| *s),
        );
        let first_is_name = positions.first().is_some_and(|(p, _)| *p == 0);
        if !first_is_name {
            sink(self.touch(
                api,
                access,
                Target::literal(&joined(display.iter().copied())),
                Origin::Path,
            ))?;
        }
        let mut defaults: Vec<Target> = Vec::new();
        let mut bound: Vec<&str> = Vec::new();
        let all = |why: String| Origin::AllIndices(why);
        for &(pos, name) in &positions {
            bound.push(name);
            let Some(value) = reading.decoded(pos) else {
                let why = format!(
                    "the path segment {:?} has a malformed escape",
                    reading.tokens.get(pos).map_or("", String::as_str)
                );
                sink(self.touch(
                    api,
                    access,
                    Target::wildcard("*").join(&slash(&api_part)),
                    Origin::CannotTell(why),
                ))?;
                continue;
            };
            let suffix = if pos == 0 {
                slash(&joined(display[1..].iter().copied()))
            } else {
                slash(&api_part)
            };
            if let Some(items) = self.index_list(api, access, value, &suffix, ListAt::Path, sink)? {
                defaults.extend(items);
            }
            if let Some(odd) = value
                .split(',')
                .map(str::trim)
                .find(|i| i.starts_with('_') && *i != "_all")
            {
                let why = format!(
                    "`{odd}` stands where an index name belongs, but no index name starts with `_`: this may be an API the proxy does not know"
                );
                sink(self.touch(
                    api,
                    access,
                    Target::wildcard("*").join(&suffix),
                    Origin::CannotTell(why),
                ))?;
            }
        }
        // Query parameters of the same names (`?index=`), and `index` wherever it appears.
        let params = query_params(self.req.query);
        for (key, value) in &params {
            let names_here = route.names.iter().any(|n| n == key) || key == "index";
            if !names_here {
                continue;
            }
            bound.push(key.as_ref());
            let suffix = slash(&api_part);
            let at = ListAt::Query(key);
            if let Some(items) = self.index_list(api, access, value, &suffix, at, sink)? {
                if key == "index" || positions.is_empty() {
                    defaults.extend(items);
                }
            }
        }
        let any_bound = route.names.iter().any(|n| bound.contains(&n.as_str()));
        if route.all && !any_bound {
            sink(self.touch(
                api,
                access,
                Target::wildcard("*").join(&slash(&api_part)),
                all("the request names no index, so it may reach every index".into()),
            ))?;
        }
        if route.unknown {
            let why = format!("{api} names its indices where the proxy cannot see them (query text, a stored definition)");
            sink(self.touch(
                api,
                access,
                Target::wildcard("*").join(&slash(&api_part)),
                Origin::CannotTell(why),
            ))?;
        }
        if let Some(p) = &route.unnamed {
            if !bound.contains(&p.as_str()) {
                let why = format!("without `{p}` the new index is named after the current one, which the proxy cannot see");
                sink(self.touch(
                    api,
                    access,
                    Target::wildcard("*").join(&slash(&api_part)),
                    Origin::CannotTell(why),
                ))?;
            }
        }
        if route.api == "clear_scroll" || route.api == "delete_pit" {
            let ids = positions_of(route, "scroll_id")
                .and_then(|p| reading.decoded(p).map(str::to_string))
                .into_iter()
                .chain(
                    params
                        .iter()
                        .filter(|(k, _)| k == "scroll_id")
                        .map(|(_, v)| v.to_string()),
                );
            for ids in ids {
                if bodies::text_releases_all(&ids) {
                    let why = "`_all` releases every client's search contexts".to_string();
                    sink(self.touch(
                        api,
                        Access::Write,
                        Target::literal(&joined(display.iter().copied())),
                        Origin::AllIndices(why),
                    ))?;
                }
            }
        }
        let Some(kind) = route.body else {
            return ControlFlow::Continue(());
        };
        if !body_matters(kind, self.want) {
            return ControlFlow::Continue(());
        }
        let cx = Context {
            defaults: &defaults,
            api: &api_part,
            same_for_any_id: self.same_for_any_id,
        };
        if kind.is_nested() {
            return self.nested(kind, found, reading, &params, api, access, &api_part, sink);
        }
        self.body(kind, api, access, &cx, &params, &display, sink)
    }

    /// No route: the path's first segment as an index expression if it looks like one, and
    /// every index.
    fn unknown(&self, display: &[&str], sink: TouchSink<'_>) -> ControlFlow<()> {
        let api = "unknown";
        let access = match *self.req.method {
            http::Method::GET | http::Method::HEAD => Access::Read,
            _ => Access::Write,
        };
        let literal = joined(display.iter().copied());
        match display.first() {
            Some(first) if !first.starts_with('_') => {
                let rest = slash(&joined(display[1..].iter().copied()));
                match index_items(first) {
                    Ok(items) if !too_costly(items.len(), &rest) => {
                        for t in items {
                            sink(self.touch(api, access, t.join(&rest), Origin::Path))?;
                        }
                    }
                    _ => {}
                }
            }

            _ => sink(self.touch(api, access, Target::literal(&literal), Origin::Path))?,
        }
        let why = format!(
            "the proxy knows no {} {} API, so it may reach any index",
            self.req.method,
            if literal.is_empty() {
                "/".to_string()
            } else {
                format!("/{literal}")
            }
        );
        sink(self.touch(
            api,
            access,
            Target::wildcard("*").join(&slash(&literal)),
            Origin::CannotTell(why),
        ))
    }

    /// Reads the body (or the `source` parameter that stands for it) with the extractor.
    #[allow(clippy::too_many_arguments)]
    fn body(
        &self,
        kind: BodyKind,
        api: &'static str,
        access: Access,
        cx: &Context<'_>,
        params: &[(Cow<'_, str>, Cow<'_, str>)],
        display: &[&str],
        sink: TouchSink<'_>,
    ) -> ControlFlow<()> {
        let suffix = slash(cx.api);
        // Under the read-only policy, a body that cannot be read may hold a write.
        let unread_access = if self.want == Want::Access {
            Access::Write
        } else {
            access
        };
        let cannot = |why: String| Touch {
            action: self.action,
            access: unread_access,
            api,
            target: Target::wildcard("*").join(&suffix),
            origin: Origin::CannotTell(why),
        };
        // Without a body, OpenSearch reads `?source=` (with `source_content_type`) instead.
        let source = params
            .iter()
            .rev()
            .find(|(k, _)| k == "source")
            .map(|(_, v)| InMemory(v.as_bytes()));
        let source_type = params
            .iter()
            .rev()
            .find(|(k, _)| k == "source_content_type")
            .map(|(_, v)| v.as_ref());
        let source = source.as_ref();
        let (bytes, content_type, encoding): (&dyn BodySource, Option<&str>, Option<&str>) =
            match (self.body, source) {
                (Some(b), _) if !b.is_empty() => {
                    (b, self.req.content_type, self.req.content_encoding)
                }
                (_, Some(s)) => (s, source_type, None),
                (Some(b), None) => (b, self.req.content_type, self.req.content_encoding),
                (None, None) => {
                    return sink(cannot("the body was not read".into()));
                }
            };
        if let Some(ct) = content_type {
            let ct = ct.to_ascii_lowercase();
            if ["smile", "cbor", "yaml"].iter().any(|f| ct.contains(f)) {
                return sink(cannot(format!(
                    "the body is {ct}, which the proxy does not read"
                )));
            }
        }
        // In memory and not compressed: read in place; otherwise as a stream.
        let plain = encoding.is_none_or(|e| {
            e.split(',')
                .all(|c| c.trim().eq_ignore_ascii_case("identity") || c.trim().is_empty())
        });
        let slice = if plain { bytes.as_slice() } else { None };
        let mut reader = match slice {
            Some(_) => None,
            None => {
                let reader = bytes
                    .open()
                    .map_err(|e| format!("reading the body failed: {e}"))
                    .and_then(|r| {
                        let r: Box<dyn BufRead + '_> = r;
                        encoding::inflated(r, encoding, bytes.len(), self.limits.inflate)
                    });
                match reader {
                    Ok(r) => Some(r),
                    Err(why) => return sink(cannot(why)),
                }
            }
        };
        let input = match (slice, reader.as_mut()) {
            (Some(s), _) => Input::Slice(s),
            (None, Some(r)) => Input::Reader(&mut **r),
            (None, None) => unreachable!("a reader where there is no slice"),
        };
        let mut stopped = false;
        let mut named = |n: Named| {
            let t = match n {
                Named::Target { target, place } => {
                    self.touch(api, access, target, Origin::Body(place))
                }
                Named::All { why, suffix } => self.touch(
                    api,
                    access,
                    Target::wildcard("*").join(&suffix),
                    Origin::AllIndices(why),
                ),
                Named::Writes { why } => self.touch(
                    api,
                    Access::Write,
                    Target::literal(&joined(display.iter().copied())),
                    Origin::Body(Place::Json(why)),
                ),
            };
            let flow = sink(t);
            stopped = flow.is_break();
            flow
        };
        let extracted = bodies::extract(kind, input, cx, &mut named);
        if stopped {
            return ControlFlow::Break(());
        }
        match extracted {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) if matches!(kind, BodyKind::ClearScroll | BodyKind::DeletePit) => {
                // Ids as text; whatever it is, it names no index.
                let text = bytes.open().ok().and_then(|mut r| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut r, &mut s)
                        .ok()
                        .map(|_| s)
                });
                if text
                    .as_deref()
                    .is_some_and(|t| !bodies::text_releases_all(t))
                {
                    ControlFlow::Continue(())
                } else {
                    let why = "a clear-scroll body the proxy cannot read may release every client's search contexts";
                    sink(self.touch(
                        api,
                        Access::Write,
                        Target::literal(&joined(display.iter().copied())),
                        Origin::CannotTell(why.into()),
                    ))
                }
            }
            Err(why) => sink(cannot(format!("the body cannot be read: {why}"))),
        }
    }

    /// A request Dashboards or Kibana carries: classified as that request, inside this one.
    #[allow(clippy::too_many_arguments)]
    fn nested(
        &self,
        kind: BodyKind,
        found: Found<'static>,
        reading: &Reading,
        params: &[(Cow<'_, str>, Cow<'_, str>)],
        api: &'static str,
        access: Access,
        api_part: &str,
        sink: TouchSink<'_>,
    ) -> ControlFlow<()> {
        let unread_access = if self.want == Want::Access {
            Access::Write
        } else {
            access
        };
        let cannot = |why: String| Touch {
            action: self.action,
            access: unread_access,
            api,
            target: Target::wildcard("*").join(&slash(api_part)),
            origin: Origin::CannotTell(why),
        };
        if self.depth >= MAX_NESTING {
            return sink(cannot(
                "a request carried inside one carried already".into(),
            ));
        }
        match kind {
            BodyKind::Console => {
                let one = |key: &str| {
                    let mut v = params.iter().filter(|(k, _)| k == key);
                    match (v.next(), v.next()) {
                        (Some((_, v)), None) if !v.is_empty() => Some(v.clone()),
                        _ => None,
                    }
                };
                let (Some(method), Some(path)) = (one("method"), one("path")) else {
                    return sink(cannot(
                        "the console request needs one `method` and one `path`".into(),
                    ));
                };
                let method = method.to_ascii_uppercase();
                let Some(m) = ["HEAD", "GET", "POST", "PUT", "DELETE"]
                    .into_iter()
                    .find(|m| *m == method)
                    .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
                else {
                    return sink(cannot(format!(
                        "the console's method {method:?} is not one it sends"
                    )));
                };
                // Dashboards' client drops a fragment, as any URL parser does.
                let path = path.split('#').next().unwrap_or("");
                let target = format!("/{}", path.trim_start_matches('/'));
                let (npath, nquery) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target.clone(), None),
                };
                let via = format!("in the console's {method} {target}");
                let req = Request {
                    method: &m,
                    raw_path: &npath,
                    query: nquery.as_deref(),
                    content_type: self.req.content_type,
                    content_encoding: self.req.content_encoding,
                };
                self.inner(&req, self.body, &via, sink)
            }
            BodyKind::KibanaProxy => {
                let from = found.tail_from.unwrap_or(reading.tokens.len());
                let npath = format!("/{}", reading.tokens[from..].join("/"));
                let via = format!("in Kibana's {} {npath}", self.req.method);
                let req = Request {
                    raw_path: &npath,
                    ..*self.req
                };
                self.inner(&req, self.body, &via, sink)
            }
            _ => {
                let strategy = found
                    .route
                    .segments
                    .iter()
                    .position(|s| *s == Segment::Param("strategy".into()))
                    .and_then(|p| reading.decoded(p).map(str::to_string));
                let value = match self.dashboards_json() {
                    Ok(v) => v,
                    Err(why) => return sink(cannot(why)),
                };
                let searches: Vec<(Option<String>, &serde_json::Value)> = match kind {
                    BodyKind::DashboardsSearch => vec![(strategy, &value)],
                    BodyKind::DashboardsBsearch => {
                        match value.get("batch").and_then(|b| b.as_array()) {
                            Some(batch) => batch
                                .iter()
                                .map(|item| {
                                    let strategy = item
                                        .pointer("/options/strategy")
                                        .and_then(|s| s.as_str())
                                        .unwrap_or("opensearch")
                                        .to_string();
                                    (
                                        Some(strategy),
                                        item.get("request").unwrap_or(&serde_json::Value::Null),
                                    )
                                })
                                .collect(),
                            None => return sink(cannot("a batched search without `batch`".into())),
                        }
                    }
                    _ => {
                        let Some(list) = value.get("searches").and_then(|s| s.as_array()) else {
                            return sink(cannot("an _msearch without `searches`".into()));
                        };
                        let mut out = Vec::new();
                        for s in list {
                            out.push((Some("msearch".to_string()), s));
                        }
                        out
                    }
                };
                for (i, (strategy, search)) in searches.into_iter().enumerate() {
                    let via = if kind == BodyKind::DashboardsSearch {
                        "in Dashboards' search".to_string()
                    } else {
                        format!("in Dashboards' search [{i}]")
                    };
                    let built = match strategy.as_deref() {
                        Some("msearch") => msearch_entry(search),
                        Some("opensearch" | "opensearch-with-long-numerals" | "es") => {
                            search_params(search)
                        }
                        other => Err(format!(
                            "the search strategy {:?} runs queries the proxy cannot read",
                            other.unwrap_or("")
                        )),
                    };
                    let (npath, nquery, nbody) = match built {
                        Ok(b) => b,
                        Err(why) => {
                            sink(cannot(why))?;
                            continue;
                        }
                    };
                    let req = Request {
                        method: &http::Method::POST,
                        raw_path: &npath,
                        query: nquery.as_deref(),
                        content_type: Some("application/json"),
                        content_encoding: None,
                    };
                    self.inner(&req, Some(&InMemory(&nbody)), &via, sink)?;
                }
                ControlFlow::Continue(())
            }
        }
    }

    /// A Dashboards body that carries searches, parsed whole (they are small).
    fn dashboards_json(&self) -> Result<serde_json::Value, String> {
        let Some(body) = self.body else {
            return Err("the body was not read".into());
        };
        if body.len() > MAX_DASHBOARDS_BODY {
            return Err(format!(
                "the body is larger than {MAX_DASHBOARDS_BODY} bytes"
            ));
        }
        let r = body
            .open()
            .map_err(|e| format!("reading the body failed: {e}"))?;
        let mut r = encoding::inflated(
            r,
            self.req.content_encoding,
            body.len(),
            self.limits.inflate.min(MAX_DASHBOARDS_BODY),
        )?;
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut text)
            .map_err(|e| format!("reading the body failed: {e}"))?;
        serde_json::from_slice(&text).map_err(|e| format!("the body is not JSON: {e}"))
    }

    /// Classifies a carried request, its touches marked as inside `via`.
    fn inner(
        &self,
        req: &Request<'_>,
        body: Option<&dyn BodySource>,
        via: &str,
        sink: TouchSink<'_>,
    ) -> ControlFlow<()> {
        let Some(action) = action_for(req.method) else {
            return ControlFlow::Continue(());
        };
        let cx = Classify {
            req,
            action,
            body,
            want: self.want,
            limits: self.limits,
            same_for_any_id: self.same_for_any_id,
            depth: self.depth + 1,
        };
        let mut wrapped = |mut t: Touch| {
            t.origin = Origin::Nested {
                via: via.to_string(),
                origin: Box::new(t.origin),
            };
            sink(t)
        };
        for reading in readings(req.method, req.raw_path, false) {
            cx.reading(&reading, &mut wrapped)?;
        }
        ControlFlow::Continue(())
    }
}

/// The most bytes of resource text index items may stand for (each joined with the API part):
/// thousands of items before a long path would cost seconds of CPU. No real request comes near.
const MAX_PATH_TARGETS: usize = 1 << 20;

fn too_costly(items: usize, suffix: &str) -> bool {
    items.saturating_mul(suffix.len() + 1) > MAX_PATH_TARGETS
}

fn positions_of(route: &super::routes::Route, param: &str) -> Option<usize> {
    route
        .segments
        .iter()
        .position(|s| matches!(s, Segment::Param(p) if p == param))
}

/// A Dashboards search's `params` as the search it runs: `index` into the path, `body` as the
/// body, the other parameters into the query.
fn search_params(search: &serde_json::Value) -> Result<(String, Option<String>, Vec<u8>), String> {
    let params = search
        .get("params")
        .and_then(|p| p.as_object())
        .ok_or("a search without `params`")?;
    let index = match params.get("index") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(items)) => {
            let mut names = Vec::new();
            for i in items {
                names.push(
                    i.as_str()
                        .ok_or("`params.index` holds a value that is not a name")?
                        .to_string(),
                );
            }
            Some(names.join(","))
        }
        Some(_) => return Err("`params.index` holds a value that is not a name".into()),
    };
    let mut query = String::new();
    for (k, v) in params {
        if k == "index" || k == "body" {
            continue;
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if !query.is_empty() {
            query.push('&');
        }
        query.extend(form_urlencoded::byte_serialize(k.as_bytes()));
        query.push('=');
        query.extend(form_urlencoded::byte_serialize(text.as_bytes()));
    }
    let body = match params.get("body") {
        Some(b) => serde_json::to_vec(b).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok((
        search_path(index.as_deref()),
        (!query.is_empty()).then_some(query),
        body,
    ))
}

/// One entry of Dashboards' internal `_msearch`: `{"header":{"index":…},"body":{…}}`.
fn msearch_entry(entry: &serde_json::Value) -> Result<(String, Option<String>, Vec<u8>), String> {
    let header = entry
        .get("header")
        .ok_or("an _msearch entry without `header`")?;
    let mut names = Vec::new();
    for key in ["index", "indices"] {
        match header.get(key) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => names.push(s.clone()),
            Some(serde_json::Value::Array(items)) => {
                for i in items {
                    names.push(
                        i.as_str()
                            .ok_or(
                                "an _msearch header names an index with a value that is not a name",
                            )?
                            .to_string(),
                    );
                }
            }
            Some(_) => {
                return Err(
                    "an _msearch header names an index with a value that is not a name".into(),
                )
            }
        }
    }
    let index = (!names.is_empty()).then(|| names.join(","));
    let body = match entry.get("body") {
        Some(b) => serde_json::to_vec(b).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    Ok((search_path(index.as_deref()), None, body))
}

/// `/{index}/_search`, the index percent-encoded as a path segment, or `/_search`.
fn search_path(index: Option<&str>) -> String {
    match index {
        Some(i) if !i.is_empty() => format!(
            "/{}/_search",
            percent_encoding::utf8_percent_encode(i, percent_encoding::NON_ALPHANUMERIC)
        ),
        // An empty index list is every index: the search at the root says so.
        _ => "/_search".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    pub(crate) fn touches(method: Method, target: &str, body: Option<&str>) -> Vec<String> {
        touches_with(method, target, body, None)
    }

    pub(crate) fn touches_with(
        method: Method,
        target: &str,
        body: Option<&str>,
        encoding: Option<&str>,
    ) -> Vec<String> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let req = Request {
            method: &method,
            raw_path: path,
            query,
            content_type: Some("application/json"),
            content_encoding: encoding,
        };
        let plan = plan(&req, Want::Indices);
        let mut out = Vec::new();
        let body = InMemory(body.unwrap_or("").as_bytes());
        let _ = run(
            &plan,
            &req,
            Some(&body),
            Want::Indices,
            Limits { inflate: 1 << 20 },
            None,
            &mut |t: Touch| {
                out.push(format!(
                    "{} {} [{}] ({})",
                    t.action.trim_start_matches("es:ESHttp"),
                    t.target,
                    t.api,
                    t.origin
                ));
                ControlFlow::Continue(())
            },
        );
        out
    }

    #[test]
    fn paths_and_queries() {
        assert_eq!(
            touches(Method::GET, "/", None),
            ["Get  [info] (from the path)"]
        );
        assert_eq!(
            touches(Method::GET, "/a,b/_search", None),
            [
                "Get a/_search [search] (from the path)",
                "Get b/_search [search] (from the path)"
            ]
        );
        assert_eq!(
            touches(Method::GET, "/_search", None),
            [
                "Get _search [search] (from the path)",
                "Get */_search [search] (the request names no index, so it may reach every index)"
            ]
        );
        assert_eq!(
            touches(Method::GET, "/_search?index=restricted", None),
            [
                "Get _search [search] (from the path)",
                "Get restricted/_search [search] (from the `index` query parameter)"
            ]
        );
        assert_eq!(
            touches(Method::GET, "/_cluster/health/restricted", None),
            [
                "Get _cluster/health/restricted [cluster.health] (from the path)",
                "Get restricted/_cluster/health [cluster.health] (from the path)"
            ]
        );
        // `_foo` where an index belongs: as OpenSearch's router reads it, plus every index.
        let t = touches(Method::GET, "/_foo,restricted/_search", None);
        assert_eq!(t[0], "Get _foo/_search [search] (from the path)");
        assert_eq!(t[1], "Get restricted/_search [search] (from the path)");
        assert!(
            t[2].starts_with(
                "Get */_search [search] (cannot tell which indices, so all: `_foo` stands where"
            ),
            "{t:?}"
        );
        // An empty index list is every index.
        let t = touches(Method::GET, "//_search", None);
        assert!(
            t.iter()
                .any(|t| t.contains("*/_search") && t.contains("empty index list")),
            "{t:?}"
        );
        // Unknown: every index. (OpenSearch 1.x's router would take this for a typed `GET
        // /{index}/{type}/{id}` with the index `_plugins`, which is no index name.)
        let t = touches(Method::GET, "/_plugins/_unheard_of/x", None);
        assert_eq!(t[0], "Get _plugins/_unheard_of/x [get] (from the path)");
        assert!(t[1].starts_with("Get */_unheard_of/x [get] (cannot tell which indices, so all: `_plugins` stands where"), "{t:?}");
        let t = touches(Method::PATCH, "/logs/_unheard_of", None);
        assert_eq!(t[0], "Patch logs/_unheard_of [unknown] (from the path)");
        assert!(t[1].starts_with("Patch */logs/_unheard_of [unknown] (cannot tell which indices, so all: the proxy knows no PATCH /logs/_unheard_of API"), "{t:?}");

        // Percent-encoded fixed segments: OpenSearch's reading and a decoding server's.
        let t = touches(
            Method::POST,
            "/%5Fbulk",
            Some("{\"index\":{\"_index\":\"r\"}}\n{}\n"),
        );
        assert!(
            t.iter()
                .any(|t| t == "Post r/_doc [bulk] (from the body, line 1)"),
            "{t:?}"
        );
        // Dot segments a server may resolve.
        let t = touches(Method::GET, "/logs/../restricted/_search", None);
        assert!(
            t.iter()
                .any(|t| t == "Get restricted/_search [search] (from the path)"),
            "{t:?}"
        );
    }

    #[test]
    fn dashboards_carried_requests() {
        let t = touches(
            Method::POST,
            "/_dashboards/api/console/proxy?path=%2Frestricted%2F_doc%2F1&method=DELETE",
            None,
        );
        assert_eq!(
            t[0],
            "Post _dashboards/api/console/proxy [dashboards.console] (from the path)"
        );
        assert_eq!(t[1], "Delete restricted/_doc/1 [delete] (in the console's DELETE /restricted/_doc/1: from the path)");
        let t = touches(
            Method::POST,
            "/_dashboards/internal/search/opensearch",
            Some(r#"{"params":{"index":"logs-*","body":{"query":{"match_all":{}}}}}"#),
        );
        assert_eq!(
            t[1],
            "Post logs-*/_search [search] (in Dashboards' search: from the path)"
        );
        let t = touches(
            Method::POST,
            "/_dashboards/internal/bsearch",
            Some(
                r#"{"batch":[{"request":{"params":{"index":["a","b"]}}},{"request":{"params":{}},"options":{"strategy":"ppl"}}]}"#,
            ),
        );
        assert!(
            t.contains(
                &"Post a/_search [search] (in Dashboards' search [0]: from the path)".to_string()
            ),
            "{t:?}"
        );
        assert!(t.iter().any(|t| t.contains("strategy \"ppl\"")), "{t:?}");
        let t = touches(
            Method::GET,
            "/_plugin/kibana/elasticsearch/restricted/_search",
            None,
        );
        assert!(t.contains(&"Get restricted/_search [search] (in Kibana's GET /restricted/_search: from the path)".to_string()), "{t:?}");
        // A carried request is never a Dashboards route itself.
        let t = touches(
            Method::POST,
            "/_dashboards/api/console/proxy?path=/_dashboards/app/x&method=GET",
            None,
        );
        assert!(t.iter().any(|t| t.contains("cannot tell")), "{t:?}");
    }

    #[test]
    fn query_parameters_as_opensearch_reads_them() {
        assert_eq!(
            query_params(Some("a=1;index=r&b&c=x+y&d=%2C")),
            [
                ("a".into(), "1".into()),
                ("index".into(), "r".into()),
                ("b".into(), "".into()),
                ("c".into(), "x y".into()),
                ("d".into(), ",".into())
            ]
        );
    }
}
