//! Where users run it: the files in `deploy/` (Dockerfile, compose, Kubernetes, systemd) checked
//! against the binary — every flag and `SIGV4_PROXY_*` variable they use exists and parses,
//! ports agree between listeners, probes, Services and clients — and the small tools packaging
//! relies on: `--version` with the git revision, `man`, `completions` and `health`.
//!
//! No container engine runs here, so nothing is built or deployed; what can be checked without
//! one is checked against the real command-line definitions.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use clap::CommandFactory;
use serde_norway::Value;
use sigv4_proxy::cli::Cli;

use crate::support::proxy::upstream_args;
use crate::support::{Creds, ProxyProcess, TestUpstream};

const BIN: &str = env!("CARGO_BIN_EXE_sigv4-proxy");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Process::new(BIN)
        .args(args)
        .env_clear()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run sigv4-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// Checking an invocation against the binary
// ---------------------------------------------------------------------------

/// What a deploy file asks of the binary, once checked.
#[derive(Debug)]
struct Invocation {
    matches: clap::ArgMatches,
}

impl Invocation {
    fn value(&self, id: &str) -> Option<String> {
        self.matches
            .get_raw(id)
            .and_then(|mut v| v.next())
            .map(|v| v.to_string_lossy().into_owned())
    }

    fn flag(&self, id: &str) -> bool {
        self.matches.get_flag(id)
    }

    fn listen(&self) -> SocketAddr {
        self.value("listen").unwrap().parse().unwrap()
    }

    fn admin_listen(&self) -> Option<SocketAddr> {
        self.value("admin_listen").map(|a| a.parse().unwrap())
    }

    fn drain_timeout(&self) -> Duration {
        humantime::parse_duration(&self.value("drain_timeout").unwrap()).unwrap()
    }

    fn authenticated_or_allowed(&self) -> bool {
        self.value("htpasswd").is_some()
            || self.value("token_file").is_some()
            || self.flag("allow_unauthenticated")
    }
}

/// `--help` of the real binary: the flags and variables a deploy file may use.
fn help_text() -> String {
    let (code, help, _) = run(&["--help"]);
    assert_eq!(code, 0);
    help
}

/// Checks `args` and `env` (only the `SIGV4_PROXY_*` ones matter) the way the binary reads them:
/// every flag and variable is in `--help`, every variable belongs to a flag, and the whole
/// command line (variables turned into their flags; flags win, as at run time) parses with the
/// binary's own clap definitions (types, conflicts, requirements).
fn check_invocation(what: &str, args: &[String], env: &[(String, String)]) -> Invocation {
    let help = help_text();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{what}: {flag} is not in `sigv4-proxy --help`"
        );
    }
    let cmd = Cli::command();
    let mut argv: Vec<String> = vec!["sigv4-proxy".into()];
    for (name, value) in env.iter().filter(|(n, _)| n.starts_with("SIGV4_PROXY_")) {
        assert!(
            help.contains(&format!("[env: {name}=")),
            "{what}: {name} is not in `sigv4-proxy --help`"
        );
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("{what}: {name} belongs to no flag"));
        match arg.get_long() {
            Some(long) if args.iter().any(|a| a == &format!("--{long}")) => {}
            Some(long) => {
                if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                    if matches!(value.as_str(), "true" | "1" | "yes" | "on") {
                        argv.push(format!("--{long}"));
                    }
                } else if matches!(arg.get_action(), clap::ArgAction::Count) {
                    for _ in 0..value.parse::<usize>().unwrap() {
                        argv.push(format!("--{long}"));
                    }
                } else {
                    argv.push(format!("--{long}={value}"));
                }
            }
            // The positional ENDPOINT.
            None if args.iter().any(|a| !a.starts_with('-')) => {}
            None => argv.push(value.clone()),
        }
    }
    argv.extend(args.iter().cloned());
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: the binary rejects {argv:?}:\n{e}"));
    Invocation { matches }
}

