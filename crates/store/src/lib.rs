//! Revisioned key-value storage with etcd semantics.
//!
//! Every write bumps one global revision. Objects carry the revision that
//! created them and the one that last modified them; updates and deletes can
//! compare-and-swap on the latter. A watch replays every change after a given
//! revision from a bounded in-memory history and then follows live changes; a
//! watch from before the history's start fails with [`Error::Compacted`] so the
//! apiserver can answer `410 Gone`.
//!
//! [`Store`] is the seam: the apiserver only sees the trait, so an etcd v3
//! backend can sit beside the [`embedded`] one without touching it.

pub mod embedded;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use embedded::Embedded;

/// A position in the store's history. Revisions start at 1 and only grow.
pub type Revision = i64;

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/services/default/web`.
    pub key: String,
    /// The stored bytes (JSON for the apiserver).
    pub value: Bytes,
    /// Revision of the write that created this key.
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated.
    Put,
    /// Deleted.
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new value. For a delete, the last value, with
    /// `mod_revision` set to the revision of the delete.
    pub kv: KeyValue,
    /// The value before this change, if there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The result of a list: the matching keys, in key order, and the revision
/// the list reflects.
#[derive(Debug, Clone, Default)]
pub struct List {
    /// Matching entries, sorted by key.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the list was read.
    pub revision: Revision,
}

/// A stream of changes; ends with an error if the watcher fell too far behind.
pub type Watch = BoxStream<'static, Result<Event, Error>>;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// Update or delete of a key that does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Compare-and-swap failed: the key was modified since `expected`.
    #[error("key {key} was modified: expected revision {expected}, found {current}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current revision.
        current: Revision,
    },
    /// A watch asked for history that is no longer kept.
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// Events at or before this revision are gone.
        compacted: Revision,
    },
    /// A watch asked for a revision the store has not reached.
    #[error("revision {requested} is in the future; current revision is {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A watcher was too slow to keep up and was dropped.
    #[error("watcher fell behind and was closed")]
    WatcherLagged,
    /// The backend failed (disk, database).
    #[error("storage backend failed: {0}")]
    Backend(String),
}

/// A revisioned key-value store with etcd semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, Error>;

    /// Lists every key that starts with `prefix`, in key order, at one revision.
    async fn list(&self, prefix: &str) -> Result<List, Error>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    /// Returns the stored entry. The write is durable when this returns.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, Error>;

    /// Replaces `key` if its `mod_revision` is still `expected`; fails with
    /// [`Error::Conflict`] otherwise and [`Error::NotFound`] if it is gone.
    /// The write is durable when this returns.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue, Error>;

    /// Deletes `key`, if `expected` is given only when its `mod_revision`
    /// still matches. Returns the deleted entry with `mod_revision` set to the
    /// revision of the delete. The delete is durable when this returns.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, Error>;

    /// Streams every change to keys under `prefix` with a revision greater
    /// than `after`, then live changes. `after` may be the revision of a list.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, Error>;

    /// The store's current revision.
    async fn revision(&self) -> Result<Revision, Error>;

    /// Forgets history at and before `revision`: later watches from there fail
    /// with [`Error::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<(), Error>;
}
