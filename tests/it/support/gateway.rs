//! The gateway in-process on a free port, through the same `run` as the binary.

use std::net::SocketAddr;
use std::time::Duration;

use etcd_cache_gateway::config::{Config, HumanDuration};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running gateway; shut down (cancelled) on drop.
pub struct Gateway {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), etcd_cache_gateway::RunError>>>,
}

impl Gateway {
    /// A config for tests: the given etcd endpoints, fast backoff, one namespace.
    pub fn config(endpoints: &[String]) -> Config {
        let mut config = Config::default();
        config.etcd.endpoints = endpoints.to_vec();
        config.etcd.backoff_min = HumanDuration::millis(50);
        config.etcd.backoff_max = HumanDuration::millis(500);
        config.etcd.keep_alive_interval = HumanDuration::secs(1);
        config.etcd.keep_alive_timeout = HumanDuration::secs(1);
        config.etcd.connect_timeout = HumanDuration::secs(1);
        config.etcd.request_timeout = HumanDuration::secs(2);
        config.http.shutdown_timeout = HumanDuration::secs(5);
        config
    }

    /// Starts the gateway with `config` on 127.0.0.1 port 0.
    pub async fn start(config: Config) -> Self {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the gateway with `config` on `addr`: e.g. the address of a
    /// gateway that was shut down, to restart it where its clients connect.
    pub async fn start_on(mut config: Config, addr: SocketAddr) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        config.validate().expect("test config is valid");
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        config.listen = addr;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(etcd_cache_gateway::run(config, listener, shutdown.clone()));
        Self { base_url: format!("http://{addr}"), addr, shutdown, task: Some(task) }
    }

    /// Starts the gateway and waits until `/readyz` answers 200.
    pub async fn start_ready(config: Config) -> Self {
        Self::start_ready_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the gateway on `addr` and waits until `/readyz` answers 200.
    pub async fn start_ready_on(config: Config, addr: SocketAddr) -> Self {
        let gateway = Self::start_on(config, addr).await;
        let url = gateway.url("/readyz");
        super::wait_until("the gateway is ready", Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        gateway
    }

    /// A config with one namespace `name` on `prefix`.
    pub fn config_with_namespace(endpoints: &[String], name: &str, prefix: &str) -> Config {
        let mut config = Self::config(endpoints);
        config.namespaces = vec![etcd_cache_gateway::config::NamespaceConfig {
            name: name.into(),
            prefix: prefix.into(),
            max_subscribers: None,
        }];
        config
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Cancels the gateway and waits until `run` returns; returns how long that took.
    pub async fn shutdown(mut self) -> Duration {
        let start = std::time::Instant::now();
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("gateway stops within 30 s")
            .expect("gateway task did not panic")
            .expect("gateway run returned Ok");
        start.elapsed()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