/// `${VAR:?message}`, `${VAR:-default}` and `${VAR}` as compose resolves them, with `values`
/// for the variables a user sets.
fn interpolate(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        let inner = &rest[start + 2..end];
        let name_end = inner.find([':', '-', '?']).unwrap_or(inner.len());
        let (name, modifier) = inner.split_at(name_end);
        let given = values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let value = match (given, modifier) {
            (Some(v), _) => v.to_string(),
            (None, m) if m.starts_with(":-") => m[2..].to_string(),
            (None, m) => panic!("${{{name}}} needs a value ({m})"),
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn yaml_documents(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|seq| seq.iter().map(s).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

/// Instructions of a Dockerfile: (KEYWORD, rest), continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

/// `ENV A=1 B=2` pairs.
fn env_pairs(rest: &str) -> Vec<(String, String)> {
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn dockerfile_is_multi_stage_distroless_non_root_with_a_healthcheck_the_binary_answers() {
    let text = read("deploy/Dockerfile");
    let all = dockerfile_instructions(&text);
    let froms: Vec<usize> = (0..all.len()).filter(|&i| all[i].0 == "FROM").collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last = &all[*froms.last().unwrap()..];
    let base = &last[0].1;
    assert!(
        base.contains("distroless") || base.starts_with("scratch"),
        "small final image: {base}"
    );
    assert!(
        all.iter()
            .any(|(k, r)| k == "RUN" && r.contains("cargo build --release --locked")),
        "a locked release build"
    );

    let get = |kw: &str| -> Vec<&String> {
        last.iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, r)| r)
            .collect()
    };
    let user = get("USER");
    assert_eq!(user.len(), 1, "one USER in the final stage");
    let uid = user[0].split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root: {uid}");

    let entrypoint: Vec<String> =
        serde_json::from_str(get("ENTRYPOINT")[0]).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint.len(), 1, "{entrypoint:?}");
    assert!(
        get("COPY")
            .iter()
            .any(|c| c.starts_with("--from=") && c.ends_with(&entrypoint[0])),
        "the binary is copied to {}",
        entrypoint[0]
    );

    let env: Vec<(String, String)> = get("ENV").iter().flat_map(|r| env_pairs(r)).collect();
    let image = check_invocation(
        "Dockerfile ENV",
        &["https://search-logs-abc123.us-east-1.es.amazonaws.com".into()],
        &env,
    );
    let admin = image
        .admin_listen()
        .expect("the image turns the admin listener on");

    // HEALTHCHECK [options] CMD ["…", "health", …]: the binary itself, no shell.
    let healthcheck = get("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1);
    let cmd_at = healthcheck[0].find("CMD ").expect("HEALTHCHECK CMD");
    let argv: Vec<String> = serde_json::from_str(&healthcheck[0][cmd_at + 4..])
        .expect("HEALTHCHECK CMD in exec form (the image has no shell)");
    assert_eq!(argv[0], entrypoint[0]);
    assert_eq!(argv[1], "health");
    let cli = <Cli as clap::Parser>::try_parse_from(&argv).expect("health arguments parse");
    let Some(sigv4_proxy::cli::Command::Health(health)) = cli.command else {
        panic!("not the health subcommand: {argv:?}");
    };
    let url: http::Uri = health.url.parse().unwrap();
    assert_eq!(url.path(), "/healthz");
    assert_eq!(
        url.port_u16(),
        Some(admin.port()),
        "HEALTHCHECK asks the admin port"
    );
    let timeout = humantime::parse_duration(&health.timeout).unwrap();
    let option_timeout = healthcheck[0]
        .split_whitespace()
        .find_map(|o| o.strip_prefix("--timeout="))
        .map(|t| humantime::parse_duration(t).unwrap())
        .expect("HEALTHCHECK --timeout");
    assert!(
        timeout < option_timeout,
        "health gives up before docker does"
    );

    let exposed: Vec<u16> = get("EXPOSE")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(exposed.contains(&image.listen().port()), "{exposed:?}");
    assert!(exposed.contains(&admin.port()), "{exposed:?}");

    // The build context: no target/ (gigabytes) and no node_modules in it.
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

// ---------------------------------------------------------------------------
// docker compose
// ---------------------------------------------------------------------------

#[test]
fn compose_runs_dashboards_against_the_proxy_with_security_disabled() {
    let text = interpolate(
        &read("deploy/docker-compose.yml"),
        &[
            (
                "OPENSEARCH_ENDPOINT",
                "https://search-logs-abc123.us-east-1.es.amazonaws.com",
            ),
            ("HOME", "/home/user"),
        ],
    );
    let doc: Value = serde_norway::from_str(&text).expect("compose file is YAML");
    let services = &doc["services"];
    let proxy = &services["sigv4-proxy"];
    let dashboards = &services["dashboards"];

    let dockerfile = Path::new(&s(&proxy["build"]["dockerfile"])).to_path_buf();
    assert!(
        repo("deploy")
            .join(s(&proxy["build"]["context"]))
            .join(&dockerfile)
            .exists(),
        "the compose build finds {dockerfile:?}"
    );
    let env: Vec<(String, String)> = proxy["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k), s(v)))
        .collect();
    let command = strings(&proxy["command"]);
    let inv = check_invocation("docker-compose.yml sigv4-proxy", &command, &env);
    assert!(
        inv.listen().ip().is_loopback() || inv.authenticated_or_allowed(),
        "the proxy would refuse to start"
    );

    // Dashboards: in the proxy's network namespace, pointed at its listen port.
    assert_eq!(s(&dashboards["network_mode"]), "service:sigv4-proxy");
    assert!(s(&dashboards["image"]).starts_with("opensearchproject/opensearch-dashboards:"));
    let hosts: Vec<String> =
        serde_json::from_str(&s(&dashboards["environment"]["OPENSEARCH_HOSTS"])).unwrap();
    assert_eq!(
        hosts,
        vec![format!("http://localhost:{}", inv.listen().port())]
    );
    assert_eq!(
        s(&dashboards["environment"]["DISABLE_SECURITY_DASHBOARDS_PLUGIN"]),
        "true"
    );
    assert_eq!(
        s(&dashboards["depends_on"]["sigv4-proxy"]["condition"]),
        "service_healthy",
        "Dashboards waits for the image's HEALTHCHECK"
    );
    // Dashboards' port is published on the namespace owner, the proxy service.
    let ports = strings(&proxy["ports"]);
    assert!(
        ports.iter().any(|p| p.ends_with(":5601")),
        "Dashboards' 5601 published: {ports:?}"
    );
    // The AWS files are mounted where the variables say.
    let volumes = strings(&proxy["volumes"]);
    let config_file = env
        .iter()
        .find(|(k, _)| k == "AWS_CONFIG_FILE")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        volumes.iter().any(|v| {
            let target = v.split(':').nth(1).unwrap();
            config_file.starts_with(&format!("{target}/"))
        }),
        "{config_file} is inside a mounted volume: {volumes:?}"
    );
    // Longer than the drain, so `docker compose down` lets requests finish.
    let grace = humantime::parse_duration(&s(&proxy["stop_grace_period"])).unwrap();
    assert!(grace > inv.drain_timeout());
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| s(&d["kind"]) == kind).collect()
}

/// The proxy container of a pod spec (in `containers` or, as a native sidecar, in
/// `initContainers` with `restartPolicy: Always`).
fn proxy_container(pod: &Value) -> &Value {
    let mut found = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in pod[list].as_sequence().into_iter().flatten() {
            if s(&c["image"]).contains("sigv4-proxy") {
                if list == "initContainers" {
                    assert_eq!(
                        s(&c["restartPolicy"]),
                        "Always",
                        "an init container proxy must be a native sidecar"
                    );
                }
                found.push(c);
            }
        }
    }
    assert_eq!(found.len(), 1, "one proxy container");
    found[0]
}

fn container_env(c: &Value) -> Vec<(String, String)> {
    c["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| (s(&e["name"]), s(&e["value"])))
        .collect()
}

fn container_port(c: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().unwrap() as u16,
        Value::String(name) => c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| s(&p["name"]) == *name)
            .map(|p| p["containerPort"].as_u64().unwrap() as u16)
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("port {other:?}"),
    }
}

