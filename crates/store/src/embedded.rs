//! The embedded backend: redb on local disk.
//!
//! Layout: table `kv` maps each key to `create_revision (i64 LE) ||
//! mod_revision (i64 LE) || value`, and table `meta` holds the store's
//! current revision under `"revision"`. Both change in the same transaction,
//! so a read transaction always sees a consistent (entries, revision) pair.
//!
//! Writes go through one writer thread that practises group commit: it takes
//! every request waiting in its queue, applies them in one redb write
//! transaction (each request gets its own revision; a failed compare-and-swap
//! fails only that request), commits once with fsync, then publishes the
//! events to watchers and only then answers the callers. One fsync thus pays
//! for many writes, and an acknowledged write is always on disk.
//!
//! Watches are served from memory: a ring of the last [`Options::history`]
//! events plus a bounded channel per watcher. Publication and watch
//! registration take the same lock, so a watcher sees the history snapshot
//! followed by live events with no gap and no duplicate.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc as std_mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Event, EventKind, KeyValue, List, Revision, Store, Watch};

/// Key -> `create_revision || mod_revision || value`.
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Store-wide counters.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// The key in [`META`] holding the current revision.
const REVISION_KEY: &str = "revision";
/// Bytes of the two revisions in front of each stored value.
const HEADER: usize = 16;
/// Upper bound on requests folded into one transaction, so one commit's
/// latency stays bounded under a flood of writes.
const MAX_BATCH: usize = 4096;

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events kept in memory for watches that resume from an older revision.
    /// The apiserver's watch cache serves clients' resumed watches; this
    /// history only has to bridge its own list-then-watch, so it is short.
    pub history: usize,
    /// Bytes of redb's page cache. The apiserver keeps every object in its
    /// own cache, so this only needs the working set of writes and point
    /// reads; the kernel's page cache (not counted in RSS) keeps the rest of
    /// the file warm.
    pub cache_bytes: usize,
    /// Live events buffered per watcher; a watcher further behind than this
    /// gets [`Error::WatcherLagged`] and its stream ends.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            history: 1_000,
            cache_bytes: 16 << 20,
            watch_buffer: 10_000,
        }
    }
}

/// The embedded store: a redb file, a group-commit writer thread and an
/// in-memory watch history.
pub struct Embedded {
    db: Arc<Database>,
    shared: Arc<Shared>,
    /// `None` only while dropping, which closes the writer's queue.
    requests: Option<std_mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").finish_non_exhaustive()
    }
}

/// State shared by the writer thread (publisher) and watch registration.
struct Shared {
    watch: Mutex<WatchState>,
    watch_buffer: usize,
}

struct WatchState {
    /// Revision of the last published (committed) write.
    current: Revision,
    /// Events at or before this revision are no longer in `history`.
    compacted: Revision,
    /// Events with revisions in `(compacted, current]`, oldest first.
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    watchers: Vec<Watcher>,
}

struct Watcher {
    prefix: String,
    events: mpsc::Sender<Arc<Event>>,
    /// Set before `events` is dropped for being full, so the stream can tell
    /// "fell behind" from "store closed".
    lagged: Arc<AtomicBool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        // A panic while holding this lock cannot leave the state torn in a way
        // that matters more than losing the store, so recover the guard.
        self.watch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WatchState {
    fn publish(&mut self, events: &[Arc<Event>]) {
        for event in events {
            self.current = event.revision();
            self.history.push_back(event.clone());
            self.watchers.retain(|w| {
                if !event.kv.key.starts_with(&w.prefix) {
                    return true;
                }
                match w.events.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        w.lagged.store(true, Ordering::SeqCst);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
        }
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.revision();
            }
        }
        if self.history_limit == 0 {
            self.compacted = self.current;
        }
    }
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<KeyValue, Error>>,
}

fn backend(err: impl std::fmt::Display) -> Error {
    Error::Backend(err.to_string())
}

fn encode(create_revision: Revision, mod_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue, Error> {
    let (Some(create), Some(modified)) = (raw.get(0..8), raw.get(8..HEADER)) else {
        return Err(Error::Backend(format!(
            "corrupt entry for key {key}: {} bytes",
            raw.len()
        )));
    };
    let revision = |b: &[u8]| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(b);
        i64::from_le_bytes(buf)
    };
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(&raw[HEADER..]),
        create_revision: revision(create),
        mod_revision: revision(modified),
    })
}

