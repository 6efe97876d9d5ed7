//! deploy/kubernetes/*.yaml, checked offline: every document parses and is
//! one of the expected objects, the objects agree with each other (labels,
//! names, ports), the ConfigMap's gateway.toml loads and validates with the
//! gateway's own loader, the pods run as the image's non-root user and drain
//! before they stop (readiness, preStop, a grace period longer than the
//! preStop sleep plus http.shutdown_timeout). When kubectl is on PATH,
//! `kubectl create --dry-run=client` reads the directory too, against an API
//! server address it never reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_cache_gateway::config::{Cli, Loaded, load};
use serde::Deserialize;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// One YAML document of the directory and the file it is in.
struct Manifest {
    file: String,
    object: Value,
}

/// Every document of every `.yaml`/`.yml` file, in file order (what `kubectl
/// apply -f deploy/kubernetes/` reads).
fn manifests() -> Vec<Manifest> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .expect("deploy/kubernetes exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    let mut manifests = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // One document per `---`; serde_norway's deserializer yields each.
        for document in serde_norway::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !object.is_null() {
                manifests.push(Manifest { file: file.clone(), object });
            }
        }
    }
    manifests
}

/// The one object of `kind`.
fn object<'a>(manifests: &'a [Manifest], kind: &str) -> &'a Value {
    let mut found = manifests.iter().filter(|m| m.object["kind"] == kind);
    let first = found.next().unwrap_or_else(|| panic!("a {kind}"));
    assert!(found.next().is_none(), "one {kind}");
    &first.object
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// The Deployment's one container.
fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container: the gateway");
    &containers[0]
}

/// The container port a probe or Service names, by name or by number.
fn container_port(container: &Value, port: &Value) -> u64 {
    let ports = container["ports"].as_array().expect("containerPorts");
    let found = match port {
        Value::String(name) => ports.iter().find(|p| p["name"] == *name),
        Value::Number(_) => ports.iter().find(|p| p["containerPort"] == *port),
        other => panic!("a port is a name or a number, not {other}"),
    };
    found.unwrap_or_else(|| panic!("port {port} is one of the container's"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// The ConfigMap's gateway.toml, read by the gateway's own loader from a
/// file, with `env` as the process environment.
fn load_gateway_toml(toml: &str, env: Vec<(String, String)>) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let cli = Cli { config: Some(path), ..Cli::default() };
    load(&cli, env).unwrap_or_else(|e| panic!("the ConfigMap's gateway.toml: {e}"))
}

/// The ConfigMap's gateway.toml.
fn gateway_toml(manifests: &[Manifest]) -> String {
    let config_map = object(manifests, "ConfigMap");
    config_map["data"]["gateway.toml"].as_str().expect("data.gateway.toml").to_owned()
}

/// The environment variables the container sets with a literal value.
fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| Some((var["name"].as_str()?.to_owned(), var["value"].as_str()?.to_owned())))
        .collect()
}

/// The seconds of the preStop hook's sleep (`sleep: {seconds}` or a `sleep N` command).
fn pre_stop_sleep(container: &Value) -> Duration {
    let pre_stop = &container["lifecycle"]["preStop"];
    if let Some(seconds) = pre_stop["sleep"]["seconds"].as_u64() {
        return Duration::from_secs(seconds);
    }
    let command = strings(&pre_stop["exec"]["command"]).join(" ");
    let seconds = command
        .split_once("sleep ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("preStop sleeps: {command:?}"));
    Duration::from_secs(seconds)
}

/// A Kubernetes memory quantity (`512Mi`, `1Gi`, `500M`) in bytes.
fn memory_bytes(quantity: &str) -> u64 {
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().unwrap() * factor;
        }
    }
    quantity.parse().unwrap_or_else(|_| panic!("memory quantity {quantity:?}"))
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label selector");
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// The objects kubectl names for the manifests: `kind.group/name`.
fn object_names(manifests: &[Manifest]) -> BTreeSet<String> {
    manifests
        .iter()
        .map(|m| {
            let kind = m.object["kind"].as_str().unwrap().to_ascii_lowercase();
            let group = m.object["apiVersion"].as_str().unwrap().rsplit_once('/').map(|(group, _)| group);
            let name = m.object["metadata"]["name"].as_str().unwrap();
            match group {
                Some(group) => format!("{kind}.{group}/{name}"),
                None => format!("{kind}/{name}"),
            }
        })
        .collect()
}

