use serde_json::json;

use super::*;

fn svc(name: &str) -> core::Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": "127.96.0.5", "ports": [{"port": 80}]}
    }))
    .expect("test Service parses")
}

fn slice(name: &str, service: &str, addrs: &[&str]) -> EndpointSlice {
    let endpoints: Vec<_> = addrs.iter().map(|a| json!({"addresses": [a]})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": endpoints
    }))
    .expect("test EndpointSlice parses")
}

fn synced(services: Vec<core::Service>, slices: Vec<EndpointSlice>) -> Cache {
    let mut c = Cache::new();
    c.service_event(Event::Init);
    for s in services {
        c.service_event(Event::InitApply(s));
    }
    c.service_event(Event::InitDone);
    assert!(
        c.publish().is_none(),
        "nothing before the slices are listed too"
    );
    c.slice_event(Event::Init);
    for s in slices {
        c.slice_event(Event::InitApply(s));
    }
    c.slice_event(Event::InitDone);
    c
}

fn addrs(t: &ServiceTable, name: &str) -> Vec<String> {
    t.get("default", name)
        .map(|s| s.endpoints.iter().map(|e| e.address.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn first_snapshot_after_both_lists_then_only_changes() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![slice("a-1", "a", &["127.244.0.1"])],
    );
    let t = c.publish().expect("first synced snapshot");
    assert!(t.synced);
    assert_eq!(t.generation, 1);
    assert_eq!(addrs(&t, "a"), ["127.244.0.1"]);
    assert_eq!(t.services.len(), 2);

    assert!(c.publish().is_none(), "nothing touched, nothing published");
    c.apply_service(svc("b"));
    assert!(
        c.publish().is_none(),
        "an identical re-apply changes nothing"
    );

    c.apply_slice(slice("a-1", "a", &["127.244.0.1", "127.244.0.2"]));
    let t2 = c.publish().expect("an endpoint change publishes");
    assert_eq!(t2.generation, 2);
    assert_eq!(t2.changed, vec![ServiceKey::new("default", "a")]);
    assert_eq!(addrs(&t2, "a"), ["127.244.0.1", "127.244.0.2"]);
    assert!(
        Arc::ptr_eq(
            t.get("default", "b").unwrap(),
            t2.get("default", "b").unwrap()
        ),
        "the untouched service keeps its Arc"
    );
}

#[test]
fn deletes_and_label_moves() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![slice("s", "a", &["127.244.0.1"])],
    );
    c.publish();
    // The slice's label now names b: it leaves a and joins b.
    c.apply_slice(slice("s", "b", &["127.244.0.1"]));
    let t = c.publish().unwrap();
    assert_eq!(t.changed.len(), 2);
    assert!(addrs(&t, "a").is_empty());
    assert_eq!(addrs(&t, "b"), ["127.244.0.1"]);

    c.delete_slice(&slice("s", "b", &[]));
    c.delete_service(&svc("a"));
    let t = c.publish().unwrap();
    assert!(t.get("default", "a").is_none());
    assert!(addrs(&t, "b").is_empty());
    assert_eq!(
        t.changed,
        vec![
            ServiceKey::new("default", "a"),
            ServiceKey::new("default", "b")
        ]
    );
}

#[test]
fn a_relist_replaces_the_set_and_reports_what_vanished() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![
            slice("a-1", "a", &["127.244.0.1"]),
            slice("b-1", "b", &["127.244.0.2"]),
        ],
    );
    let before = c.publish().unwrap();
    // A watch restart lists only a and its slice: b and b-1 were deleted
    // while the watch was down.
    c.service_event(Event::Init);
    c.service_event(Event::InitApply(svc("a")));
    assert!(
        c.publish().is_none(),
        "a relist in progress publishes nothing"
    );
    c.service_event(Event::InitDone);
    c.slice_event(Event::Init);
    c.slice_event(Event::InitApply(slice("a-1", "a", &["127.244.0.1"])));
    c.slice_event(Event::InitDone);
    let t = c.publish().unwrap();
    assert_eq!(t.changed, vec![ServiceKey::new("default", "b")]);
    assert!(t.get("default", "b").is_none());
    assert!(Arc::ptr_eq(
        before.get("default", "a").unwrap(),
        t.get("default", "a").unwrap()
    ));
}

#[test]
fn slices_before_their_service_are_kept() {
    let mut c = synced(vec![], vec![slice("late-1", "late", &["127.244.0.3"])]);
    let t = c.publish().unwrap();
    assert!(t.services.is_empty());
    c.apply_service(svc("late"));
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "late"), ["127.244.0.3"]);
}

#[test]
fn an_older_snapshot_is_unaffected_by_later_ones() {
    let mut c = synced(vec![svc("a"), svc("b")], vec![]);
    let t1 = c.publish().expect("first");
    c.apply_slice(slice("a-1", "a", &["127.244.0.1"]));
    c.delete_service(&svc("b"));
    let t2 = c.publish().expect("second");
    // The persistent map: t2 was derived from t1's nodes without changing them.
    assert_eq!(addrs(&t1, "a"), Vec::<String>::new());
    assert!(t1.get("default", "b").is_some());
    assert_eq!(addrs(&t2, "a"), ["127.244.0.1"]);
    assert!(t2.get("default", "b").is_none());
    assert_eq!((t1.services.len(), t2.services.len()), (2, 1));
    assert_eq!(
        t2.services.diff_keys(&t1.services).len(),
        2,
        "a changed, b removed"
    );
}

