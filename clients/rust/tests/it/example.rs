//! `examples/mirror.rs`, its code as it is (compiled into this binary):
//! it prints the state, then each change as etcd is written to.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::harness::{NS, Setup, WAIT};
use crate::support::wait::wait_until;

#[allow(dead_code)] // its `main` is the binary's, not this test's
#[path = "../../examples/mirror.rs"]
mod mirror_example;

/// What the example printed so far.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits until the output is exactly `expected`.
    async fn is(&self, expected: &str) {
        wait_until(&format!("the example printed {expected:?}"), WAIT, || {
            let done = self.text() == expected;
            async move { done }
        })
        .await;
    }
}

#[tokio::test]
async fn the_mirror_example_prints_the_state_then_every_change() {
    let mut s = Setup::start().await;
    s.put("ex/a", "1").await;
    s.put("ex/bin", [0xffu8, 0]).await;
    let head = s.put("other", "x").await;
    let caught_up = etcd_cache_gateway_client::GetOptions::new().min_revision(head);
    s.client.get_with(NS, "other", &caught_up).await.unwrap();
    let output = Output::default();
    let (client, mut out) = (s.client.clone(), output.clone());
    let example = tokio::spawn(async move {
        mirror_example::mirror_and_print(&client, NS, "ex/", &mut out).await.map_err(|e| e.to_string())
    });
    let mut expected = format!("state at revision {head}: 2 keys\n  ex/a = 1\n  ex/bin = <2 bytes>\n");
    output.is(&expected).await;
    let put = s.put("ex/c", "3").await;
    expected.push_str(&format!("{put} put ex/c = 3\n"));
    output.is(&expected).await;
    let deleted = s.delete("ex/a").await;
    expected.push_str(&format!("{deleted} delete ex/a\n"));
    output.is(&expected).await;
    assert!(!example.is_finished(), "the example keeps mirroring");
    example.abort();
}
