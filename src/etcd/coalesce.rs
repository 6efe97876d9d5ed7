//! [`Coalesced`]: one request to etcd answering every caller that arrived
//! while the previous one was in flight.
//!
//! A consistent read asks etcd for its current revision (a linearizable
//! request). A thousand informers listing at once would make a thousand
//! such requests and time out on etcd's side; etcd batches its own
//! ReadIndex requests the same way. A caller is answered only by a request
//! that *started* after it arrived, so the answer is as linearizable as a
//! request of its own: callers arriving while a request is in flight wait
//! for the next one, which starts as soon as the current one returns. At
//! most one request is in flight, whatever the number of callers.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

/// Starts one request.
type Make<T> = Arc<dyn Fn() -> BoxFuture<'static, T> + Send + Sync>;

/// Shares requests between concurrent callers (see the module).
pub struct Coalesced<T> {
    state: Arc<Mutex<Waiting<T>>>,
    make: Make<T>,
}

struct Waiting<T> {
    /// Whether a driver task is running (it takes `callers` in batches).
    driving: bool,
    callers: Vec<oneshot::Sender<T>>,
}

impl<T: Clone + Send + 'static> Coalesced<T> {
    /// Coalesces the requests that `make` starts.
    pub fn new(make: impl Fn() -> BoxFuture<'static, T> + Send + Sync + 'static) -> Self {
        Self {
            state: Arc::new(Mutex::new(Waiting { driving: false, callers: Vec::new() })),
            make: Arc::new(make),
        }
    }

    /// The answer of a request started after this call; `None` only when
    /// the runtime is shutting down. Requests run in a task of their own,
    /// so a caller that gives up does not stall the others.
    pub async fn get(&self) -> Option<T> {
        let (answer, answered) = oneshot::channel();
        let start_driver = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.callers.push(answer);
            !std::mem::replace(&mut state.driving, true)
        };
        if start_driver {
            tokio::spawn(drive(Arc::clone(&self.state), Arc::clone(&self.make)));
        }
        answered.await.ok()
    }
}

/// Runs one request per batch of callers until none is waiting.
async fn drive<T: Clone>(state: Arc<Mutex<Waiting<T>>>, make: Make<T>) {
    loop {
        let batch = {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.callers.is_empty() {
                state.driving = false;
                return;
            }
            std::mem::take(&mut state.callers)
        };
        // Taken before the request starts: every caller in `batch` arrived
        // before it.
        let answer = make().await;
        for caller in batch {
            let _ = caller.send(answer.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// A request that counts its starts and returns only when the test
    /// releases it; its answer is its ordinal.
    fn gated() -> (Arc<AtomicUsize>, Arc<Semaphore>, impl Fn() -> BoxFuture<'static, usize>) {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let make = {
            let (started, gate) = (Arc::clone(&started), Arc::clone(&gate));
            move || {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                let gate = Arc::clone(&gate);
                Box::pin(async move {
                    gate.acquire().await.expect("gate open").forget();
                    n
                }) as BoxFuture<'static, usize>
            }
        };
        (started, gate, make)
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("condition not reached in 2 s");
    }

    #[tokio::test]
    async fn callers_during_a_request_share_the_next_one() {
        let (started, gate, make) = gated();
        let coalesced = Arc::new(Coalesced::new(make));
        let first = tokio::spawn({
            let c = Arc::clone(&coalesced);
            async move { c.get().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        // 100 callers arrive while request 1 is in flight.
        let later: Vec<_> = (0..100)
            .map(|_| {
                let c = Arc::clone(&coalesced);
                tokio::spawn(async move { c.get().await })
            })
            .collect();
        until(|| coalesced.state.lock().unwrap().callers.len() == 100).await;
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Some(1));
        until(|| started.load(Ordering::SeqCst) == 2).await;
        gate.add_permits(1);
        for caller in later {
            // Request 2 started after they arrived; request 1 before.
            assert_eq!(caller.await.unwrap(), Some(2));
        }
        assert_eq!(started.load(Ordering::SeqCst), 2);
        // The driver stopped; the next caller starts request 3.
        until(|| !coalesced.state.lock().unwrap().driving).await;
        gate.add_permits(1);
        assert_eq!(coalesced.get().await, Some(3));
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_does_not_stall_the_others() {
        let (started, gate, make) = gated();
        let coalesced = Arc::new(Coalesced::new(make));
        let leader = tokio::spawn({
            let c = Arc::clone(&coalesced);
            async move { c.get().await }
        });
        until(|| started.load(Ordering::SeqCst) == 1).await;
        let follower = tokio::spawn({
            let c = Arc::clone(&coalesced);
            async move { c.get().await }
        });
        until(|| coalesced.state.lock().unwrap().callers.len() == 1).await;
        leader.abort();
        gate.add_permits(2);
        assert_eq!(follower.await.unwrap(), Some(2));
    }
}
