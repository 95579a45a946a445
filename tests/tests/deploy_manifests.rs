//! The Kubernetes manifests in `deploy/kubernetes/`: every object validates against the
//! Kubernetes API schema (strictly: an unknown or misspelt field is an error, not silently
//! dropped), and the properties the deployment relies on hold — every container runs as
//! non-root on a read-only root file system without privilege escalation or capabilities
//! and with resource limits, the worker is probed on /healthz and /readyz, the network
//! policy restricts both directions, the CronJob runs one stored workflow, and the config
//! files point at the paths the Secrets are mounted at.
//!
//! The schema check runs `kubernetes-validate` (PyPI; `./scripts/setup` installs it). The
//! property checks parse the YAML with the small block-style parser at the end of this file
//! (no YAML crate is a dependency): it accepts the subset the manifests use and refuses
//! anything else with the line number, so a construct it does not know fails the test rather
//! than being misread.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_tests::workspace_root;
use serde_json::{Map, Value};

/// The Kubernetes API version the manifests are validated against (bundled by
/// kubernetes-validate 1.37.0, which `./scripts/setup` installs).
const KUBERNETES_VERSION: &str = "1.31.0";

/// The user and group of the image (distroless `nonroot`).
const IMAGE_UID: i64 = 65532;

fn manifest_dir() -> PathBuf {
    workspace_root().join("deploy").join("kubernetes")
}

/// Every `*.yaml` in deploy/kubernetes, sorted.
fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
        .expect("deploy/kubernetes exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes");
    files
}

/// The manifests kubernetes-validate can check: all but kustomization.yaml, which is
/// kustomize's own file (the validator has no schema for it and only warns).
fn api_manifests() -> Vec<PathBuf> {
    yaml_files()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Runs kubernetes-validate on `files`; the exit status and everything it printed.
fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let out = match Command::new("kubernetes-validate")
        .arg("--strict")
        .arg("--kubernetes-version")
        .arg(KUBERNETES_VERSION)
        .args(files)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "kubernetes-validate is not on PATH: run ./scripts/setup (it pip-installs \
             kubernetes-validate; pip may put it in ~/.local/bin, which ./scripts/test adds \
             to PATH)"
        ),
        Err(e) => panic!("cannot run kubernetes-validate: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every object, from every manifest but the kustomization, with the file it came from.
fn objects() -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for path in api_manifests() {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = parse_yaml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into_iter()
            .filter(|d| !d.is_null());
        for doc in docs {
            all.push((file_name(&path), doc));
        }
    }
    all
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn one_of_kind(objects: &[(String, Value)], k: &str) -> Value {
    let found: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| kind(o) == k)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {k}, found {}",
        found.len()
    );
    found[0].clone()
}

/// The pod template's spec of a workload object (Deployment, CronJob, Job, ...).
fn pod_spec(object: &Value) -> Option<&Value> {
    match kind(object) {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            object.pointer("/spec/template/spec")
        }
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => object.pointer("/spec"),
        _ => None,
    }
}

