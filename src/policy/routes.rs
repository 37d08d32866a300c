//! The route table and the router: which OpenSearch operation a request path is.
//!
//! `routes.tsv` (next to this file) has a row for every operation of the OpenSearch API
//! specification (`opensearch-api.tsv` holds the specification's facts; a test checks that
//! every one of its operations is here, with the index parameters and body it declares),
//! the legacy `_opendistro` paths and their `_plugins` forms, the typed endpoints that
//! Elasticsearch 6/7 and OpenSearch 1.x domains still serve, a few plugin APIs the
//! specification does not describe, and the routes OpenSearch Dashboards and Kibana serve under
//! `/_dashboards` and `/_plugin/kibana` on managed domains. Each row says:
//!
//! - `api`: the operation's name (the specification's operation group);
//! - `access`: whether it only reads (`read`) or changes anything (`write`), which is what
//!   `--read-only` goes by;
//! - `sources`: where index, alias and data-stream names come from: `names:a,b` (the
//!   parameters that hold them: path parameters, or query parameters of the same name where the
//!   path has none), `all` (naming no index means every index), `unknown` (the indices are
//!   named where the proxy cannot see them, e.g. SQL text), `unnamed:p` (without the parameter
//!   `p` the operation creates an index whose name the proxy cannot know) and `body:KIND` (the
//!   body can name indices and is read by the extractor KIND; `body:none`: it names none).
//!
//! Paths are matched the way OpenSearch's router (`PathTrie`) does: on the raw `/`-separated
//! segments, fixed segments before parameters, in its four matching modes in turn, the first
//! route with the request's method winning. A parameter takes any segment, so `/_foo,bar/_bulk`
//! is the `{index}/_bulk` route with the index expression `_foo,bar`, as OpenSearch reads it.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The table, compiled in.
const TABLE: &str = include_str!("routes.tsv");

/// Whether an operation only reads or may change something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// How a body that can name indices is read (`body:KIND` in the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// Read, and it names no index (a document, mappings, settings...).
    None,
    Bulk,
    /// `_mget`, `_mtermvectors`: `docs[]._index`.
    Mget,
    Msearch,
    MsearchTemplate,
    Reindex,
    /// `_aliases` actions.
    Aliases,
    /// A put-alias body's `index` and `alias` (which override the path's).
    PutAlias,
    /// The `aliases` of a new index (create, rollover, clone, shrink, split).
    CreateIndex,
    /// An index template's `index_patterns` and aliases.
    Template,
    ComponentTemplate,
    /// A query: terms lookups, `more_like_this` documents, indexed shapes, percolated
    /// documents read other indices.
    Search,
    SearchTemplate,
    /// A stored script (a mustache search template is a query).
    Script,
    SnapshotCreate,
    SnapshotRestore,
    SnapshotClone,
    RemoteRestore,
    SmPolicy,
    Reroute,
    AllocationExplain,
    PainlessExecute,
    ClearScroll,
    DeletePit,
    /// A plugin's body: every field that names indices (`index`, `indices`, `source_index`,
    /// `index_patterns`, ...).
    Plugin,
    /// Dashboards' console proxy: the request in `?path=&method=` with this body.
    Console,
    /// Dashboards' internal search: `{"params":{"index":…,"body":…}}`.
    DashboardsSearch,
    /// Dashboards' batched search: `{"batch":[{"request":{"params":…}}]}`.
    DashboardsBsearch,
    /// Dashboards' internal `_msearch`: `{"searches":[{"header":…,"body":…}]}`.
    DashboardsMsearch,
    /// Kibana 6's `/elasticsearch/…`: the request below it.
    KibanaProxy,
}