/// Checks what every proxy Deployment must get right, and returns the proxy's invocation.
fn check_proxy_deployment(file: &str, docs: &[Value], deployment: &Value) -> Invocation {
    let pod = &deployment["spec"]["template"]["spec"];
    let c = proxy_container(pod);
    let inv = check_invocation(
        &format!("{file} {}", s(&c["name"])),
        &strings(&c["args"]),
        &container_env(c),
    );
    assert!(
        inv.listen().ip().is_loopback() || inv.authenticated_or_allowed(),
        "{file}: the proxy would refuse a non-loopback listener without authentication"
    );
    if let Some(htpasswd) = inv.value("htpasswd") {
        let mounted = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|m| htpasswd.starts_with(&format!("{}/", s(&m["mountPath"]))));
        assert!(mounted, "{file}: {htpasswd} is on a mounted volume");
    }

    // Probes: the admin port, reachable from the kubelet (pod IP), the right paths.
    let admin = inv.admin_listen().expect("admin listener on for probes");
    assert!(
        admin.ip().is_unspecified(),
        "{file}: httpGet probes reach the pod IP, not loopback ({admin})"
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(&get["path"]), path, "{file} {probe}");
        assert_eq!(
            container_port(c, &get["port"]),
            admin.port(),
            "{file} {probe} port"
        );
    }
    // /readyz may wait up to 5 s for credentials or its probe.
    assert!(c["readinessProbe"]["timeoutSeconds"].as_u64().unwrap() > 5);

    // Shutdown: preStop pause + drain fit in the grace period.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep (no shell in the image)");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > pre_stop + inv.drain_timeout().as_secs(),
        "{file}: grace {grace}s ≤ preStop {pre_stop}s + drain {:?}",
        inv.drain_timeout()
    );

    // Hardening and sizing.
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(strings(&sc["capabilities"]["drop"]), vec!["ALL"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    let tmp_mounted = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| s(&m["mountPath"]) == "/tmp");
    assert!(tmp_mounted, "{file}: a writable /tmp for spooled bodies");
    for key in ["cpu", "memory"] {
        assert!(
            !c["resources"]["requests"][key].is_null(),
            "{file}: requests.{key}"
        );
    }
    assert!(!c["resources"]["limits"]["memory"].is_null());

    // Credentials: the ServiceAccount with the IRSA annotation.
    let sa_name = s(&pod["serviceAccountName"]);
    let sa = kind(docs, "ServiceAccount")
        .into_iter()
        .find(|sa| s(&sa["metadata"]["name"]) == sa_name)
        .unwrap_or_else(|| panic!("{file}: ServiceAccount {sa_name}"));
    let role = s(&sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]);
    assert!(role.starts_with("arn:aws:iam::"), "{role}");
    inv
}