#[test]
fn every_manifest_is_one_expected_object() {
    let manifests = manifests();
    let found: BTreeMap<&str, (&str, &str)> = manifests
        .iter()
        .map(|m| {
            let kind = m.object["kind"].as_str().unwrap_or_else(|| panic!("{}: kind", m.file));
            let api_version =
                m.object["apiVersion"].as_str().unwrap_or_else(|| panic!("{}: apiVersion", m.file));
            assert!(m.object["metadata"]["name"].is_string(), "{}: metadata.name", m.file);
            (kind, (api_version, m.file.as_str()))
        })
        .collect();
    assert_eq!(found.len(), manifests.len(), "one object of each kind");
    // Current (not deprecated) API versions; the HPA in a file of its own.
    let expected = BTreeMap::from([
        ("ConfigMap", ("v1", "configmap.yaml")),
        ("Deployment", ("apps/v1", "deployment.yaml")),
        ("HorizontalPodAutoscaler", ("autoscaling/v2", "hpa.yaml")),
        ("PodDisruptionBudget", ("policy/v1", "pdb.yaml")),
        ("Service", ("v1", "service.yaml")),
    ]);
    assert_eq!(found, expected);
    let hpa = std::fs::read_to_string(format!("{DIR}/hpa.yaml")).unwrap();
    let header: String = hpa.lines().take_while(|l| l.starts_with('#')).collect();
    assert!(header.to_lowercase().contains("optional"), "hpa.yaml says it is optional");
    // Every object carries the app label, and none pins a Kubernetes
    // namespace (they go where `kubectl apply` puts them).
    for m in &manifests {
        assert_eq!(
            m.object["metadata"]["labels"]["app.kubernetes.io/name"], "etcd-cache-gateway",
            "{}",
            m.file
        );
        assert!(m.object["metadata"].get("namespace").is_none(), "{}: no namespace", m.file);
    }
    // The README names every file and how to apply them.
    let readme = std::fs::read_to_string(format!("{DIR}/README.md")).unwrap();
    for (_, file) in expected.values() {
        assert!(readme.contains(&format!("`{file}`")), "README.md describes {file}");
    }
    assert!(readme.contains("kubectl apply -f deploy/kubernetes/"));
}

#[test]
fn the_configmap_loads_with_the_gateways_own_loader_and_matches_the_container() {
    let manifests = manifests();
    let toml = gateway_toml(&manifests);
    let loaded = load_gateway_toml(&toml, Vec::new());
    assert_eq!(loaded.warnings, Vec::<String>::new(), "the ConfigMap's config draws no warning");
    let config = loaded.config;
    // The etcd endpoints are in-cluster placeholders, marked as the thing to change.
    assert!(!config.etcd.endpoints.is_empty());
    for endpoint in &config.etcd.endpoints {
        assert!(
            !endpoint.contains("127.0.0.1") && !endpoint.contains("localhost"),
            "{endpoint}: a Service name, not the pod itself"
        );
    }
    let endpoints_line = toml.lines().position(|l| l.trim_start().starts_with("endpoints")).unwrap();
    assert!(
        toml.lines().take(endpoints_line).any(|l| l.trim_start().starts_with('#') && l.contains("CHANGE")),
        "a comment says the endpoints are to be changed"
    );
    // The container listens where its port says: with the ConfigMap alone,
    // and with the image's and the container's environment, which win.
    let deployment = object(&manifests, "Deployment");
    let container = container(deployment);
    let http_port = container_port(container, &Value::from("http"));
    assert_eq!(
        u64::from(config.listen.port()),
        http_port,
        "the ConfigMap's listen port is the containerPort"
    );
    let mut env = crate::compose::image_env();
    env.extend(container_env(container));
    let effective = load_gateway_toml(&toml, env).config;
    assert_eq!(u64::from(effective.listen.port()), http_port, "GATEWAY_LISTEN agrees with containerPort");
    assert!(effective.listen.ip().is_unspecified(), "reachable from outside the pod: {}", effective.listen);
    // `--config` names the ConfigMap's key in the ConfigMap's mount.
    let args = strings(&container["args"]);
    let config_arg = args.iter().position(|a| *a == "--config").map(|i| args[i + 1]).expect("--config FILE");
    let (mount_dir, key) = config_arg.rsplit_once('/').unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == mount_dir)
        .unwrap_or_else(|| panic!("{mount_dir} is mounted"));
    assert_eq!(mount["readOnly"], true);
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], object(&manifests, "ConfigMap")["metadata"]["name"]);
    assert_eq!(key, "gateway.toml", "the ConfigMap's key");
    // The memory limit holds the byte budgets the ConfigMap sets, with room
    // for the index and connections.
    let limit = memory_bytes(container["resources"]["limits"]["memory"].as_str().expect("a memory limit"));
    let budgets = config.cache.max_value_bytes.bytes() + config.http.page_cache_bytes.bytes();
    assert!(budgets * 4 / 3 <= limit, "cache budgets {budgets} leave a quarter of the limit {limit}");
}