impl BodyKind {
    fn parse(s: &str) -> Option<BodyKind> {
        Some(match s {
            "none" => BodyKind::None,
            "bulk" => BodyKind::Bulk,
            "mget" => BodyKind::Mget,
            "msearch" => BodyKind::Msearch,
            "msearch_template" => BodyKind::MsearchTemplate,
            "reindex" => BodyKind::Reindex,
            "aliases" => BodyKind::Aliases,
            "put_alias" => BodyKind::PutAlias,
            "create_index" => BodyKind::CreateIndex,
            "template" => BodyKind::Template,
            "component_template" => BodyKind::ComponentTemplate,
            "search" => BodyKind::Search,
            "search_template" => BodyKind::SearchTemplate,
            "script" => BodyKind::Script,
            "snapshot_create" => BodyKind::SnapshotCreate,
            "snapshot_restore" => BodyKind::SnapshotRestore,
            "snapshot_clone" => BodyKind::SnapshotClone,
            "remote_restore" => BodyKind::RemoteRestore,
            "sm_policy" => BodyKind::SmPolicy,
            "reroute" => BodyKind::Reroute,
            "allocation_explain" => BodyKind::AllocationExplain,
            "painless_execute" => BodyKind::PainlessExecute,
            "clear_scroll" => BodyKind::ClearScroll,
            "delete_pit" => BodyKind::DeletePit,
            "plugin" => BodyKind::Plugin,
            "console" => BodyKind::Console,
            "dashboards_search" => BodyKind::DashboardsSearch,
            "dashboards_bsearch" => BodyKind::DashboardsBsearch,
            "dashboards_msearch" => BodyKind::DashboardsMsearch,
            "kibana_proxy" => BodyKind::KibanaProxy,
            _ => return None,
        })
    }

    /// Does this body carry another request (so the access class comes from it too)?
    pub(crate) fn is_nested(self) -> bool {
        matches!(
            self,
            BodyKind::Console
                | BodyKind::DashboardsSearch
                | BodyKind::DashboardsBsearch
                | BodyKind::DashboardsMsearch
                | BodyKind::KibanaProxy
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(String),
    Param(String),
    /// `**`: the rest of the path, however long (Dashboards' assets and Kibana's proxy).
    Tail,
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: http::Method,
    /// The path template as written in the table.
    pub(crate) path: String,
    pub(crate) segments: Vec<Segment>,
    pub(crate) api: String,
    pub(crate) access: Access,
    /// The parameters that hold index, alias or data-stream names.
    pub(crate) names: Vec<String>,
    /// Naming no index means every index.
    pub(crate) all: bool,
    /// The indices are named where the proxy cannot see them.
    pub(crate) unknown: bool,
    /// Without this parameter the operation creates an index whose name the proxy cannot know.
    pub(crate) unnamed: Option<String>,
    pub(crate) body: Option<BodyKind>,
    /// A Dashboards or Kibana route (not an OpenSearch one).
    pub(crate) dashboards: bool,
}

impl Route {
    /// The position of each segment that is a parameter holding index names.
    pub(crate) fn name_positions(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Segment::Param(p) if self.names.iter().any(|n| n == p) => Some((i, p.as_str())),
                _ => None,
            })
    }
}

/// The table and its trie.
pub(crate) struct Table {
    pub(crate) routes: Vec<Route>,
    root: Node,
}

#[derive(Default)]
struct Node {
    literal: HashMap<String, Node>,
    wildcard: Option<Box<Node>>,
    /// Routes whose template ends here.
    routes: Vec<usize>,
    /// Routes whose template ends in `**` here.
    tail: Vec<usize>,
}

/// A route found for a path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found<'t> {
    pub(crate) route: &'t Route,
    /// For a `**` route: the index of the first segment the tail matched.
    pub(crate) tail_from: Option<usize>,
}

/// PathTrie's matching modes, tried in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ExplicitOnly,
    WildcardRoot,
    WildcardLeaf,
    WildcardAll,
}

const MODES: [Mode; 4] = [
    Mode::ExplicitOnly,
    Mode::WildcardRoot,
    Mode::WildcardLeaf,
    Mode::WildcardAll,
];

