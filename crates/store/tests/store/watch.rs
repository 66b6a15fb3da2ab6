//! Watch: replay from a revision, live follow, prefixes, compaction.

use switchboard_store::embedded::Options;
use switchboard_store::{Error, EventKind, Store};

use crate::{assert_quiet, open, open_at, take, v};

#[tokio::test]
async fn replays_history_in_order_then_follows_live() {
    let (_dir, store) = open();
    store.create("/a", v("1")).await.expect("create");
    store.update("/a", v("2"), 1).await.expect("update");
    store.create("/b", v("1")).await.expect("create");
    store.delete("/a", Some(2)).await.expect("delete");

    let mut watch = store.watch("/", 1).await.expect("watch");
    let replay = take(&mut watch, 3).await;
    let revs: Vec<_> = replay.iter().map(|e| e.revision()).collect();
    assert_eq!(revs, [2, 3, 4]);
    assert_eq!(replay[0].kind, EventKind::Put);
    assert_eq!(replay[0].prev.as_ref().map(|p| p.mod_revision), Some(1));
    assert_eq!(replay[2].kind, EventKind::Delete);
    assert_eq!(replay[2].kv.key, "/a");
    assert_eq!(
        &replay[2].kv.value[..],
        b"2",
        "delete carries the last value"
    );
    assert_quiet(&mut watch);

    store.create("/c", v("1")).await.expect("create");
    let live = take(&mut watch, 1).await;
    assert_eq!(live[0].revision(), 5);
    assert_eq!(live[0].kv.key, "/c");
    assert!(live[0].prev.is_none());
}

#[tokio::test]
async fn watch_from_list_revision_has_no_gap_and_no_duplicate() {
    let (_dir, store) = open();
    for i in 0..5 {
        store
            .create(&format!("/k/{i}"), v("x"))
            .await
            .expect("create");
    }
    let list = store.list("/k/").await.expect("list");
    let mut watch = store.watch("/k/", list.revision).await.expect("watch");
    assert_quiet(&mut watch);
    store.create("/k/5", v("x")).await.expect("create");
    let events = take(&mut watch, 1).await;
    assert_eq!(events[0].revision(), list.revision + 1);
}

#[tokio::test]
async fn prefix_filters_events() {
    let (_dir, store) = open();
    let mut services = store.watch("/svc/", 0).await.expect("watch");
    store.create("/pods/a", v("p")).await.expect("create");
    store.create("/svc/a", v("s")).await.expect("create");
    store.create("/svcx", v("no")).await.expect("create");
    store.create("/svc/b", v("s")).await.expect("create");
    let events = take(&mut services, 2).await;
    let keys: Vec<_> = events.iter().map(|e| e.kv.key.as_str()).collect();
    assert_eq!(keys, ["/svc/a", "/svc/b"]);
    assert_quiet(&mut services);

    // The same filter applies to replayed history.
    let mut replay = store.watch("/pods/", 0).await.expect("watch");
    assert_eq!(take(&mut replay, 1).await[0].kv.key, "/pods/a");
    assert_quiet(&mut replay);
}

#[tokio::test]
async fn watch_from_compacted_revision_fails() {
    let (_dir, store) = open();
    for i in 0..5 {
        store
            .create(&format!("/k/{i}"), v("x"))
            .await
            .expect("create");
    }
    store.compact(3).await.expect("compact");
    let err = store
        .watch("/", 2)
        .await
        .err()
        .expect("watch before compaction");
    assert!(matches!(
        err,
        Error::Compacted {
            requested: 2,
            compacted: 3
        }
    ));

    let mut watch = store
        .watch("/", 3)
        .await
        .expect("watch at compaction point");
    let revs: Vec<_> = take(&mut watch, 2)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();
    assert_eq!(revs, [4, 5]);

    assert!(matches!(
        store.compact(99).await,
        Err(Error::FutureRevision {
            requested: 99,
            current: 5
        })
    ));
}

#[tokio::test]
async fn watch_from_the_future_fails() {
    let (_dir, store) = open();
    store.create("/a", v("x")).await.expect("create");
    let err = store.watch("/", 2).await.err().expect("future watch");
    assert!(matches!(
        err,
        Error::FutureRevision {
            requested: 2,
            current: 1
        }
    ));
}

#[tokio::test]
async fn history_does_not_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open_at(&dir, Options::default());
        store.create("/a", v("x")).await.expect("create");
        store.create("/b", v("x")).await.expect("create");
    }
    let store = open_at(&dir, Options::default());
    assert!(matches!(
        store.watch("/", 1).await,
        Err(Error::Compacted {
            requested: 1,
            compacted: 2
        })
    ));
    let mut watch = store.watch("/", 2).await.expect("watch from current");
    store.create("/c", v("x")).await.expect("create");
    assert_eq!(take(&mut watch, 1).await[0].revision(), 3);
}
