//! Watches: resume from an old resourceVersion in order, label-filtered
//! transitions, and 410 Gone once the history has moved on.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use serde_json::json;

use crate::start_with;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "w"}}, "data": {"v": "0"}}),
    )
    .unwrap()
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .expect("the event decodes")
}

#[tokio::test]
async fn a_watch_resumed_from_an_old_revision_gets_every_event_in_order() {
    let c = start_with(|_| {}).await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..20 {
        api.create(&PostParams::default(), &cm(&format!("c{i:02}")))
            .await
            .unwrap();
    }
    for i in 0..20 {
        api.patch(
            &format!("c{i:02}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "1"}})),
        )
        .await
        .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    let mut last = start.parse::<i64>().unwrap();
    for i in 0..40 {
        let (kind, obj) = match next_event(&mut stream).await {
            WatchEvent::Added(o) => ("added", o),
            WatchEvent::Modified(o) => ("modified", o),
            other => panic!("unexpected event {other:?}"),
        };
        assert_eq!(kind, if i < 20 { "added" } else { "modified" });
        assert_eq!(obj.metadata.name.unwrap(), format!("c{:02}", i % 20));
        let rv: i64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last, "events come in revision order");
        last = rv;
    }
    // Live events follow the replay.
    api.delete("c00", &Default::default()).await.unwrap();
    assert!(
        matches!(next_event(&mut stream).await, WatchEvent::Deleted(o) if o.metadata.name.as_deref() == Some("c00"))
    );
}

#[tokio::test]
async fn label_filtered_watches_see_objects_enter_and_leave() {
    let c = start_with(|_| {}).await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut stream = api
        .watch(&WatchParams::default().labels("tier=web"), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("x")).await.unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "db"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn a_watch_from_before_the_history_gets_410_gone() {
    let c = start_with(|config| config.watch_history = 5).await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..10 {
        api.create(&PostParams::default(), &cm(&format!("g{i}")))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // kube-runtime's watcher recovers by relisting.
    let objects: Vec<ConfigMap> = kube::runtime::watcher(api.clone(), Default::default())
        .applied_objects()
        .take(10)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(objects.len(), 10);
}

#[tokio::test]
async fn bookmarks_carry_the_revision_forward() {
    let c = start_with(|_| {}).await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    // A write elsewhere moves the revision on without touching ConfigMaps.
    let other: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(c.client.clone(), "default");
    other
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => assert!(
            b.metadata.resource_version.parse::<i64>().unwrap() > rv.parse::<i64>().unwrap()
        ),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}
