//! `deploy/` against the binary, without a Docker engine or a cluster: every flag and
//! `SIGV4_PROXY_*` variable the files use exists, every command line parses with the proxy's own
//! clap definitions, ports agree between the proxy, its probes, Services and `EXPOSE`, grace
//! periods outlast the drain; and the CLI extras (`health`, `completions`, `man`, `--version`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{ArgAction, CommandFactory, Parser};
use serde::Deserialize;
use serde_json::Value;
use sigv4_proxy::cli::{Cli, Command};

use crate::support::proxy::upstream_args;
use crate::support::{Creds, ProxyProcess, TestUpstream};

const BIN: &str = env!("CARGO_BIN_EXE_sigv4-proxy");

fn file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env_clear()
        .output()
        .expect("run sigv4-proxy");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The help of the binary and of every subcommand, concatenated: what a flag or variable used
/// in a deployment file must appear in.
fn all_help() -> String {
    [
        "--help",
        "check --help",
        "health --help",
        "completions --help",
    ]
    .iter()
    .map(|args| {
        let args: Vec<&str> = args.split(' ').collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        out
    })
    .collect()
}

fn long_flags(help: &str) -> Vec<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '(')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.split(['=', ' ', '<', '.', ')', ']'])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// One way a deployment file starts the proxy: its arguments after the program name and the
/// environment it sets (the image's `ENV` first, the file's own after, later ones winning).
#[derive(Debug, Clone)]
struct Invocation {
    source: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Invocation {
    fn new(source: &str, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        Invocation {
            source: source.to_string(),
            args,
            env,
        }
    }

    /// Layers `more` on top: its arguments replace these (a container's args replace the
    /// image's CMD), its environment adds to and overrides this one.
    fn with(&self, more: &Invocation) -> Invocation {
        let mut env = self.env.clone();
        for (k, v) in &more.env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        Invocation::new(&more.source, more.args.clone(), env)
    }

    /// The command line clap would see: `SIGV4_PROXY_*` variables folded in as the flags they
    /// stand for (flags on the command line win, as they do at run time).
    fn argv(&self) -> Vec<String> {
        let command = Cli::command();
        let mut argv = vec!["sigv4-proxy".to_string()];
        let mut positional = None;
        for (var, value) in &self.env {
            if !var.starts_with("SIGV4_PROXY_") || var.starts_with("SIGV4_PROXY_HEALTH_") {
                continue;
            }
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(var.as_str()))
                .unwrap_or_else(|| panic!("{}: {var} is no flag's variable", self.source));
            let long = arg.get_long().unwrap_or_default();
            if self
                .args
                .iter()
                .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")))
            {
                continue;
            }
            match arg.get_action() {
                _ if arg.is_positional() => positional = Some(value.clone()),
                ArgAction::SetTrue => {
                    if value == "true" || value == "1" {
                        argv.push(format!("--{long}"));
                    }
                }
                ArgAction::Count => {
                    let n: usize = value.parse().unwrap_or(0);
                    argv.extend(std::iter::repeat_n(format!("--{long}"), n));
                }
                _ => argv.push(format!("--{long}={value}")),
            }
        }
        argv.extend(self.args.iter().cloned());
        let named = Cli::try_parse_from(argv.clone())
            .map(|c| c.proxy.endpoint.is_some())
            .unwrap_or(true);
        if let (Some(endpoint), false) = (positional, named) {
            argv.push(endpoint);
        }
        argv
    }

    fn parse(&self) -> Cli {
        Cli::try_parse_from(self.argv())
            .unwrap_or_else(|e| panic!("{}: {:?} does not parse:\n{e}", self.source, self.argv()))
    }

    /// The proxy's validated view of the flags that matter here.
    fn proxy(&self) -> sigv4_proxy::cli::ProxyArgs {
        let cli = self.parse();
        assert!(
            cli.command.is_none(),
            "{}: runs a subcommand, not the proxy",
            self.source
        );
        cli.proxy
    }

    fn drain(&self) -> Duration {
        humantime::parse_duration(&self.proxy().drain_timeout).unwrap()
    }
}