#[test]
fn kubernetes_sidecar_probes_the_admin_port_and_the_app_uses_the_proxy_port() {
    let file = "deploy/kubernetes/sidecar.yaml";
    let docs = yaml_documents(file);
    let deployments = kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let inv = check_proxy_deployment(file, &docs, deployments[0]);
    assert!(
        inv.listen().ip().is_loopback(),
        "a sidecar listens on loopback only"
    );
    let pod = &deployments[0]["spec"]["template"]["spec"];
    let app = &pod["containers"][0];
    let url = container_env(app)
        .into_iter()
        .find(|(k, _)| k == "OPENSEARCH_URL")
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{}", inv.listen().port()));
}

#[test]
fn kubernetes_shared_deployment_has_service_hpa_pdb_and_a_long_enough_grace() {
    let file = "deploy/kubernetes/shared.yaml";
    let docs = yaml_documents(file);
    let deployments = kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let deployment = deployments[0];
    let inv = check_proxy_deployment(file, &docs, deployment);
    let name = s(&deployment["metadata"]["name"]);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let c = proxy_container(&deployment["spec"]["template"]["spec"]);
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);

    let services = kind(&docs, "Service");
    assert_eq!(services.len(), 1);
    let svc = services[0];
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[s(k).as_str()], v, "Service selects the pods");
    }
    let port = &svc["spec"]["ports"][0];
    assert_eq!(
        container_port(c, &port["targetPort"]),
        inv.listen().port(),
        "Service targets the proxy port"
    );
    assert_ne!(
        container_port(c, &port["targetPort"]),
        inv.admin_listen().unwrap().port(),
        "the admin port is in no Service"
    );

    let hpa = kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa.len(), 1);
    let hpa = &hpa[0]["spec"];
    assert_eq!(s(&hpa["scaleTargetRef"]["kind"]), "Deployment");
    assert_eq!(s(&hpa["scaleTargetRef"]["name"]), name);
    assert!(hpa["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(s(&hpa["metrics"][0]["resource"]["name"]), "cpu");
    // CPU utilisation needs a CPU request to be measured against.
    assert!(!c["resources"]["requests"]["cpu"].is_null());

    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    for (k, v) in pdb[0]["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(&labels[s(k).as_str()], v, "PDB selects the pods");
    }
    assert!(
        pdb[0]["spec"]["minAvailable"].as_u64().unwrap() < hpa["minReplicas"].as_u64().unwrap(),
        "a drain can still evict one pod"
    );

    // The NetworkPolicy opens exactly the proxy and admin ports.
    let np = kind(&docs, "NetworkPolicy");
    let mut opened: Vec<u16> = np[0]["spec"]["ingress"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().unwrap().iter())
        .map(|p| p["port"].as_u64().unwrap() as u16)
        .collect();
    opened.sort();
    let mut expected = vec![inv.listen().port(), inv.admin_listen().unwrap().port()];
    expected.sort();
    assert_eq!(opened, expected);
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// `[Section]` → key → values (keys may repeat).
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        out.entry(section.clone())
            .or_default()
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_its_config_file_loads() {
    let text = read("deploy/systemd/sigv4-proxy.service");
    let unit = unit_file(&text);
    let service = &unit["Service"];
    let one = |k: &str| -> &str {
        service
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("[Service] {k}"))
    };
    let exec: Vec<String> = one("ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(exec[0], "/usr/local/bin/sigv4-proxy");
    let env: Vec<(String, String)> = service
        .get("Environment")
        .into_iter()
        .flatten()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let inv = check_invocation("sigv4-proxy.service", &exec[1..], &env);

    // The config file it names is the one shipped beside it, and it loads as the binary would.
    let config = inv.value("config").expect("--config");
    assert_eq!(config, "/etc/sigv4-proxy/sigv4-proxy.toml");
    let shipped = repo("deploy/systemd/sigv4-proxy.toml");
    let settings = sigv4_proxy::config_file::Settings::load(&[
        "sigv4-proxy".into(),
        "--config".into(),
        shipped.into_os_string(),
    ])
    .expect("deploy/systemd/sigv4-proxy.toml loads");
    assert_eq!(settings.routes.len(), 1);
    let route = &settings.routes[0];
    assert!(route.listen.ip().is_loopback());
    let stop = humantime::parse_duration(one("TimeoutStopSec")).unwrap();
    assert!(
        stop > route.drain_timeout,
        "TimeoutStopSec {stop:?} ≤ drain-timeout {:?}",
        route.drain_timeout
    );
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert!(one("ExecReload").contains("-HUP $MAINPID"));

    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictNamespaces", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    assert!(one("RestrictAddressFamilies").contains("AF_INET6"));

    // systemd's own parser, where it is installed: no unknown keys or bad values.
    if let Ok(out) = Process::new("systemd-analyze").arg("--version").output() {
        if out.status.success() {
            let dir = tempfile::tempdir().unwrap();
            let unit_path = dir.path().join("sigv4-proxy.service");
            let local = text
                .replace("/usr/local/bin/sigv4-proxy", BIN)
                .lines()
                .filter(|l| !l.starts_with("Documentation="))
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&unit_path, local).unwrap();
            let out = Process::new("systemd-analyze")
                .arg("verify")
                .arg(&unit_path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && err.trim().is_empty(),
                "systemd-analyze verify:\n{err}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// --version, man, completions, health
// ---------------------------------------------------------------------------

#[test]
fn version_names_the_git_revision() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    let out = out.trim();
    let rev = out
        .strip_prefix(&format!("sigv4-proxy {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{out}`"));
    let head = Process::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(head) => assert_eq!(rev, head, "built from HEAD"),
        None => assert_eq!(rev, "unknown"),
    }
}

#[test]
fn man_page_documents_every_flag_subcommand_and_example() {
    let (code, page, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH sigv4-proxy 1"), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "EXAMPLES",
        "ENVIRONMENT",
        "EXIT STATUS",
    ] {
        assert!(
            page.contains(&format!(".SH {section}\n"))
                || page.contains(&format!(".SH \"{section}\"\n")),
            "section {section}"
        );
    }
    for arg in Cli::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(page.contains(&escaped), "--{long} in the man page");
        }
    }
    for sub in ["check", "health", "completions", "man"] {
        assert!(page.contains(sub), "subcommand {sub}");
    }
    // Rendered by man(1) where it exists: examples stay one per line.
    if let Ok(out) = Process::new("man").arg("--version").output() {
        if out.status.success() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sigv4-proxy.1");
            std::fs::write(&path, &page).unwrap();
            let out = Process::new("man")
                .arg("-l")
                .arg(&path)
                .env("MANWIDTH", "120")
                .env("MAN_KEEP_FORMATTING", "0")
                .env("PAGER", "cat")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.lines()
                    .any(|l| l.trim() == "curl 'localhost:9200/_cat/indices?v'"),
                "examples are not filled into paragraphs:\n{text}"
            );
        }
    }
}

