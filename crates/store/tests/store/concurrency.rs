//! Many concurrent writers: group commit keeps revisions unique, contiguous
//! and in order for watchers.

use std::collections::BTreeSet;

use switchboard_store::Store;

use crate::{open, take, v};

const TASKS: usize = 8;
const WRITES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_acknowledged_in_revision_order() {
    let (_dir, store) = open();
    let start = store.revision().await.expect("revision");
    let mut watch = store.watch("/", start).await.expect("watch");

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::with_capacity(WRITES);
            for i in 0..WRITES {
                let key = format!("/t{t}/{i:04}");
                // Mix creates and CAS updates so both paths race.
                let kv = store
                    .create(&key, v("c"))
                    .await
                    .expect("create acknowledged");
                revs.push(kv.mod_revision);
                if i % 4 == 0 {
                    let kv = store
                        .update(&key, v("u"), kv.mod_revision)
                        .await
                        .expect("update acknowledged");
                    revs.push(kv.mod_revision);
                }
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("writer task"));
    }
    let total = TASKS * (WRITES + WRITES / 4);
    assert_eq!(all.len(), total);
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), total, "revisions are unique");
    let expected: BTreeSet<_> = (start + 1..=start + total as i64).collect();
    assert_eq!(unique, expected, "revisions are contiguous");

    let events = take(&mut watch, total).await;
    let revs: Vec<_> = events.iter().map(|e| e.revision()).collect();
    let in_order: Vec<_> = expected.iter().copied().collect();
    assert_eq!(revs, in_order, "watcher sees every write in revision order");

    assert_eq!(
        store.list("/").await.expect("list").kvs.len(),
        TASKS * WRITES
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_cas_updates_one_winner_per_round() {
    let (_dir, store) = open();
    let kv = store.create("/counter", v("0")).await.expect("create");
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let expected = kv.mod_revision;
        handles.push(tokio::spawn(async move {
            store.update("/counter", v("x"), expected).await.is_ok()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.expect("task"));
    }
    assert_eq!(winners, 1, "exactly one CAS on the same revision wins");
}