/// Every flag the invocation names is in the help, every variable is a flag's, and a listener
/// off loopback has inbound authentication or says it does not want it.
fn check_proxy(inv: &Invocation, help: &str) {
    let flags = long_flags(help);
    for arg in &inv.args {
        if let Some(flag) = arg.strip_prefix("--") {
            let flag = format!("--{}", flag.split('=').next().unwrap());
            assert!(
                flags.contains(&flag),
                "{}: {flag} is not in --help",
                inv.source
            );
        }
    }
    for (var, _) in &inv.env {
        if var.starts_with("SIGV4_PROXY_") {
            assert!(
                help.contains(&format!("[env: {var}=")),
                "{}: {var} is no flag's variable",
                inv.source
            );
        }
    }
    let proxy = inv.proxy();
    if !proxy.listen.ip().is_loopback() {
        assert!(
            proxy.allow_unauthenticated || proxy.token_file.is_some() || proxy.htpasswd.is_some(),
            "{}: listens on {} without inbound authentication: the proxy would refuse to start",
            inv.source,
            proxy.listen
        );
    }
}

/// A health-check command (without the program name): must be `health`, and ask the admin port.
fn check_health(source: &str, words: &[String], admin: Option<SocketAddr>) -> String {
    let mut argv = vec!["sigv4-proxy".to_string()];
    argv.extend(words.iter().skip(1).cloned());
    assert!(
        words[0].ends_with("sigv4-proxy"),
        "{source}: the health check runs {}, not the binary",
        words[0]
    );
    let cli = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{source}: {argv:?} does not parse:\n{e}"));
    let Some(Command::Health(health)) = cli.command else {
        panic!("{source}: {argv:?} is not `sigv4-proxy health`");
    };
    humantime::parse_duration(&health.timeout).unwrap();
    let url: http::Uri = health.url.parse().unwrap();
    let admin = admin.unwrap_or_else(|| panic!("{source}: a health check but no admin listener"));
    assert_eq!(
        url.port_u16(),
        Some(admin.port()),
        "{source}: the health check asks {} but the admin listener is {admin}",
        health.url
    );
    assert!(
        url.host() == Some("127.0.0.1") || admin.ip().is_unspecified(),
        "{source}: {} cannot reach an admin listener on {admin}",
        health.url
    );
    url.path().to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn yaml_documents(path: &str) -> Vec<Value> {
    let text = file(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = serde_norway::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path}: not YAML: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{path}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The image as the Dockerfile builds it: its ENV, EXPOSE, HEALTHCHECK and ENTRYPOINT.
struct Image {
    env: Vec<(String, String)>,
    expose: Vec<u16>,
    healthcheck: Vec<String>,
    entrypoint: Vec<String>,
}

fn dockerfile() -> Image {
    let text = file("deploy/Dockerfile").replace("\\\n", " ");
    let runtime = text
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a runtime stage");
    let mut image = Image {
        env: Vec::new(),
        expose: Vec::new(),
        healthcheck: Vec::new(),
        entrypoint: Vec::new(),
    };
    for line in runtime.lines().map(str::trim) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        match instruction {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
                    image.env.push((k.into(), v.into()));
                }
            }
            "EXPOSE" => image
                .expose
                .extend(rest.split_whitespace().map(|p| p.parse::<u16>().unwrap())),
            "HEALTHCHECK" => {
                let json = &rest[rest.find("CMD [").expect("HEALTHCHECK CMD [exec form]") + 4..];
                image.healthcheck = serde_json::from_str::<Vec<String>>(json).unwrap();
            }
            "ENTRYPOINT" => image.entrypoint = serde_json::from_str(rest).unwrap(),
            "SHELL" | "RUN" => panic!("the runtime stage has no shell: {line}"),
            _ => {}
        }
    }
    image
}

fn image_invocation(image: &Image) -> Invocation {
    Invocation::new("deploy/Dockerfile", vec![], image.env.clone())
}