#[test]
fn changed_since_spans_skipped_snapshots() {
    let names = ["a", "b", "c", "d"];
    let mut c = synced(names.iter().map(|n| svc(n)).collect(), vec![]);
    let t1 = c.publish().expect("first");
    let mut last = None;
    for (i, name) in ["a", "b", "a", "c"].iter().enumerate() {
        let addr = format!("127.244.0.{}", i + 1);
        c.apply_slice(slice(&format!("{name}-1"), name, &[addr.as_str()]));
        last = Some(c.publish().expect("a change publishes"));
    }
    let t5 = last.expect("published");
    assert_eq!(t5.generation, 5);
    let key = |n: &str| ServiceKey::new("default", n);
    assert_eq!(t5.changed_since(4), Some(vec![key("c")]));
    assert_eq!(t5.changed_since(3), Some(vec![key("a"), key("c")]));
    assert_eq!(
        t5.changed_since(2),
        Some(vec![key("a"), key("b"), key("c")])
    );
    assert_eq!(
        t5.changed_since(t1.generation),
        Some(vec![key("a"), key("b"), key("c")])
    );
    assert_eq!(t5.changed_since(5), Some(vec![]));
    assert_eq!(t5.changed_since(6), None, "a future generation");
    // The first snapshot listed every service: too many is never the case
    // here, so even generation 0 (before anything) is covered.
    assert_eq!(t5.changed_since(0).map(|k| k.len()), Some(4));
    let mut all = t5.services.diff_keys(&Services::new());
    all.sort();
    assert_eq!(t5.changed_since(0), Some(all));
}

#[test]
fn changed_since_gives_up_beyond_the_history() {
    let mut c = synced(vec![svc("a")], vec![]);
    let _ = c.publish().expect("first");
    let mut last = None;
    for i in 0..HISTORY + 2 {
        let addr = format!("127.244.{}.{}", i / 250, i % 250 + 1);
        c.apply_slice(slice("a-1", "a", &[addr.as_str()]));
        last = Some(c.publish().expect("a change publishes"));
    }
    let t = last.expect("published");
    assert!(t.history.len() <= HISTORY);
    assert!(t.changed_since(t.generation - HISTORY as u64).is_some());
    assert_eq!(t.changed_since(1), None);
}

#[test]
fn a_slice_change_rebuilds_from_the_table_entry_without_the_object() {
    let mut s = svc("web");
    s.metadata.annotations =
        Some([("switchboard.io/scheduler".to_string(), "lc".to_string())].into());
    let mut c = synced(vec![s], vec![slice("web-1", "web", &["127.244.0.1"])]);
    let first = c.publish().unwrap();
    assert!(c.pending.is_empty(), "objects are not kept once built");
    c.apply_slice(slice("web-1", "web", &["127.244.0.2", "127.244.0.1"]));
    let t = c.publish().unwrap();
    let web = t.get("default", "web").unwrap();
    assert_eq!(addrs(&t, "web"), ["127.244.0.1", "127.244.0.2"]);
    let before = first.get("default", "web").unwrap();
    assert_eq!(web.annotations, before.annotations);
    assert_eq!(web.cluster_ips, before.cluster_ips);
    assert_eq!(web.ports, before.ports);
    // A Service deleted and created again before one snapshot: the new one.
    c.delete_service(&svc("web"));
    c.apply_service(svc("web"));
    let t = c.publish().unwrap();
    assert!(t.get("default", "web").unwrap().annotations.is_empty());
    assert_eq!(addrs(&t, "web"), ["127.244.0.1", "127.244.0.2"]);
}

fn unlabelled(name: &str) -> EndpointSlice {
    let mut s = slice(name, "", &[]);
    s.metadata.labels = None;
    s
}

/// The stored endpoints of `service`'s slices: `None` for one whose
/// endpoints the table entry holds.
fn stored(c: &Cache, service: &str) -> Vec<(String, Option<usize>)> {
    c.slices
        .get(&*id("default", service))
        .map(Slices::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| (s.name.to_string(), s.endpoints.as_ref().map(Vec::len)))
        .collect()
}

