//! The kube-runtime wiring: watchers on Services and EndpointSlices in all
//! namespaces, folded through a [`Cache`] into snapshots on a
//! `tokio::sync::watch` channel.
//!
//! Events are applied in batches: after one arrives, everything already
//! waiting in the streams is applied too, and then one snapshot is
//! published. A burst of N slice writes thus costs one publish, not N.

use std::sync::Arc;

use futures::{FutureExt as _, Stream, StreamExt as _};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::cache::Cache;
use crate::table::ServiceTable;

/// Most events applied before a snapshot is published, so a long burst
/// still publishes now and then.
const MAX_BATCH: usize = 4096;

/// Errors that stop discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch stream ended, which kube-runtime's watchers do not do while
    /// the process runs (errors are retried with backoff).
    #[error("the {what} watch ended")]
    WatchEnded {
        /// Which watch.
        what: &'static str,
    },
}

/// A running discovery: the latest table, and the task that keeps it current.
#[derive(Debug)]
pub struct Discovery {
    /// The latest snapshot. Starts empty with `synced: false`; clone the
    /// receiver for each consumer.
    pub table: watch::Receiver<Arc<ServiceTable>>,
    /// The watch task; it returns only on failure. Abort it to stop.
    pub task: tokio::task::JoinHandle<Result<(), Error>>,
}

/// Starts watching Services and EndpointSlices through `client`.
pub fn spawn(client: Client) -> Discovery {
    let (tx, rx) = watch::channel(Arc::new(ServiceTable::default()));
    let services = watch_all::<core::Service>(&client).map(|e| Update::Service(Box::new(e)));
    let slices = watch_all::<EndpointSlice>(&client).map(|e| Update::Slice(Box::new(e)));
    let task = tokio::spawn(run(futures::stream::select(services, slices), tx));
    Discovery { table: rx, task }
}

/// Boxed: a Service is twice the size of a slice, and each event is moved
/// through the merged stream once.
enum Update {
    Service(Box<Option<Event<core::Service>>>),
    Slice(Box<Option<Event<EndpointSlice>>>),
}

fn watch_all<K>(client: &Client) -> impl Stream<Item = Option<Event<K>>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let kind: Arc<str> = K::kind(&()).into();
    watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(move |item| {
            let kind = Arc::clone(&kind);
            async move {
            match item {
                Ok(ev) => Some(Some(ev)),
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "discovery watch failed; retrying with backoff");
                    None
                }
            }
            }
        })
        // A `None` marks the end, so `run` can tell which stream ended.
        .chain(futures::stream::once(async { None }))
}

async fn run(
    updates: impl Stream<Item = Update> + Send,
    tx: watch::Sender<Arc<ServiceTable>>,
) -> Result<(), Error> {
    let mut updates = std::pin::pin!(updates);
    let mut cache = Cache::new();
    while let Some(first) = updates.next().await {
        apply(&mut cache, first)?;
        let mut n = 1;
        while n < MAX_BATCH {
            match updates.next().now_or_never() {
                Some(Some(update)) => apply(&mut cache, update)?,
                _ => break,
            }
            n += 1;
        }
        if let Some(table) = cache.publish() {
            tracing::debug!(
                generation = table.generation,
                changed = table.changed.len(),
                services = table.services.len(),
                events = n,
                "service table published"
            );
            tx.send_replace(Arc::new(table));
        }
    }
    Err(Error::WatchEnded { what: "discovery" })
}

fn apply(cache: &mut Cache, update: Update) -> Result<(), Error> {
    match update {
        Update::Service(ev) => match *ev {
            Some(ev) => cache.service_event(ev),
            None => return Err(Error::WatchEnded { what: "Service" }),
        },
        Update::Slice(ev) => match *ev {
            Some(ev) => cache.slice_event(ev),
            None => {
                return Err(Error::WatchEnded {
                    what: "EndpointSlice",
                });
            }
        },
    }
    Ok(())
}