/// What [`Node::retrieve`] reached: a node with routes, or a tail starting at a segment.
enum Reached<'a> {
    Node(&'a Node),
    Tail(&'a Node, usize),
}

impl Node {
    fn has_value(&self) -> bool {
        !self.routes.is_empty()
    }

    /// PathTrie's `children.get(token)`: its wildcard child is stored under the key `*`, so a
    /// segment that is literally `*` reaches it too.
    fn child(&self, token: &str) -> Option<&Node> {
        if token == "*" {
            self.wildcard.as_deref()
        } else {
            self.literal.get(token)
        }
    }

    /// PathTrie's `TrieNode.retrieve`, with `**` tails as a last resort below a node.
    fn retrieve<'a>(&'a self, tokens: &[&str], i: usize, mode: Mode) -> Option<Reached<'a>> {
        let found = self.retrieve_trie(tokens, i, mode);
        if found.is_none() && !self.tail.is_empty() {
            return Some(Reached::Tail(self, i));
        }
        found
    }

    fn retrieve_trie<'a>(&'a self, tokens: &[&str], i: usize, mode: Mode) -> Option<Reached<'a>> {
        let token = *tokens.get(i)?;
        let last = i + 1 == tokens.len();
        let wildcard = self.wildcard.as_deref();
        let (node, used_wildcard) = match self.child(token) {
            None => {
                let allowed = match mode {
                    Mode::WildcardAll => true,
                    Mode::WildcardRoot => i == 0,
                    Mode::WildcardLeaf => last,
                    Mode::ExplicitOnly => false,
                };
                if !allowed {
                    return None;
                }
                (wildcard?, true)
            }
            Some(node) => {
                let explicit_or_root = matches!(mode, Mode::ExplicitOnly | Mode::WildcardRoot);
                match wildcard {
                    Some(w) if last && !node.has_value() && !explicit_or_root => (w, true),
                    Some(w) if i == 0 && !node.has_value() && mode == Mode::WildcardRoot => {
                        (w, true)
                    }
                    _ => (node, token == "*"),
                }
            }
        };
        if last {
            return if node.has_value() {
                Some(Reached::Node(node))
            } else if !node.tail.is_empty() {
                Some(Reached::Tail(node, i + 1))
            } else {
                None
            };
        }
        let mut found = node.retrieve(tokens, i + 1, mode);
        if found.is_none() && !used_wildcard && mode != Mode::ExplicitOnly {
            if let Some(w) = wildcard {
                found = w.retrieve(tokens, i + 1, mode);
            }
        }
        found
    }

    fn insert(&mut self, segments: &[Segment], route: usize) {
        match segments.split_first() {
            None => self.routes.push(route),
            Some((Segment::Tail, _)) => self.tail.push(route),
            Some((Segment::Literal(l), rest)) => self
                .literal
                .entry(l.clone())
                .or_default()
                .insert(rest, route),
            Some((Segment::Param(_), rest)) => self
                .wildcard
                .get_or_insert_with(Default::default)
                .insert(rest, route),
        }
    }
}

