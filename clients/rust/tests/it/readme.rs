//! The README's Rust example is the crate README's, which the doctests
//! compile (`cargo test --doc`): the example a user copies compiles
//! against the crate as it is.

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

/// The code of the first block fenced with an info string starting with
/// `rust` after `from` in `text`.
fn rust_block<'a>(text: &'a str, from: &str) -> &'a str {
    let section = &text[text.find(from).unwrap_or_else(|| panic!("no {from:?}"))..];
    let fence = section.find("```rust").expect("a rust block");
    let body = &section[fence..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    &body[..body.find("```").expect("closing fence")]
}

#[test]
fn the_readme_rust_example_is_the_doctested_crate_example() {
    let root = std::fs::read_to_string(format!("{CRATE}/../../README.md")).unwrap();
    let crate_readme = std::fs::read_to_string(format!("{CRATE}/README.md")).unwrap();
    let example = rust_block(&root, "## Using the clients");
    assert_eq!(example, rust_block(&crate_readme, "# etcd-cache-gateway-client"));
    assert!(crate_readme.contains("```rust,no_run\n"), "the crate README's block is a doctest that compiles");
    let lines = example.lines().count();
    assert!((8..=12).contains(&lines), "a short example: {lines} lines");
}
