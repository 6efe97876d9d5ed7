//! Real etcd servers as child processes: one node or a 3-node cluster on free
//! loopback ports, each with a temporary data dir. Processes are killed when
//! their handle drops, also when a test panics.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use super::wait::wait_until;
use super::{free_port, scratch_dir};

/// How long an etcd process may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts of a single node on fresh ports before giving up.
const START_ATTEMPTS: usize = 3;

/// Puts `key` directly in etcd; the revision of the write.
pub async fn put(client: &mut Client, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> i64 {
    let (key, value) = (key.as_ref().to_vec(), value.as_ref().to_vec());
    client.put(key, value, None).await.expect("put").header().expect("header").revision()
}

/// The etcd binary: `ETCD_BIN`, else `etcd` on `PATH`.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Whether this etcd knows `--unsafe-no-fsync` (3.5+; not Debian's 3.4).
fn supports_no_fsync() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        Command::new(etcd_bin())
            .arg("--help")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).contains("unsafe-no-fsync")
                    || String::from_utf8_lossy(&o.stderr).contains("unsafe-no-fsync")
            })
            .unwrap_or(false)
    })
}

/// Options for starting etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `--experimental-watch-progress-notify-interval`.
    pub progress_notify_interval: Duration,
    /// Client port; `None` = a free one.
    pub client_port: Option<u16>,
    /// Serve clients over TLS with these files, requiring client certificates.
    pub tls: Option<super::tls::TlsFiles>,
    /// etcd's `--max-request-bytes` (largest write), when not its default.
    pub max_request_bytes: Option<u64>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            progress_notify_interval: Duration::from_secs(1),
            client_port: None,
            tls: None,
            max_request_bytes: None,
        }
    }
}

/// One etcd member process.
pub struct Etcd {
    name: String,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    initial_cluster: String,
    cluster_token: String,
    options: EtcdOptions,
    log: PathBuf,
    child: Option<Child>,
    /// Owns the temporary directory of a single node (a cluster owns its own).
    _dir: Option<TempDir>,
}