#[test]
fn the_dockerfile_exposes_what_the_image_listens_on_and_checks_health_without_a_shell() {
    let help = all_help();
    let image = dockerfile();
    assert_eq!(image.entrypoint, ["/sigv4-proxy"]);
    let inv = image_invocation(&image);
    let proxy = inv.proxy();
    // The image's own defaults: every interface, so `docker run` needs auth or the explicit
    // --allow-unauthenticated (checked in the compose and Kubernetes tests).
    assert!(proxy.listen.ip().is_unspecified());
    let admin = proxy
        .admin_listen
        .expect("the image enables the admin listener");
    assert!(
        image.expose.contains(&proxy.listen.port()),
        "EXPOSE {:?}",
        image.expose
    );
    assert!(
        image.expose.contains(&admin.port()),
        "EXPOSE {:?}",
        image.expose
    );
    assert!(image.healthcheck[0] == "/sigv4-proxy");
    check_health("Dockerfile HEALTHCHECK", &image.healthcheck, Some(admin));
    for (var, _) in &image.env {
        assert!(help.contains(&format!("[env: {var}=")), "{var}");
    }
    let text = file("deploy/Dockerfile");
    assert!(text.contains("USER nonroot"), "runs as non-root");
    assert!(text.contains("--locked"), "builds what Cargo.lock says");
}

#[test]
fn compose_runs_dashboards_against_the_proxy() {
    let help = all_help();
    let image = dockerfile();
    let docs = yaml_documents("deploy/docker-compose.yml");
    assert_eq!(docs.len(), 1);
    let services = &docs[0]["services"];
    let proxy_service = &services["sigv4-proxy"];
    assert_eq!(proxy_service["build"]["dockerfile"], "deploy/Dockerfile");
    let env: Vec<(String, String)> = proxy_service["environment"]
        .as_object()
        .expect("environment as a map")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let inv = image_invocation(&image).with(&Invocation::new(
        "docker-compose.yml sigv4-proxy",
        strings(&proxy_service["command"]),
        env,
    ));
    check_proxy(&inv, &help);
    let proxy = inv.proxy();
    assert!(
        proxy.allow_unauthenticated,
        "the compose network is private"
    );
    let port = proxy.listen.port();
    for published in strings(&proxy_service["ports"]) {
        assert!(
            published.starts_with("127.0.0.1:"),
            "{published}: publish on loopback only (no inbound auth)"
        );
        assert!(published.ends_with(&format!(":{port}")), "{published}");
    }
    let grace =
        humantime::parse_duration(proxy_service["stop_grace_period"].as_str().unwrap()).unwrap();
    assert!(grace > inv.drain(), "stop_grace_period {grace:?}");

    let dashboards = &services["dashboards"];
    assert!(dashboards["image"]
        .as_str()
        .unwrap()
        .starts_with("opensearchproject/opensearch-dashboards"));
    let hosts = dashboards["environment"]["OPENSEARCH_HOSTS"]
        .as_str()
        .unwrap();
    let hosts: Vec<String> = serde_json::from_str(hosts).expect("OPENSEARCH_HOSTS is a JSON list");
    assert_eq!(hosts, [format!("http://sigv4-proxy:{port}")]);
    assert_eq!(
        dashboards["environment"]["DISABLE_SECURITY_DASHBOARDS_PLUGIN"],
        "true"
    );
    assert_eq!(
        dashboards["depends_on"]["sigv4-proxy"]["condition"],
        "service_healthy"
    );
}

/// The proxy containers of a Kubernetes Deployment (regular and native-sidecar ones).
fn proxy_containers(deployment: &Value) -> Vec<&Value> {
    let spec = &deployment["spec"]["template"]["spec"];
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .filter(|c| c["image"].as_str().unwrap_or("").contains("sigv4-proxy"))
        .collect()
}

fn container_port(container: &Value, name_or_number: &Value) -> u16 {
    if let Some(n) = name_or_number.as_u64() {
        return n as u16;
    }
    let name = name_or_number.as_str().unwrap();
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
        .as_u64()
        .unwrap() as u16
}

