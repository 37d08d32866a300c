//! `--config FILE`: a TOML file with a key for every command-line flag and `[[route]]` tables
//! for several endpoints in one process.
//!
//! Keys are the flags' long names (`response-timeout`, `connect-to`, `read-only`) plus
//! `endpoint` for the positional argument. Top-level keys are defaults every route inherits; a
//! `[[route]]` overrides any of them for itself. Flags and `SIGV4_PROXY_*` variables override the
//! file (at the top level and in every route). Without `[[route]]` the top level is the one route.
//!
//! The file is turned into command-line words and parsed by the same clap definitions as the
//! command line, so every flag anyone adds has its key with no change here, and values are
//! checked exactly as flags are. Unknown keys are errors naming the key and its line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};

use crate::cli::Cli;
use crate::error::ConfigError;

/// Keys that configure the process, not a route: allowed at the top level only.
const PROCESS_WIDE: &[&str] = &["verbose", "log-format", "workers"];
/// Keys a file cannot set.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];
/// Settings of a listener, which routes sharing one must agree on.
pub const LISTENER_KEYS: &[&str] = &[
    "tls-cert",
    "tls-key",
    "header-read-timeout",
    "max-header-size",
    "max-connections",
    "drain-timeout",
];

/// One setting from the file, as command-line words.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    words: Vec<String>,
    line: usize,
}

/// The command lines a `--config` file stands for: one per route, and the words of the
/// process-wide keys.
pub struct FileRoutes {
    pub routes: Vec<FileRoute>,
    /// The program name, the file's process-wide keys the command line does not override, then
    /// the command line.
    pub process_words: Vec<OsString>,
}

/// One route of the file as a command line, and where its settings were written.
pub struct FileRoute {
    /// The program name, the route's keys (the top level's where the route does not set them),
    /// then the command line, which wins.
    pub words: Vec<OsString>,
    pub origin: Origin,
}

/// Where a route was configured, to say where an error is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `None`: the command line alone.
    pub file: Option<PathBuf>,
    /// The line of its `[[route]]` header; `None` when the file has no `[[route]]`.
    pub route_line: Option<usize>,
    /// Each key the route took from the file, with its line.
    pub keys: Vec<(String, usize)>,
}

impl Origin {
    /// `msg` prefixed with the file, the route and the line of the key it names, if any.
    pub fn locate(&self, msg: &str) -> ConfigError {
        let Some(file) = &self.file else {
            return ConfigError(msg.to_string());
        };
        let located = self
            .keys
            .iter()
            .find(|(key, _)| {
                msg.contains(&format!("--{key}"))
                    || msg.contains(&format!("<{}>", key.to_uppercase()))
            })
            .map(|(key, line)| format!(" (key `{key}` at line {line})"))
            .unwrap_or_default();
        let route = self
            .route_line
            .map(|line| format!(", [[route]] at line {line}"))
            .unwrap_or_default();
        ConfigError(format!(
            "{}{route}{located}: {}",
            file.display(),
            msg.trim_start_matches("error: ").trim_end()
        ))
    }

    /// A line to name the route by in errors about two routes.
    pub fn line(&self) -> usize {
        self.route_line.unwrap_or(1)
    }
}

