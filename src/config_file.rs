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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use crate::cli::{Cli, LogFormat};
use crate::config::{Config, ConfigError};

/// Keys that configure the process, not a route: allowed at the top level only.
const PROCESS_WIDE: &[&str] = &["verbose", "log-format", "workers"];
/// Keys a file cannot set.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];
/// Settings of a listener, which routes sharing one must agree on.
const LISTENER_KEYS: &[&str] = &[
    "tls-cert",
    "tls-key",
    "header-read-timeout",
    "max-header-size",
    "max-connections",
    "drain-timeout",
];

/// Everything the process runs: one validated [`Config`] per route.
#[derive(Debug, Clone)]
pub struct Settings {
    pub routes: Vec<Config>,
    /// The `--config` file, reloaded on SIGHUP.
    pub file: Option<PathBuf>,
    pub verbose: u8,
    pub log_format: LogFormat,
    /// `--workers`: a count, or `None` for `auto` (see [`crate::workers`]).
    pub workers: Option<usize>,
}

/// One setting from the file, as command-line words.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    words: Vec<String>,
    line: usize,
}

impl Settings {
    /// The command line `argv` (program name first), the environment, and the `--config` file
    /// it names, validated.
    pub fn load(argv: &[OsString]) -> Result<Settings, ConfigError> {
        let matches = Cli::command()
            .try_get_matches_from(argv)
            .map_err(|e| ConfigError(e.to_string()))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| ConfigError(e.to_string()))?;
        let Some(path) = cli.proxy.config.clone() else {
            return Ok(Settings {
                routes: vec![Config::from_args(&cli.proxy)?],
                file: None,
                verbose: cli.proxy.verbose,
                log_format: cli.proxy.log_format,
                workers: crate::workers::parse(&cli.proxy.workers).map_err(ConfigError)?,
            });
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError(format!("cannot read --config {}: {e}", path.display())))?;
        let file = parse_file(&path, &text)?;
        // What the command line or the environment set wins over the file.
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
        let routes: Vec<(usize, Vec<Entry>)> = if file.routes.is_empty() {
            vec![(1, file.defaults.clone())]
        } else {
            file.routes
                .iter()
                .map(|(line, entries)| (*line, merge(&file.defaults, entries)))
                .collect()
        };
        let mut configs = Vec::new();
        let mut route_args = Vec::new();
        for (line, entries) in &routes {
            let entries: Vec<&Entry> = entries
                .iter()
                .filter(|e| !overridden.contains(&e.key))
                .collect();
            let mut words: Vec<OsString> = vec![argv.first().cloned().unwrap_or_default()];
            words.extend(
                entries
                    .iter()
                    .flat_map(|e| e.words.iter().map(OsString::from)),
            );
            words.extend(argv.iter().skip(1).cloned());
            let context = |msg: String| {
                let located = entries
                    .iter()
                    .find(|e| {
                        msg.contains(&format!("--{}", e.key))
                            || msg.contains(&format!("<{}>", e.key.to_uppercase()))
                    })
                    .map(|e| format!(" (key `{}` at line {})", e.key, e.line))
                    .unwrap_or_default();
                let route = if file.routes.is_empty() {
                    String::new()
                } else {
                    format!(", [[route]] at line {line}")
                };
                ConfigError(format!(
                    "{}{route}{located}: {}",
                    path.display(),
                    msg.trim_start_matches("error: ").trim_end()
                ))
            };
            let matches = Cli::command()
                .try_get_matches_from(&words)
                .map_err(|e| context(e.to_string()))?;
            let cli = Cli::from_arg_matches(&matches).map_err(|e| context(e.to_string()))?;
            let config = Config::from_args(&cli.proxy).map_err(|e| context(e.0))?;
            route_args.push((*line, cli.proxy));
            configs.push(config);
        }
        check_listeners(&path, &configs, &route_args)?;
        let top = Cli::command()
            .try_get_matches_from(
                std::iter::once(argv.first().cloned().unwrap_or_default())
                    .chain(
                        file.defaults
                            .iter()
                            .filter(|e| PROCESS_WIDE.contains(&e.key.as_str()))
                            .filter(|e| !overridden.contains(&e.key))
                            .flat_map(|e| e.words.iter().map(OsString::from)),
                    )
                    .chain(argv.iter().skip(1).cloned()),
            )
            .ok()
            .and_then(|m| Cli::from_arg_matches(&m).ok())
            .map(|c| c.proxy)
            .unwrap_or(cli.proxy);
        Ok(Settings {
            routes: configs,
            file: Some(path.clone()),
            verbose: top.verbose,
            log_format: top.log_format,
            workers: crate::workers::parse(&top.workers)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?,
        })
    }
}

