//! Create, get, update with compare-and-swap, delete and list.

use switchboard_store::{Error, Store};

use crate::{open, v};

#[tokio::test]
async fn create_get_update_delete() {
    let (_dir, store) = open();
    assert_eq!(store.revision().await.expect("revision"), 0);
    assert!(store.get("/a").await.expect("get").is_none());

    let created = store.create("/a", v("one")).await.expect("create");
    assert_eq!((created.create_revision, created.mod_revision), (1, 1));
    assert_eq!(store.get("/a").await.expect("get"), Some(created.clone()));

    let err = store
        .create("/a", v("again"))
        .await
        .expect_err("duplicate create");
    assert!(matches!(err, Error::AlreadyExists { ref key } if key == "/a"));

    let updated = store.update("/a", v("two"), 1).await.expect("update");
    assert_eq!(updated.create_revision, 1, "create_revision kept on update");
    assert_eq!(updated.mod_revision, 2);
    assert_eq!(&updated.value[..], b"two");

    let err = store
        .update("/a", v("stale"), 1)
        .await
        .expect_err("stale update");
    assert!(matches!(
        err,
        Error::Conflict {
            expected: 1,
            current: 2,
            ..
        }
    ));
    let err = store.delete("/a", Some(1)).await.expect_err("stale delete");
    assert!(matches!(
        err,
        Error::Conflict {
            expected: 1,
            current: 2,
            ..
        }
    ));
    // Failed writes do not consume revisions.
    assert_eq!(store.revision().await.expect("revision"), 2);

    let deleted = store.delete("/a", Some(2)).await.expect("delete");
    assert_eq!(deleted.mod_revision, 3, "delete reports its own revision");
    assert_eq!(deleted.create_revision, 1);
    assert_eq!(&deleted.value[..], b"two", "delete returns the last value");
    assert!(store.get("/a").await.expect("get").is_none());

    assert!(matches!(
        store.update("/a", v("x"), 3).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/a", None).await,
        Err(Error::NotFound { .. })
    ));

    // Recreating starts a new lifetime.
    let again = store.create("/a", v("three")).await.expect("recreate");
    assert_eq!((again.create_revision, again.mod_revision), (4, 4));
}

#[tokio::test]
async fn unconditional_delete() {
    let (_dir, store) = open();
    store.create("/x", v("1")).await.expect("create");
    store.update("/x", v("2"), 1).await.expect("update");
    let deleted = store.delete("/x", None).await.expect("delete without CAS");
    assert_eq!(deleted.mod_revision, 3);
}

#[tokio::test]
async fn revisions_grow_by_one_per_write() {
    let (_dir, store) = open();
    for i in 1..=20i64 {
        let kv = store
            .create(&format!("/k/{i:02}"), v("x"))
            .await
            .expect("create");
        assert_eq!(kv.mod_revision, i);
        assert_eq!(store.revision().await.expect("revision"), i);
    }
}

#[tokio::test]
async fn list_by_prefix_in_key_order_with_revision() {
    let (_dir, store) = open();
    for key in ["/b/2", "/a/1", "/b/1", "/c", "/b/10", "/bb/1"] {
        store.create(key, v(key)).await.expect("create");
    }
    let list = store.list("/b/").await.expect("list");
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/b/1", "/b/10", "/b/2"]);
    assert_eq!(list.revision, 6);
    assert_eq!(&list.kvs[0].value[..], b"/b/1");

    let all = store.list("").await.expect("list all");
    assert_eq!(all.kvs.len(), 6);
    assert!(all.kvs.windows(2).all(|w| w[0].key < w[1].key));

    let none = store.list("/zzz").await.expect("list empty");
    assert!(none.kvs.is_empty());
    assert_eq!(none.revision, 6);
}