#[test]
fn the_deployment_drains_before_it_stops() {
    let manifests = manifests();
    let config = load_gateway_toml(&gateway_toml(&manifests), Vec::new()).config;
    let deployment = object(&manifests, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let container = container(deployment);
    assert!(container["image"].as_str().unwrap().contains("etcd-cache-gateway"), "an image placeholder");
    // Ready once every namespace loaded; alive while the process answers.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            container_port(container, &get["port"]),
            u64::from(config.listen.port()),
            "{probe} asks the gateway's port"
        );
    }
    // Endpoints drop the pod during the preStop sleep; then SIGTERM, and the
    // gateway drains within http.shutdown_timeout, all before SIGKILL.
    let sleep = pre_stop_sleep(container);
    assert!(sleep >= Duration::from_secs(2), "preStop sleeps a few seconds: {sleep:?}");
    let grace =
        Duration::from_secs(spec["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace > sleep + config.http.shutdown_timeout.get(),
        "terminationGracePeriodSeconds {grace:?} > preStop {sleep:?} + shutdown_timeout {:?}",
        config.http.shutdown_timeout.get()
    );
    // Rollouts and drains keep a replica serving.
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pdb = object(&manifests, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(spec["replicas"].as_u64() > pdb["spec"]["minAvailable"].as_u64(), "a drain can evict one");
    let hpa = object(&manifests, "HorizontalPodAutoscaler");
    assert!(hpa["spec"]["minReplicas"].as_u64() > pdb["spec"]["minAvailable"].as_u64());
    assert!(hpa["spec"]["maxReplicas"].as_u64() >= hpa["spec"]["minReplicas"].as_u64());
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu", "the HPA scales on CPU");
    assert!(container["resources"]["requests"]["cpu"].is_string(), "CPU utilization needs a CPU request");
}

#[test]
fn the_pods_run_as_the_images_non_root_user_on_a_read_only_root() {
    let manifests = manifests();
    let deployment = object(&manifests, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = container(deployment);
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    let uid: u64 = dockerfile
        .split_once("--uid ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("the Dockerfile creates its user with --uid");
    let setting =
        |key: &str| container["securityContext"].get(key).or_else(|| pod["securityContext"].get(key));
    assert_eq!(setting("runAsNonRoot"), Some(&Value::Bool(true)));
    assert_eq!(setting("runAsUser"), Some(&Value::from(uid)), "the Dockerfile's user, by number");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][bound][resource].is_string(), "resources.{bound}.{resource}");
        }
    }
}