impl Embedded {
    /// Opens (or creates) the database at `path`.
    ///
    /// The watch history starts empty, so watches from before the revision
    /// found on disk fail with [`Error::Compacted`].
    pub fn open(path: &Path, options: Options) -> Result<Arc<Self>, Error> {
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(options.cache_bytes)
                .create(path)
                .map_err(backend)?,
        );
        let revision = init(&db).map_err(backend)?;
        let shared = Arc::new(Shared {
            watch: Mutex::new(WatchState {
                current: revision,
                compacted: revision,
                history: VecDeque::new(),
                history_limit: options.history,
                watchers: Vec::new(),
            }),
            watch_buffer: options.watch_buffer.max(1),
        });
        let (requests, queue) = std_mpsc::channel();
        let writer = {
            let db = db.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run_writer(&db, &queue, &shared, revision))
                .map_err(backend)?
        };
        Ok(Arc::new(Self {
            db,
            shared,
            requests: Some(requests),
            writer: Some(writer),
        }))
    }

    async fn submit(&self, op: Op) -> Result<KeyValue, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .ok_or_else(|| backend("store is closed"))?
            .send(Request { op, reply })
            .map_err(|_| backend("store writer has stopped"))?;
        answer
            .await
            .map_err(|_| backend("store writer stopped before answering"))?
    }

    /// The revision committed to disk (may be ahead of the published one for
    /// the instant between commit and publication).
    fn committed_revision(&self) -> Result<Revision, Error> {
        let txn = self.db.begin_read().map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        Ok(meta
            .get(REVISION_KEY)
            .map_err(backend)?
            .map_or(0, |g| g.value()))
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered what
        // it already took; joining makes the file free for a reopen.
        self.requests = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// Creates the tables if missing and returns the stored revision.
fn init(db: &Database) -> Result<Revision, redb::Error> {
    let txn = db.begin_write()?;
    let revision = {
        txn.open_table(KV)?;
        let meta = txn.open_table(META)?;
        meta.get(REVISION_KEY)?.map_or(0, |g| g.value())
    };
    txn.commit()?;
    Ok(revision)
}

fn run_writer(
    db: &Database,
    queue: &std_mpsc::Receiver<Request>,
    shared: &Shared,
    mut revision: Revision,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        match apply_batch(db, &batch, revision) {
            Ok((outcomes, new_revision)) => {
                revision = new_revision;
                let events: Vec<Arc<Event>> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().cloned())
                    .collect();
                // Publish before answering: a caller holding revision r can
                // then always watch from r.
                if !events.is_empty() {
                    shared.lock().publish(&events);
                }
                for (req, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = req.reply.send(outcome.map(|e| e.kv.clone()));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "store write transaction failed");
                let msg = err.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(Error::Backend(msg.clone())));
                }
            }
        }
    }
}

type Outcome = Result<Arc<Event>, Error>;

/// Applies `batch` in one transaction starting after `revision`; returns
/// each request's outcome and the new revision. An `Err` means nothing was
/// committed.
fn apply_batch(
    db: &Database,
    batch: &[Request],
    start: Revision,
) -> Result<(Vec<Outcome>, Revision), redb::Error> {
    let txn = db.begin_write()?;
    let mut revision = start;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut kv = txn.open_table(KV)?;
        for req in batch {
            outcomes.push(apply_one(&mut kv, &req.op, &mut revision)?);
        }
        if revision != start {
            txn.open_table(META)?.insert(REVISION_KEY, revision)?;
        }
    }
    if revision == start {
        // Every request failed its precondition: nothing to make durable.
        txn.abort()?;
    } else {
        txn.commit()?;
    }
    Ok((outcomes, revision))
}

