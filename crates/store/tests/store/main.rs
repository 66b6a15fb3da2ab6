//! Integration tests of the embedded store through the [`Store`] trait.

mod concurrency;
mod crud;
mod durability;
mod model;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use switchboard_store::embedded::Options;
use switchboard_store::{Embedded, Event, Store, Watch};

/// Opens a store in a fresh temp dir; keep the dir alive as long as the store.
pub fn open() -> (tempfile::TempDir, Arc<Embedded>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_at(&dir, Options::default());
    (dir, store)
}

/// Opens the store file inside `dir`.
pub fn open_at(dir: &tempfile::TempDir, options: Options) -> Arc<Embedded> {
    Embedded::open(&dir.path().join("store.redb"), options).expect("open store")
}

/// Value bytes from a string.
pub fn v(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Takes `n` events from `watch`, failing on an error, an end, or a 10 s deadline.
pub async fn take(watch: &mut Watch, n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            Ok(Some(Err(err))) => panic!("watch failed after {} events: {err}", out.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", out.len()),
            Err(_) => panic!("timed out after {} of {n} events", out.len()),
        }
    }
    out
}

/// Asserts that nothing more is ready on `watch` right now.
pub fn assert_quiet(watch: &mut Watch) {
    assert!(
        watch.next().now_or_never().is_none(),
        "watch delivered an unexpected extra item"
    );
}

/// Keeps the trait import used in every module.
pub fn _store_is_object_safe(s: Arc<Embedded>) -> Arc<dyn Store> {
    s
}
