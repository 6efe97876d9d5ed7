//! Unmodified Kubernetes clients against the gateway over HTTPS with a
//! bearer token (client-go sends tokens only over TLS): kubectl (`get`
//! across namespaces, `get --raw`, `get -w` bounded by `--request-timeout`)
//! and the Python `kubernetes` client (tests/it/kube_clients.py), with a
//! self-signed certificate made at test time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use etcd_cache_gateway::config::{HumanDuration, ServerTlsConfig, TokenConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::kubernetes::kube_config;
use crate::support::tls::TlsFiles;
use crate::support::{Etcd, Gateway, scratch_dir, wait_until};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "kube-secret-123";
/// Bound on one client command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

struct Env {
    etcd: Etcd,
    gw: Gateway,
    tls: TlsFiles,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Self {
        let etcd = Etcd::start().await;
        let dir = scratch_dir("kube-tls");
        let tls = TlsFiles::generate(dir.path());
        let mut config = kube_config(&etcd.endpoint());
        config.cache.history_revisions = 5;
        config.kubernetes.bookmark_interval = HumanDuration::secs(1);
        config.http.tls = Some(ServerTlsConfig { cert_file: tls.cert.clone(), key_file: tls.key.clone() });
        config.tokens = vec![TokenConfig {
            name: "kube".into(),
            secret: Some(TOKEN.into()),
            secret_env: None,
            secret_file: None,
            namespaces: vec!["apps".into()],
        }];
        let gw = Gateway::start(config).await;
        let env = Self { etcd, gw, tls, dir };
        let readyz = env.https("/readyz");
        let ca = env.tls.ca.clone();
        wait_until("the gateway answers over TLS", Duration::from_secs(30), || {
            let (readyz, ca) = (readyz.clone(), ca.clone());
            async move { curl(&ca, &readyz, None).await.0 == "200" }
        })
        .await;
        env
    }

    fn https(&self, path: &str) -> String {
        format!("https://{}{path}", self.gw.addr)
    }

    fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gw\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: gw\n  user:\n    token: {TOKEN}\ncontexts:\n- name: gw\n  \
             context:\n    cluster: gw\n    user: gw\ncurrent-context: gw\n",
            self.https(""),
            self.tls.ca.display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .kill_on_drop(true);
        command
    }

    async fn kubectl_output(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(COMMAND_TIMEOUT, self.kubectl(args).output()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    async fn put(&self, key: &str, value: &str) {
        let mut client = self.etcd.client().await;
        crate::support::etcd::put(&mut client, format!("apps/{key}"), value).await;
    }
}

/// `curl` with the test CA: (status, body).
async fn curl(ca: &Path, url: &str, token: Option<&str>) -> (String, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "--cacert"]).arg(ca).arg(url);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let Ok(out) = command.output().await else { return (String::new(), String::new()) };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn every_surface_serves_https_and_kubernetes_errors_need_the_token() {
    let env = Env::start().await;
    env.put("widgets/ns1/a", "{}").await;
    let (status, body) =
        curl(&env.tls.ca, &env.https("/v1/namespaces/apps/kv/widgets/ns1/a"), Some(TOKEN)).await;
    assert_eq!(status, "200", "{body}");
    let (status, body) = curl(&env.tls.ca, &env.https("/apis/example.com/v1/widgets"), None).await;
    assert_eq!(status, "401");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((body["kind"].clone(), body["reason"].clone()), (json!("Status"), json!("Unauthorized")));
    let (status, _) = curl(&env.tls.ca, &env.https("/apis/example.com/v1/widgets"), Some(TOKEN)).await;
    assert_eq!(status, "200");
}

#[tokio::test]
async fn kubectl_gets_across_namespaces_raw_and_watches_with_a_timeout() {
    let env = Env::start().await;
    env.put("widgets/ns1/a", r#"{"spec":{"size":1}}"#).await;
    env.put("widgets/ns2/b", r#"{"spec":{"size":2}}"#).await;
    let columns = "custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,SIZE:.spec.size";
    assert_eq!(
        env.kubectl_output(&["get", "widgets", "-A", "-o", columns]).await,
        "NAMESPACE   NAME   SIZE\nns1         a      1\nns2         b      2\n"
    );
    assert_eq!(
        env.kubectl_output(&["get", "widgets", "-n", "ns2", "-o", "name"]).await,
        "widget.example.com/b\n"
    );
    // The default output asks for a server-side Table and prints the plain
    // list kubectl's own way (objects without creationTimestamp have no age).
    assert_eq!(
        env.kubectl_output(&["get", "widgets", "-A"]).await,
        "NAMESPACE   NAME   AGE\nns1         a      <unknown>\nns2         b      <unknown>\n"
    );
    let raw = env.kubectl_output(&["get", "--raw", "/apis/example.com/v1/namespaces/ns1/widgets/a"]).await;
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["spec"], json!({"size": 1}));
    assert_eq!(raw["metadata"]["name"], json!("a"));

    // get -w: the list, then a change made after it, then the end of the
    // stream at the request timeout.
    let mut watch = env
        .kubectl(&["get", "widgets", "-n", "ns1", "-w", "--request-timeout=5s", "-o", columns])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut next = async || tokio::time::timeout(COMMAND_TIMEOUT, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(next().await.as_deref(), Some("NAMESPACE   NAME   SIZE"));
    assert_eq!(next().await.as_deref(), Some("ns1         a      1"));
    env.put("widgets/ns1/a", r#"{"spec":{"size":5}}"#).await;
    assert_eq!(next().await.as_deref(), Some("ns1         a      5"));
    let status = tokio::time::timeout(COMMAND_TIMEOUT, watch.wait()).await.unwrap().unwrap();
    assert!(status.success(), "kubectl get -w ends cleanly at its request timeout: {status}");
}

#[tokio::test]
async fn python_kubernetes_client_lists_gets_watches_resumes_and_watch_lists() {
    let env = Env::start().await;
    let python = std::env::var("KUBE_PYTHON").unwrap_or_else(|_| format!("{ROOT}/.venv/bin/python"));
    let run = Command::new(&python)
        .arg(format!("{ROOT}/tests/it/kube_clients.py"))
        .args([&env.https(""), &env.tls.ca.display().to_string(), TOKEN, &env.etcd.endpoint()])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, run).await.unwrap().unwrap_or_else(|e| {
        panic!("{python} could not run ({e}): scripts/test.sh installs kubernetes into .venv")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout,
        "custom objects: selectors, paging, get\nwatch: events, resume, 410\ndynamic client: discovery, list, \
         watch\nwatch list: initial events, bookmark, changes\n"
    );
}
