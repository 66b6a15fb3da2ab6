//! Unit tests of the pure ReplicaSet planning.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{
    ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("a valid timestamp literal")
}

const NOW: &str = "2026-01-01T00:10:00Z";

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn rs(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(4),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                    annotations: Some(labels(&[("note", "x")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

/// A pod builder: owned by the ReplicaSet, running, ready, scheduled.
#[derive(Clone)]
struct P {
    name: &'static str,
    owner: Option<&'static str>,
    labels: BTreeMap<String, String>,
    node: Option<&'static str>,
    phase: &'static str,
    ready_since: Option<&'static str>,
    created: &'static str,
    deleting: bool,
    restarts: i32,
}

fn p(name: &'static str) -> P {
    P {
        name,
        owner: Some("rs-uid"),
        labels: labels(&[("app", "web"), ("tier", "front")]),
        node: Some("node-a"),
        phase: "Running",
        ready_since: Some("2026-01-01T00:00:00Z"),
        created: "2026-01-01T00:00:00Z",
        deleting: false,
        restarts: 0,
    }
}

impl P {
    fn view(&self) -> PodView {
        let mut conditions = Vec::new();
        if let Some(since) = self.ready_since {
            conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(since))),
                ..Default::default()
            });
        }
        PodView::from(&Pod {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{}", self.name)),
                labels: Some(self.labels.clone()),
                creation_timestamp: Some(Time(ts(self.created))),
                deletion_timestamp: self.deleting.then(|| Time(ts(NOW))),
                owner_references: self.owner.map(|uid| {
                    vec![ownership::controller_ref(
                        "apps/v1",
                        "ReplicaSet",
                        "whoever",
                        uid,
                    )]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: self.node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(self.phase.into()),
                conditions: Some(conditions),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: self.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }
}

fn views(pods: &[P]) -> Vec<PodView> {
    pods.iter().map(P::view).collect()
}

fn plan(rs: &ReplicaSet, pods: &[P]) -> Plan {
    plan_replicaset(rs, &views(pods), ts(NOW)).expect("a valid ReplicaSet")
}

#[test]
fn creates_the_missing_pods() {
    let got = plan(&rs(3), &[p("a")]);
    assert_eq!(got.create, 2);
    assert!(got.delete.is_empty());
    assert_eq!(got.status.replicas, 1);
    assert_eq!(got.status.ready_replicas, Some(1));
    assert_eq!(got.status.available_replicas, Some(1));
    assert_eq!(got.status.fully_labeled_replicas, Some(1));
    assert_eq!(got.status.observed_generation, Some(4));
}

#[test]
fn creation_is_bounded_by_the_burst() {
    assert_eq!(plan(&rs(10_000), &[]).create, BURST_REPLICAS);
}

#[test]
fn at_the_count_nothing_changes() {
    let got = plan(&rs(2), &[p("a"), p("b")]);
    assert_eq!((got.create, got.delete.len()), (0, 0));
    assert_eq!(got.requeue_after, None);
}

#[test]
fn terminating_and_finished_pods_do_not_count() {
    let mut dying = p("dying");
    dying.deleting = true;
    let mut done = p("done");
    done.phase = "Succeeded";
    let got = plan(&rs(2), &[p("a"), dying, done]);
    assert_eq!(got.create, 1, "only the active pod counts");
    assert_eq!(got.status.replicas, 1);
    assert!(
        got.delete.is_empty(),
        "nothing to delete: it is already going"
    );
}

#[test]
fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let mut orphan = p("orphan");
    orphan.owner = None;
    let mut strayed = p("strayed");
    strayed.labels = labels(&[("app", "db")]);
    let mut other = p("other");
    other.owner = Some("someone-else");
    let mut unmatched_orphan = p("unmatched");
    unmatched_orphan.owner = None;
    unmatched_orphan.labels = labels(&[("app", "db")]);
    let mut dying_orphan = p("dying-orphan");
    dying_orphan.owner = None;
    dying_orphan.deleting = true;
    let got = plan(
        &rs(2),
        &[
            p("a"),
            orphan,
            strayed,
            other,
            unmatched_orphan,
            dying_orphan,
        ],
    );
    assert_eq!(got.adopt, vec!["orphan"]);
    assert_eq!(got.release, vec!["strayed"]);
    assert_eq!(got.create, 0, "the adopted orphan counts");
    assert_eq!(got.status.replicas, 2);
}

#[test]
fn a_replicaset_being_deleted_neither_creates_nor_adopts() {
    let mut dying = rs(3);
    dying.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let mut orphan = p("orphan");
    orphan.owner = None;
    let got = plan(&dying, &[p("a"), orphan]);
    assert_eq!(got.create, 0);
    assert!(got.adopt.is_empty());
    assert_eq!(got.status.replicas, 1);
}

#[test]
fn surplus_deletion_prefers_unscheduled_pending_and_not_ready_pods() {
    let mut unscheduled = p("unscheduled");
    unscheduled.node = None;
    unscheduled.phase = "Pending";
    unscheduled.ready_since = None;
    let mut pending = p("pending");
    pending.phase = "Pending";
    pending.ready_since = None;
    let mut not_ready = p("not-ready");
    not_ready.ready_since = None;
    let mut ready_new = p("ready-new");
    ready_new.ready_since = Some("2026-01-01T00:05:00Z");
    let ready_old = p("ready-old");
    let pods = [ready_old, ready_new, not_ready, pending, unscheduled];
    let got = plan(&rs(1), &pods);
    assert_eq!(
        got.delete,
        vec!["unscheduled", "pending", "not-ready", "ready-new"],
        "the pod ready longest stays"
    );
    let got = plan(&rs(4), &pods);
    assert_eq!(got.delete, vec!["unscheduled"]);
}

#[test]
fn deletion_prefers_doubled_up_restarting_and_newer_pods() {
    let mut lonely = p("lonely");
    lonely.node = Some("node-b");
    let doubled_1 = p("doubled-1");
    let doubled_2 = p("doubled-2");
    let vs = views(&[lonely, doubled_1, doubled_2]);
    let refs: Vec<&PodView> = vs.iter().collect();
    let order: Vec<&str> = deletion_order(&refs).iter().map(|p| &*p.name).collect();
    assert_eq!(order, vec!["doubled-1", "doubled-2", "lonely"]);

    let mut restarts = p("restarts");
    restarts.restarts = 3;
    let mut newer = p("newer");
    newer.created = "2026-01-01T00:01:00Z";
    let vs = views(&[p("old"), newer, restarts]);
    let refs: Vec<&PodView> = vs.iter().collect();
    let order: Vec<&str> = deletion_order(&refs).iter().map(|p| &*p.name).collect();
    assert_eq!(order, vec!["restarts", "newer", "old"]);
}

#[test]
fn deletion_cost_annotation_orders_first() {
    let mut cheap = p("cheap").view();
    cheap.deletion_cost = -5;
    let dear = p("a-dear").view();
    let refs = vec![&dear, &cheap];
    let order: Vec<&str> = deletion_order(&refs).iter().map(|p| &*p.name).collect();
    assert_eq!(order, vec!["cheap", "a-dear"]);
}

#[test]
fn min_ready_seconds_delays_availability_and_requeues() {
    let mut set = rs(2);
    if let Some(spec) = set.spec.as_mut() {
        spec.min_ready_seconds = Some(30);
    }
    let mut fresh = p("fresh");
    fresh.ready_since = Some("2026-01-01T00:09:50Z");
    let got = plan(&set, &[p("old"), fresh]);
    assert_eq!(got.status.ready_replicas, Some(2));
    assert_eq!(got.status.available_replicas, Some(1));
    let wait = got.requeue_after.expect("a requeue for the fresh pod");
    assert!(
        wait >= Duration::from_secs(20) && wait < Duration::from_secs(21),
        "{wait:?}"
    );
}

#[test]
fn fully_labeled_counts_pods_with_every_template_label() {
    let mut partial = p("partial");
    partial.labels = labels(&[("app", "web")]);
    let got = plan(&rs(2), &[p("full"), partial]);
    assert_eq!(got.status.fully_labeled_replicas, Some(1));
    assert_eq!(got.status.replicas, 2);
}

#[test]
fn bad_selectors_are_errors() {
    let mut empty = rs(1);
    if let Some(spec) = empty.spec.as_mut() {
        spec.selector = LabelSelector::default();
    }
    assert_eq!(
        plan_replicaset(&empty, &Vec::<PodView>::new(), ts(NOW)),
        Err(Error::EmptySelector)
    );
}

#[test]
fn pods_come_from_the_template_with_a_controller_reference() {
    let pod = pod_from_template(&rs(1));
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
    assert_eq!(pod.metadata.name, None);
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        pod.metadata.labels,
        Some(labels(&[("app", "web"), ("tier", "front")]))
    );
    assert_eq!(pod.metadata.annotations, Some(labels(&[("note", "x")])));
    assert_eq!(
        pod.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-abc".into(),
            uid: "rs-uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );
    assert!(pod.spec.is_some());
}