fn pod_labels(object: &Value) -> &Value {
    let path = if kind(object) == "CronJob" {
        "/spec/jobTemplate/spec/template/metadata/labels"
    } else {
        "/spec/template/metadata/labels"
    };
    object.pointer(path).unwrap_or(&Value::Null)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(v: &Value) -> Vec<&str> {
    items(v).iter().filter_map(Value::as_str).collect()
}

/// A pod's or container's security setting: the container's, else the pod's.
fn effective<'a>(container: &'a Value, pod: &'a Value, field: &str) -> &'a Value {
    let own = &container["securityContext"][field];
    if own.is_null() {
        &pod["securityContext"][field]
    } else {
        own
    }
}

/// What is wrong with a pod spec's security and resources (`what` names it in messages).
fn pod_spec_problems(pod: &Value, what: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if pod["automountServiceAccountToken"] != Value::Bool(false) {
        problems.push(format!("{what}: automountServiceAccountToken is not false"));
    }
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == Value::Bool(true) {
            problems.push(format!("{what}: {host} is true"));
        }
    }
    let volumes = items(&pod["volumes"]);
    for v in volumes {
        if !v["hostPath"].is_null() {
            problems.push(format!("{what}: volume {} is a hostPath", v["name"]));
        }
    }
    let volume = |name: &Value| volumes.iter().find(|v| &v["name"] == name);

    let containers: Vec<&Value> = items(&pod["containers"])
        .iter()
        .chain(items(&pod["initContainers"]))
        .collect();
    if containers.is_empty() {
        problems.push(format!("{what}: no containers"));
    }
    for c in containers {
        let name = format!("{what} container {}", c["name"]);
        if effective(c, pod, "runAsNonRoot") != &Value::Bool(true) {
            problems.push(format!("{name}: runAsNonRoot is not true"));
        }
        for field in ["runAsUser", "runAsGroup"] {
            match effective(c, pod, field).as_i64() {
                Some(id) if id == IMAGE_UID => {}
                other => problems.push(format!(
                    "{name}: {field} is {other:?}, not the image's non-root {IMAGE_UID}"
                )),
            }
        }
        let sc = &c["securityContext"];
        if sc["readOnlyRootFilesystem"] != Value::Bool(true) {
            problems.push(format!("{name}: readOnlyRootFilesystem is not true"));
        }
        if sc["allowPrivilegeEscalation"] != Value::Bool(false) {
            problems.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if sc["privileged"] == Value::Bool(true) {
            problems.push(format!("{name}: privileged"));
        }
        if !strings(&sc["capabilities"]["drop"]).contains(&"ALL") {
            problems.push(format!("{name}: capabilities do not drop ALL"));
        }
        if !items(&sc["capabilities"]["add"]).is_empty() {
            problems.push(format!("{name}: capabilities are added"));
        }
        match effective(c, pod, "seccompProfile")["type"].as_str() {
            Some("RuntimeDefault") | Some("Localhost") => {}
            other => problems.push(format!("{name}: seccompProfile type is {other:?}")),
        }
        for kind in ["limits", "requests"] {
            for resource in ["cpu", "memory"] {
                if c["resources"][kind][resource].is_null() {
                    problems.push(format!("{name}: no resources.{kind}.{resource}"));
                }
            }
        }
        for m in items(&c["volumeMounts"]) {
            let mount = format!("{name} mount {}", m["mountPath"]);
            let Some(v) = volume(&m["name"]) else {
                problems.push(format!("{mount}: no volume named {}", m["name"]));
                continue;
            };
            // The only writable places are per-pod scratch volumes.
            if m["readOnly"] != Value::Bool(true) && v["emptyDir"].is_null() {
                problems.push(format!("{mount}: writable, and not an emptyDir"));
            }
            // A subPath mount of a Secret never sees a rotation.
            if !v["secret"].is_null() && !m["subPath"].is_null() {
                problems.push(format!("{mount}: a Secret mounted with subPath"));
            }
        }
    }
    problems
}

/// The container port a probe's or Service's `port` means (a number or a port name).
fn port_number(container: &Value, port: &Value) -> Option<i64> {
    if let Some(n) = port.as_i64() {
        return Some(n);
    }
    items(&container["ports"])
        .iter()
        .find(|p| &p["name"] == port)
        .and_then(|p| p["containerPort"].as_i64())
}

/// A container's command line (command then args).
fn command_line(c: &Value) -> Vec<&str> {
    let mut line = strings(&c["command"]);
    line.extend(strings(&c["args"]));
    line
}

fn mount_path<'a>(pod: &'a Value, container: &'a Value, secret: &str) -> Option<&'a str> {
    let volume = items(&pod["volumes"])
        .iter()
        .find(|v| v["secret"]["secretName"] == secret)?;
    items(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == volume["name"])
        .and_then(|m| m["mountPath"].as_str())
}

/// The quoted value of `key = "..."` in a TOML text (the config files are flat enough).
fn toml_string<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    toml.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if k.trim() != key {
            return None;
        }
        v.trim().strip_prefix('"')?.split('"').next()
    })
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schema() {
    let files = api_manifests();
    let (ok, output) = kubernetes_validate(&files);
    assert!(
        ok,
        "kubernetes-validate --strict --kubernetes-version {KUBERNETES_VERSION} failed:\n{output}"
    );
    // A kind or apiVersion it has no schema for is only a warning (exit 0): a typo in either
    // would pass unchecked, so any warning fails here.
    let warnings: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR") || l.starts_with("FATAL"))
        .collect();
    assert!(warnings.is_empty(), "kubernetes-validate warned:\n{output}");
    for f in &files {
        let passed = format!("{} passed", f.display());
        assert!(
            output.lines().any(|l| l.contains(&passed)),
            "kubernetes-validate did not report {} as passed:\n{output}",
            file_name(f)
        );
    }
}

