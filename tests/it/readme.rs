//! The README's examples, run as they are against the demo's data: every
//! `curl` command in the README's tables answers what the README says (200,
//! or the status its row names), on the data `scripts/demo-data.sh` seeds.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The `curl` commands of the README's table rows, each with the status its
/// row says it answers.
fn table_commands(readme: &str) -> Vec<(String, u16)> {
    let mut commands = Vec::new();
    for row in readme.lines().filter(|l| l.starts_with('|')) {
        let expected = if row.contains("(304 when unchanged)") { 304 } else { 200 };
        for (i, cell) in row.split('`').enumerate() {
            // Odd pieces are inside backticks.
            if i % 2 == 1 && cell.starts_with("curl ") {
                commands.push((cell.to_owned(), expected));
            }
        }
    }
    commands
}

#[tokio::test]
async fn every_readme_table_command_works_against_the_demo_data() {
    let (_etcd, gw) = crate::support::demo::start().await;
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let commands = table_commands(&readme);
    assert!(commands.len() >= 18, "the README's tables have their examples: {commands:?}");
    let dir = tempfile::tempdir().unwrap();
    for (command, expected) in commands {
        // Print only the status; a redirection to a file keeps working.
        let probe = command.replacen("curl ", "curl -o /dev/null -w '%{http_code}' ", 1);
        let probe = probe.split(" > ").next().unwrap().to_owned();
        let out = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(&probe)
            .env("GW", &gw.base_url)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected.to_string(), "README: {command}");
    }
}
