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