#[test]
fn a_lone_slice_lends_its_endpoints_to_the_table() {
    let mut c = synced(
        vec![svc("a")],
        vec![slice("a-1", "a", &["127.244.0.2", "127.244.0.1"])],
    );
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), Some(2))]);
    c.publish().unwrap();
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), None)], "held once");

    // The Service changes: its endpoints come from the old entry.
    let mut changed = svc("a");
    changed.metadata.annotations = Some([("k".to_owned(), "v".to_owned())].into());
    c.apply_service(changed);
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "a"), ["127.244.0.1", "127.244.0.2"]);
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), None)]);

    // A second slice: the first one's endpoints are taken back.
    c.apply_slice(slice("a-2", "a", &["127.244.0.3"]));
    let t = c.publish().unwrap();
    assert_eq!(
        addrs(&t, "a"),
        ["127.244.0.1", "127.244.0.2", "127.244.0.3"]
    );
    assert_eq!(
        stored(&c, "a"),
        [("a-1".to_owned(), Some(2)), ("a-2".to_owned(), Some(1))]
    );

    // Back to one slice: the table entry holds them again.
    c.delete_slice(&slice("a-1", "a", &[]));
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "a"), ["127.244.0.3"]);
    assert_eq!(stored(&c, "a"), [("a-2".to_owned(), None)]);
}

#[test]
fn a_deleted_service_leaves_its_slices_endpoints_behind() {
    let mut c = synced(vec![svc("a")], vec![slice("a-1", "a", &["127.244.0.1"])]);
    c.publish().unwrap();
    c.delete_service(&svc("a"));
    let t = c.publish().unwrap();
    assert!(t.get("default", "a").is_none());
    assert_eq!(
        stored(&c, "a"),
        [("a-1".to_owned(), Some(1))],
        "the slice outlives its service"
    );
    c.apply_service(svc("a"));
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "a"), ["127.244.0.1"]);
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), None)]);
}

#[test]
fn a_slice_deleted_without_labels_is_found() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![
            slice("a-1", "a", &["127.244.0.1"]),
            // Named after neither service: its owner is recorded.
            slice("custom", "b", &["127.244.0.2"]),
        ],
    );
    assert_eq!(c.owners.len(), 1);
    c.publish().unwrap();
    c.delete_slice(&unlabelled("a-1"));
    c.delete_slice(&unlabelled("custom"));
    let t = c.publish().unwrap();
    assert!(addrs(&t, "a").is_empty());
    assert!(addrs(&t, "b").is_empty());
    assert!(c.slices.is_empty());
    assert!(c.owners.is_empty());
    // An unknown slice, labelled or not, changes nothing.
    c.delete_slice(&unlabelled("a-2"));
    c.delete_slice(&slice("b-9", "b", &[]));
    assert!(c.publish().is_none());
}

#[test]
fn a_slice_moves_between_services_whatever_its_name() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![slice("a-1", "a", &["127.244.0.1"])],
    );
    c.publish().unwrap();
    // Away from the service its name implies...
    c.apply_slice(slice("a-1", "b", &["127.244.0.1"]));
    let t = c.publish().unwrap();
    assert!(addrs(&t, "a").is_empty());
    assert_eq!(addrs(&t, "b"), ["127.244.0.1"]);
    assert_eq!(c.owners.len(), 1);
    // ... its label removed (it belongs to no service) ...
    c.apply_slice(unlabelled("a-1"));
    let t = c.publish().unwrap();
    assert!(addrs(&t, "b").is_empty());
    assert!(c.slices.is_empty() && c.owners.is_empty());
    // ... and back to b, then to the service its name implies.
    c.apply_slice(slice("a-1", "b", &["127.244.0.2"]));
    c.publish().unwrap();
    c.apply_slice(slice("a-1", "a", &["127.244.0.3"]));
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "a"), ["127.244.0.3"]);
    assert!(addrs(&t, "b").is_empty());
    assert!(c.owners.is_empty());
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), None)]);
    assert!(stored(&c, "b").is_empty());
}

#[test]
fn a_relist_removes_the_slices_it_does_not_list() {
    let mut c = synced(
        vec![svc("a"), svc("b")],
        vec![
            slice("a-1", "a", &["127.244.0.1"]),
            slice("a-2", "a", &["127.244.0.2"]),
            slice("custom", "b", &["127.244.0.3"]),
            slice("ghost-1", "ghost", &["127.244.0.4"]),
        ],
    );
    let before = c.publish().unwrap();
    assert_eq!(addrs(&before, "a"), ["127.244.0.1", "127.244.0.2"]);
    // The watch restarts; a-2, custom and ghost-1 went while it was down.
    c.slice_event(Event::Init);
    c.slice_event(Event::InitApply(slice("a-1", "a", &["127.244.0.1"])));
    c.slice_event(Event::InitDone);
    let t = c.publish().unwrap();
    assert_eq!(addrs(&t, "a"), ["127.244.0.1"]);
    assert!(addrs(&t, "b").is_empty());
    assert_eq!(
        t.changed,
        [
            ServiceKey::new("default", "a"),
            ServiceKey::new("default", "b")
        ]
    );
    assert_eq!(stored(&c, "a"), [("a-1".to_owned(), None)]);
    assert!(stored(&c, "ghost").is_empty());
    assert!(c.owners.is_empty());
}

#[test]
fn the_implied_service_is_the_name_without_its_suffix() {
    assert_eq!(implied_service("web-x7k2p"), Some("web"));
    assert_eq!(implied_service("my-web-x7k2p"), Some("my-web"));
    assert_eq!(implied_service("web"), None);
    assert_eq!(implied_service("-x7k2p"), None);
}