/// Checks one Kubernetes file; returns (listen address, the container) of each proxy.
fn check_kubernetes(path: &str) -> Vec<(SocketAddr, Value)> {
    let help = all_help();
    let image = dockerfile();
    let docs = yaml_documents(path);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let mut proxies = Vec::new();
    for deployment in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"]
            .as_str()
            .expect("a service account");
        assert!(
            docs.iter().any(|d| d["kind"] == "ServiceAccount"
                && d["metadata"]["name"] == account
                && d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string()),
            "{path}: ServiceAccount {account} with the IRSA annotation"
        );
        let containers = proxy_containers(deployment);
        assert_eq!(containers.len(), 1, "{path}: one proxy in {name}");
        for c in containers {
            let source = format!("{path} {name}/{}", c["name"].as_str().unwrap());
            let env: Vec<(String, String)> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"]
                            .as_str()
                            .expect("env values as strings")
                            .to_string(),
                    )
                })
                .collect();
            let inv =
                image_invocation(&image).with(&Invocation::new(&source, strings(&c["args"]), env));
            check_proxy(&inv, &help);
            let proxy = inv.proxy();
            assert!(proxy.endpoint.is_some(), "{source}: no endpoint");
            let admin = proxy
                .admin_listen
                .expect("an admin listener for the probes");
            assert_eq!(
                container_port(c, &"proxy".into()),
                proxy.listen.port(),
                "{source}"
            );
            assert_eq!(container_port(c, &"admin".into()), admin.port(), "{source}");
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let p = &c[probe];
                if p.is_null() {
                    assert_ne!(probe, "livenessProbe", "{source}: needs a liveness probe");
                    continue;
                }
                let path = if p["exec"].is_object() {
                    check_health(
                        &format!("{source} {probe}"),
                        &strings(&p["exec"]["command"]),
                        Some(admin),
                    )
                } else {
                    let get = &p["httpGet"];
                    assert_eq!(
                        container_port(c, &get["port"]),
                        admin.port(),
                        "{source} {probe}"
                    );
                    assert!(
                        !admin.ip().is_loopback(),
                        "{source} {probe}: kubelet's httpGet cannot reach a loopback admin listener"
                    );
                    get["path"].as_str().unwrap().to_string()
                };
                let want = if probe == "readinessProbe" {
                    "/readyz"
                } else {
                    "/healthz"
                };
                assert_eq!(path, want, "{source} {probe}");
            }
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0);
            assert!(
                Duration::from_secs(grace) > inv.drain() + Duration::from_secs(pre_stop),
                "{source}: terminationGracePeriodSeconds {grace} must outlast preStop {pre_stop}s + --drain-timeout {:?}",
                inv.drain()
            );
            let security = &c["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{source}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{source}");
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["mountPath"] == "/tmp")),
                "{source}: a writable /tmp for spilled bodies"
            );
            assert!(c["resources"]["requests"]["memory"].is_string(), "{source}");
            proxies.push((proxy.listen, (*c).clone()));
        }
        for service in docs.iter().filter(|d| d["kind"] == "Service") {
            let c = &proxies.last().unwrap().1;
            for port in service["spec"]["ports"].as_array().unwrap() {
                assert_eq!(
                    container_port(c, &port["targetPort"]),
                    proxies.last().unwrap().0.port(),
                    "{path}: Service port {port}"
                );
            }
        }
        for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget"] {
            for d in docs.iter().filter(|d| d["kind"] == kind) {
                let target = &d["spec"]["scaleTargetRef"]["name"];
                let selector = &d["spec"]["selector"]["matchLabels"];
                assert!(
                    target == name || selector == &deployment["spec"]["selector"]["matchLabels"],
                    "{path}: {kind} does not select {name}"
                );
            }
        }
    }
    assert!(
        !proxies.is_empty(),
        "{path}: no proxy container ({kinds:?})"
    );
    proxies
}

#[test]
fn the_kubernetes_sidecar_listens_on_the_pods_loopback_and_probes_by_exec() {
    let proxies = check_kubernetes("deploy/kubernetes/sidecar.yaml");
    for (listen, container) in proxies {
        assert!(
            listen.ip().is_loopback(),
            "a sidecar shares the app's loopback"
        );
        assert_eq!(container["restartPolicy"], "Always", "a native sidecar");
    }
}

#[test]
fn the_shared_kubernetes_deployment_scales_drains_and_requires_tokens() {
    let proxies = check_kubernetes("deploy/kubernetes/shared.yaml");
    let docs = yaml_documents("deploy/kubernetes/shared.yaml");
    for kind in [
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "{kind}");
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let (_, container) = &proxies[0];
    let args = strings(&container["args"]);
    let at = args.iter().position(|a| a == "--token-file").unwrap();
    let token_file = Path::new(&args[at + 1]);
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| token_file.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the token file is on a mounted volume");
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(volume["secret"]["secretName"].is_string(), "from a Secret");
}

