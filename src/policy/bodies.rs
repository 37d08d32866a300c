//! The indices a request body names, API by API (the `body:KIND` of the route table).
//!
//! NDJSON bodies (`_bulk`, `_msearch`) are read line by line, and `_bulk`'s documents are
//! skipped unread; JSON bodies are walked as a stream ([`super::json`]), so no body is held in
//! memory. What an extractor finds goes to the caller one [`Named`] at a time, so evaluation
//! stops at the first denied index. A body that cannot be read is an `Err`: the caller then
//! counts the request as touching every index.

use std::fmt;
use std::io::BufRead;
use std::ops::ControlFlow;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::json::{self, ends_with, keys, Flow, Halt, Scalar, Step, Visit};
use super::names::{index_items, mustache_to_wildcard, name_items, BadName};
use super::pattern::Target;
use super::routes::BodyKind;

/// The longest `_bulk` action line / `_msearch` header line read (they are small JSON objects).
pub(crate) const MAX_META_LINE: usize = 1 << 20;

/// Where in a body something is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// An NDJSON line (1-based).
    Line(usize),
    /// A JSON path, or a line and a path within it (`docs[2]._index`, `line 5: query.terms.u.index`).
    Json(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Line(n) => write!(f, "line {n}"),
            Place::Json(p) => f.write_str(p),
        }
    }
}

/// Something a body says about the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Named {
    /// A resource it touches (an index, alias or data stream and the API part), and where in
    /// the body it is named (`line 3`, `docs[2]._index`).
    Target { target: Target, place: Place },
    /// It may reach every index (`suffix` is the API part of the resource).
    All { why: String, suffix: String },
    /// It makes the request change something (clearing every scroll).
    Writes { why: String },
}

/// The sink for what a body names; `Break` stops the reading.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(Named) -> ControlFlow<()>;

/// Where the extractor is: the request's own indices and the API part of its resources.
pub(crate) struct Context<'a> {
    /// The indices the path (or the `index` query parameter) names, the default for lines and
    /// entries that name none; empty when it names none.
    pub(crate) defaults: &'a [Target],
    /// The API part of the request's resources (`_search`, `_plugins/_ism/add`).
    pub(crate) api: &'a str,
    pub(crate) same_for_any_id: super::classify::SameForAnyId<'a>,
}

/// A body to read: in memory, or a stream (a spilled or compressed one).
pub(crate) enum Input<'a> {
    Slice(&'a [u8]),
    Reader(&'a mut dyn BufRead),
}

/// JSON bodies read as a stream are collected in memory up to this size and parsed there
/// (several times faster than parsing from a reader); larger ones are parsed as they stream.
const COLLECT_JSON: u64 = 32 << 20;

/// Reads the body of an API of `kind` and tells `sink` every index it names. `Err`: the body
/// cannot be read (what is wrong, for the message). Nested request kinds (Dashboards) are not
/// read here.
pub(crate) fn extract(
    kind: BodyKind,
    body: Input<'_>,
    cx: &Context<'_>,
    sink: Sink<'_>,
) -> Result<(), String> {
    let flow = match (kind, body) {
        (BodyKind::None, _) => Ok(()),
        (BodyKind::Bulk, Input::Slice(mut b)) => bulk(&mut b, cx, sink),
        (BodyKind::Bulk, Input::Reader(r)) => bulk(r, cx, sink),
        (BodyKind::Msearch | BodyKind::MsearchTemplate, input) => {
            let template = kind == BodyKind::MsearchTemplate;
            match input {
                Input::Slice(mut b) => msearch(&mut b, cx, template, sink),
                Input::Reader(r) => msearch(r, cx, template, sink),
            }
        }
        (_, Input::Slice(b)) => json_body(kind, b, cx, sink),
        (_, Input::Reader(r)) => {
            let mut collected = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(ReadAdapter(&mut *r), COLLECT_JSON + 1),
                &mut collected,
            );
            match read {
                Err(e) => Err(Halt::Invalid(format!("reading the body failed: {e}"))),
                Ok(n) if n as u64 <= COLLECT_JSON => json_body(kind, &collected, cx, sink),
                Ok(_) => {
                    // Too large to collect: the part read, then the rest as it streams.
                    let mut chained = std::io::Read::chain(&collected[..], ReadAdapter(r));
                    walk_json(kind, cx, sink, |v| json::walk_reader(&mut chained, v))
                }
            }
        }
    };
    match flow {
        Ok(()) | Err(Halt::Stop) => Ok(()),
        Err(Halt::Invalid(e)) => Err(e),
    }
}

fn json_body(kind: BodyKind, bytes: &[u8], cx: &Context<'_>, sink: Sink<'_>) -> Flow {
    if kind == BodyKind::Mget {
        return mget(bytes, cx, sink);
    }
    if kind == BodyKind::Search && !may_look_up(bytes) {
        return Ok(());
    }
    walk_json(kind, cx, sink, |v| json::walk_slice(bytes, v))
}

fn walk_json(
    kind: BodyKind,
    cx: &Context<'_>,
    sink: Sink<'_>,
    walk: impl FnOnce(&mut dyn Visit) -> Result<(), json::WalkError>,
) -> Flow {
    let mut v = Walk::new(kind, cx, sink);
    match walk(&mut v) {
        Ok(()) => v.finish(),
        Err(json::WalkError::Halt(h)) => Err(h),
        Err(json::WalkError::Syntax(e)) => Err(Halt::Invalid(format!("the body is not JSON: {e}"))),
    }
}

/// `Read` over a `BufRead` trait object.
struct ReadAdapter<'a>(&'a mut dyn BufRead);

impl std::io::Read for ReadAdapter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

fn emit(sink: Sink<'_>, named: Named) -> Flow {
    match sink(named) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Halt::Stop),
    }
}

fn bad(place: &str, e: BadName) -> Halt {
    Halt::Invalid(format!("{place}: {}", e.0))
}

// ---------------------------------------------------------------------------
// NDJSON: _bulk, _msearch
// ---------------------------------------------------------------------------

/// Splits a body into lines at `\n`, as OpenSearch does, numbered from 1. `f` gets each line
/// it asked for (its answer: whether it wants the next one) and `None` for the others, which
/// are never gathered (a document line can be any length). A wanted line is read in place when
/// it lies within the reader's buffer (all of them, for a body in memory), else gathered, up to
/// [`MAX_META_LINE`] bytes.
fn each_line(
    r: &mut dyn BufRead,
    mut f: impl FnMut(usize, Option<&[u8]>) -> Result<bool, Halt>,
) -> Flow {
    let too_long =
        |n: usize| Halt::Invalid(format!("line {n} is longer than {MAX_META_LINE} bytes"));
    let mut wanted = true;
    // The start of a wanted line that began in an earlier buffer.
    let mut gathered: Vec<u8> = Vec::new();
    // Part of the current line has been read.
    let mut open = false;
    let mut n = 0;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Halt::Invalid(format!("reading the body failed: {e}"))),
        };
        if chunk.is_empty() {
            break;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            n += 1;
            let line = &chunk[start..end];
            let line = match (wanted, open) {
                (false, _) => None,
                (true, false) => Some(line),
                (true, true) => {
                    gathered.extend_from_slice(line);
                    Some(&gathered[..])
                }
            };
            if line.is_some_and(|l| l.len() > MAX_META_LINE) {
                return Err(too_long(n));
            }
            wanted = f(n, line)?;
            gathered.clear();
            open = false;
            start = end + 1;
        }
        if start < chunk.len() {
            if wanted {
                if gathered.len() + chunk.len() - start > MAX_META_LINE {
                    return Err(too_long(n + 1));
                }
                gathered.extend_from_slice(&chunk[start..]);
            }
            open = true;
        }
        let read = chunk.len();
        r.consume(read);
    }
    if open {
        f(n + 1, wanted.then_some(&gathered[..]))?;
    }
    Ok(())
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BulkOp {
    Index,
    Create,
    Update,
    Delete,
}

#[derive(Deserialize)]
struct BulkMeta<'a> {
    #[serde(rename = "_index", borrow)]
    index: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "_id", default, borrow)]
    id: Option<IdText<'a>>,
}