/// Reads `path` and turns it into command lines. `argv` is the command line (program name
/// first) and `matches` its parse: what it or the environment sets wins over the file.
pub fn read(
    path: &Path,
    argv: &[OsString],
    matches: &ArgMatches,
) -> Result<FileRoutes, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read --config {}: {e}", path.display())))?;
    let file = parse_file(path, &text)?;
    let overridden: Vec<String> = Cli::command()
        .get_arguments()
        .filter(|a| {
            matches!(
                matches.value_source(a.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|a| key_of(a).to_string())
        .collect();
    let program = argv.first().cloned().unwrap_or_default();
    let routes: Vec<(Option<usize>, Vec<Entry>)> = if file.routes.is_empty() {
        vec![(None, file.defaults.clone())]
    } else {
        file.routes
            .iter()
            .map(|(line, entries)| (Some(*line), merge(&file.defaults, entries)))
            .collect()
    };
    let routes = routes
        .into_iter()
        .map(|(route_line, entries)| {
            let entries: Vec<Entry> = entries
                .into_iter()
                .filter(|e| !overridden.contains(&e.key))
                .collect();
            let mut words = vec![program.clone()];
            words.extend(
                entries
                    .iter()
                    .flat_map(|e| e.words.iter().map(OsString::from)),
            );
            words.extend(argv.iter().skip(1).cloned());
            FileRoute {
                words,
                origin: Origin {
                    file: Some(path.to_path_buf()),
                    route_line,
                    keys: entries.into_iter().map(|e| (e.key, e.line)).collect(),
                },
            }
        })
        .collect();
    let process_words = std::iter::once(program)
        .chain(
            file.defaults
                .iter()
                .filter(|e| PROCESS_WIDE.contains(&e.key.as_str()))
                .filter(|e| !overridden.contains(&e.key))
                .flat_map(|e| e.words.iter().map(OsString::from)),
        )
        .chain(argv.iter().skip(1).cloned())
        .collect();
    Ok(FileRoutes {
        routes,
        process_words,
    })
}

/// `defaults` with `route`'s keys replacing theirs.
fn merge(defaults: &[Entry], route: &[Entry]) -> Vec<Entry> {
    let mut merged: Vec<Entry> = defaults
        .iter()
        .filter(|d| !PROCESS_WIDE.contains(&d.key.as_str()))
        .filter(|d| !route.iter().any(|r| r.key == d.key))
        .cloned()
        .collect();
    merged.extend(route.iter().cloned());
    merged
}

struct File {
    defaults: Vec<Entry>,
    /// (line of the `[[route]]` header, its entries)
    routes: Vec<(usize, Vec<Entry>)>,
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(0)
}

fn parse_file(path: &Path, text: &str) -> Result<File, ConfigError> {
    let doc = toml_edit::ImDocument::parse(text)
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let err =
        |line: usize, msg: String| ConfigError(format!("{} line {line}: {msg}", path.display()));
    let root = doc.as_table();
    let mut defaults = Vec::new();
    let mut routes = Vec::new();
    for (name, _) in root.iter() {
        let Some((key, item)) = root.get_key_value(name) else {
            continue;
        };
        let line = line_of(text, key.span());
        if name == "route" {
            let Some(tables) = item.as_array_of_tables() else {
                return Err(err(
                    line,
                    "`route` must be written as [[route]] tables".into(),
                ));
            };
            for table in tables.iter() {
                let route_line = line_of(text, table.span());
                let mut entries = Vec::new();
                for (name, _) in table.iter() {
                    let Some((key, item)) = table.get_key_value(name) else {
                        continue;
                    };
                    let line = line_of(text, key.span());
                    if PROCESS_WIDE.contains(&name) {
                        return Err(err(
                            line,
                            format!("`{name}` applies to the whole process: set it at the top of the file, not in a [[route]]"),
                        ));
                    }
                    entries.push(entry(name, item, line).map_err(|m| err(line, m))?);
                }
                routes.push((route_line, entries));
            }
            continue;
        }
        defaults.push(entry(name, item, line).map_err(|m| err(line, m))?);
    }
    Ok(File { defaults, routes })
}

/// The words `--key=value` (or the positional endpoint, a bare flag, repeated `--verbose`).
fn entry(name: &str, item: &toml_edit::Item, line: usize) -> Result<Entry, String> {
    let command = Cli::command();
    let arg = command
        .get_arguments()
        .find(|a| key_of(a) == name && !NOT_IN_FILE.contains(&name));
    let Some(arg) = arg else {
        let suggestion = command
            .get_arguments()
            .map(key_of)
            .find(|k| *k == name.replace('_', "-"))
            .map(|k| format!(" (keys are the flags' names: `{k}`)"))
            .unwrap_or_default();
        return Err(if NOT_IN_FILE.contains(&name) {
            format!("`{name}` cannot be set in a config file")
        } else {
            format!("unknown key `{name}`{suggestion}")
        });
    };
    let value = item
        .as_value()
        .ok_or_else(|| format!("`{name}` must be a value, not a table"))?;
    let text = match value {
        toml_edit::Value::String(s) => s.value().clone(),
        toml_edit::Value::Integer(i) => i.value().to_string(),
        toml_edit::Value::Float(f) => f.value().to_string(),
        toml_edit::Value::Boolean(b) => b.value().to_string(),
        _ => return Err(format!("`{name}` must be a string, number or boolean")),
    };
    let words = match arg.get_action() {
        ArgAction::SetTrue => match value.as_bool() {
            Some(true) => vec![format!("--{name}")],
            Some(false) => vec![],
            None => return Err(format!("`{name}` must be true or false")),
        },
        ArgAction::Count => {
            let n = value
                .as_integer()
                .filter(|n| (0..=8).contains(n))
                .ok_or_else(|| format!("`{name}` must be a number from 0 to 8"))?;
            vec![format!("--{name}"); n as usize]
        }
        _ if arg.is_positional() => vec![text],
        _ => vec![format!("--{name}={text}")],
    };
    Ok(Entry {
        key: name.to_string(),
        words,
        line,
    })
}

/// A flag's key in the file: its long name, or its id for the positional endpoint.
fn key_of(arg: &clap::Arg) -> &str {
    arg.get_long().unwrap_or_else(|| arg.get_id().as_str())
}
