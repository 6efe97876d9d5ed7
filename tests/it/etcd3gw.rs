//! The PyPI `etcd3gw` client (OpenStack's etcd client over etcd's JSON
//! gateway) against the gateway: get, prefix get, put, delete, leases,
//! watch and watch from a revision (`tests/clients/etcd3gw_scenarios.py`,
//! run with the `.venv` that `scripts/test.sh` installs it into).

use std::time::Duration;

use etcd_cache_gateway::config::{EtcdWrites, NamespaceConfig};

use crate::support::{Etcd, Gateway};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Bound on the whole scenario run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> String {
    std::env::var("VENV_PYTHON").unwrap_or_else(|_| format!("{ROOT}/.venv/bin/python"))
}

#[tokio::test]
async fn etcd3gw_scenarios_pass_through_the_gateway() {
    let etcd = Etcd::start().await;
    let mut config = Gateway::config(&[etcd.endpoint()]);
    config.namespaces =
        vec![NamespaceConfig { name: "app".into(), prefix: "/app/".into(), max_subscribers: None }];
    config.etcd_api.enabled = true;
    config.etcd_api.writes = EtcdWrites::Forward;
    let gw = Gateway::start_ready(config).await;
    let python = python();
    let mut child = tokio::process::Command::new(&python)
        .arg(format!("{ROOT}/tests/clients/etcd3gw_scenarios.py"))
        .args(["127.0.0.1", &gw.addr.port().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{python} could not run ({e}): scripts/test.sh installs etcd3gw into .venv")
        });
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let read = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text).await.map(|_| text)
    };
    let run = async {
        let (out, err) = tokio::join!(read(Box::new(stdout)), read(Box::new(stderr)));
        (child.wait().await, out.unwrap_or_default(), err.unwrap_or_default())
    };
    let (status, out, err) =
        tokio::time::timeout(RUN_TIMEOUT, run).await.expect("etcd3gw scenarios finish in time");
    assert!(status.expect("wait").success(), "etcd3gw scenarios failed:\n{out}\n{err}");
    let passed: Vec<&str> = out.lines().collect();
    assert_eq!(
        passed,
        ["ok get", "ok prefix get", "ok put", "ok delete", "ok leases", "ok watch", "ok watch from revision"]
    );
}