/// A document id as text: a string, or a number's digits.
struct IdText<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for IdText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = IdText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document id")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<IdText<'a>, E> {
                Ok(IdText(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdText<'a>, E> {
                Ok(IdText(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdText<'a>, E> {
                Ok(IdText(v.to_string().into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdText<'a>, E> {
                Ok(IdText(v.to_string().into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdText<'a>, E> {
                Ok(IdText(v.to_string().into()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<IdText<'a>, E> {
                Ok(IdText(v.to_string().into()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A bulk action line: its operation, `_index` and `_id` (as text).
#[derive(Debug, PartialEq, Eq)]
struct Action<'a> {
    op: BulkOp,
    index: Option<std::borrow::Cow<'a, str>>,
    id: Option<std::borrow::Cow<'a, str>>,
}

/// Reads an action line: its common shape without serde ([`simple_action`], which also says
/// where its id is), anything else with serde_json (which also says what is wrong).
fn action(line: &[u8]) -> Result<(Action<'_>, Option<Option<IdSpan>>), String> {
    if let Some((a, id)) = simple_action(line) {
        return Ok((a, Some(id)));
    }
    let l: BulkLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let action = Action {
        op: l.op,
        index: l.meta.index,
        id: l.meta.id.map(|i| i.0),
    };
    Ok((action, None))
}

/// The common shape of an action line, `{"index":{"_index":"logs","_id":"1"}}`, read without
/// serde (most of a bulk's parsing time): one operation, flat members, strings without escapes,
/// ids that are strings or plain digits. Anything else is `None` and goes to serde_json, so a
/// line reads the same either way (`tests::simple_actions_read_as_serde_reads_them`). With
/// the action, where its id's value is.
fn simple_action(line: &[u8]) -> Option<(Action<'_>, Option<IdSpan>)> {
    let mut p = Scan::new(line, 0)?;
    p.ws();
    p.byte(b'{')?;
    p.ws();
    let op = match p.string()? {
        "index" => BulkOp::Index,
        "create" => BulkOp::Create,
        "update" => BulkOp::Update,
        "delete" => BulkOp::Delete,
        _ => return None,
    };
    p.ws();
    p.byte(b':')?;
    p.ws();
    p.byte(b'{')?;
    p.ws();
    let mut m = Members::default();
    if p.peek() != Some(b'}') {
        loop {
            p.member(&mut m)?;
            p.ws();
            if p.peek() != Some(b',') {
                break;
            }
            p.i += 1;
            p.ws();
        }
    }
    p.byte(b'}')?;
    p.ws();
    p.byte(b'}')?;
    p.ws();
    (p.i == line.len()).then_some(())?;
    let action = Action {
        op,
        index: m.index.map(std::borrow::Cow::Borrowed),
        id: m.id.map(std::borrow::Cow::Borrowed),
    };
    Some((action, m.id_span))
}

/// Where a simple action line's id value is: `"7"` with its quotes, or the digits of `7`.
#[derive(Clone, Copy, Debug)]
struct IdSpan {
    start: usize,
    end: usize,
    quoted: bool,
}

/// The members of an action line's object that [`simple_action`] keeps.
#[derive(Default)]
struct Members<'a> {
    index: Option<&'a str>,
    id: Option<&'a str>,
    id_span: Option<IdSpan>,
}

/// The length of a string's text (after its opening quote) up to its closing quote, when it
/// has no escapes or control characters.
fn string_len(s: &[u8]) -> Option<usize> {
    let len = s
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (s[len] == b'"').then_some(len)
}

/// The length of the digits `s` starts with, when they are a non-negative integer without
/// leading zeros that serde_json prints the same (at most 18 digits).
fn digits_len(s: &[u8]) -> Option<usize> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    (len > 0 && len <= 18 && (len == 1 || s[0] != b'0')).then_some(len)
}

/// A cursor over one line for [`simple_action`].
struct Scan<'a> {
    s: &'a [u8],
    i: usize,
    /// The line from where the scan started, as UTF-8.
    text: &'a str,
    start: usize,
}

impl<'a> Scan<'a> {
    /// A scan of `line` from `start`, which must be UTF-8 from there (checked once: strings
    /// end at ASCII quotes, which are character boundaries, so every string read is a slice
    /// of it).
    fn new(line: &'a [u8], start: usize) -> Option<Scan<'a>> {
        let text = std::str::from_utf8(line.get(start..)?).ok()?;
        Some(Scan {
            s: line,
            i: start,
            text,
            start,
        })
    }
    fn text(&self, from: usize, to: usize) -> Option<&'a str> {
        self.text.get(from - self.start..to - self.start)
    }
    /// One `"key": value` member of an action's object.
    fn member(&mut self, m: &mut Members<'a>) -> Option<()> {
        let key = self.string()?;
        self.ws();
        self.byte(b':')?;
        self.ws();
        match key {
            "_index" if m.index.is_none() => m.index = Some(self.string()?),
            "_id" if m.id.is_none() => {
                let (start, quoted) = (self.i, self.peek() == Some(b'"'));
                m.id = Some(if quoted {
                    self.string()?
                } else {
                    self.digits()?
                });
                m.id_span = Some(IdSpan {
                    start,
                    end: self.i,
                    quoted,
                });
            }
            "_index" | "_id" => return None,
            _ => self.scalar()?,
        }
        Some(())
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }
    fn byte(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.i += 1)
    }
    /// A string without escapes or control characters, as UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let start = self.i;
        let len = string_len(&self.s[start..])?;
        self.i = start + len + 1;
        self.text(start, start + len)
    }
    /// A non-negative integer without leading zeros (its text is what serde_json prints).
    fn digits(&mut self) -> Option<&'a str> {
        let start = self.i;
        let len = digits_len(&self.s[start..])?;
        self.i += len;
        self.text(start, self.i)
    }
    /// A member value that is neither object nor array: a string, `true`, `false`, `null`,
    /// or a JSON number.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' | b'f' | b'n' => {
                let rest = &self.s[self.i..];
                let word = ["true", "false", "null"]
                    .into_iter()
                    .find(|w| rest.starts_with(w.as_bytes()))?;
                self.i += word.len();
                Some(())
            }
            _ => self.number(),
        }
    }
    fn number(&mut self) -> Option<()> {
        let _ = self.byte(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.at_least_one_digit()?;
        }
        Some(())
    }
    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
    fn at_least_one_digit(&mut self) -> Option<()> {
        let start = self.i;
        self.skip_digits();
        (self.i > start).then_some(())
    }
}

struct BulkLine<'a> {
    op: BulkOp,
    meta: BulkMeta<'a>,
}

impl<'de> Deserialize<'de> for BulkLine<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BulkLine<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an action object like {"index":{"_index":"..."}}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BulkLine<'de>, A::Error> {
                let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                    return Err(de::Error::custom("empty action object"));
                };
                let op = match k.as_ref() {
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

/// A name that is exactly one index (no list, wildcard, date math, remote cluster, `_all`,
/// exclusion or white space), as most bulk lines have: one target, no parsing.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '+', '_', '<'])
        && !name.bytes().any(|b| {
            matches!(b, b',' | b'*' | b':' | b'{' | b'/') || b.is_ascii_whitespace() || b >= 0x80
        })
}

