//! The binary's command line: help lists every flag with its env variable, a
//! bad config file exits non-zero naming the field.

use std::io::Write;
use std::process::Command;

fn gateway() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etcd-cache-gateway"));
    cmd.env_remove("GATEWAY_CONFIG").env_remove("GATEWAY_LISTEN").env_remove("GATEWAY_ETCD__ENDPOINTS");
    cmd
}

#[test]
fn help_lists_every_flag_with_its_env_variable() {
    let out = gateway().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--config", "GATEWAY_CONFIG"),
        ("--listen", "GATEWAY_LISTEN"),
        ("--etcd-endpoints", "GATEWAY_ETCD__ENDPOINTS"),
        ("--cache-policy", "GATEWAY_CACHE__POLICY"),
        ("--log-format", "GATEWAY_LOG__FORMAT"),
    ] {
        let block = help
            .split("\n      --")
            .find(|b| b.starts_with(&flag[2..]))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        assert!(block.contains(&format!("[env: {env}=")), "{flag} should name {env}:\n{help}");
    }
}

#[test]
fn bad_config_file_exits_non_zero_naming_the_field() {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(b"[cache]\npolicy = \"ttl\"\n").unwrap();
    let out = gateway().arg("--config").arg(f.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cache.ttl"), "{stderr}");

    f.as_file_mut().set_len(0).unwrap();
    let mut f2 = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f2.write_all(b"[watch]\nheartbeat_interval = \"often\"\n").unwrap();
    let out = gateway().arg("--config").arg(f2.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("heartbeat_interval") && stderr.contains("often"), "{stderr}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let out = gateway()
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml"), "--check-config"])
        .args(["--listen", "127.0.0.1:9999"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["listen"], "127.0.0.1:9999");
}

/// `etcd-cache-gateway 2>&1 | head -1`: once the reader is gone every write
/// to the output fails. The gateway must go on answering, and stop on SIGTERM.
#[tokio::test]
async fn a_closed_output_pipe_neither_stops_answering_nor_ignores_sigterm() {
    use std::process::Stdio;
    use std::time::Duration;

    use crate::support::{Etcd, free_port};

    let etcd = Etcd::start().await;
    let port = free_port();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = KillOnDrop(
        gateway()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--etcd-endpoints", &etcd.endpoint()])
            // Every request logs: every request meets the broken pipe.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::from(writer.try_clone().unwrap()))
            .stderr(Stdio::from(writer))
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    for _ in 0..20 {
        let reply = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(reply.status(), 200);
    }
    assert!(Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().unwrap().success());
    let status =
        crate::support::wait::wait_for("the gateway exits on SIGTERM", Duration::from_secs(30), || {
            let status = child.0.try_wait().unwrap();
            async move { status }
        })
        .await;
    assert!(status.success(), "{status:?}");
}

/// Waits until the binary at `base` answers `/readyz` with 200.
async fn wait_ready(base: &str) {
    crate::support::wait_until("the gateway answers", std::time::Duration::from_secs(30), || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// A child process killed (and reaped) when the test ends, also by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary with `extra` appended to a config that has a token
/// `reader` (secret `the-real-secret`), its output going to a file; makes an
/// authenticated request and one with the secret in the wrong parameter,
/// stops it with SIGTERM, and returns what it logged.
async fn log_of_two_requests(extra: &str) -> String {
    use std::process::Stdio;
    use std::time::Duration;

    use crate::support::{Etcd, free_port};

    let etcd = Etcd::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n{extra}\n[etcd]\nendpoints = [\"{}\"]\n\
             [[tokens]]\nname = \"reader\"\nsecret = \"the-real-secret\"\nnamespaces = [\"*\"]\n",
            etcd.endpoint()
        ),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let mut child = KillOnDrop(
        gateway()
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let ok = reqwest::get(format!("{base}/v1/namespaces?access_token=the-real-secret")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let typo = reqwest::get(format!("{base}/v1/namespaces?token=a-typed-secret")).await.unwrap();
    assert_eq!(typo.status(), 401);
    assert!(Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().unwrap().success());
    crate::support::wait::wait_for("the gateway exits", Duration::from_secs(30), || {
        let status = child.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    std::fs::read_to_string(&log).unwrap()
}

/// Access lines as an operator reads them from a file: the client's address
/// and the token's name, latencies in whole microseconds, no colour codes,
/// and never a secret, whatever parameter it was put in.
#[tokio::test]
async fn access_lines_name_client_and_token_and_never_a_secret() {
    let text = log_of_two_requests("").await;
    assert!(!text.contains('\u{1b}'), "no colour codes in a file:\n{text}");
    assert!(!text.contains("the-real-secret") && !text.contains("a-typed-secret"), "{text}");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle) && l.contains("response"))
            .unwrap_or_else(|| panic!("no response line for {needle}:\n{text}"))
    };
    let authenticated = line("uri=/v1/namespaces?access_token=REDACTED");
    assert!(authenticated.contains(" token=reader"), "{authenticated}");
    assert!(authenticated.contains("client=127.0.0.1:"), "{authenticated}");
    let refused = line("uri=/v1/namespaces?token=REDACTED");
    assert!(refused.contains("status=401") && !refused.contains(" token="), "{refused}");
    let latency = authenticated.split("latency_ms=").nth(1).unwrap().split_whitespace().next().unwrap();
    let decimals = latency.split('.').nth(1).map_or(0, str::len);
    assert!(latency.parse::<f64>().is_ok() && decimals <= 3, "whole microseconds: {latency}");
}

/// JSON lines: one object each, every field once (the request's fields in
/// `span`, not again in a span list), the secret nowhere.
#[tokio::test]
async fn json_log_lines_carry_each_field_once() {
    let text = log_of_two_requests("[log]\nformat = \"json\"").await;
    assert!(!text.contains("the-real-secret") && !text.contains("a-typed-secret"), "{text}");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let response = lines
        .iter()
        .find(|l| {
            l["message"] == "response"
                && l["status"] == 200
                && l["span"]["uri"].as_str().is_some_and(|u| u.starts_with("/v1/"))
        })
        .unwrap_or_else(|| panic!("no /v1 response line:\n{text}"));
    assert!(response.get("spans").is_none(), "no second copy of the span: {response}");
    assert_eq!(response["span"]["token"], "reader");
    assert_eq!(response["span"]["uri"], "/v1/namespaces?access_token=REDACTED");
}

/// The variables Kubernetes injects for a Service named `gateway` do not
/// stop the gateway (they used to: "unknown field: found port"); a bad value
/// in a real setting names the variable.
#[test]
fn variables_that_are_no_setting_are_ignored_and_bad_ones_name_the_variable() {
    let out = gateway()
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml"), "--check-config"])
        .env("GATEWAY_PORT", "tcp://10.0.0.1:8080")
        .env("GATEWAY_PORT_8080_TCP_ADDR", "10.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(
            "warning: ignoring environment variable GATEWAY_PORT: `port` is not a configuration key"
        )
    );
    assert!(stderr.contains("warning: ignoring environment variable GATEWAY_PORT_8080_TCP_ADDR"), "{stderr}");

    let out = gateway()
        .args(["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config/gateway.toml"), "--check-config"])
        .env("GATEWAY_CACHE__HISTORY_REVISIONS", "many")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Error: invalid configuration: cache.history_revisions from environment variable \
         GATEWAY_CACHE__HISTORY_REVISIONS: found string \"many\", expected a whole number, 0 or more; e.g. \
         GATEWAY_CACHE__HISTORY_REVISIONS=10000\n"
    );
}

/// The binary exports its allocator's figures, and they follow what it
/// holds: 8 MiB of values cached raise the bytes allocated by at least that.
#[tokio::test]
async fn the_binary_reports_its_heap_and_the_figures_follow_what_it_holds() {
    use std::process::Stdio;

    use crate::support::metrics::{parse, value};
    use crate::support::{Etcd, free_port};

    let etcd = Etcd::start().await;
    let port = free_port();
    let _child = KillOnDrop(
        gateway()
            .args(["--listen", &format!("127.0.0.1:{port}"), "--etcd-endpoints", &etcd.endpoint()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let heap = || async {
        let samples = parse(&reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap());
        let figure = |name: &str| value(&samples, &format!("etcd_cache_gateway_heap_{name}_bytes"), &[]);
        let [allocated, active, resident, mapped] = ["allocated", "active", "resident", "mapped"].map(figure);
        assert!(allocated > 0.0, "bytes allocated are exported: {samples:?}");
        assert!(allocated <= active && active <= resident && active <= mapped, "{samples:?}");
        allocated
    };
    let before = heap().await;
    let mut client = etcd.client().await;
    let value = "v".repeat(512 * 1024);
    let mut head = 0;
    for i in 0..16 {
        head =
            client.put(format!("big/{i}"), value.as_str(), None).await.unwrap().header().unwrap().revision();
    }
    for i in 0..16 {
        let url = format!("{base}/v1/namespaces/default/kv/big/{i}?min_revision={head}");
        assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
    }
    let after = heap().await;
    assert!(
        after - before >= 8.0 * 1024.0 * 1024.0,
        "allocated {before} before, {after} after 8 MiB of values"
    );
}