#[test]
fn strict_validation_rejects_a_misspelt_field() {
    // Without --strict a misspelt readOnlyRootFilesystem would be dropped and the root file
    // system left writable: the validator must refuse it.
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(manifest_dir().join("worker-deployment.yaml")).unwrap();
    let broken = original.replacen("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1);
    assert_ne!(original, broken);
    let path = dir.path().join("worker-deployment.yaml");
    std::fs::write(&path, broken).unwrap();
    let (ok, output) = kubernetes_validate(&[path]);
    assert!(!ok, "a misspelt field validated:\n{output}");
    assert!(output.contains("readOnlyRootFileSystem"), "{output}");
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(manifest_dir().join("kustomization.yaml")).unwrap();
    let docs = parse_yaml(&text).unwrap_or_else(|e| panic!("kustomization.yaml: {e}"));
    assert_eq!(docs.len(), 1);
    let listed: BTreeSet<String> = strings(&docs[0]["resources"])
        .into_iter()
        .map(str::to_string)
        .collect();
    let present: BTreeSet<String> = api_manifests().iter().map(|p| file_name(p)).collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml resources and deploy/kubernetes/*.yaml differ"
    );
}

#[test]
fn every_container_is_locked_down_and_limited() {
    let objects = objects();
    let mut workloads = 0;
    let mut problems = Vec::new();
    for (file, o) in &objects {
        if let Some(pod) = pod_spec(o) {
            workloads += 1;
            problems.extend(pod_spec_problems(pod, &format!("{file} {}", kind(o))));
        }
    }
    assert!(
        workloads >= 2,
        "found {workloads} workloads, expected the worker Deployment and the CronJob"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_security_check_catches_a_weakened_container() {
    // The check above is only worth something if it fails: remove or flip each property in
    // turn and it must be named.
    let deployment = one_of_kind(&objects(), "Deployment");
    let pod = pod_spec(&deployment).unwrap().clone();
    assert!(pod_spec_problems(&pod, "worker").is_empty());
    let cases: [(&str, Option<Value>, &str); 7] = [
        (
            "/containers/0/securityContext/readOnlyRootFilesystem",
            None,
            "readOnlyRootFilesystem",
        ),
        (
            "/containers/0/securityContext/allowPrivilegeEscalation",
            Some(Value::Bool(true)),
            "allowPrivilegeEscalation",
        ),
        (
            "/containers/0/securityContext/capabilities/drop",
            Some(Value::Array(vec!["NET_RAW".into()])),
            "drop ALL",
        ),
        (
            "/containers/0/securityContext/runAsUser",
            Some(0.into()),
            "runAsUser",
        ),
        (
            "/containers/0/securityContext/runAsNonRoot",
            Some(Value::Bool(false)),
            "runAsNonRoot",
        ),
        ("/containers/0/resources/limits", None, "resources.limits"),
        ("/volumes/0/emptyDir", None, "not an emptyDir"),
    ];
    for (pointer, replacement, expect) in cases {
        let mut weakened = pod.clone();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let target = weakened
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{parent} is not in the worker's pod spec"));
        assert!(target.contains_key(field), "{pointer} is not set");
        match replacement {
            Some(v) => target.insert(field.to_string(), v),
            None => target.remove(field),
        };
        let problems = pod_spec_problems(&weakened, "worker");
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "changing {pointer} was not caught (want {expect:?}): {problems:?}"
        );
    }
}

#[test]
fn the_worker_is_probed_spread_and_scraped() {
    let d = one_of_kind(&objects(), "Deployment");
    assert!(
        d["spec"]["replicas"].as_i64().unwrap_or(1) >= 2,
        "fewer than 2 replicas"
    );
    let pod = pod_spec(&d).unwrap();
    let c = &pod["containers"][0];

    let line = command_line(c);
    assert!(
        line.contains(&"worker"),
        "the container does not run `airlock worker`: {line:?}"
    );
    let listen = line
        .iter()
        .position(|a| *a == "--listen")
        .and_then(|i| line.get(i + 1))
        .expect("--listen ADDRESS");
    assert!(listen.ends_with(":9090"), "listens on {listen}");

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} path");
        assert_eq!(port_number(c, &get["port"]), Some(9090), "{probe} port");
    }

    // SIGTERM drains: the kubelet must wait for running activities before SIGKILL.
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    assert!(grace >= 120, "terminationGracePeriodSeconds {grace} < 120");

    let spread = !items(&pod["topologySpreadConstraints"]).is_empty()
        || !pod["affinity"]["podAntiAffinity"].is_null();
    assert!(
        spread,
        "the replicas are not spread (topologySpreadConstraints or podAntiAffinity)"
    );

    let annotations = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9090");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let svc = one_of_kind(&objects(), "Service");
    for (k, v) in svc["spec"]["selector"].as_object().expect("a selector") {
        assert_eq!(
            &pod_labels(&d)[k],
            v,
            "the Service does not select the workers"
        );
    }
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port_number(c, &port["targetPort"]), Some(9090));
}

#[test]
fn the_network_policy_restricts_both_directions() {
    let objects = objects();
    let np = one_of_kind(&objects, "NetworkPolicy");
    let types = strings(&np["spec"]["policyTypes"]);
    assert!(
        types.contains(&"Ingress") && types.contains(&"Egress"),
        "policyTypes {types:?}"
    );

    // It covers every airlock pod: the worker's and the CronJob's.
    let selector = np["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .expect("podSelector.matchLabels");
    assert!(
        !selector.is_empty(),
        "the policy selects every pod of the namespace"
    );
    for k in ["Deployment", "CronJob"] {
        let labels = pod_labels(&one_of_kind(&objects, k)).clone();
        for (key, value) in selector {
            assert_eq!(
                &labels[key], value,
                "the policy does not select the {k}'s pods"
            );
        }
    }

    // Ingress: only the metrics port, only from a selected namespace.
    for rule in items(&np["spec"]["ingress"]) {
        let ports: Vec<i64> = items(&rule["ports"])
            .iter()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        assert_eq!(ports, [9090], "ingress rule {rule}");
        assert!(
            items(&rule["from"])
                .iter()
                .all(|f| !f["namespaceSelector"].is_null()),
            "ingress from outside a selected namespace: {rule}"
        );
    }

    // Egress: every rule names its destinations and ports; DNS, Temporal and the state store
    // are allowed.
    let mut allowed = BTreeSet::new();
    for rule in items(&np["spec"]["egress"]) {
        assert!(!items(&rule["to"]).is_empty(), "egress to anywhere: {rule}");
        assert!(
            !items(&rule["ports"]).is_empty(),
            "egress on any port: {rule}"
        );
        for p in items(&rule["ports"]) {
            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
            allowed.insert((protocol, p["port"].as_i64().expect("a numeric port")));
        }
    }
    for want in [("UDP", 53), ("TCP", 53), ("TCP", 7233), ("TCP", 5432)] {
        assert!(
            allowed.contains(&(want.0.to_string(), want.1)),
            "egress {want:?} is not allowed: {allowed:?}"
        );
    }
}

#[test]
fn the_cronjob_runs_one_stored_workflow_at_a_time() {
    let cj = one_of_kind(&objects(), "CronJob");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
    assert!(
        cj["spec"]["jobTemplate"]["spec"]["backoffLimit"].is_i64(),
        "no backoffLimit"
    );
    let pod = pod_spec(&cj).unwrap();
    let line = command_line(&pod["containers"][0]);
    let run = line
        .iter()
        .position(|a| *a == "run")
        .expect("`airlock run`");
    assert_eq!(line.get(run + 1), Some(&"--workflow"), "{line:?}");
    let id = line.get(run + 2).expect("a workflow id");
    assert!(!id.is_empty() && !id.starts_with('-'), "workflow id {id:?}");
}

#[test]
fn the_config_points_at_the_mounted_secrets() {
    let objects = objects();
    let cm = one_of_kind(&objects, "ConfigMap");
    let state_toml = cm["data"]["state.toml"].as_str().expect("state.toml");
    let backends_toml = cm["data"]["backends.toml"].as_str().expect("backends.toml");
    let url = toml_string(state_toml, "url").expect("state.toml url");
    assert!(url.starts_with("postgres://"), "state url {url}");
    let userinfo = url
        .trim_start_matches("postgres://")
        .split_once('@')
        .map_or("", |(u, _)| u);
    assert!(
        !userinfo.contains(':'),
        "the state url holds a password: {url}"
    );
    let password_file = toml_string(state_toml, "password_file").expect("password_file");
    let k8s_dir = toml_string(backends_toml, "dir").expect("[kubernetes] dir");

    for k in ["Deployment", "CronJob"] {
        let o = one_of_kind(&objects, k);
        let pod = pod_spec(&o).unwrap();
        let c = &pod["containers"][0];
        let state = mount_path(pod, c, "airlock-state").expect("the airlock-state mount");
        assert_eq!(
            format!("{state}/password"),
            password_file,
            "{k}: state password"
        );
        let sources = mount_path(pod, c, "airlock-source-credentials")
            .expect("the airlock-source-credentials mount");
        assert_eq!(sources, k8s_dir, "{k}: the kubernetes backend's dir");
        let home = items(&c["env"])
            .iter()
            .find(|e| e["name"] == "AIRLOCK_HOME")
            .and_then(|e| e["value"].as_str())
            .unwrap_or("/var/lib/airlock");
        for file in ["state.toml", "backends.toml"] {
            let at = format!("{home}/{file}");
            assert!(
                items(&c["volumeMounts"])
                    .iter()
                    .any(|m| m["mountPath"] == at.as_str() && m["subPath"] == file),
                "{k}: {file} is not mounted at {at}"
            );
        }
    }
}

// --- A block-style YAML subset -----------------------------------------------------------
//
// Mappings and sequences by indentation, `- key: value` items, plain, single- and
// double-quoted scalars, flow sequences of scalars, `{}` and `[]`, literal block scalars
// (`|`, `|-`), comments and `---` between documents. Anchors, aliases, tags, folded scalars,
// flow mappings with content and multi-line plain scalars are refused.

#[test]
fn the_yaml_subset_parser_reads_what_it_claims_and_refuses_the_rest() {
    let docs = parse_yaml(
        "# c\na: 1\nb:\n  - x\n  - 'y''s'\n  - k: \"v # not a comment\"\n    n: true\nc: [\"A\", b]\n\
         d: |\n  line one\n    # kept\n  two\ne: {}\nf:\n- 0440\ng: 1.5 # comment\n---\nh: ~\n",
    )
    .unwrap();
    assert_eq!(docs.len(), 2);
    let d = &docs[0];
    assert_eq!(d["a"], 1);
    assert_eq!(d["b"][0], "x");
    assert_eq!(d["b"][1], "y's");
    assert_eq!(d["b"][2]["k"], "v # not a comment");
    assert_eq!(d["b"][2]["n"], true);
    assert_eq!(d["c"], serde_json::json!(["A", "b"]));
    assert_eq!(d["d"], "line one\n  # kept\ntwo\n");
    assert_eq!(d["e"], serde_json::json!({}));
    assert_eq!(d["f"][0], "0440");
    assert_eq!(d["g"], "1.5");
    assert!(docs[1]["h"].is_null());
    for bad in [
        "a: &x 1\n",
        "a: *x\n",
        "a: !!str 1\n",
        "a: >\n  folded\n",
        "a: {b: 1}\n",
        "a: 1\na: 2\n",
        "a:\n\t- x\n",
        "a: 1\n  b: 2\n",
        "a: \"open\n",
    ] {
        assert!(parse_yaml(bad).is_err(), "accepted {bad:?}");
    }
}

/// Parses a multi-document YAML text of the subset above.
fn parse_yaml(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            docs.push(Parser::new(current, first_line).document()?);
            current = Vec::new();
            first_line = i + 2;
        } else {
            current.push(line.to_string());
        }
    }
    docs.push(Parser::new(current, first_line).document()?);
    Ok(docs)
}

struct Parser {
    lines: Vec<String>,
    pos: usize,
    first_line: usize,
}

impl Parser {
    fn new(lines: Vec<String>, first_line: usize) -> Self {
        Parser {
            lines,
            pos: 0,
            first_line,
        }
    }

    fn err(&self, msg: &str) -> String {
        format!("YAML line {}: {msg}", self.first_line + self.pos)
    }

    fn document(mut self) -> Result<Value, String> {
        if self.peek()?.is_none() {
            return Ok(Value::Null);
        }
        let v = self.node(0)?;
        if self.peek()?.is_some() {
            return Err(self.err("unexpected indentation"));
        }
        Ok(v)
    }

    /// Skips blank and comment lines; the indentation and content of the next line.
    fn peek(&mut self) -> Result<Option<(usize, String)>, String> {
        while let Some(line) = self.lines.get(self.pos) {
            let content = line.trim_start_matches(' ');
            if content.starts_with('\t') {
                return Err(self.err("tab in indentation"));
            }
            if content.trim().is_empty() || content.starts_with('#') {
                self.pos += 1;
                continue;
            }
            return Ok(Some((
                line.len() - content.len(),
                content.trim_end().to_string(),
            )));
        }
        Ok(None)
    }

    /// A mapping or a sequence whose first line is at `indent` or deeper.
    fn node(&mut self, indent: usize) -> Result<Value, String> {
        let (at, content) = self.peek()?.ok_or_else(|| self.err("missing value"))?;
        if at < indent {
            return Err(self.err("missing value"));
        }
        if is_item(&content) {
            self.sequence(at)
        } else {
            self.mapping(at)
        }
    }

    fn sequence(&mut self, indent: usize) -> Result<Value, String> {
        let mut out = Vec::new();
        while let Some((at, content)) = self.peek()? {
            if at < indent || (at == indent && !is_item(&content)) {
                break;
            }
            if at > indent {
                return Err(self.err("unexpected indentation"));
            }
            let rest = content[1..].trim_start_matches(' ');
            if rest.is_empty() || rest.starts_with('#') {
                self.pos += 1;
                out.push(self.node(indent + 1)?);
            } else if key_of(rest).is_some() {
                // `- key: value`: the item is a mapping at the key's column.
                let column = indent + (content.len() - rest.len());
                self.lines[self.pos] = format!("{}{rest}", " ".repeat(column));
                out.push(self.mapping(column)?);
            } else {
                out.push(scalar(rest).map_err(|e| self.err(&e))?);
                self.pos += 1;
            }
        }
        Ok(Value::Array(out))
    }

    fn mapping(&mut self, indent: usize) -> Result<Value, String> {
        let mut out = Map::new();
        while let Some((at, content)) = self.peek()? {
            if at < indent || (at == indent && is_item(&content)) {
                break;
            }
            if at > indent {
                return Err(self.err("unexpected indentation"));
            }
            let (key, rest) = key_of(&content).ok_or_else(|| self.err("expected `key: value`"))?;
            if out.contains_key(key) {
                return Err(self.err(&format!("duplicate key {key}")));
            }
            let key = key.to_string();
            let rest = strip_comment(rest).trim().to_string();
            self.pos += 1;
            let value = if rest.is_empty() {
                match self.peek()? {
                    Some((next, _)) if next > indent => self.node(indent + 1)?,
                    // A sequence may sit at its key's own column.
                    Some((next, c)) if next == indent && is_item(&c) => self.sequence(indent)?,
                    _ => Value::Null,
                }
            } else if rest == "|" || rest == "|-" {
                self.literal(indent, rest == "|")
            } else {
                scalar(&rest).map_err(|e| self.err(&e))?
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    /// A literal block scalar: the lines indented deeper than its key, comments included.
    fn literal(&mut self, indent: usize, keep_newline: bool) -> Value {
        let mut body: Vec<&str> = Vec::new();
        let mut end = self.pos;
        while let Some(line) = self.lines.get(end) {
            let depth = line.len() - line.trim_start_matches(' ').len();
            if !line.trim().is_empty() && depth <= indent {
                break;
            }
            body.push(line);
            end += 1;
        }
        while body.last().is_some_and(|l| l.trim().is_empty()) {
            body.pop();
        }
        let margin = body
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())
            .min()
            .unwrap_or(0);
        let mut text = body
            .iter()
            .map(|l| l.get(margin..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        if keep_newline && !text.is_empty() {
            text.push('\n');
        }
        self.pos = end;
        Value::String(text)
    }
}

fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// `key: rest` or `key:` with a plain key.
fn key_of(content: &str) -> Option<(&str, &str)> {
    if content.starts_with(['"', '\'', '[', '{', '-', '#', '&', '*', '!', '|', '>']) {
        return None;
    }
    let end = content
        .find(": ")
        .or_else(|| content.strip_suffix(':').map(str::len))?;
    let key = &content[..end];
    (!key.is_empty() && !key.contains(" #")).then(|| (key, &content[end + 1..]))
}

/// Drops a ` #` comment outside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, ch) in s.char_indices() {
        match quote {
            Some(q) if ch == q => quote = None,
            Some(_) => {}
            None if ch == '"' || ch == '\'' => quote = Some(ch),
            None if ch == '#' && prev == ' ' => return &s[..i],
            None => {}
        }
        prev = ch;
    }
    s
}

fn scalar(text: &str) -> Result<Value, String> {
    let s = strip_comment(text).trim();
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '"' if chars.as_str().trim().is_empty() => return Ok(Value::String(out)),
                '"' => return Err(format!("text after a quoted string: {s}")),
                '\\' => match chars.next() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    other => return Err(format!("unsupported escape \\{other:?}")),
                },
                _ => out.push(ch),
            }
        }
        return Err(format!("unterminated string: {s}"));
    }
    if let Some(body) = s.strip_prefix('\'') {
        let inner = body
            .strip_suffix('\'')
            .ok_or_else(|| format!("unterminated string: {s}"))?;
        if inner.replace("''", "").contains('\'') {
            return Err(format!("text after a quoted string: {s}"));
        }
        return Ok(Value::String(inner.replace("''", "'")));
    }
    if s == "{}" {
        return Ok(Value::Object(Map::new()));
    }
    if let Some(body) = s.strip_prefix('[') {
        let inner = body
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated flow sequence: {s}"))?;
        if inner.trim().is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        return inner
            .split(',')
            .map(|item| match item.trim() {
                i if i.starts_with(['[', '{']) => Err(format!("nested flow collection: {s}")),
                i => scalar(i),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if s.starts_with(['{', '&', '*', '!', '>', '|', '@', '`', '%']) {
        return Err(format!("unsupported YAML: {s}"));
    }
    Ok(match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" => Value::Null,
        // Decimal integers only: 0440 (octal in YAML 1.1) and 1.5 stay text.
        _ if is_decimal(s) => s
            .parse::<i64>()
            .map(Value::from)
            .map_err(|e| e.to_string())?,
        _ => Value::String(s.to_string()),
    })
}

fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}