#[test]
fn completions_for_each_shell_know_the_flags_and_subcommands() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, err) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["connect-to", "admin-listen", "health", "check"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let (_, bash, _) = run(&["completions", "bash"]);
    let out = Process::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bash.as_bytes())?;
            child.wait_with_output()
        })
        .expect("bash");
    assert!(out.status.success(), "bash -n accepts the script");
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "unknown shell is a usage error: {err}");
}

#[tokio::test]
async fn health_asks_a_running_proxys_admin_listener() {
    let creds = Creds::new("AKIDEPLOYTEST", "deploy/secret");
    let up = TestUpstream::start_for("es", creds.clone()).await;
    let mut args = upstream_args(&up);
    args.extend(["--admin-listen".into(), "127.0.0.1:0".into()]);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), creds.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), creds.secret.clone()),
    ];
    let mut proxy = ProxyProcess::start(&args, &env).await;
    let logs = proxy.stderr();
    let admin: SocketAddr = logs
        .lines()
        .find(|l| l.contains("admin listener ready"))
        .and_then(|l| l.split("admin=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in the logs:\n{logs}"));

    let health = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(BIN)
            .args(&args)
            .env_clear()
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = format!("http://{admin}/healthz");
    let (code, err) = health(vec!["health".into(), "--url".into(), url.clone()]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "a passing check is quiet: {err}");

    let (code, err) = health(vec![
        "health".into(),
        "--url".into(),
        format!("http://{admin}/nonexistent"),
    ])
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("answered 404"), "{err}");

    let status = proxy.terminate().await;
    assert!(status.success());
    let (code, err) = health(vec![
        "health".into(),
        "--url".into(),
        url,
        "--timeout".into(),
        "2s".into(),
    ])
    .await;
    assert_eq!(code, Some(1), "a stopped proxy is unhealthy");
    assert!(err.contains("refused"), "{err}");
}

