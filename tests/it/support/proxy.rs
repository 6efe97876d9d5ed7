//! A TCP proxy in front of etcd that a test can cut, stall and restore: the
//! gateway loses etcd (or its connection goes silent) while etcd itself
//! keeps running and can be written to or compacted behind its back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bytes copied per read.
const CHUNK: usize = 16 * 1024;

/// A running proxy; stops on drop.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Cancelled to drop every current connection.
    generation: Arc<std::sync::Mutex<CancellationToken>>,
    /// Cancelled to reset (RST) every current connection.
    resets: Arc<std::sync::Mutex<CancellationToken>>,
    /// `false` while stalled: connections stay open and nothing flows.
    flowing: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Copies `from` to `to`, holding every chunk while the proxy is stalled.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut flowing: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    /// Proxies a free loopback port to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (flowing, _) = watch::channel(true);
        let resets = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let (open2, generation2, flowing2) = (open.clone(), generation.clone(), flowing.clone());
        let reset2 = resets.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let cut = generation2.lock().unwrap().clone();
                let upstream = upstream.clone();
                let flowing = flowing2.subscribe();
                let reset = reset2.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else { return };
                    let mut inbound = inbound;
                    let reset_now = {
                        let (in_read, in_write) = inbound.split();
                        let (out_read, out_write) = outbound.split();
                        tokio::select! {
                            () = cut.cancelled() => false,
                            () = reset.cancelled() => true,
                            () = pump(in_read, out_write, flowing.clone()) => false,
                            () = pump(out_read, in_write, flowing) => false,
                        }
                    };
                    if reset_now {
                        // SO_LINGER 0: closing sends RST, as a crashed
                        // middlebox or a conntrack flush would.
                        let _ = inbound.set_zero_linger();
                        let _ = outbound.set_zero_linger();
                    }
                });
            }
        });
        Self { addr, open, generation, resets, flowing, task }
    }

    /// The URL clients use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut generation = self.generation.lock().unwrap();
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Resets every current connection (RST to both sides) and keeps
    /// accepting new ones.
    pub fn reset(&self) {
        let mut resets = self.resets.lock().unwrap();
        resets.cancel();
        *resets = CancellationToken::new();
    }

    /// Stops forwarding in both directions while keeping every connection
    /// (and accepting new ones): to both sides the other has frozen.
    pub fn stall(&self) {
        self.flowing.send_replace(false);
    }

    /// Accepts connections and forwards bytes again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.flowing.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.generation.lock().unwrap().cancel();
    }
}