#[test]
fn the_ecs_task_runs_the_proxy_as_a_loopback_sidecar() {
    let help = all_help();
    let image = dockerfile();
    let task: Value = serde_json::from_str(&file("deploy/ecs/task-definition.json")).unwrap();
    assert_eq!(task["networkMode"], "awsvpc");
    assert!(task["taskRoleArn"].is_string());
    let containers = task["containerDefinitions"].as_array().unwrap();
    let c = containers
        .iter()
        .find(|c| c["image"].as_str().unwrap().contains("sigv4-proxy"))
        .unwrap();
    let env = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let inv = image_invocation(&image).with(&Invocation::new(
        "ecs sigv4-proxy",
        strings(&c["command"]),
        env,
    ));
    check_proxy(&inv, &help);
    let proxy = inv.proxy();
    assert!(proxy.listen.ip().is_loopback());
    let health = strings(&c["healthCheck"]["command"]);
    assert_eq!(health[0], "CMD", "exec form: the image has no shell");
    check_health("ecs healthCheck", &health[1..], proxy.admin_listen);
    assert!(Duration::from_secs(c["stopTimeout"].as_u64().unwrap()) > inv.drain());
    let app = containers.iter().find(|a| a["name"] == "app").unwrap();
    let hosts = app["environment"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "OPENSEARCH_HOSTS")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(
        hosts.contains(&format!("127.0.0.1:{}", proxy.listen.port())),
        "{hosts}"
    );
    assert_eq!(app["dependsOn"][0]["condition"], "HEALTHY");
}