/// Routes on one address share a listener: their path prefixes must differ and the listener
/// settings must agree.
fn check_listeners(
    path: &Path,
    configs: &[Config],
    args: &[(usize, crate::cli::ProxyArgs)],
) -> Result<(), ConfigError> {
    let signature = |a: &crate::cli::ProxyArgs| {
        format!(
            "{:?}",
            (
                &a.tls_cert,
                &a.tls_key,
                &a.header_read_timeout,
                &a.max_header_size,
                a.max_connections,
                &a.drain_timeout
            )
        )
    };
    for (i, a) in configs.iter().enumerate() {
        for (j, b) in configs.iter().enumerate().skip(i + 1) {
            if a.listen != b.listen {
                continue;
            }
            let (line_a, line_b) = (args[i].0, args[j].0);
            if a.path_prefix == b.path_prefix {
                return Err(ConfigError(format!(
                    "{}: the routes at lines {line_a} and {line_b} both serve {} with path prefix `{}`; give them different `listen` addresses or `path-prefix`es",
                    path.display(),
                    a.listen,
                    if a.path_prefix.is_empty() { "/" } else { &a.path_prefix }
                )));
            }
            if signature(&args[i].1) != signature(&args[j].1) {
                return Err(ConfigError(format!(
                    "{}: the routes at lines {line_a} and {line_b} share the listener {} but differ in its settings ({} must be the same on one listener)",
                    path.display(),
                    a.listen,
                    LISTENER_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The listen addresses of a set of routes, in order, each once.
pub fn listen_addresses(configs: &[Config]) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for c in configs {
        if !addrs.contains(&c.listen) {
            addrs.push(c.listen);
        }
    }
    addrs
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, args: &[&str]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = vec!["sigv4-proxy".into(), "--config".into(), path.into()];
        argv.extend(args.iter().map(OsString::from));
        Settings::load(&argv)
    }

    #[test]
    fn top_level_keys_are_the_flags_and_flags_win() {
        let s = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\nresponse-timeout = \"20s\"\nread-only = true\nmax-connections = 7\nverbose = 1\n",
            &["--response-timeout", "9s"],
        )
        .unwrap();
        assert_eq!(s.routes.len(), 1);
        let c = &s.routes[0];
        assert_eq!(c.response_timeout, std::time::Duration::from_secs(9));
        assert_eq!(c.max_connections, 7);
        assert!(c.policy.is_some());
        assert_eq!(s.verbose, 1);
    }

    #[test]
    fn routes_inherit_the_top_level() {
        let s = load(
            r#"
region = "eu-west-1"
service = "aoss"
[[route]]
endpoint = "https://a.example.com"
listen = "127.0.0.1:9201"
[[route]]
endpoint = "https://b.example.com"
listen = "127.0.0.1:9201"
path-prefix = "/b/"
region = "us-west-2"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[0].region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.routes[1].region.as_deref(), Some("us-west-2"));
        assert_eq!(s.routes[1].path_prefix, "/b");
        assert_eq!(listen_addresses(&s.routes).len(), 1);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\n\n[[route]]\nlisten = \"127.0.0.1:1\"\nresponse_timeout = \"5s\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 5") && err.contains("`response_timeout`"),
            "{err}"
        );
        assert!(err.contains("`response-timeout`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let err = load(
            "endpoint = \"https://search-a.us-east-1.es.amazonaws.com\"\n\nconnect-timeout = \"soon\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("--connect-timeout"),
            "{err}"
        );
        let err = load("listen = \"nowhere\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn routes_on_one_listener_need_distinct_prefixes_and_equal_settings() {
        let two = |extra: &str| {
            format!("[[route]]\nendpoint = \"https://a.us-east-1.es.amazonaws.com\"\n[[route]]\nendpoint = \"https://b.us-east-1.es.amazonaws.com\"\n{extra}")
        };
        let err = load(&two(""), &[]).unwrap_err().to_string();
        assert!(err.contains("lines 1 and 3"), "{err}");
        let err = load(&two("path-prefix = \"/b\"\nmax-connections = 3\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-connections"), "{err}");
        assert!(load(&two("path-prefix = \"/b\"\n"), &[]).is_ok());
    }

    #[test]
    fn process_wide_keys_stay_at_the_top() {
        let err = load(
            "[[route]]\nendpoint = \"https://a.us-east-1.es.amazonaws.com\"\nlog-format = \"json\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 3") && err.contains("whole process"),
            "{err}"
        );
        let err = load("config = \"x.toml\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("cannot be set"), "{err}");
    }

    #[test]
    fn workers_are_set_at_the_top_of_the_file_and_flags_win() {
        let endpoint = "endpoint = \"https://a.us-east-1.es.amazonaws.com\"\n";
        assert_eq!(load(endpoint, &[]).unwrap().workers, None, "auto");
        let file = format!("workers = 3\n{endpoint}");
        assert_eq!(load(&file, &[]).unwrap().workers, Some(3));
        assert_eq!(load(&file, &["--workers", "5"]).unwrap().workers, Some(5));
        assert_eq!(load(&file, &["--workers", "auto"]).unwrap().workers, None);
        let err = load(&format!("workers = 0\n{endpoint}"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("proxy.toml") && err.contains("--workers `0`"),
            "{err}"
        );
        let err = load(&format!("[[route]]\n{endpoint}workers = 2\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole process"), "{err}");
    }
}