// ---------------------------------------------------------------------------
// Sizing: the figures behind the Kubernetes resources (docs/user-guide.md, "Sizing")
// ---------------------------------------------------------------------------

/// `VmRSS` and `VmHWM` of `pid` in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Measures the proxy's memory idle and under a small load. Not part of the suite (it takes
/// ~25 s and wants a release build):
///
/// ```text
/// cargo build --release
/// SIGV4_PROXY_MEASURE_BIN=target/release/sigv4-proxy \
///   cargo test --test integration deploy::measure_memory -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_memory() {
    use crate::support::http::send;
    let bin = std::env::var("SIGV4_PROXY_MEASURE_BIN").unwrap_or_else(|_| BIN.to_string());
    let creds = Creds::new("AKIDMEASURE", "measure/secret");
    let up = TestUpstream::start_for("es", creds.clone()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = upstream_args(&up);
    let listen_at = args.iter().position(|a| a == "--listen").unwrap();
    args[listen_at + 1] = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(&bin)
        .args(&args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", &creds.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = memory_kib(pid);

    // 32 clients, each a loop of searches with a 16 KiB body and a 256 KiB bulk every 8th.
    let clients = 32;
    let run_for = Duration::from_secs(15);
    let bulk = bytes::Bytes::from(vec![b'x'; 256 * 1024]);
    let search = bytes::Bytes::from(vec![b'q'; 16 * 1024]);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (bulk, search) = (bulk.clone(), search.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < run_for {
                let (path, body) = if (n + c) % 8 == 0 {
                    ("/_bulk", bulk.clone())
                } else {
                    ("/logs-*/_search", search.clone())
                };
                let resp = send(
                    addr,
                    "POST",
                    path,
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
                assert_eq!(resp.status, 200);
                n += 1;
            }
            n
        }));
    }
    let mut peak = 0;
    while start.elapsed() < run_for {
        peak = peak.max(memory_kib(pid).0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap();
    }
    let (after, hwm) = memory_kib(pid);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = cpu.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    println!(
        "binary {bin}\nidle RSS {idle} KiB\nunder load ({clients} clients, {run_for:?}, {requests} requests, \
         {:.0} req/s): peak sampled RSS {peak} KiB, VmHWM {hwm} KiB, after {after} KiB\nCPU time {:.2} s \
         (user+sys, whole run)",
        requests as f64 / run_for.as_secs_f64(),
        ticks as f64 / 100.0
    );
    child.kill().await.ok();
}