fn apply_one(
    kv: &mut redb::Table<'_, &str, &[u8]>,
    op: &Op,
    revision: &mut Revision,
) -> Result<Outcome, redb::Error> {
    let key = match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
    };
    let prev = match kv.get(key.as_str())? {
        Some(raw) => match decode(key, raw.value()) {
            Ok(prev) => Some(prev),
            Err(err) => return Ok(Err(err)),
        },
        None => None,
    };
    let check = |expected: Option<Revision>| -> Result<KeyValue, Error> {
        let prev = prev
            .clone()
            .ok_or_else(|| Error::NotFound { key: key.clone() })?;
        match expected {
            Some(expected) if expected != prev.mod_revision => Err(Error::Conflict {
                key: key.clone(),
                expected,
                current: prev.mod_revision,
            }),
            _ => Ok(prev),
        }
    };
    let next = *revision + 1;
    let event = match op {
        Op::Create { value, .. } => {
            if prev.is_some() {
                return Ok(Err(Error::AlreadyExists { key: key.clone() }));
            }
            kv.insert(key.as_str(), encode(next, next, value).as_slice())?;
            Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: next,
                    mod_revision: next,
                },
                prev: None,
            }
        }
        Op::Update {
            value, expected, ..
        } => {
            let prev = match check(Some(*expected)) {
                Ok(prev) => prev,
                Err(err) => return Ok(Err(err)),
            };
            kv.insert(
                key.as_str(),
                encode(prev.create_revision, next, value).as_slice(),
            )?;
            Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: next,
                },
                prev: Some(prev),
            }
        }
        Op::Delete { expected, .. } => {
            let prev = match check(*expected) {
                Ok(prev) => prev,
                Err(err) => return Ok(Err(err)),
            };
            kv.remove(key.as_str())?;
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    mod_revision: next,
                    ..prev.clone()
                },
                prev: Some(prev),
            }
        }
    };
    *revision = next;
    Ok(Ok(Arc::new(event)))
}

fn read_list(db: &Database, prefix: &str) -> Result<List, Error> {
    let txn = db.begin_read().map_err(backend)?;
    let revision = txn
        .open_table(META)
        .map_err(backend)?
        .get(REVISION_KEY)
        .map_err(backend)?
        .map_or(0, |g| g.value());
    let kv = txn.open_table(KV).map_err(backend)?;
    let mut kvs = Vec::new();
    for entry in kv.range(prefix..).map_err(backend)? {
        let (key, raw) = entry.map_err(backend)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        kvs.push(decode(key, raw.value())?);
    }
    Ok(List { kvs, revision })
}