#[test]
fn the_service_budget_and_autoscaler_point_at_the_deployment() {
    let manifests = manifests();
    let deployment = object(&manifests, "Deployment");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"], labels), "the Deployment owns its pods");
    let service = object(&manifests, "Service");
    assert!(selects(&service["spec"]["selector"], labels), "the Service selects the pods");
    let pdb = object(&manifests, "PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels), "the budget covers the pods");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 8080, "the Service's port");
    let config = load_gateway_toml(&gateway_toml(&manifests), Vec::new()).config;
    assert_eq!(
        container_port(container(deployment), &ports[0]["targetPort"]),
        u64::from(config.listen.port()),
        "the Service reaches the port the gateway listens on"
    );
    let target = &object(&manifests, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"];
    assert_eq!(target["apiVersion"], deployment["apiVersion"]);
    assert_eq!(target["kind"], "Deployment");
    assert_eq!(target["name"], deployment["metadata"]["name"]);
}

/// The API resources of the kinds the manifests use, as a Kubernetes API
/// server's discovery lists them: (group/version, kind, resource).
const API_RESOURCES: &[(&str, &str, &str)] = &[
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Service", "services"),
    ("apps/v1", "Deployment", "deployments"),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
];

/// kubectl's discovery cache for the server `127.0.0.1:1`, holding
/// [`API_RESOURCES`]: kubectl maps kinds to resources from it and asks no
/// server (a cache written just now is fresh: kubectl keeps discovery for
/// minutes to hours, by version).
fn write_discovery_cache(cache_dir: &Path) {
    let server = cache_dir.join("discovery").join("127.0.0.1_1");
    let mut by_group_version: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (group_version, kind, resource) in API_RESOURCES {
        by_group_version.entry(group_version).or_default().push(serde_json::json!({
            "name": resource,
            "singularName": kind.to_ascii_lowercase(),
            "namespaced": true,
            "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }));
    }
    let mut groups = Vec::new();
    for (group_version, resources) in &by_group_version {
        let dir = server.join(group_version);
        std::fs::create_dir_all(&dir).unwrap();
        let list = serde_json::json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        });
        std::fs::write(dir.join("serverresources.json"), list.to_string()).unwrap();
        let (group, version) = group_version.rsplit_once('/').unwrap_or(("", group_version));
        let version = serde_json::json!({ "groupVersion": group_version, "version": version });
        groups.push(serde_json::json!({ "name": group, "versions": [version], "preferredVersion": version }));
    }
    let list = serde_json::json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups });
    std::fs::write(server.join("servergroups.json"), list.to_string()).unwrap();
}

/// `program` in a directory of `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// kubectl reads the directory as `kubectl apply -f deploy/kubernetes/` would
/// and names every object, without a cluster. `apply --dry-run=client` cannot
/// run offline (it reads each object's live state from the server, also in
/// a dry run); `create --dry-run=client` needs only the kind-to-resource
/// mapping, which it takes from a discovery cache written here. The
/// kubeconfig points at 127.0.0.1:1, where nothing listens: had kubectl
/// asked a server anything, the command would fail.
#[test]
fn kubectl_reads_every_manifest_offline() {
    let Some(kubectl) = on_path("kubectl") else {
        eprintln!("kubectl is not on PATH: skipped");
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\n\
         clusters: [{name: offline, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: offline, user: {token: offline}}]\n\
         contexts: [{name: offline, context: {cluster: offline, user: offline, namespace: default}}]\n\
         current-context: offline\n",
    )
    .unwrap();
    let cache_dir = scratch.path().join("cache");
    write_discovery_cache(&cache_dir);
    let output = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache_dir)
        .args(["--request-timeout=5s", "create", "--dry-run=client", "--validate=false", "-o", "name", "-f"])
        .arg(format!("{DIR}/"))
        .env_remove("KUBECONFIG")
        .env("HOME", scratch.path())
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl create --dry-run=client failed:\n{stdout}\n{stderr}");
    let listed: BTreeSet<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(listed, object_names(&manifests()), "kubectl names every object:\n{stderr}");
    assert_eq!(stdout.lines().count(), listed.len(), "each object once");
}
