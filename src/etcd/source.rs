//! [`EtcdSource`]: the cache's [`Source`] for one namespace, reading
//! etcd through the failover client.

use etcd_client::{GetOptions, WatchOptions};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::EtcdClient;
use super::client::classify;
use super::coalesce::Coalesced;
use super::keys::Prefix;
use crate::cache::{HistoryItem, KeyRange, LoadRequest, Loaded, Revision, Source, UpstreamError};

/// Reads one namespace's keys from etcd.
pub struct EtcdSource {
    client: EtcdClient,
    prefix: Prefix,
    /// Consistent reads' requests for the current revision, shared by
    /// concurrent readers.
    revision: Coalesced<Result<Revision, UpstreamError>>,
}

impl EtcdSource {
    /// A loader for the namespace with `prefix`.
    pub fn new(client: EtcdClient, prefix: Prefix) -> Self {
        let revision = Coalesced::new({
            let (client, prefix) = (client.clone(), prefix.clone());
            move || Box::pin(linearizable_revision(client.clone(), prefix.clone()))
        });
        Self { client, prefix, revision }
    }

    async fn load_range(&self, request: LoadRequest) -> Result<Loaded, UpstreamError> {
        if request.range.is_empty() {
            return Ok(Loaded::default());
        }
        let (start, end) = self.prefix.etcd_range(&request.range);
        let mut options = GetOptions::new().with_range(end);
        if request.revision > 0 {
            options = options.with_revision(request.revision);
        }
        if request.limit > 0 {
            options = options.with_limit(i64::try_from(request.limit).unwrap_or(i64::MAX));
        }
        if request.keys_only {
            options = options.with_keys_only();
        }
        let response = self.client.get(start, options).await?;
        let kvs = response.kvs().iter().filter_map(|kv| self.prefix.key_value(kv)).collect();
        Ok(Loaded {
            kvs,
            revision: response.header().map_or(0, |h| h.revision()),
            more: response.more(),
            count: u64::try_from(response.count()).unwrap_or(0),
        })
    }
}

/// etcd's current revision: a linearizable read of one key, whose header
/// carries it.
async fn linearizable_revision(client: EtcdClient, prefix: Prefix) -> Result<Revision, UpstreamError> {
    let (start, _) = prefix.etcd_range(&KeyRange::all());
    let response = client.get(start, GetOptions::new().with_count_only()).await?;
    response
        .header()
        .map(|h| h.revision())
        .ok_or(UpstreamError::Failed { message: "response without header".into() })
}

/// etcd's compaction revision, given that `compacted` is known to be
/// compacted. etcd tells it only when it cancels a watch that starts below
/// it: so watch the namespace from `compacted` and read the cancel. Bounded
/// by `etcd.request_timeout`.
async fn compaction_after(
    client: &EtcdClient,
    prefix: &Prefix,
    compacted: Revision,
) -> Result<Revision, UpstreamError> {
    let (start, end) = prefix.etcd_range(&KeyRange::all());
    let (_, etcd) = client.current();
    let probe = async {
        let options = WatchOptions::new().with_range(end).with_start_revision(compacted);
        let stream = etcd.watch_client().watch(start, Some(options)).await.map_err(classify)?;
        let (_requests, mut responses) = stream.split();
        // `created`, then the cancel (NOTES.md): anything else means no answer.
        for _ in 0..2 {
            match responses.message().await.map_err(classify)? {
                Some(r) if r.canceled() && r.compact_revision() > 0 => return Ok(r.compact_revision()),
                Some(r) if r.created() => {}
                _ => break,
            }
        }
        Err(UpstreamError::Failed { message: format!("no compaction reported for a watch from {compacted}") })
    };
    tokio::time::timeout(client.request_timeout(), probe).await.unwrap_or_else(|_| {
        Err(UpstreamError::Timeout { message: "waiting for etcd's compaction revision".into() })
    })
}

/// etcd's compaction revision now (0 when nothing was compacted): a read at
/// revision 1 tells whether anything was, the watch trick of
/// [`compaction_after`] which revision.
///
/// # Errors
/// etcd's failure.
pub async fn compaction(client: &EtcdClient, prefix: &Prefix) -> Result<Revision, UpstreamError> {
    let (start, end) = prefix.etcd_range(&KeyRange::all());
    let first = GetOptions::new().with_range(end).with_revision(1).with_count_only();
    match client.get(start, first).await {
        Ok(_) => Ok(0),
        Err(UpstreamError::Compacted { .. }) => compaction_after(client, prefix, 1).await,
        Err(e) => Err(e),
    }
}

impl Source for EtcdSource {
    fn load(&self, request: LoadRequest) -> BoxFuture<'_, Result<Loaded, UpstreamError>> {
        Box::pin(self.load_range(request))
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        Box::pin(async {
            self.revision
                .get()
                .await
                .unwrap_or_else(|| Err(UpstreamError::Unavailable { message: "shutting down".into() }))
        })
    }

    fn compact_revision(&self, compacted: Revision) -> BoxFuture<'_, Result<Revision, UpstreamError>> {
        Box::pin(compaction_after(&self.client, &self.prefix, compacted))
    }

    fn history(
        &self,
        range: KeyRange,
        after: Revision,
        prev_kv: bool,
    ) -> BoxStream<'static, Result<HistoryItem, UpstreamError>> {
        super::history::read(self.client.clone(), self.prefix.clone(), range, after, prev_kv)
    }
}