/// `_bulk`: every action line's `_index` (or the path's index), paired with its document line
/// the way OpenSearch pairs them (the line after `index`, `create` or `update` is its
/// document, whatever it holds; blank lines are skipped only where an action is expected).
///
/// Where the sink says the verdict does not depend on the document id
/// ([`Context::same_for_any_id`]), the lines after a told one that are its bytes with another
/// id ([`Told::alike`]) are not told again: most bulks are one run of such lines, read at
/// little more than the speed of finding their ends.
fn bulk(r: &mut dyn BufRead, cx: &Context<'_>, sink: Sink<'_>) -> Flow {
    let mut suffix = String::new();
    let mut told: Option<Told> = None;
    each_line(r, |n, bytes| {
        let Some(bytes) = bytes else {
            // A document: an action comes next.
            return Ok(true);
        };
        if is_blank(bytes) {
            return Ok(true);
        }
        if let Some(t) = told.as_ref().filter(|t| t.any_id && t.alike(bytes)) {
            return Ok(t.op == BulkOp::Delete);
        }
        let (line, shape) = action(bytes).map_err(|e| Halt::Invalid(format!("line {n}: {e}")))?;
        suffix.clear();
        suffix.push_str(match (line.op, line.id.is_some()) {
            (BulkOp::Index | BulkOp::Delete, true) => "/_doc/",
            (BulkOp::Create, true) => "/_create/",
            (BulkOp::Update, true) => "/_update/",
            (BulkOp::Update, false) => "/_update",
            (BulkOp::Index | BulkOp::Create | BulkOp::Delete, false) => "/_doc",
        });
        let before_id = suffix.len();
        if let Some(id) = &line.id {
            suffix.push_str(id);
        }
        match line.index.as_deref() {
            Some(name) if plain_name(name) => {
                let mut text = String::with_capacity(name.len() + suffix.len());
                text.push_str(name);
                text.push_str(&suffix);
                emit(
                    sink,
                    Named::Target {
                        target: Target::literal_owned(text),
                        place: Place::Line(n),
                    },
                )?;
            }
            Some(expr) => {
                let targets = name_items(expr).map_err(|e| bad(&format!("line {n}"), e))?;
                emit_on_line(sink, &targets, &suffix, n)?;
            }
            None if !cx.defaults.is_empty() => emit_on_line(sink, cx.defaults, &suffix, n)?,
            None => {
                return Err(Halt::Invalid(format!(
                    "line {n}: the action has no _index and the path names no index"
                )))
            }
        }
        told = match (cx.same_for_any_id, shape, line.index.as_deref()) {
            (Some(same), Some(id), Some(name)) if plain_name(name) => {
                let any_id = match &told {
                    // The same run, with ids that matter: asked already.
                    Some(t)
                        if t.op == line.op && t.index == name && t.id.is_some() == id.is_some() =>
                    {
                        t.any_id
                    }
                    // Without an id, a line alike is the same line.
                    _ => id.is_none() || same(&format!("{name}{}", &suffix[..before_id])),
                };
                Some(Told {
                    line: bytes.to_vec(),
                    op: line.op,
                    index: name.to_string(),
                    id,
                    any_id,
                })
            }
            _ => None,
        };
        // After a delete comes an action; after the others, their document, not read.
        Ok(line.op == BulkOp::Delete)
    })
}

/// Tells `sink` each target followed by `suffix`, as named on line `n`.
fn emit_on_line(sink: Sink<'_>, targets: &[Target], suffix: &str, n: usize) -> Flow {
    for t in targets {
        emit(
            sink,
            Named::Target {
                target: t.join(suffix),
                place: Place::Line(n),
            },
        )?;
    }
    Ok(())
}

/// The last bulk line told (a simple one, into one index), for the lines after it that get
/// its verdict.
struct Told {
    line: Vec<u8>,
    op: BulkOp,
    index: String,
    id: Option<IdSpan>,
    /// The verdict is the same whatever the id.
    any_id: bool,
}

