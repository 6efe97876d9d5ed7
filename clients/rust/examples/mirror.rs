//! Mirrors a namespace (or a prefix of it) and prints its state, then every
//! change as it happens; after a reset, the state again.
//!
//! ```sh
//! cargo run -p etcd-cache-gateway-client --example mirror -- http://127.0.0.1:8080 apps config/
//! GATEWAY_TOKEN=secret cargo run -p etcd-cache-gateway-client --example mirror -- https://gw:8080 apps
//! ```
//!
//! Output, one line per key or event:
//!
//! ```text
//! state at revision 41: 2 keys
//!   config/log-level = info
//!   config/replicas = 3
//! 42 put config/log-level = debug
//! 43 delete config/replicas
//! ```

use std::io::Write;

use etcd_cache_gateway_client::{
    Client, Event, KeyValue, MirrorEvent, MirrorOptions, MirrorSnapshot, Selection,
};
use futures_util::StreamExt;

/// A key or value for a terminal: text as it is, other bytes as a count.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("<{} bytes>", bytes.len()),
    }
}

fn value(kv: &KeyValue) -> String {
    kv.value_bytes().map(show).unwrap_or_default()
}

fn print_state(out: &mut impl Write, snapshot: &MirrorSnapshot) -> std::io::Result<()> {
    writeln!(out, "state at revision {}: {} keys", snapshot.revision(), snapshot.len())?;
    for kv in snapshot.iter() {
        writeln!(out, "  {} = {}", show(&kv.key), value(kv))?;
    }
    Ok(())
}

/// Mirrors `namespace`'s keys under `prefix` and writes the state, then
/// every change, to `out`, until the mirror fails.
pub(crate) async fn mirror_and_print(
    client: &Client,
    namespace: &str,
    prefix: &str,
    out: &mut impl Write,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mirror = client.mirror(namespace, Selection::prefix(prefix.to_owned()), MirrorOptions::new());
    let (_, mut changes) = mirror.subscribe();
    while let Some(event) = changes.next().await {
        match event {
            MirrorEvent::Replaced { reason, snapshot, .. } => {
                if let Some(reason) = reason {
                    writeln!(out, "reset ({reason:?}): the state is replaced")?;
                }
                print_state(out, &snapshot)?;
            }
            MirrorEvent::Changed { revision, events } => {
                for event in events.iter() {
                    match event {
                        Event::Put { kv, .. } => {
                            writeln!(out, "{revision} put {} = {}", show(&kv.key), value(kv))?
                        }
                        Event::Delete { key, .. } => writeln!(out, "{revision} delete {}", show(key))?,
                    }
                }
            }
            MirrorEvent::Lagged { .. } => print_state(out, &mirror.snapshot())?,
            MirrorEvent::Failed(error) => return Err(error.into()),
            other => writeln!(out, "{other:?}")?,
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let base_url = args.next().unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let namespace = args.next().unwrap_or_else(|| "default".into());
    let prefix = args.next().unwrap_or_default();
    let mut builder = Client::builder(base_url);
    if let Ok(token) = std::env::var("GATEWAY_TOKEN") {
        builder = builder.bearer_token(token);
    }
    let client = builder.build()?;
    mirror_and_print(&client, &namespace, &prefix, &mut std::io::stdout()).await
}