/// `Key=value` lines of a systemd unit, in order (a key may repeat).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.is_empty())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_its_command_line_loads_the_example_config() {
    let help = all_help();
    let unit = unit_settings(&file("deploy/systemd/sigv4-proxy.service"));
    let get = |key: &str| -> Vec<&str> {
        unit.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("PrivateTmp", "yes"),
        ("RestartPreventExitStatus", "64"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    assert!(get("EnvironmentFile")[0].ends_with("/etc/sigv4-proxy/sigv4-proxy.env"));
    let words: Vec<String> = get("ExecStart")[0]
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(words[0].starts_with('/'), "systemd wants an absolute path");
    let env: Vec<(String, String)> = file("deploy/systemd/sigv4-proxy.env")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let inv = Invocation::new("sigv4-proxy.service", words[1..].to_vec(), env);
    check_proxy(&inv, &help);
    let config = inv.proxy().config.expect("--config");
    assert_eq!(config, PathBuf::from("/etc/sigv4-proxy/sigv4-proxy.toml"));
    // The command line, with the config path pointed at the example it installs, loads.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sigv4-proxy.toml");
    let argv: Vec<std::ffi::OsString> = inv
        .argv()
        .into_iter()
        .map(|w| {
            if w == config.to_str().unwrap() {
                example.clone().into_os_string()
            } else {
                w.into()
            }
        })
        .collect();
    let settings = sigv4_proxy::config::Config::load(&argv).unwrap();
    assert!(!settings.routes.is_empty());
    let stop = humantime::parse_duration(&format!("{}s", get("TimeoutStopSec")[0])).unwrap();
    for route in &settings.routes {
        assert!(
            stop > route.drain_timeout,
            "TimeoutStopSec outlasts the drain"
        );
    }
}

// ---- The CLI extras ----

#[test]
fn version_names_the_git_revision() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with(&format!("sigv4-proxy {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(rev) = rev {
        assert!(out.contains(&format!("(git {rev})")), "{out} lacks {rev}");
    }
}

#[test]
fn completions_cover_every_shell_and_flag() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for word in [
            "sigv4-proxy",
            "connect-to",
            "allow-unauthenticated",
            "check",
        ] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn man_prints_a_man_page() {
    let (code, out, err) = run(&["man"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(".TH sigv4-proxy 1"), "{out}");
    for section in [
        "EXAMPLES",
        "ENVIRONMENT",
        "SIGNALS",
        "EXIT STATUS",
        "SECURITY",
    ] {
        assert!(
            out.contains(&format!(".SH {section}")) || out.contains(&format!(".SH \"{section}\"")),
            "{section}"
        );
    }
}

#[test]
fn help_groups_the_flags_and_the_long_help_reads_like_a_man_page() {
    let (_, short, _) = run(&["-h"]);
    let (_, long, _) = run(&["--help"]);
    for heading in [
        "Listener:",
        "Upstream:",
        "Credentials:",
        "Security:",
        "Limits and timeouts:",
        "Logging:",
    ] {
        assert!(
            short.contains(heading) && long.contains(heading),
            "{heading}"
        );
    }
    for part in [
        "Examples:",
        "Environment:",
        "Signals:",
        "Exit status:",
        "SIGHUP",
    ] {
        assert!(long.contains(part), "{part}");
    }
    // Every flag the examples use is a real one.
    let flags = long_flags(&all_help());
    for flag in long_flags(long.split("Examples:").nth(1).unwrap()) {
        assert!(flags.contains(&flag), "{flag}");
    }
}

async fn health(args: &[String]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new(BIN)
        .arg("health")
        .args(args)
        .env_clear()
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("health ends by itself")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn health_asks_a_running_proxy_and_fails_fast_otherwise() {
    let up = TestUpstream::builder()
        .service("es")
        .region("us-east-1")
        .creds(Creds::with_token(
            "ASIAHEALTH",
            "health/secret",
            "health-token",
        ))
        .start()
        .await;
    let mut args = upstream_args(&up);
    args.extend(["--admin-listen".to_string(), "127.0.0.1:0".to_string()]);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "ASIAHEALTH".to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            "health/secret".to_string(),
        ),
        ("AWS_SESSION_TOKEN".to_string(), "health-token".to_string()),
    ];
    let mut proxy = ProxyProcess::start(&args, &env).await;
    let admin = proxy
        .stderr()
        .lines()
        .find(|l| l.contains("admin listener ready"))
        .and_then(|l| {
            let at = l.find("admin=")? + "admin=".len();
            l[at..]
                .split_whitespace()
                .next()?
                .parse::<SocketAddr>()
                .ok()
        })
        .expect("the admin address in the log");
    let (code, out, _) = health(&["--url".into(), format!("http://{admin}/healthz")]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = health(&["--url".into(), format!("http://{admin}/readyz")]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ready"), "{out}");
    let (code, out, _) = health(&["--url".into(), format!("http://{admin}/nothing")]).await;
    assert_eq!(code, Some(1), "a 404 is not healthy: {out}");
    proxy.terminate().await;

    // Nobody listening: 1, at once.
    let (code, out, took) = health(&["--url".into(), format!("http://{admin}/healthz")]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Accepts but never answers: 1 within --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (code, out, took) = health(&[
        "--url".into(),
        format!("http://{silent_addr}/healthz"),
        "--timeout".into(),
        "500ms".into(),
    ])
    .await;
    drop(silent);
    assert_eq!(code, Some(1), "{out}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(out.contains("within 500ms"), "{out}");

    let (code, _, _) = health(&["--timeout".into(), "soon".into()]).await;
    assert_eq!(code, Some(64));
}

/// `build/symbol-order.txt` (see build.rs, bench/symbol_order.py) is only worth its place when it
/// names what a request runs, in the names of the compiler the image builds with.
#[test]
fn the_symbol_order_lists_the_request_path_for_the_images_toolchain() {
    let text = file("build/symbol-order.txt");
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("# rustc "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a `# rustc X.Y.Z` line");
    let docker = file("deploy/Dockerfile");
    let pinned = docker
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION=");
    assert!(
        version.starts_with(&format!("{pinned}.")),
        "the list is rustc {version}'s names; the image builds with {pinned}: regenerate it or pin the image"
    );
    let names: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a function listed twice");
    for part in [
        "5proxy5Proxy7forward",
        "7signing6Signer4sign",
        "4body11RequestBody4read",
        "8upstream14UpstreamClient4send",
        "sha256_block_data_order",
    ] {
        assert!(
            names.iter().any(|n| n.contains(part)),
            "no `{part}` in the list: was it generated with bench/symbol_order.py's workload?"
        );
    }
}