impl Told {
    /// Whether `line` is this line with another id of the same form (quoted, or digits): then
    /// [`simple_action`] reads it as it read this one (it scans left to right, and the id
    /// ends where this one's did), with that id: the same operation, index and members.
    fn alike(&self, line: &[u8]) -> bool {
        let Some(id) = self.id else {
            return line == self.line;
        };
        let (head, tail) = (&self.line[..id.start], &self.line[id.end..]);
        let Some(tail_at) = line.len().checked_sub(tail.len()) else {
            return false;
        };
        // (The tail is a few bytes: compared in place, not by a call.)
        if tail_at < id.start || !line.starts_with(head) || !line[tail_at..].iter().eq(tail) {
            return false;
        }
        let value = &line[id.start..tail_at];
        if !id.quoted {
            // (A tail never starts with a digit: the digits of this line's id ended there.)
            return digits_len(value) == Some(value.len());
        }
        let Some(text) = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
        else {
            return false;
        };
        // Most ids are ASCII without escapes, which one pass tells.
        text.iter()
            .all(|&b| (0x20..0x80).contains(&b) && b != b'"' && b != b'\\')
            || (string_len(&value[1..]) == Some(text.len()) && std::str::from_utf8(text).is_ok())
    }
}

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
    fn targets(&self) -> Result<Vec<Target>, BadName> {
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

/// `_msearch` and `_msearch/template`: each header line's `index`/`indices` (or the path's
/// index, or every index), and the search (or template) line after it, read for the indices
/// its query looks up.
fn msearch(r: &mut dyn BufRead, cx: &Context<'_>, template: bool, sink: Sink<'_>) -> Flow {
    let all = [Target::wildcard("*")];
    let defaults = if cx.defaults.is_empty() {
        &all[..]
    } else {
        cx.defaults
    };
    let kind = if template {
        BodyKind::SearchTemplate
    } else {
        BodyKind::Search
    };
    // Header and search lines alternate.
    let mut header = true;
    each_line(r, |n, line| {
        let line = line.unwrap_or_default();
        let is_header = header;
        header = !header;
        if !is_header {
            // The search line: its query may look up documents in other indices.
            if !template && !may_look_up(line) {
                return Ok(true);
            }
            let mut v = Walk::new(kind, cx, &mut *sink);
            v.place_prefix = format!("line {n}");
            return match json::walk_slice(line, &mut v) {
                Ok(()) => v.finish().map(|()| true),
                Err(json::WalkError::Halt(h)) => Err(h),
                Err(json::WalkError::Syntax(e)) => {
                    Err(Halt::Invalid(format!("line {n} is not JSON: {e}")))
                }
            };
        }
        // OpenSearch skips one empty line at the very start of the body only.
        if n == 1 && line.is_empty() {
            header = true;
            return Ok(true);
        }
        let place = format!("line {n}");
        let mut targets = Vec::new();
        if !is_blank(line) {
            let h: MsearchHeader =
                serde_json::from_slice(line).map_err(|e| Halt::Invalid(format!("{place}: {e}")))?;
            for list in h.index.iter().chain(&h.indices) {
                targets.extend(list.targets().map_err(|e| bad(&place, e))?);
            }
        }
        if targets.is_empty() {
            targets = defaults.to_vec();
        }
        for t in targets {
            emit(
                sink,
                Named::Target {
                    target: t.join("/_search"),
                    place: Place::Line(n),
                },
            )?;
        }
        Ok(true)
    })
}

// ---------------------------------------------------------------------------
// _mget, _mtermvectors
// ---------------------------------------------------------------------------

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

fn mget(bytes: &[u8], cx: &Context<'_>, sink: Sink<'_>) -> Flow {
    if is_blank(bytes) {
        return Ok(());
    }
    let body: MgetBody = serde_json::from_slice(bytes)
        .map_err(|e| Halt::Invalid(format!("the body is not what the API takes: {e}")))?;
    for (i, doc) in body.docs.unwrap_or_default().into_iter().enumerate() {
        let place = Place::Json(format!("docs[{i}]"));
        let targets = match &doc.index {
            Some(expr) => name_items(expr).map_err(|e| bad(&place.to_string(), e))?,
            None if !cx.defaults.is_empty() => cx.defaults.to_vec(),
            None => {
                return Err(Halt::Invalid(format!(
                    "{place} has no _index and the path names no index"
                )))
            }
        };
        let suffix = match &doc.id {
            Some(id) => format!("/_doc/{}", id_text(id)),
            None => "/_doc".to_string(),
        };
        for t in targets {
            emit(
                sink,
                Named::Target {
                    target: t.join(&suffix),
                    place: place.clone(),
                },
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// JSON bodies, walked
// ---------------------------------------------------------------------------

/// Fields that hold index, alias or data-stream names in plugin bodies (ISM, alerting, anomaly
/// detection, ML, transforms, rollups, replication, security roles, k-NN, geospatial...).
const PLUGIN_NAME_KEYS: [&str; 24] = [
    "index",
    "indices",
    "_index",
    "index_name",
    "index_pattern",
    "index_patterns",
    "indexPattern",
    "source_index",
    "target_index",
    "dest_index",
    "destination_index",
    "input_index",
    "result_index",
    "custom_result_index",
    "training_index",
    "leader_index",
    "leader_alias",
    "follower_index",
    "rollover_alias",
    "alias",
    "aliases",
    "write_index",
    "target_index_name_template",
    "index_prefix",
];

/// The value of one scalar as a name: OpenSearch's parsers read a number or boolean where a
/// name belongs as its text.
fn scalar_text(v: Scalar<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Scalar::Str(s) => Some(std::borrow::Cow::Borrowed(s)),
        Scalar::Number(n) => Some(std::borrow::Cow::Borrowed(n)),
        Scalar::Bool(b) => Some(std::borrow::Cow::Borrowed(if b { "true" } else { "false" })),
        Scalar::Null => None,
    }
}

/// Nested `wrapper` queries (base64 JSON) are read this deep.
const MAX_WRAPPER_DEPTH: usize = 4;

/// A walk over one JSON body of `kind`.
struct Walk<'a, 'b> {
    kind: BodyKind,
    cx: &'a Context<'a>,
    sink: Sink<'b>,
    /// `line 3` for a `_msearch` search line: prefixed to places.
    place_prefix: String,
    /// Whether the fields the API must have were seen (snapshot `indices`, reindex
    /// `source.index`...).
    seen: bool,
    /// For a stored script: its `lang` and (string) `source`.
    script_lang: Option<String>,
    script_source: Option<String>,
    /// Open `indexed_shape` objects, and whether each named its index.
    shapes: Vec<bool>,
    wrapper_depth: usize,
}

impl<'a, 'b> Walk<'a, 'b> {
    fn new(kind: BodyKind, cx: &'a Context<'a>, sink: Sink<'b>) -> Self {
        Walk {
            kind,
            cx,
            sink,
            place_prefix: String::new(),
            seen: false,
            script_lang: None,
            script_source: None,
            shapes: Vec::new(),
            wrapper_depth: 0,
        }
    }

    fn place(&self, path: &[Step]) -> String {
        let p = json::display(path);
        match (self.place_prefix.is_empty(), p.is_empty()) {
            (true, _) => p,
            (false, true) => self.place_prefix.clone(),
            (false, false) => format!("{}: {p}", self.place_prefix),
        }
    }

    /// An index expression at `path`; `split`: a comma list (else one name, checked whole
    /// and split). `suffix`: the API part of the resource (`None`: the request's own).
    fn names(&mut self, path: &[Step], text: &str, split: bool, suffix: Option<&str>) -> Flow {
        let place = self.place(path);
        let text = mustache_to_wildcard(text);
        let targets = if split {
            index_items(&text)
        } else {
            name_items(&text)
        }
        .map_err(|e| bad(&place, e))?;
        let suffix = match suffix {
            Some(s) => s.to_string(),
            None if self.cx.api.is_empty() => String::new(),
            None => format!("/{}", self.cx.api),
        };
        for t in targets {
            emit(
                self.sink,
                Named::Target {
                    target: t.join(&suffix),
                    place: Place::Json(place.clone()),
                },
            )?;
        }
        Ok(())
    }

    fn all(&mut self, why: String) -> Flow {
        let suffix = if self.cx.api.is_empty() {
            String::new()
        } else {
            format!("/{}", self.cx.api)
        };
        emit(self.sink, Named::All { why, suffix })
    }

    /// A name where a string belongs: a number or boolean is read as its text, null as absent.
    fn scalar_names(
        &mut self,
        path: &[Step],
        v: Scalar<'_>,
        split: bool,
        suffix: Option<&str>,
    ) -> Flow {
        match scalar_text(v) {
            Some(t) => {
                let t = t.into_owned();
                self.names(path, &t, split, suffix)
            }
            None => Ok(()),
        }
    }

    /// The parts of a query that read other indices: a terms lookup's `index`, a
    /// `more_like_this` document's `_index`, a pre-indexed shape's `index` (default `shapes`),
    /// a percolated document's `index`, and the query inside a `wrapper`.
    fn query_scalar(&mut self, path: &[Step], v: Scalar<'_>) -> Flow {
        let doc = Some("/_doc");
        if ends_with(path, &["terms", "*", "index"])
            || ends_with(path, &["percolate", "index"])
            || ends_with(path, &["more_like_this", "like", "_index"])
            || ends_with(path, &["more_like_this", "unlike", "_index"])
            || ends_with(path, &["mlt", "like", "_index"])
            || ends_with(path, &["mlt", "unlike", "_index"])
        {
            return self.scalar_names(path, v, false, doc);
        }
        if ends_with(path, &["indexed_shape", "index"]) && is_shape(&path[..path.len() - 1]) {
            if let Some(open) = self.shapes.last_mut() {
                *open = true;
            }
            return self.scalar_names(path, v, false, doc);
        }
        if ends_with(path, &["wrapper", "query"]) {
            let Scalar::Str(encoded) = v else {
                return Err(Halt::Invalid(format!(
                    "{}: a wrapper query is not base64 text",
                    self.place(path)
                )));
            };
            return self.wrapped(path, encoded);
        }
        Ok(())
    }

    fn wrapped(&mut self, path: &[Step], encoded: &str) -> Flow {
        let place = self.place(path);
        if self.wrapper_depth >= MAX_WRAPPER_DEPTH {
            return Err(Halt::Invalid(format!(
                "{place}: wrapper queries nested too deep"
            )));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| Halt::Invalid(format!("{place}: the wrapper query is not base64: {e}")))?;
        let mut inner = Walk::new(BodyKind::Search, self.cx, &mut *self.sink);
        inner.place_prefix = format!("{place} (decoded)");
        inner.wrapper_depth = self.wrapper_depth + 1;
        match json::walk_slice(&decoded, &mut inner) {
            Ok(()) => inner.finish(),
            Err(json::WalkError::Halt(h)) => Err(h),
            Err(json::WalkError::Syntax(e)) => Err(Halt::Invalid(format!(
                "{place}: the wrapper query is not JSON: {e}"
            ))),
        }
    }

    /// A search template's `source`: a query object, or text with `{{placeholders}}`.
    fn template_source(&mut self, path: &[Step], text: &str) -> Flow {
        let place = self.place(path);
        let filled = fill_placeholders(text);
        let mut inner = Walk::new(BodyKind::Search, self.cx, &mut *self.sink);
        inner.place_prefix = place.clone();
        match json::walk_slice(filled.as_bytes(), &mut inner) {
            Ok(()) => return inner.finish(),
            Err(json::WalkError::Halt(h)) => return Err(h),
            Err(json::WalkError::Syntax(_)) => {}
        }
        self.all(format!(
            "{place}: the search template cannot be read as JSON, so the indices its query looks up cannot be told"
        ))
    }
}

/// Can this query read another index at all? Only through keys spelled `index` (`_index`,
/// `indexed_shape`) or `wrapper`, and JSON can spell a key's letters otherwise only with `\u`
/// escapes: a query without any of them names no index, and is not parsed (most are not).
/// A NUL byte may be UTF-16 or UTF-32 JSON, which OpenSearch's parser also reads: that is
/// parsed, and refused as not JSON.
fn may_look_up(query: &[u8]) -> bool {
    use memchr::memmem;
    memmem::find(query, b"index").is_some()
        || memmem::find(query, b"wrapper").is_some()
        || memmem::find(query, b"\\u").is_some()
        || memchr::memchr(0, query).is_some()
}

/// Is `path` a shape query's `indexed_shape` object (`geo_shape.FIELD.indexed_shape`)?
fn is_shape(path: &[Step]) -> bool {
    keys(path).next_back() == Some("indexed_shape")
        && ["geo_shape", "shape", "xy_shape"]
            .iter()
            .any(|q| ends_with(path, &[q, "*", "indexed_shape"]))
}

/// Fills each `{{…}}` placeholder (and each mustache section, `{{#toJson}}x{{/toJson}}`, whole)
/// with what it may stand for: `*` inside a JSON string (any text), `0` outside one (a value).
fn fill_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut section = 0usize;
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let Some(end) = rest.find("}}") else {
                break;
            };
            let tag = &rest[2..end];
            let fill = if in_string { "*" } else { "0" };
            if tag.starts_with('#') || tag.starts_with('^') {
                if section == 0 {
                    out.push_str(fill);
                }
                section += 1;
            } else if tag.starts_with('/') {
                section = section.saturating_sub(1);
            } else if section == 0 {
                out.push_str(fill);
            }
            rest = &rest[end + 2..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        rest = &rest[c.len_utf8()..];
        if section > 0 {
            continue;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

impl Visit for Walk<'_, '_> {
    fn begin_object(&mut self, path: &[Step]) -> Flow {
        if is_shape(path) {
            self.shapes.push(false);
        }
        if matches!(
            self.kind,
            BodyKind::Search | BodyKind::SearchTemplate | BodyKind::Script
        ) {
            return Ok(());
        }
        let ks: Vec<&str> = keys(path).collect();
        // Alias definitions are objects keyed by the alias's name.
        let alias_name = match (self.kind, ks.as_slice()) {
            (BodyKind::CreateIndex | BodyKind::Template, ["aliases", name]) => Some(*name),
            (BodyKind::Template | BodyKind::ComponentTemplate, ["template", "aliases", name]) => {
                Some(*name)
            }
            _ => None,
        };
        if let Some(name) = alias_name {
            let name = name.to_string();
            self.names(path, &name, false, Some("/_aliases"))?;
            if self.kind == BodyKind::ComponentTemplate {
                return self.all(format!(
                    "{}: a component template's aliases go onto every index that uses it",
                    self.place(path)
                ));
            }
        }
        if self.kind == BodyKind::Plugin && ks.last() == Some(&"aliases") {
            return Ok(());
        }
        if self.kind == BodyKind::Plugin && ks.len() >= 2 && ks[ks.len() - 2] == "aliases" {
            // `"aliases": {"name": {...}}` in a plugin body.
            let name = ks[ks.len() - 1].to_string();
            return self.names(path, &name, false, None);
        }
        if self.kind == BodyKind::Aliases && ks.len() == 2 && ks[0] == "actions" {
            if !matches!(ks[1], "add" | "remove" | "remove_index") {
                return Err(Halt::Invalid(format!(
                    "{}: unknown alias action {:?}",
                    self.place(path),
                    ks[1]
                )));
            }
            self.seen = false;
        }
        Ok(())
    }

    fn end_object(&mut self, path: &[Step], _members: usize) -> Flow {
        if is_shape(path) && !self.shapes.pop().unwrap_or(true) {
            // A pre-indexed shape without an index is looked up in `shapes`.
            self.names(path, "shapes", false, Some("/_doc"))?;
        }
        if self.kind == BodyKind::Aliases && !self.seen {
            let mut ks = keys(path);
            if ks.next() == Some("actions") && ks.next().is_some() && ks.next().is_none() {
                return self.all(format!("{} names no index", self.place(path)));
            }
        }
        Ok(())
    }

    fn end_array(&mut self, path: &[Step], elements: usize) -> Flow {
        if elements > 0 {
            return Ok(());
        }
        let ks: Vec<&str> = keys(path).collect();
        let empty_means_all = match (self.kind, ks.as_slice()) {
            (
                BodyKind::SnapshotCreate
                | BodyKind::SnapshotRestore
                | BodyKind::SnapshotClone
                | BodyKind::RemoteRestore,
                ["indices"],
            ) => true,
            (BodyKind::SmPolicy, ["snapshot_config", "indices"]) => true,
            (BodyKind::Reindex, ["source", "index"]) => true,
            (BodyKind::Plugin, [.., k]) => PLUGIN_NAME_KEYS.contains(k),
            _ => false,
        };
        if empty_means_all {
            return self.all(format!(
                "{}: an empty list means every index",
                self.place(path)
            ));
        }
        Ok(())
    }

    fn scalar(&mut self, path: &[Step], v: Scalar<'_>) -> Flow {
        // Most values of a body are not where a name can be: decided from the last key alone,
        // without collecting the path.
        if !self.may_name(path) {
            return Ok(());
        }
        let ks: Vec<&str> = keys(path).collect();
        match self.kind {
            BodyKind::Search => self.query_scalar(path, v),
            BodyKind::SearchTemplate => match (ks.as_slice(), v) {
                (["source"], Scalar::Str(text)) => self.template_source(path, text),
                (["source", ..], _) => self.query_scalar(path, v),
                _ => Ok(()),
            },
            BodyKind::Script => {
                match (ks.as_slice(), v) {
                    (["script", "lang"], Scalar::Str(l)) => self.script_lang = Some(l.to_string()),
                    (["script", "source"], Scalar::Str(s)) => {
                        self.script_source = Some(s.to_string())
                    }
                    (["script", "source", ..], _) => return self.query_scalar(path, v),
                    _ => {}
                }
                Ok(())
            }
            BodyKind::Reindex => match ks.as_slice() {
                ["source", "index"] => {
                    self.seen = true;
                    // A string is a comma list; an array's elements are names.
                    let split = !matches!(path.last(), Some(Step::Index(_)));
                    self.scalar_names(path, v, split, Some("/_search"))
                }
                ["dest", "index"] => self.scalar_names(path, v, false, Some("/_doc")),
                ["script", ..] => self.all("a script can set ctx._index to any index".into()),
                ["source", "query", ..] => self.query_scalar(path, v),
                _ => Ok(()),
            },
            BodyKind::Aliases => match ks.as_slice() {
                ["actions", "remove_index", "index" | "indices"] => {
                    self.seen = true;
                    self.scalar_names(path, v, false, Some(""))
                }
                ["actions", _, "index" | "indices"] => {
                    self.seen = true;
                    self.scalar_names(path, v, false, Some("/_aliases"))
                }
                ["actions", _, "alias" | "aliases"] => {
                    self.scalar_names(path, v, false, Some("/_aliases"))
                }
                ["actions", _, "filter", ..] => self.query_scalar(path, v),
                ["actions", _] => Err(Halt::Invalid(format!(
                    "{}: an alias action is not an object",
                    self.place(path)
                ))),
                _ => Ok(()),
            },
            BodyKind::PutAlias => match ks.as_slice() {
                ["index" | "indices"] => {
                    let split = !matches!(path.last(), Some(Step::Index(_)));
                    self.scalar_names(path, v, split, Some("/_alias"))
                }
                ["alias" | "aliases"] => self.scalar_names(path, v, false, Some("/_alias")),
                ["filter", ..] => self.query_scalar(path, v),
                _ => Ok(()),
            },
            BodyKind::CreateIndex => match ks.as_slice() {
                ["aliases", name] => {
                    let name = name.to_string();
                    self.names(path, &name, false, Some("/_aliases"))
                }
                ["aliases", _, "filter", ..] => self.query_scalar(path, v),
                _ => Ok(()),
            },
            BodyKind::Template | BodyKind::ComponentTemplate => match ks.as_slice() {
                ["aliases", name] | ["template", "aliases", name] => {
                    let name = name.to_string();
                    self.names(path, &name, false, Some("/_aliases"))
                }
                ["index_patterns"] | ["template"] => {
                    self.scalar_names(path, v, false, Some("/_template"))
                }
                ["aliases", _, "filter", ..] | ["template", "aliases", _, "filter", ..] => {
                    self.query_scalar(path, v)
                }
                _ => Ok(()),
            },
            BodyKind::SnapshotCreate | BodyKind::SnapshotClone | BodyKind::RemoteRestore => {
                match ks.as_slice() {
                    ["indices"] => {
                        self.seen = true;
                        let split = !matches!(path.last(), Some(Step::Index(_)));
                        self.scalar_names(path, v, split, None)
                    }
                    _ => Ok(()),
                }
            }
            BodyKind::SnapshotRestore => match ks.as_slice() {
                ["indices"] => {
                    self.seen = true;
                    let split = !matches!(path.last(), Some(Step::Index(_)));
                    self.scalar_names(path, v, split, None)
                }
                ["rename_replacement"] => {
                    // `restored_$1`: each group reference stands for any text.
                    let text = scalar_text(v).map(|t| t.into_owned()).unwrap_or_default();
                    let pattern = dollar_groups_to_wildcard(&text);
                    self.names(path, &pattern, false, None)
                }
                _ => Ok(()),
            },
            BodyKind::SmPolicy => match ks.as_slice() {
                ["snapshot_config", "indices"] => {
                    self.seen = true;
                    let split = !matches!(path.last(), Some(Step::Index(_)));
                    self.scalar_names(path, v, split, None)
                }
                _ => Ok(()),
            },
            BodyKind::Reroute => match ks.as_slice() {
                ["commands", _, "index"] => self.scalar_names(path, v, false, None),
                _ => Ok(()),
            },
            BodyKind::AllocationExplain => match ks.as_slice() {
                ["index"] => self.scalar_names(path, v, false, None),
                _ => Ok(()),
            },
            BodyKind::PainlessExecute => match ks.as_slice() {
                ["context_setup", "index"] => self.scalar_names(path, v, false, None),
                _ => Ok(()),
            },
            BodyKind::ClearScroll | BodyKind::DeletePit => match (ks.as_slice(), v) {
                (["scroll_id" | "pit_id"], Scalar::Str(id)) if releases_all(id) => {
                    let why = format!(
                        "{} is `_all`: it releases every client's search contexts",
                        self.place(path)
                    );
                    emit(self.sink, Named::Writes { why })
                }
                _ => Ok(()),
            },
            BodyKind::Plugin => {
                let Some(last) = ks.last() else {
                    return Ok(());
                };
                let under_name_key = ks[..ks.len() - 1]
                    .iter()
                    .any(|k| PLUGIN_NAME_KEYS.contains(k));
                if *last == "index_prefix" {
                    let Some(text) = scalar_text(v) else {
                        return Ok(());
                    };
                    let prefix = format!("{}*", text);
                    return self.names(path, &prefix, false, None);
                }
                if PLUGIN_NAME_KEYS.contains(last) || (under_name_key && *last == "source") {
                    let split = !matches!(path.last(), Some(Step::Index(_)));
                    return self.scalar_names(path, v, split, None);
                }
                self.query_scalar(path, v)
            }
            _ => Ok(()),
        }
    }
}

impl Walk<'_, '_> {
    /// Can the value at `path` name an index in a body of this kind (or be a wrapped query, a
    /// template's source, a script's language)? Decided from the last keys alone.
    fn may_name(&self, path: &[Step]) -> bool {
        let last = keys(path).next_back().unwrap_or("");
        let in_query = matches!(last, "index" | "_index") || ends_with(path, &["wrapper", "query"]);
        match self.kind {
            BodyKind::Search => in_query,
            BodyKind::SearchTemplate | BodyKind::Script => {
                in_query || matches!(last, "source" | "lang")
            }
            BodyKind::Plugin => in_query || last == "source" || PLUGIN_NAME_KEYS.contains(&last),
            // Alias names are keys; everything else of these bodies is matched on its path.
            _ => true,
        }
    }

    /// What the body must have had, checked at its end.
    fn finish(&mut self) -> Flow {
        let missing = match self.kind {
            BodyKind::SnapshotCreate => {
                Some("it names no `indices`, so the snapshot has every index")
            }
            BodyKind::SnapshotRestore => {
                Some("it names no `indices`, so every index of the snapshot is restored")
            }
            BodyKind::SnapshotClone | BodyKind::RemoteRestore => Some("it names no `indices`"),
            BodyKind::SmPolicy => {
                Some("`snapshot_config.indices` is missing, so every index is snapshotted")
            }
            BodyKind::Reindex => Some("`source.index` is missing"),
            _ => None,
        };
        if let (Some(why), false) = (missing, self.seen) {
            return self.all(why.to_string());
        }
        let lang = self.script_lang.take();
        if let (Some("mustache"), Some(source)) = (lang.as_deref(), self.script_source.take()) {
            let path = [Step::Key("script".into()), Step::Key("source".into())];
            return self.template_source(&path, &source);
        }
        Ok(())
    }
}

fn releases_all(ids: &str) -> bool {
    ids.split(',').any(|id| id.trim() == "_all")
}

/// `$1`, `$2`… (a restore's `rename_replacement`) → `*`.
fn dollar_groups_to_wildcard(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$'
            && chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '{')
        {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || matches!(d, '{' | '}'))
            {
                chars.next();
            }
            out.push('*');
        } else {
            out.push(c);
        }
    }
    out
}

/// A clear-scroll body that is not JSON: comma-separated scroll ids (older clients send them
/// as text). True when one of them is `_all`.
pub(crate) fn text_releases_all(text: &str) -> bool {
    releases_all(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        kind: BodyKind,
        defaults: &[&str],
        api: &str,
        body: &str,
    ) -> Result<Vec<String>, String> {
        let defaults: Vec<Target> = defaults.iter().map(|d| Target::wildcard(d)).collect();
        let cx = Context {
            defaults: &defaults,
            api,
            same_for_any_id: None,
        };
        let shown = |n: Named| match n {
            Named::Target { target, place } => format!("{target} @ {place}"),
            Named::All { why, suffix } => format!("*{suffix} ({why})"),
            Named::Writes { why } => format!("writes ({why})"),
        };
        let mut out = Vec::new();
        extract(kind, Input::Slice(body.as_bytes()), &cx, &mut |n| {
            out.push(shown(n));
            ControlFlow::Continue(())
        })?;
        // Read as a stream a byte at a time, the answer is the same.
        let mut again = Vec::new();
        let mut slow = std::io::BufReader::with_capacity(1, body.as_bytes());
        extract(kind, Input::Reader(&mut slow), &cx, &mut |n| {
            again.push(shown(n));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(again, out);
        Ok(out)
    }

    fn ok(kind: BodyKind, body: &str) -> Vec<String> {
        run(kind, &[], "API", body).unwrap()
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
        // Lines 2 and 5 look like actions on restricted-index, but they are the documents of
        // the `index` and `create` before them (as OpenSearch reads them).
        assert_eq!(
            run(BodyKind::Bulk, &["dflt"], "_bulk", body).unwrap(),
            [
                "a/_doc/1 @ line 1",
                "b/_create/2 @ line 4",
                "dflt/_update/3 @ line 6",
                "c/_doc/4 @ line 8",
                "dflt/_doc @ line 9",
            ]
        );
        assert_eq!(
            ok(
                BodyKind::Bulk,
                "{\"delete\":{\"_index\":\"restr\\u0069cted-index\",\"_id\":1}}"
            ),
            ["restricted-index/_doc/1 @ line 1"]
        );
        for bad in [
            "{\"index\":{}}\n{}\n",
            "{\"index\":{\"_index\":\"a\"},\"delete\":{\"_index\":\"b\"}}\n",
            "{\"upsert\":{\"_index\":\"a\"}}\n",
            "{\"index\":{\"_index\":\"a\",\"_index\":\"b\"}}\n",
            "[{\"index\":{}}]\n",
            "{\"index\":{/* c */\"_index\":\"a\"}}\n",
            "{\"index\":{\"_index\":5}}\n",
        ] {
            assert!(run(BodyKind::Bulk, &[], "_bulk", bad).is_err(), "{bad}");
        }
        assert_eq!(ok(BodyKind::Bulk, ""), Vec::<String>::new());
    }

    use proptest::prelude::*;

    fn member() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("\"_index\"".to_string()),
            Just("\"_id\"".to_string()),
            Just("\"routing\"".to_string()),
            Just("\"_ind\\u0065x\"".to_string()),
            "\"[a-z_]{0,6}\"",
        ];
        let value = prop_oneof![
            "\"[a-z0-9 ._*é\\\\\\\\\"-]{0,8}\"",
            "-?[0-9]{1,3}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            Just("true".to_string()),
            Just("null".to_string()),
            Just("{}".to_string()),
            Just("[\"a\"]".to_string()),
            Just("0123".to_string()),
        ];
        (key, "[ \t]{0,2}", value).prop_map(|(k, w, v)| format!("{k}{w}:{w}{v}"))
    }

    /// Ids, well and badly formed, quoted or not.
    fn id_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[a-z0-9 ._é\\\\\"\u{1}-]{0,6}\"",
            "[0-9]{1,20}",
            "0[0-9]{0,3}",
            "[0-9a-z\"]{0,4}",
        ]
    }

    /// Simple action lines with an id, the id anywhere among the members.
    fn line_with_id() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            "\"[a-z0-9 ._é-]{0,6}\"",
            "[1-9][0-9]{0,4}",
            Just("true".to_string()),
        ];
        (
            prop_oneof![
                Just("index"),
                Just("create"),
                Just("update"),
                Just("delete")
            ],
            prop::option::of("\"[a-z0-9é-]{1,6}\""),
            prop::option::of(value),
            prop_oneof!["\"[a-z0-9é]{0,5}\"", "[1-9][0-9]{0,5}"],
            any::<prop::sample::Index>(),
            "[ \t]{0,2}",
        )
            .prop_map(|(op, index, routing, id, at, w)| {
                let mut members: Vec<String> = [("_index", index), ("routing", routing)]
                    .into_iter()
                    .filter_map(|(k, v)| Some(format!("\"{k}\"{w}:{w}{}", v?)))
                    .collect();
                members.insert(at.index(members.len() + 1), format!("\"_id\"{w}:{w}{id}"));
                format!(
                    "{{{w}\"{op}\"{w}:{{{}}}{w}}}{w}",
                    members.join(&format!("{w},{w}"))
                )
            })
    }

    fn line() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just("index"),
                Just("create"),
                Just("update"),
                Just("delete"),
                Just("upsert")
            ],
            prop::collection::vec(member(), 0..4),
            "[ \t\r]{0,2}",
            prop_oneof![Just(""), Just(",\"x\":1"), Just(" junk"), Just("}")],
        )
            .prop_map(|(op, members, w, tail)| {
                format!(
                    "{w}{{{w}\"{op}\"{w}:{w}{{{}}}{w}{tail}}}{w}",
                    members.join(&format!("{w},{w}"))
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// What the fast path reads, serde_json reads the same; what it declines, serde decides.
        #[test]
        fn simple_actions_read_as_serde_reads_them(line in line()) {
            if let Some((fast, _)) = simple_action(line.as_bytes()) {
                let slow: BulkLine = serde_json::from_slice(line.as_bytes())
                    .unwrap_or_else(|e| panic!("serde refuses what the fast path read: {line}: {e}"));
                let slow = Action { op: slow.op, index: slow.meta.index, id: slow.meta.id.map(|i| i.0) };
                prop_assert_eq!(fast, slow, "{}", line);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// A line alike a simple one ([`Told::alike`]) is read as simple, with the same
        /// operation, index and members, and the id between the same bytes.
        #[test]
        fn lines_alike_but_for_the_id_read_alike(first in line_with_id(), id in id_text()) {
            let (a, span) = simple_action(first.as_bytes())
                .unwrap_or_else(|| panic!("not simple: {first}"));
            if let Some(span) = span {
                let told = Told {
                    line: first.clone().into_bytes(),
                    op: a.op,
                    index: a.index.as_deref().unwrap_or_default().to_string(),
                    id: Some(span),
                    any_id: true,
                };
                let line = format!("{}{id}{}", &first[..span.start], &first[span.end..]);
                if told.alike(line.as_bytes()) {
                    let (b, _) = simple_action(line.as_bytes())
                        .unwrap_or_else(|| panic!("alike but not simple: {line}"));
                    prop_assert_eq!((b.op, &b.index), (a.op, &a.index), "{}", line);
                    let value = id.trim_matches('"');
                    prop_assert_eq!(b.id.as_deref(), Some(value), "{}", line);
                }
            }
        }
    }

    #[test]
    fn the_fast_path_reads_the_common_lines() {
        for line in [
            r#"{"index":{"_index":"logs-1","_id":"7"}}"#,
            r#"{ "create" : { "_index" : "a", "_id" : 12, "routing": "r", "pipeline": "p" } }"#,
            r#"{"delete":{}}"#,
            "{\"update\":{\"_id\":\"3\",\"retry_on_conflict\":3}}\r",
        ] {
            assert!(simple_action(line.as_bytes()).is_some(), "{line}");
        }
        for line in [
            r#"{"index":{"_index":"l\u006fgs"}}"#,
            r#"{"index":{"_index":"a","_index":"b"}}"#,
            r#"{"index":{"_id":-1}}"#,
            r#"{"index":{"if_seq_no":{}}}"#,
        ] {
            assert!(simple_action(line.as_bytes()).is_none(), "{line}");
        }
    }

    #[test]
    fn msearch_headers_and_lookups_in_search_lines() {
        let body = concat!(
            "\n",
            "{\"index\":\"a,b\"}\n",
            "{\"query\":{\"match_all\":{}}}\n",
            "{}\n",
            "{\"query\":{\"terms\":{\"user\":{\"index\":\"users\",\"id\":\"1\",\"path\":\"f\"}}}}\n",
            "{\"indices\":[\"c\",\"d*\"]}\n",
            "{}\n",
        );
        assert_eq!(
            run(BodyKind::Msearch, &[], "_msearch", body).unwrap(),
            [
                "a/_search @ line 2",
                "b/_search @ line 2",
                "*/_search @ line 4",
                "users/_doc @ line 5: query.terms.user.index",
                "c/_search @ line 6",
                "d*/_search @ line 6",
            ]
        );
        assert!(run(BodyKind::Msearch, &[], "_msearch", "{\"index\":1}\n{}\n").is_err());
    }

    #[test]
    fn mget_docs() {
        let body =
            r#"{"docs":[{"_index":"a","_id":"1"},{"_id":2},{"_index":"r","_id":"3"}],"ids":["x"]}"#;
        assert_eq!(
            run(BodyKind::Mget, &["dflt"], "_mget", body).unwrap(),
            [
                "a/_doc/1 @ docs[0]",
                "dflt/_doc/2 @ docs[1]",
                "r/_doc/3 @ docs[2]"
            ]
        );
        assert!(run(BodyKind::Mget, &[], "_mget", r#"{"docs":[{"_id":"1"}]}"#).is_err());
        assert!(run(BodyKind::Mget, &[], "_mget", r#"{"docs":"#).is_err());
        assert_eq!(
            run(BodyKind::Mget, &["i"], "_mget", "  \n").unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn search_bodies_name_the_indices_their_queries_read() {
        let body = r#"{"query":{"bool":{"filter":[
            {"terms":{"user":{"index":"users","id":"2","path":"followers"}}},
            {"more_like_this":{"fields":["t"],"like":[{"_index":"other","_id":"1"},"text"]}},
            {"geo_shape":{"loc":{"indexed_shape":{"id":"x","path":"shape"}}}},
            {"geo_shape":{"loc":{"indexed_shape":{"index":"places","id":"y"}}}},
            {"percolate":{"field":"q","index":"queries","id":"1"}},
            {"terms":{"index":["not","a","lookup"]}},
            {"match":{"index":"a field called index"}}
        ]}},"aggs":{"by":{"terms":{"field":"index"}}}}"#;
        assert_eq!(
            ok(BodyKind::Search, body),
            [
                "users/_doc @ query.bool.filter[0].terms.user.index",
                "other/_doc @ query.bool.filter[1].more_like_this.like[0]._index",
                "shapes/_doc @ query.bool.filter[2].geo_shape.loc.indexed_shape",
                "places/_doc @ query.bool.filter[3].geo_shape.loc.indexed_shape.index",
                "queries/_doc @ query.bool.filter[4].percolate.index",
            ]
        );
        let inner = base64::engine::general_purpose::STANDARD
            .encode(r#"{"terms":{"f":{"index":"hidden","id":"1","path":"p"}}}"#);
        assert_eq!(
            ok(
                BodyKind::Search,
                &format!(r#"{{"query":{{"wrapper":{{"query":"{inner}"}}}}}}"#)
            ),
            ["hidden/_doc @ query.wrapper.query (decoded): terms.f.index"]
        );
        assert!(run(
            BodyKind::Search,
            &[],
            "",
            r#"{"query":{"wrapper":{"query":"%%"}}}"#
        )
        .is_err());
        assert_eq!(ok(BodyKind::Search, ""), Vec::<String>::new());
        // Queries without `index` or `wrapper` are not parsed; a key spelled with escapes is
        // still found, and UTF-16 JSON (which OpenSearch reads) is refused as not JSON.
        assert_eq!(
            ok(
                BodyKind::Search,
                r#"{"query":{"terms":{"u":{"\u0069ndex":"users","id":"1","path":"p"}}}}"#
            ),
            ["users/_doc @ query.terms.u.index"]
        );
        assert_eq!(
            ok(BodyKind::Search, "{not json, but naming nothing"),
            Vec::<String>::new()
        );
        let utf16: String = "{\"query\":{\"terms\":{\"u\":{\"index\":\"users\"}}}}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .map(char::from)
            .collect();
        assert!(run(BodyKind::Search, &[], "", &utf16).is_err());
    }

    #[test]
    fn templates_scripts_and_placeholders() {
        assert_eq!(
            ok(
                BodyKind::SearchTemplate,
                r#"{"source":"{\"query\":{\"terms\":{\"f\":{\"index\":\"{{idx}}\",\"id\":\"1\",\"path\":\"p\"}}},\"size\":{{n}}}","params":{"idx":"x"}}"#
            ),
            ["*/_doc @ source: query.terms.f.index"]
        );
        assert_eq!(
            ok(
                BodyKind::SearchTemplate,
                r#"{"source":{"query":{"terms":{"f":{"index":"l-{{d}}","id":"1","path":"p"}}}}}"#
            ),
            ["l-*/_doc @ source.query.terms.f.index"]
        );
        assert_eq!(
            ok(
                BodyKind::Script,
                r#"{"script":{"source":"{\"query\":{\"percolate\":{\"index\":\"q\"}}}","lang":"mustache"}}"#
            ),
            ["q/_doc @ script.source: query.percolate.index"]
        );
        assert_eq!(
            ok(
                BodyKind::Script,
                r#"{"script":{"lang":"painless","source":"ctx._source.x = 1"}}"#
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            fill_placeholders("{\"a\":{{#toJson}}x{{/toJson}},\"b\":\"{{c}}-\\\"{{d}}\"}"),
            "{\"a\":0,\"b\":\"*-\\\"*\"}"
        );
    }

    #[test]
    fn alias_bodies_name_both_index_and_alias() {
        let body = r#"{"actions":[
            {"add":{"index":"a","alias":"al","filter":{"terms":{"f":{"index":"lk","id":"1","path":"p"}}}}},
            {"remove":{"indices":["b","c*"],"aliases":["x"]}},
            {"remove_index":{"index":"gone"}}]}"#;
        assert_eq!(
            run(BodyKind::Aliases, &[], "_aliases", body).unwrap(),
            [
                "a/_aliases @ actions[0].add.index",
                "al/_aliases @ actions[0].add.alias",
                "lk/_doc @ actions[0].add.filter.terms.f.index",
                "b/_aliases @ actions[1].remove.indices[0]",
                "c*/_aliases @ actions[1].remove.indices[1]",
                "x/_aliases @ actions[1].remove.aliases[0]",
                "gone @ actions[2].remove_index.index",
            ]
        );
        assert!(run(
            BodyKind::Aliases,
            &[],
            "_aliases",
            r#"{"actions":[{"rename":{"index":"x"}}]}"#
        )
        .is_err());
        assert_eq!(
            run(
                BodyKind::Aliases,
                &[],
                "_aliases",
                r#"{"actions":[{"add":{"alias":"x"}}]}"#
            )
            .unwrap(),
            [
                "x/_aliases @ actions[0].add.alias",
                "*/_aliases (actions[0].add names no index)"
            ]
        );
        // A put-alias body's `index` overrides the path's.
        assert_eq!(
            run(
                BodyKind::PutAlias,
                &[],
                "",
                r#"{"index":"restricted,other","alias":"innocent"}"#
            )
            .unwrap(),
            [
                "restricted/_alias @ index",
                "other/_alias @ index",
                "innocent/_alias @ alias"
            ]
        );
    }

    #[test]
    fn templates_and_new_indices() {
        assert_eq!(
            ok(
                BodyKind::Template,
                r#"{"index_patterns":["restricted-*","x"],"template":{"aliases":{"public":{}},"settings":{"index":{"number_of_shards":1}}}}"#
            ),
            [
                "restricted-*/_template @ index_patterns[0]",
                "x/_template @ index_patterns[1]",
                "public/_aliases @ template.aliases.public",
            ]
        );
        assert_eq!(
            ok(
                BodyKind::Template,
                r#"{"template":"logs-*","aliases":{"a":{}}}"#
            ),
            ["logs-*/_template @ template", "a/_aliases @ aliases.a"]
        );
        assert_eq!(
            ok(BodyKind::ComponentTemplate, r#"{"template":{"aliases":{"b":{}}}}"#),
            [
                "b/_aliases @ template.aliases.b",
                "*/API (template.aliases.b: a component template's aliases go onto every index that uses it)"
            ]
        );
        assert_eq!(
            ok(
                BodyKind::CreateIndex,
                r#"{"aliases":{"al":{"is_write_index":true}},"mappings":{"properties":{"terms":{"properties":{"x":{"index":false}}}}}}"#
            ),
            ["al/_aliases @ aliases.al"]
        );
    }

    #[test]
    fn snapshots_reindex_and_fields_that_mean_all() {
        assert_eq!(
            ok(BodyKind::SnapshotCreate, r#"{"indices":"a,b"}"#),
            ["a/API @ indices", "b/API @ indices"]
        );
        assert_eq!(
            ok(BodyKind::SnapshotCreate, r#"{"indices":[]}"#),
            [
                "*/API (indices: an empty list means every index)",
                "*/API (it names no `indices`, so the snapshot has every index)"
            ]
        );
        assert_eq!(
            ok(BodyKind::SnapshotCreate, ""),
            ["*/API (it names no `indices`, so the snapshot has every index)"]
        );
        assert_eq!(
            ok(
                BodyKind::SnapshotRestore,
                r#"{"indices":"logs-1","rename_pattern":"(.+)","rename_replacement":"restored-$1"}"#
            ),
            [
                "logs-1/API @ indices",
                "restored-*/API @ rename_replacement"
            ]
        );
        assert_eq!(
            ok(
                BodyKind::Reindex,
                r#"{"source":{"index":["a","b*"],"query":{"percolate":{"index":"q"}}},"dest":{"index":"c"},"script":{"source":"x"}}"#
            ),
            [
                "a/_search @ source.index[0]",
                "b*/_search @ source.index[1]",
                "q/_doc @ source.query.percolate.index",
                "c/_doc @ dest.index",
                "*/API (a script can set ctx._index to any index)"
            ]
        );
        assert_eq!(
            ok(BodyKind::Reindex, r#"{"dest":{"index":"c"}}"#),
            ["c/_doc @ dest.index", "*/API (`source.index` is missing)"]
        );
        assert_eq!(
            ok(BodyKind::ClearScroll, r#"{"scroll_id":["abc","_all"]}"#).len(),
            1
        );
        assert_eq!(ok(BodyKind::ClearScroll, r#"{"scroll_id":"abc"}"#).len(), 0);
        assert_eq!(ok(BodyKind::DeletePit, r#"{"pit_id":["_all"]}"#).len(), 1);
    }

    #[test]
    fn plugin_bodies_name_indices_in_their_fields() {
        // ISM: a policy applies itself to indices by pattern, rolls up into a target.
        let ism = r#"{"policy":{"states":[{"name":"s","actions":[
            {"rollup":{"ism_rollup":{"target_index":"summary","dimensions":[]}}},
            {"shrink":{"target_index_name_template":{"source":"{{ctx.index}}_small"}}},
            {"alias":{"actions":[{"add":{"aliases":["al"]}}]}}]}],
            "ism_template":[{"index_patterns":["logs-*"],"priority":1}]}}"#;
        assert_eq!(
            run(BodyKind::Plugin, &[], "_plugins/_ism/policies/p", ism).unwrap(),
            [
                "summary/_plugins/_ism/policies/p @ policy.states[0].actions[0].rollup.ism_rollup.target_index",
                "*_small/_plugins/_ism/policies/p @ policy.states[0].actions[1].shrink.target_index_name_template.source",
                "al/_plugins/_ism/policies/p @ policy.states[0].actions[2].alias.actions[0].add.aliases[0]",
                "logs-*/_plugins/_ism/policies/p @ policy.ism_template[0].index_patterns[0]",
            ]
        );
        // Anomaly detection, alerting: `indices` lists; an empty one is every index.
        assert_eq!(
            run(
                BodyKind::Plugin,
                &[],
                "X",
                r#"{"indices":[],"feature_attributes":[]}"#
            )
            .unwrap(),
            ["*/X (indices: an empty list means every index)"]
        );
        assert_eq!(
            run(
                BodyKind::Plugin,
                &[],
                "X",
                r#"{"parameters":{"index":7},"index_prefix":"mem"}"#
            )
            .unwrap(),
            ["7/X @ parameters.index", "mem*/X @ index_prefix"]
        );
    }
}