impl Etcd {
    /// Starts a single-node etcd with default options and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(EtcdOptions::default()).await
    }

    /// Starts a single-node etcd and waits until it answers.
    ///
    /// A free port can be taken by another test between choosing and
    /// binding it; if etcd exits at once, it is started again on new ports.
    pub async fn start_with(options: EtcdOptions) -> Self {
        for _ in 0..START_ATTEMPTS {
            let mut etcd = Self::single(options.clone());
            etcd.spawn();
            if etcd.ready_or_exited().await {
                return etcd;
            }
        }
        panic!("etcd exited at start {START_ATTEMPTS} times in a row");
    }

    /// Waits until this member answers (true) or its process exits (false).
    async fn ready_or_exited(&mut self) -> bool {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some()) {
                self.child = None;
                return false;
            }
            if let Ok(mut c) = connect(&self.endpoint(), self.options.tls.as_ref()).await {
                if c.status().await.is_ok() {
                    return true;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "etcd {} did not answer within {START_TIMEOUT:?} (log: {})",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Prepares (does not start) a single node; its ports are chosen now so a
    /// gateway can be pointed at it before it runs.
    pub fn single(options: EtcdOptions) -> Self {
        let dir = scratch_dir("etcd");
        let peer_port = free_port();
        let name = "node0".to_owned();
        let initial_cluster = format!("{name}=http://127.0.0.1:{peer_port}");
        let mut etcd = Self::member(name, dir.path(), peer_port, initial_cluster, "single".into(), options);
        etcd._dir = Some(dir);
        etcd
    }

    fn member(
        name: String,
        root: &Path,
        peer_port: u16,
        initial_cluster: String,
        cluster_token: String,
        options: EtcdOptions,
    ) -> Self {
        let client_port = options.client_port.unwrap_or_else(free_port);
        Self {
            data_dir: root.join(format!("{name}.etcd")),
            log: root.join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            initial_cluster,
            cluster_token,
            options,
            child: None,
            _dir: None,
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:23791` (`https` with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.options.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The member name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options().create(true).append(true).open(&self.log).expect("open etcd log");
        let mut cmd = Command::new(etcd_bin());
        // etcd reads every `ETCD_*` variable as a flag and warns about this one.
        cmd.env_remove("ETCD_BIN");
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", self.peer_port))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", self.peer_port))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-token={}", self.cluster_token))
            .arg("--initial-cluster-state=new")
            .arg(format!(
                "--experimental-watch-progress-notify-interval={}ms",
                self.options.progress_notify_interval.as_millis()
            ))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        if supports_no_fsync() {
            cmd.arg("--unsafe-no-fsync");
        }
        if let Some(bytes) = self.options.max_request_bytes {
            cmd.arg(format!("--max-request-bytes={bytes}"));
        }
        if let Some(tls) = &self.options.tls {
            cmd.arg("--cert-file").arg(&tls.cert).arg("--key-file").arg(&tls.key);
            cmd.arg("--trusted-ca-file").arg(&tls.ca).arg("--client-cert-auth");
        }
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e} (set ETCD_BIN)", etcd_bin().display())),
        );
    }

    /// Waits until this member answers a request.
    pub async fn wait_ready(&self) {
        let endpoint = self.endpoint();
        let log = self.log.clone();
        wait_until(&format!("etcd {} answers (log: {})", self.name, log.display()), START_TIMEOUT, || {
            let endpoint = endpoint.clone();
            let tls = self.options.tls.clone();
            async move {
                let Ok(mut c) = connect(&endpoint, tls.as_ref()).await else { return false };
                c.status().await.is_ok()
            }
        })
        .await;
    }

    /// A client connected to this member only.
    pub async fn client(&self) -> Client {
        connect(&self.endpoint(), self.options.tls.as_ref()).await.expect("connect to etcd")
    }

    /// Kills the process (SIGKILL) and reaps it; the data dir is kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process gracefully (SIGTERM), killing it after 10 s.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "TERM");
            let child = self.child.as_mut().expect("running");
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.kill();
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing
    /// answers. Returns once the kernel reports it stopped (signal delivery
    /// to a many-threaded process is not instant).
    pub fn pause(&self) {
        let pid = self.pid().expect("etcd is running");
        signal(pid, "STOP");
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesized command name: "pid (comm) T ...".
            if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("etcd {pid} did not stop within 1 s of SIGSTOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid().expect("etcd is running"), "CONT");
    }

    /// Starts the process again on the same data dir and ports, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts a prepared (or killed) node and waits until it answers.
    pub async fn start_prepared(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Compacts etcd's history up to `revision` (physically, so later reads below it fail).
    pub async fn compact(&self, revision: i64) {
        self.client()
            .await
            .compact(revision, Some(etcd_client::CompactionOptions::new().with_physical()))
            .await
            .expect("compact");
    }

    /// etcd's current revision.
    pub async fn revision(&self) -> i64 {
        let resp = self.client().await.get("\0", None).await.expect("get");
        resp.header().expect("header").revision()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A paused process must be thawed to die promptly on some kernels.
            signal(pid, "CONT");
        }
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let status =
        Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

async fn connect(endpoint: &str, tls: Option<&super::tls::TlsFiles>) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        options = options.with_tls(tls.client_options());
    }
    Client::connect([endpoint], Some(options)).await
}

/// Three etcd members on loopback forming one cluster.
pub struct EtcdCluster {
    /// The members, in start order.
    pub members: Vec<Etcd>,
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts a 3-member cluster and waits until every member answers.
    pub async fn start() -> Self {
        let dir = scratch_dir("etcd-cluster");
        let peer_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let initial_cluster = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("node{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("cluster-{}", peer_ports[0]);
        let mut members: Vec<Etcd> = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Etcd::member(
                    format!("node{i}"),
                    dir.path(),
                    *p,
                    initial_cluster.clone(),
                    token.clone(),
                    EtcdOptions::default(),
                )
            })
            .collect();
        for m in &mut members {
            m.spawn();
        }
        for m in &members {
            m.wait_ready().await;
        }
        Self { members, _dir: dir }
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Etcd::endpoint).collect()
    }

    /// The index of the current leader, asked of the running members.
    pub async fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.pid().is_some()) {
            let Ok(mut c) = connect(&m.endpoint(), None).await else { continue };
            let Ok(status) = c.status().await else { continue };
            let leader_id = status.leader();
            if leader_id == 0 {
                continue;
            }
            let Ok(list) = c.member_list().await else { continue };
            let name = list.members().iter().find(|mm| mm.id() == leader_id).map(|mm| mm.name().to_owned());
            return name.and_then(|n| self.members.iter().position(|m| m.name() == n));
        }
        None
    }
}