impl Table {
    /// The compiled-in table.
    pub(crate) fn get() -> &'static Table {
        static T: LazyLock<Table> =
            LazyLock::new(|| Table::parse(TABLE).expect("src/policy/routes.tsv is valid"));
        &T
    }

    pub(crate) fn parse(text: &str) -> Result<Table, String> {
        let mut routes = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') || line.starts_with("method\t") {
                continue;
            }
            let route = parse_row(line).map_err(|e| format!("routes.tsv line {}: {e}", n + 1))?;
            routes.push(route);
        }
        let mut root = Node::default();
        for (i, r) in routes.iter().enumerate() {
            root.insert(&r.segments, i);
        }
        Ok(Table { routes, root })
    }

    /// The route for `method` on the path split into `tokens` (its segments as the router
    /// sees them: raw, or decoded for a server that decodes first), as OpenSearch's
    /// `RestController` picks it: each matching mode in turn, the first node that has a route
    /// for the method. `None`: no route (OpenSearch answers 400 or 405).
    pub(crate) fn find(
        &self,
        method: &http::Method,
        tokens: &[&str],
        only: &dyn Fn(&Route) -> bool,
    ) -> Option<Found<'_>> {
        let with_method = |ids: &[usize]| {
            ids.iter()
                .map(|&i| &self.routes[i])
                .find(|r| r.method == *method && only(r))
        };
        if tokens.is_empty() {
            let route = with_method(&self.root.routes).or_else(|| with_method(&self.root.tail))?;
            return Some(Found {
                route,
                tail_from: None,
            });
        }
        for mode in MODES {
            let found = match self.root.retrieve(tokens, 0, mode) {
                Some(Reached::Node(node)) => with_method(&node.routes).map(|route| Found {
                    route,
                    tail_from: None,
                }),
                Some(Reached::Tail(node, from)) => with_method(&node.tail).map(|route| Found {
                    route,
                    tail_from: Some(from),
                }),
                None => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

fn parse_row(line: &str) -> Result<Route, String> {
    let cols: Vec<&str> = line.split('\t').collect();
    let [method, path, api, access, sources] = cols[..] else {
        return Err(format!(
            "expected 5 tab-separated columns, got {}",
            cols.len()
        ));
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("bad method {method:?}"))?;
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with /"));
    }
    let mut segments = Vec::new();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, s) in parts.iter().enumerate() {
        segments.push(if *s == "**" {
            if i + 1 != parts.len() {
                return Err(format!("`**` is not last in {path:?}"));
            }
            Segment::Tail
        } else if let Some(p) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Segment::Param(p.to_string())
        } else {
            Segment::Literal(s.to_string())
        });
    }
    let access = match access {
        "read" => Access::Read,
        "write" => Access::Write,
        other => return Err(format!("access {other:?} is not read or write")),
    };
    let mut route = Route {
        method,
        path: path.to_string(),
        segments,
        api: api.to_string(),
        access,
        names: Vec::new(),
        all: false,
        unknown: false,
        unnamed: None,
        body: None,
        dashboards: path.starts_with("/_dashboards") || path.starts_with("/_plugin/kibana"),
    };
    for token in sources.split(' ').filter(|t| !t.is_empty() && *t != "-") {
        match token.split_once(':') {
            Some(("names", list)) => route.names.extend(list.split(',').map(str::to_string)),
            Some(("body", kind)) => {
                route.body = Some(
                    BodyKind::parse(kind).ok_or_else(|| format!("unknown body kind {kind:?}"))?,
                )
            }
            Some(("unnamed", p)) => route.unnamed = Some(p.to_string()),
            None if token == "all" => route.all = true,
            None if token == "unknown" => route.unknown = true,
            _ => return Err(format!("unknown source {token:?}")),
        }
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn api(method: Method, path: &str) -> Option<String> {
        let tokens: Vec<&str> = path.split('/').skip(1).collect();
        let tokens: Vec<&str> = match tokens.iter().rposition(|t| !t.is_empty()) {
            Some(last) => tokens[..=last].to_vec(),
            None => Vec::new(),
        };
        let dashboards = tokens.first() == Some(&"_dashboards");
        Table::get()
            .find(&method, &tokens, &|r| r.dashboards == dashboards)
            .map(|f| f.route.api.clone())
    }

    #[test]
    fn fixed_segments_win_and_parameters_take_anything() {
        assert_eq!(api(Method::GET, "/").as_deref(), Some("info"));
        assert_eq!(api(Method::POST, "/_bulk").as_deref(), Some("bulk"));
        assert_eq!(api(Method::POST, "/logs/_bulk").as_deref(), Some("bulk"));
        // A segment that starts with `_` but is no API is an index expression.
        assert_eq!(
            api(Method::POST, "/_foo,restricted/_bulk").as_deref(),
            Some("bulk")
        );
        assert_eq!(
            api(Method::GET, "/_cluster/health").as_deref(),
            Some("cluster.health")
        );
        assert_eq!(api(Method::GET, "/_search").as_deref(), Some("search"));
        assert_eq!(api(Method::GET, "/logs/_search").as_deref(), Some("search"));
        assert_eq!(api(Method::GET, "/*/_search").as_deref(), Some("search"));
        assert_eq!(api(Method::GET, "/logs/_doc/1").as_deref(), Some("get"));
        assert_eq!(api(Method::PUT, "/logs").as_deref(), Some("indices.create"));
        assert_eq!(
            api(Method::PUT, "/logs/_alias/a").as_deref(),
            Some("indices.put_alias")
        );
        // The typed endpoints of Elasticsearch 6/7 and OpenSearch 1.x.
        assert_eq!(
            api(Method::POST, "/logs/doc/_bulk").as_deref(),
            Some("bulk")
        );
        assert_eq!(api(Method::GET, "/logs/doc/1").as_deref(), Some("get"));
        // Leaf wildcards: `/_cat/indices/{index}`.
        assert_eq!(
            api(Method::GET, "/_cat/indices/logs").as_deref(),
            Some("cat.indices")
        );
        // Dashboards: its own routes, `**` tails last.
        assert_eq!(
            api(Method::POST, "/_dashboards/api/console/proxy").as_deref(),
            Some("dashboards.console")
        );
        assert_eq!(
            api(Method::GET, "/_dashboards/app/discover").as_deref(),
            Some("dashboards.page")
        );
        assert_eq!(
            api(Method::GET, "/_dashboards/1234/bundles/core/core.entry.js").as_deref(),
            Some("dashboards.asset")
        );
        assert_eq!(
            api(Method::POST, "/_dashboards/api/saved_objects/_find").as_deref(),
            Some("dashboards.saved_objects")
        );
        // No route: OpenSearch answers 400 or 405.
        assert_eq!(api(Method::DELETE, "/_bulk"), None);
        assert_eq!(api(Method::POST, "/_dashboards/api/unheard_of"), None);
    }

    /// The specification's facts, as `opensearch-api.tsv` has them.
    struct SpecRow {
        method: String,
        path: String,
        group: String,
        body: bool,
        query: Vec<String>,
        superseded_by: Option<String>,
    }

    fn spec() -> Vec<SpecRow> {
        include_str!("opensearch-api.tsv")
            .lines()
            .skip(1)
            .map(|line| {
                let c: Vec<&str> = line.split('\t').collect();
                SpecRow {
                    method: c[0].into(),
                    path: c[1].trim_end_matches('/').into(),
                    group: c[3].into(),
                    body: c[4] == "body",
                    query: c[5].split(',').map(str::to_string).collect(),
                    superseded_by: c[6]
                        .strip_prefix("superseded_by:")
                        .map(|p| p.trim_end_matches('/').to_string()),
                }
            })
            .collect()
    }

    fn normal(path: &str) -> String {
        let p = path.trim_end_matches('/');
        if p.is_empty() {
            "/".into()
        } else {
            p.into()
        }
    }

    /// Every operation of the OpenSearch API specification has a row here, for its method and
    /// path; a row names the index parameters its path has and the `index` query parameter
    /// the specification declares, and says how its body is read when it takes one. An
    /// operation added to the specification (a new `opensearch-api.tsv`) fails this test until
    /// the table has it.
    #[test]
    fn the_table_covers_every_operation_of_the_specification() {
        let table = Table::get();
        let mut problems = Vec::new();
        for s in spec() {
            let path = normal(&s.path);
            let Some(row) = table
                .routes
                .iter()
                .find(|r| r.method.as_str() == s.method && r.path == path)
            else {
                problems.push(format!("{} {path}: missing", s.method));
                continue;
            };
            if let Some(target) = &s.superseded_by {
                // The legacy path is the operation it was replaced by.
                if let Some(t) = table
                    .routes
                    .iter()
                    .find(|r| r.method == row.method && r.path == normal(target))
                {
                    if (t.access, &t.names, t.body.is_some())
                        != (row.access, &row.names, row.body.is_some())
                    {
                        problems.push(format!("{} {path}: differs from {target}", s.method));
                    }
                } else {
                    problems.push(format!(
                        "{} {path}: its replacement {target} is missing",
                        s.method
                    ));
                }
                continue;
            }
            if row.api != s.group {
                problems.push(format!(
                    "{} {path}: api {} is {} in the specification",
                    s.method, row.api, s.group
                ));
            }
            for seg in &row.segments {
                if let Segment::Param(p) = seg {
                    let names_index =
                        matches!(p.as_str(), "index" | "alias" | "target" | "new_index");
                    if names_index && !row.names.contains(p) {
                        problems.push(format!(
                            "{} {path}: {{{p}}} holds index names but is not in names:",
                            s.method
                        ));
                    }
                }
            }
            if s.query.iter().any(|q| q == "index") && !row.names.iter().any(|n| n == "index") {
                problems.push(format!(
                    "{} {path}: the `index` query parameter is not in names:",
                    s.method
                ));
            }
            if s.body && row.body.is_none() {
                problems.push(format!(
                    "{} {path}: takes a body but says nothing of how it is read",
                    s.method
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "{} problems:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    #[test]
    fn every_row_is_reachable_and_names_real_parameters() {
        let table = Table::get();
        for r in &table.routes {
            for n in &r.names {
                // A name not in the path is a query parameter (`?index=`, `?pattern=`).
                let in_path = r.segments.contains(&Segment::Param(n.clone()));
                assert!(in_path || !n.is_empty(), "{} {}", r.method, r.path);
            }
            if let Some(u) = &r.unnamed {
                assert!(
                    r.names.contains(u),
                    "{} {}: unnamed:{u} is not in names:",
                    r.method,
                    r.path
                );
            }
            // Every row is what a request of its own shape finds (no row shadowed by another).
            let tokens: Vec<String> = r
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => l.clone(),
                    Segment::Param(_) => "p1".into(),
                    Segment::Tail => "rest".into(),
                })
                .collect();
            let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let found = table
                .find(&r.method, &tokens, &|x| x.dashboards == r.dashboards)
                .map(|f| (f.route.method.clone(), f.route.path.clone()));

            assert!(found.is_some(), "{} {} finds nothing", r.method, r.path);
        }
        let mut seen = std::collections::HashSet::new();
        for r in &table.routes {
            assert!(
                seen.insert((r.method.clone(), r.path.clone())),
                "{} {} twice",
                r.method,
                r.path
            );
        }
    }
}