#[async_trait::async_trait]
impl Store for Embedded {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error> {
        // A point read is a few microseconds: not worth a blocking-pool hop.
        let txn = self.db.begin_read().map_err(backend)?;
        let kv = txn.open_table(KV).map_err(backend)?;
        let raw = kv.get(key).map_err(backend)?;
        raw.map(|raw| decode(key, raw.value())).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<List, Error> {
        let db = self.db.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || read_list(&db, &prefix))
            .await
            .map_err(backend)?
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error> {
        self.submit(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error> {
        self.submit(Op::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error> {
        self.submit(Op::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, Error> {
        let (tx, rx) = mpsc::channel(self.shared.watch_buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        let replay: Vec<Arc<Event>> = {
            let mut state = self.shared.lock();
            if after < state.compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted: state.compacted,
                });
            }
            if after > state.current {
                // A list may have read a revision the writer committed but
                // has not published yet; that is not the future. Its events
                // arrive live and the filter below skips them.
                let committed = self.committed_revision()?;
                if after > committed {
                    return Err(Error::FutureRevision {
                        requested: after,
                        current: committed,
                    });
                }
            }
            // History is in revision order: skip to the first event after
            // `after` by binary search, then filter by prefix.
            let start = state.history.partition_point(|e| e.revision() <= after);
            let replay = state
                .history
                .range(start..)
                .filter(|e| e.kv.key.starts_with(prefix))
                .cloned()
                .collect();
            state.watchers.push(Watcher {
                prefix: prefix.to_owned(),
                events: tx,
                lagged: lagged.clone(),
            });
            replay
        };
        let live = futures::stream::unfold(Some((rx, lagged)), move |st| async move {
            let (mut rx, lagged) = st?;
            loop {
                match rx.recv().await {
                    Some(event) if event.revision() <= after => continue,
                    Some(event) => return Some((Ok((*event).clone()), Some((rx, lagged)))),
                    None if lagged.load(Ordering::SeqCst) => {
                        return Some((Err(Error::WatcherLagged), None));
                    }
                    None => return None,
                }
            }
        });
        let replay = futures::stream::iter(replay).map(|e| Ok((*e).clone()));
        Ok(replay.chain(live).boxed())
    }

    async fn revision(&self) -> Result<Revision, Error> {
        Ok(self.shared.lock().current)
    }

    async fn compact(&self, revision: Revision) -> Result<(), Error> {
        let mut state = self.shared.lock();
        if revision > state.current {
            return Err(Error::FutureRevision {
                requested: revision,
                current: state.current,
            });
        }
        while state
            .history
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            state.history.pop_front();
        }
        state.compacted = state.compacted.max(revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir, options: Options) -> Arc<Embedded> {
        Embedded::open(&dir.path().join("db.redb"), options).expect("open a fresh store")
    }

    #[test]
    fn entry_encoding_round_trips() {
        let raw = encode(3, 9, b"hello");
        let kv = decode("/k", &raw).expect("well-formed entry");
        assert_eq!(kv.create_revision, 3);
        assert_eq!(kv.mod_revision, 9);
        assert_eq!(&kv.value[..], b"hello");
    }

    #[test]
    fn truncated_entry_is_a_backend_error_not_a_panic() {
        assert!(matches!(decode("/k", &[1, 2, 3]), Err(Error::Backend(_))));
    }

    #[tokio::test]
    async fn history_limit_raises_compacted_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(
            &dir,
            Options {
                history: 3,
                ..Options::default()
            },
        );
        for i in 0..5 {
            store
                .create(&format!("/k{i}"), Bytes::from_static(b"v"))
                .await
                .expect("create");
        }
        // Revisions 1..=5 written, only 3..=5 kept: a watch after 2 works,
        // after 1 would miss revision 2.
        assert!(store.watch("/", 2).await.is_ok());
        assert!(matches!(
            store.watch("/", 1).await,
            Err(Error::Compacted {
                requested: 1,
                compacted: 2
            })
        ));
    }

    #[tokio::test]
    async fn slow_watcher_gets_lagged_then_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(
            &dir,
            Options {
                watch_buffer: 2,
                ..Options::default()
            },
        );
        let mut watch = store.watch("/", 0).await.expect("watch");
        for i in 0..4 {
            store
                .create(&format!("/k{i}"), Bytes::from_static(b"v"))
                .await
                .expect("create");
        }
        let mut got = Vec::new();
        while let Some(item) = watch.next().await {
            got.push(item.map(|e| e.revision()));
        }
        assert_eq!(got.len(), 3, "two buffered events then the error: {got:?}");
        assert_eq!(got[0].as_ref().ok(), Some(&1));
        assert_eq!(got[1].as_ref().ok(), Some(&2));
        assert!(matches!(got[2], Err(Error::WatcherLagged)));
    }

    #[tokio::test]
    async fn watch_ends_when_store_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(&dir, Options::default());
        let mut watch = store.watch("/", 0).await.expect("watch");
        drop(store);
        assert!(watch.next().await.is_none());
    }
}
