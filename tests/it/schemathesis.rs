//! schemathesis (PyPI) fuzzes the live gateway from `openapi/openapi.yaml`:
//! every operation, with requests valid and invalid by the schema, every
//! answer checked against the document (status codes, content types,
//! headers, bodies, each event of a watch stream) and never a server error.
//!
//! Two runs over the demo data: one with the path pinned to a namespace and
//! a key that exist (so query parameters reach the reads), one with
//! generated paths (unknown namespaces and keys). The `positive_data_acceptance`
//! check is left out: parameters that exclude each other (`key` and
//! `key_b64`, `revision` and `min_revision`) and those with a grammar
//! (`filter`, `select`, `page_token`) cannot be described in OpenAPI, so a
//! schema-valid request can rightly be refused (400 naming the parameter).
//!
//! `scripts/test.sh` installs schemathesis into `.venv`; `SCHEMATHESIS`
//! names another `st`, `SCHEMATHESIS_SEED` another seed.

use std::process::Output;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Test cases per operation and phase in the pinned run.
const PINNED_EXAMPLES: u32 = 100;
/// Test cases per operation and phase in the generated-paths run.
const GENERATED_EXAMPLES: u32 = 25;

fn st() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| format!("{ROOT}/.venv/bin/st"))
}

/// Runs schemathesis against `base` with `config` (TOML); its output.
async fn run(base: &str, config: &str, examples: u32) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("schemathesis.toml");
    // A watch stream never ends by itself: one event checks its format.
    std::fs::write(&config_file, format!("max-stream-events = 1\n{config}")).unwrap();
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let st = st();
    tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &format!("{ROOT}/openapi/openapi.yaml"), "--url", base])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        // etcd's JSON API is off in the demo and has etcd's own shapes: its
        // comparison tests against etcd itself check it (tests/it/etcd_v3.rs).
        .args(["--exclude-path-regex", "^/(v3/|version$)"])
        .args(["--max-examples", &examples.to_string(), "--seed", &seed])
        .args(["--request-timeout", "10", "--no-color", "--workers", "2"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("{st} could not run ({e}): scripts/test.sh installs schemathesis into .venv")
        })
}

/// The "N generated, M passed" counts of a run's summary.
fn counts(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    (numbers[0], numbers[1])
}

async fn check(base: &str, name: &str, config: &str, examples: u32) -> u64 {
    let output = run(base, config, examples).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis ({name}) found failures:\n{stdout}\n{stderr}");
    let (generated, passed) = counts(&stdout);
    assert_eq!(passed, generated, "every generated case passed ({name}):\n{stdout}");
    println!("schemathesis {name}: {generated} test cases, all passed");
    generated
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let (_etcd, gw) = crate::support::demo::start().await;
    let base = gw.url("");
    let pinned = "[parameters]\n\"path.ns\" = \"apps\"\n\"path.key\" = \"config/log-level\"\n";
    let a = check(&base, "existing namespace and key", pinned, PINNED_EXAMPLES).await;
    let b = check(&base, "generated paths", "", GENERATED_EXAMPLES).await;
    // Each of the 9 operations ran in every phase.
    assert!(a + b >= 9 * 3, "{a} + {b} cases");
}
