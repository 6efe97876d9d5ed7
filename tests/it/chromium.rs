//! A real browser for tests: Debian's headless Chromium driven over
//! chromedriver with fantoccini, and a tiny static server for test pages
//! (test-only pages never become gateway routes). Not in `support`: the
//! Rust client's tests share that module and have no browser.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::free_port;
use crate::support::wait::wait_for;

/// chromedriver in its own process group; the whole group (chromedriver
/// and the Chromium processes it started) is killed on drop, also when the
/// test fails before closing the browser.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// A headless Chromium session; the browser dies with `driver`.
pub struct Browser {
    /// The WebDriver session.
    pub client: fantoccini::Client,
    /// Kept for its drop: chromedriver and the browser end with the session.
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session with a
    /// `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Self {
        Self::start_with(width, height, &[]).await
    }

    /// As [`Browser::start`], with more Chromium switches (e.g. `--force-dark-mode`).
    pub async fn start_with(width: u32, height: u32, switches: &[&str]) -> Self {
        let driver_port = free_port();
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={driver_port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian package chromium-driver) must be installed"),
        );
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .iter()
        .chain(switches)
        .map(|s| (*s).to_owned())
        .collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", tempfile::tempdir().unwrap().keep().display()));
        let capabilities = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}});
        let capabilities = capabilities.as_object().unwrap().clone();
        let client = wait_for("chromedriver accepts a session", Duration::from_secs(30), || {
            let capabilities = capabilities.clone();
            async move {
                fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{driver_port}"))
                    .await
                    .ok()
            }
        })
        .await;
        Self { client, _driver: driver }
    }

    /// Runs `script` (a function body; a returned promise is awaited) and
    /// parses the string it returns as JSON.
    pub async fn eval_json(&self, script: &str) -> Value {
        let raw = self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"));
        let text = raw.as_str().unwrap_or_else(|| panic!("{script} returned {raw}, not a JSON string"));
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{script} returned {text}: {e}"))
    }
}

/// Serves `html` at `/` on `port` (127.0.0.1) until the test ends.
pub async fn serve_page(port: u16, html: String) {
    let page = axum::Router::new().route("/", get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, page).await });
}
