//! docker-compose.yml is checked without a Docker engine: every service has a
//! healthcheck, the gateway's endpoints are the etcd services, published
//! ports do not collide, the mounted config exists and validates, and the
//! stop grace period outlasts the shutdown deadline.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_cache_gateway::config::{Cli, load};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).expect("docker-compose.yml parses (anchors and merge keys resolved)")
}

/// The `command` list of a service, merged from its `<<` anchor if needed.
fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    &compose["services"][name]
}

#[test]
fn compose_file_is_consistent() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let etcd_services: BTreeSet<&str> =
        services.keys().filter(|k| k.starts_with("etcd")).map(String::as_str).collect();
    assert_eq!(etcd_services.len(), 3, "a 3-member cluster");
    for (name, svc) in services {
        let merged = if svc.get("<<").is_some() { &svc["<<"] } else { svc };
        assert!(svc.get("healthcheck").or(merged.get("healthcheck")).is_some(), "{name} has a healthcheck");
        assert!(svc.get("restart").or(merged.get("restart")).is_some(), "{name} has a restart policy");
    }
    // Every etcd member names all three in its initial cluster and runs a 3.5 image.
    for name in &etcd_services {
        let svc = service(&compose, name);
        let merged = if svc.get("<<").is_some() { &svc["<<"] } else { svc };
        let image = svc.get("image").or(merged.get("image")).and_then(Value::as_str).unwrap();
        assert!(image.contains(":v3.5."), "{name}: pinned 3.5 image, not {image}");
        let command: Vec<&str> =
            svc["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert!(command.contains(&format!("--name={name}").as_str()), "{name}: {command:?}");
        let cluster = command.iter().find(|c| c.starts_with("--initial-cluster=")).unwrap();
        for member in &etcd_services {
            assert!(cluster.contains(&format!("{member}=http://{member}:2380")), "{name} knows {member}");
        }
    }
    // Published host ports do not collide.
    let mut host_ports = BTreeSet::new();
    for (name, svc) in services {
        for port in svc.get("ports").and_then(Value::as_array).into_iter().flatten() {
            let host = port.as_str().unwrap().split(':').next().unwrap().to_owned();
            assert!(host_ports.insert(host.clone()), "{name}: host port {host} is published twice");
        }
    }
    // The gateway mounts an existing config that validates and names exactly the etcd services.
    let gateway = service(&compose, "gateway");
    let mount = gateway["volumes"][0].as_str().unwrap();
    let (source, target) = mount.split_once(':').unwrap();
    let target = target.trim_end_matches(":ro");
    let config_path = format!("{ROOT}/{}", source.trim_start_matches("./"));
    let command: Vec<&str> =
        gateway["command"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(command, ["--config", target], "the gateway reads the mounted file");
    let cli = Cli { config: Some(config_path.into()), ..Cli::default() };
    let config = load(&cli, Vec::new()).expect("config/docker.toml loads and validates").config;
    let endpoints: BTreeSet<String> = config.etcd.endpoints.iter().cloned().collect();
    let expected: BTreeSet<String> = etcd_services.iter().map(|s| format!("http://{s}:2379")).collect();
    assert_eq!(endpoints, expected);
    // The gateway waits for healthy etcd members and is given time to drain.
    for member in &etcd_services {
        assert_eq!(gateway["depends_on"][member]["condition"], "service_healthy");
    }
    let grace = humantime::parse_duration(gateway["stop_grace_period"].as_str().unwrap()).unwrap();
    assert!(
        grace > config.http.shutdown_timeout.get() + Duration::from_secs(2),
        "stop_grace_period {grace:?}"
    );
    let published: Vec<&str> =
        gateway["ports"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let port = config.listen.port();
    assert_eq!(published, vec![format!("{port}:{port}")], "the gateway's port, published as itself");
}

#[test]
fn dockerfile_builds_non_root_with_a_readiness_healthcheck() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage");
    assert!(dockerfile.contains("protobuf-compiler"), "the build stage has protoc");
    assert!(dockerfile.contains("USER gateway"), "runs as a non-root user");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/readyz"));
}
