//! Unit tests of the pure Deployment planning, including a simulated
//! cluster that runs rollouts step by step in adversarial orders.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use proptest::prelude::{Just, ProptestConfig, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;

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

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn rolling(surge: IntOrString, unavailable: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    }
}

fn recreate() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    }
}

fn deployment(replicas: i32, strategy: Option<DeploymentStrategy>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template("v1"),
            strategy,
            ..Default::default()
        }),
        status: None,
    }
}

fn spec(d: &mut Deployment) -> &mut DeploymentSpec {
    d.spec.get_or_insert_with(Default::default)
}

fn rs_spec(rs: &mut ReplicaSet) -> &mut ReplicaSetSpec {
    rs.spec.get_or_insert_with(Default::default)
}

fn image_of(rs: &ReplicaSet) -> Option<&str> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .as_deref()
}

fn plan(d: &Deployment, sets: &[ReplicaSet]) -> Plan {
    plan_deployment(d, sets, &HashMap::new(), ts(NOW)).expect("a valid Deployment")
}

#[test]
fn fnv32a_matches_the_reference_vectors() {
    assert_eq!(fnv32a(b"", FNV32_OFFSET), 0x811c_9dc5);
    assert_eq!(fnv32a(b"a", FNV32_OFFSET), 0xe40c_292c);
    assert_eq!(fnv32a(b"foobar", FNV32_OFFSET), 0xbf9c_f968);
}

#[test]
fn the_template_hash_is_stable_and_safe() {
    let a = template_hash(&template("v1"), None);
    assert_eq!(a, template_hash(&template("v1"), None), "deterministic");
    assert_ne!(a, template_hash(&template("v2"), None));
    assert_ne!(a, template_hash(&template("v1"), Some(1)));
    assert!(
        a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{a}"
    );
    assert!(!a.is_empty() && a.len() <= 10, "{a}");
    // Pinned, so a change of the hashed form (which would roll every
    // Deployment on upgrade) is noticed.
    assert_eq!(a, "554b68dfc4");
    assert_eq!(safe_encode("0123"), "4567");
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let resolve = |replicas, surge: &str, unavailable: &str| {
        let mut d = deployment(
            replicas,
            Some(rolling(
                IntOrString::String(surge.into()),
                IntOrString::String(unavailable.into()),
            )),
        );
        spec(&mut d).replicas = Some(replicas);
        Strategy::of(&d)
    };
    assert_eq!(
        resolve(10, "25%", "25%"),
        Ok(Strategy::RollingUpdate {
            max_surge: 3,
            max_unavailable: 2
        })
    );
    assert_eq!(
        resolve(1, "25%", "25%"),
        Ok(Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 0
        })
    );
    assert_eq!(
        resolve(1, "0%", "10%"),
        Ok(Strategy::RollingUpdate {
            max_surge: 0,
            max_unavailable: 1
        }),
        "both resolving to zero allows one unavailable"
    );
    assert_eq!(resolve(3, "0%", "0%"), Err(Error::NoProgressPossible));
    assert!(matches!(
        resolve(3, "lots", "1%"),
        Err(Error::InvalidIntOrPercent {
            field: "maxSurge",
            ..
        })
    ));
    let defaults = deployment(4, None);
    assert_eq!(
        Strategy::of(&defaults),
        Ok(Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 1
        })
    );
    assert_eq!(Strategy::of(&defaults).map(|s| s.max_unavailable(0)), Ok(0));
    assert_eq!(
        Strategy::of(&deployment(3, Some(recreate()))),
        Ok(Strategy::Recreate)
    );
}

#[test]
fn the_first_sync_creates_a_hashed_replicaset() {
    let d = deployment(3, None);
    let got = plan(&d, &[]);
    let rs = got.create.expect("a new ReplicaSet");
    let hash = template_hash(&template("v1"), None);
    assert_eq!(rs.metadata.name, Some(format!("web-{hash}")));
    let want_labels = labels(&[("app", "web"), (HASH_LABEL, &hash)]);
    assert_eq!(rs.metadata.labels.as_ref(), Some(&want_labels));
    let spec = rs.spec.as_ref().expect("a spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&want_labels));
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    assert_eq!(template_labels, Some(&want_labels));
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(REVISION_ANNOTATION).map(String::as_str),
        Some("1")
    );
    assert_eq!(
        annotations
            .get(DESIRED_REPLICAS_ANNOTATION)
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        annotations.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
        Some("4")
    );
    let owner = &rs.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Deployment", "d-uid", Some(true))
    );
    assert_eq!(got.revision.as_deref(), Some("1"));
    let progressing = condition_of(&got.status, "Progressing").expect("Progressing");
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetCreated"));
    let available = condition_of(&got.status, "Available").expect("Available");
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    assert_eq!(got.status.unavailable_replicas, Some(3));
}

fn condition_of<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The ReplicaSet the plan would create for `d`, as stored: with a uid, a
/// creation time and the given replicas and availability.
fn stored_rs(
    d: &Deployment,
    uid: &str,
    created: &str,
    replicas: i32,
    available: i32,
) -> ReplicaSet {
    let mut rs = plan(d, &[]).create.expect("a new ReplicaSet");
    rs.metadata.uid = Some(uid.into());
    rs.metadata.creation_timestamp = Some(Time(ts(created)));
    rs.metadata.generation = Some(1);
    rs.metadata.resource_version = Some("7".into());
    if let Some(spec) = rs.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    rs.status = Some(ReplicaSetStatus {
        replicas,
        ready_replicas: Some(available),
        available_replicas: Some(available),
        observed_generation: Some(1),
        ..Default::default()
    });
    rs
}

fn with_image(d: &Deployment, image: &str) -> Deployment {
    let mut d = d.clone();
    if let Some(spec) = d.spec.as_mut() {
        spec.template = template(image);
    }
    d.metadata.generation = Some(d.metadata.generation.unwrap_or(1) + 1);
    d
}

#[test]
fn a_stable_deployment_changes_nothing_and_reports_complete() {
    let d = deployment(3, None);
    let rs = stored_rs(&d, "rs1", "2026-01-01T00:00:00Z", 3, 3);
    let mut d2 = d.clone();
    d2.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, "1")]));
    let got = plan(&d2, std::slice::from_ref(&rs));
    assert_eq!(got.create, None);
    assert!(got.update.is_empty(), "{:?}", got.update);
    assert_eq!(got.revision, None);
    assert_eq!(got.status.replicas, Some(3));
    assert_eq!(got.status.updated_replicas, Some(3));
    assert_eq!(got.status.available_replicas, Some(3));
    assert_eq!(got.status.unavailable_replicas, None);
    let p = condition_of(&got.status, "Progressing").expect("Progressing");
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let a = condition_of(&got.status, "Available").expect("Available");
    assert_eq!(a.reason.as_deref(), Some("MinimumReplicasAvailable"));

    // The same status again keeps the condition times: nothing to write.
    let mut d3 = d2.clone();
    d3.status = Some(got.status.clone());
    let again = plan_deployment(&d3, &[rs], &HashMap::new(), ts("2026-01-01T01:00:00Z"))
        .expect("a valid Deployment");
    assert_eq!(again.status, got.status);
}

#[test]
fn scaling_a_stable_deployment_scales_its_replicaset() {
    let d = deployment(3, None);
    let rs = stored_rs(&d, "rs1", "2026-01-01T00:00:00Z", 5, 5);
    let got = plan(&d, &[rs]);
    assert_eq!(got.update.len(), 1);
    assert_eq!(got.update[0].replicas, Some(3));
    assert_eq!(got.update[0].resource_version, "7");
    let mut d6 = d.clone();
    spec(&mut d6).replicas = Some(6);
    let rs = stored_rs(&d, "rs1", "2026-01-01T00:00:00Z", 3, 3);
    let got = plan(&d6, &[rs]);
    assert_eq!(got.update[0].replicas, Some(6));
}

#[test]
fn a_template_change_surges_then_waits_for_availability() {
    let d1 = deployment(3, Some(rolling(IntOrString::Int(1), IntOrString::Int(0))));
    let old = stored_rs(&d1, "rs1", "2026-01-01T00:00:00Z", 3, 3);
    let d2 = with_image(&d1, "v2");
    let got = plan(&d2, std::slice::from_ref(&old));
    let new = got.create.expect("a new ReplicaSet");
    assert_eq!(
        new.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "one surge pod"
    );
    assert!(
        got.update.is_empty(),
        "nothing old goes before the new pod is available"
    );
    assert_eq!(
        new.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
            .map(String::as_str),
        Some("2")
    );
}

#[test]
fn recreate_scales_old_to_zero_before_creating_the_new() {
    let d1 = deployment(3, Some(recreate()));
    let old = stored_rs(&d1, "rs1", "2026-01-01T00:00:00Z", 3, 3);
    let d2 = with_image(&d1, "v2");
    let pods: HashMap<String, usize> = [("rs1".to_owned(), 3)].into();
    let step1 = plan_deployment(&d2, std::slice::from_ref(&old), &pods, ts(NOW))
        .expect("a valid Deployment");
    assert_eq!(step1.create, None, "no new ReplicaSet while old pods run");
    assert_eq!(step1.update.len(), 1);
    assert_eq!(step1.update[0].replicas, Some(0));

    // Scaled to zero but its pods are still terminating: wait.
    let mut scaled = old.clone();
    rs_spec(&mut scaled).replicas = Some(0);
    let step2 = plan_deployment(&d2, std::slice::from_ref(&scaled), &pods, ts(NOW))
        .expect("a valid Deployment");
    assert_eq!(step2.create, None);
    assert!(step2.update.is_empty());

    // Gone: now the new ReplicaSet, at full size.
    let step3 =
        plan_deployment(&d2, &[scaled], &HashMap::new(), ts(NOW)).expect("a valid Deployment");
    let new = step3.create.expect("the new ReplicaSet");
    assert_eq!(new.spec.as_ref().and_then(|s| s.replicas), Some(3));
}

#[test]
fn an_old_template_becomes_new_again_with_a_higher_revision() {
    let d1 = deployment(2, None);
    let d2 = with_image(&d1, "v2");
    let mut rs1 = stored_rs(&d1, "rs1", "2026-01-01T00:00:00Z", 0, 0);
    rs1.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, "1")]));
    let mut rs2 = stored_rs(&d2, "rs2", "2026-01-01T00:01:00Z", 2, 2);
    rs2.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, "2")]));
    // Roll back to v1.
    let back = with_image(&d2, "v1");
    let got = plan(&back, &[rs1, rs2]);
    assert_eq!(got.create, None, "the v1 ReplicaSet is reused");
    let write = got
        .update
        .iter()
        .find(|w| w.annotations.contains_key(REVISION_ANNOTATION))
        .expect("a revision bump");
    assert_eq!(write.annotations[REVISION_ANNOTATION], "3");
    assert_eq!(got.revision.as_deref(), Some("3"));
    // And it scales up within the surge.
    assert!(
        got.update.iter().any(|w| w.replicas == Some(1)),
        "{:?}",
        got.update
    );
}

#[test]
fn old_replicasets_beyond_the_history_limit_are_deleted_once_complete() {
    let mut d = deployment(1, None);
    spec(&mut d).revision_history_limit = Some(2);
    let mut sets = Vec::new();
    for i in 0..5 {
        let di = with_image(&d, &format!("old{i}"));
        let mut rs = stored_rs(&di, &format!("rs{i}"), "2026-01-01T00:00:00Z", 0, 0);
        rs.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, &(i + 1).to_string())]));
        sets.push(rs);
    }
    let current = stored_rs(&d, "now", "2026-01-01T00:05:00Z", 1, 1);
    sets.push(current);
    d.metadata.annotations = Some(labels(&[(REVISION_ANNOTATION, "6")]));
    // Not complete yet: nothing deleted.
    assert!(plan(&d, &sets).delete.is_empty());
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        updated_replicas: Some(1),
        available_replicas: Some(1),
        ..Default::default()
    });
    let got = plan(&d, &sets);
    let mut deleted = got.delete.clone();
    deleted.sort();
    let names: Vec<String> = sets[..3]
        .iter()
        .map(|rs| rs.metadata.name.clone().unwrap_or_default())
        .collect();
    let mut want = names.clone();
    want.sort();
    assert_eq!(deleted, want, "the three lowest revisions go, two stay");
}

#[test]
fn orphans_are_adopted_and_strays_released() {
    let d = deployment(3, None);
    let mut orphan = stored_rs(&d, "rs1", "2026-01-01T00:00:00Z", 3, 3);
    orphan.metadata.owner_references = None;
    let mut stray = stored_rs(&with_image(&d, "x"), "rs2", "2026-01-01T00:00:00Z", 0, 0);
    stray.metadata.labels = Some(labels(&[("app", "other")]));
    let got = plan(&d, &[orphan, stray.clone()]);
    assert_eq!(got.adopt.len(), 1);
    assert_eq!(
        got.release,
        vec![stray.metadata.name.clone().unwrap_or_default()]
    );
    assert_eq!(got.create, None, "the adopted set is the new one");
}

#[test]
fn a_name_collision_bumps_the_collision_count() {
    let d = deployment(1, None);
    let mut squatter = stored_rs(&with_image(&d, "x"), "other", "2026-01-01T00:00:00Z", 1, 1);
    squatter.metadata.name = plan(&d, &[]).create.and_then(|rs| rs.metadata.name);
    squatter.metadata.owner_references = None;
    squatter.metadata.labels = Some(labels(&[("app", "unrelated")]));
    let got = plan(&d, &[squatter]);
    assert_eq!(got.create, None);
    assert_eq!(got.status.collision_count, Some(1));
    assert_eq!(got.requeue_after, Some(Duration::ZERO));
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let mut d1 = deployment(1, None);
    spec(&mut d1).progress_deadline_seconds = Some(60);
    let rs = stored_rs(&d1, "rs1", "2026-01-01T00:00:00Z", 1, 0);
    let mut d = d1.clone();
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        updated_replicas: Some(1),
        unavailable_replicas: Some(1),
        conditions: Some(vec![condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "x".into(),
            ts("2026-01-01T00:00:00Z"),
        )]),
        ..Default::default()
    });
    let early = plan_deployment(
        &d,
        std::slice::from_ref(&rs),
        &HashMap::new(),
        ts("2026-01-01T00:00:30Z"),
    )
    .expect("a valid Deployment");
    let wait = early.requeue_after.expect("a look at the deadline");
    assert!(
        wait > Duration::from_secs(29) && wait <= Duration::from_secs(32),
        "{wait:?}"
    );
    let late = plan_deployment(&d, &[rs], &HashMap::new(), ts("2026-01-01T00:01:01Z"))
        .expect("a valid Deployment");
    let p = condition_of(&late.status, "Progressing").expect("Progressing");
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn templates_compare_ignoring_the_hash_and_empty_fields() {
    let a = template("v1");
    let mut b = a.clone();
    let meta = b.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), "abc".into());
    meta.annotations = Some(BTreeMap::new());
    assert!(equal_ignore_hash(Some(&a), Some(&b)));
    assert!(!equal_ignore_hash(Some(&a), Some(&template("v2"))));
}

// ---- a simulated cluster: the Deployment planner, ReplicaSet controllers
// and kubelets acting in arbitrary orders.

#[derive(Debug, Clone)]
struct SimPod {
    rs: String,
    ready: bool,
    terminating: bool,
}

struct Sim {
    d: Deployment,
    sets: Vec<ReplicaSet>,
    pods: Vec<SimPod>,
    next_uid: usize,
    clock: Timestamp,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Deploy,
    SyncSet(usize),
    Ready(usize),
    Reap,
}

impl Sim {
    fn new(d: Deployment) -> Sim {
        Sim {
            d,
            sets: Vec::new(),
            pods: Vec::new(),
            next_uid: 0,
            clock: ts("2026-01-01T00:00:00Z"),
        }
    }

    fn tick(&mut self) {
        self.clock = self
            .clock
            .checked_add(jiff::SignedDuration::from_secs(1))
            .expect("time goes on");
    }

    fn uid(rs: &ReplicaSet) -> String {
        rs.metadata.uid.clone().unwrap_or_default()
    }

    fn deploy(&mut self) {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in &self.pods {
            *counts.entry(p.rs.clone()).or_default() += 1;
        }
        let plan =
            plan_deployment(&self.d, &self.sets, &counts, self.clock).expect("a valid Deployment");
        if let Some(mut rs) = plan.create {
            self.next_uid += 1;
            rs.metadata.uid = Some(format!("u{}", self.next_uid));
            rs.metadata.creation_timestamp = Some(Time(self.clock));
            rs.metadata.generation = Some(1);
            rs.status = Some(ReplicaSetStatus::default());
            self.sets.push(rs);
        }
        for w in plan.update {
            let rs = self
                .sets
                .iter_mut()
                .find(|rs| rs.metadata.name.as_deref() == Some(w.name.as_str()))
                .expect("the plan writes an existing ReplicaSet");
            if let Some(n) = w.replicas {
                rs_spec(rs).replicas = Some(n);
            }
            let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
            ann.extend(w.annotations);
        }
        self.sets.retain(|rs| {
            !plan
                .delete
                .contains(rs.metadata.name.as_ref().expect("named"))
        });
        if let Some(rev) = plan.revision {
            self.d
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REVISION_ANNOTATION.into(), rev);
        }
        self.d.status = Some(plan.status);
    }

    /// The ReplicaSet controller for set `i`: its pods to its replicas
    /// (deleting not-ready pods first), then its status.
    fn sync_set(&mut self, i: usize) {
        let Some(rs) = self.sets.get(i) else { return };
        let uid = Sim::uid(rs);
        let want = usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .expect("non-negative replicas");
        let active = |pods: &[SimPod]| {
            pods.iter()
                .filter(|p| p.rs == uid && !p.terminating)
                .count()
        };
        while active(&self.pods) < want {
            self.pods.push(SimPod {
                rs: uid.clone(),
                ready: false,
                terminating: false,
            });
        }
        while active(&self.pods) > want {
            let victim = self
                .pods
                .iter()
                .position(|p| p.rs == uid && !p.terminating && !p.ready)
                .or_else(|| self.pods.iter().position(|p| p.rs == uid && !p.terminating))
                .expect("an active pod to delete");
            self.pods[victim].terminating = true;
        }
        let mine: Vec<&SimPod> = self
            .pods
            .iter()
            .filter(|p| p.rs == uid && !p.terminating)
            .collect();
        let ready = i32::try_from(mine.iter().filter(|p| p.ready).count()).expect("small");
        let rs = &mut self.sets[i];
        rs.status = Some(ReplicaSetStatus {
            replicas: i32::try_from(mine.len()).expect("small"),
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            observed_generation: Some(1),
            ..Default::default()
        });
    }

    /// A kubelet makes the `n`-th not-ready pod ready.
    fn make_ready(&mut self, n: usize) {
        let candidates: Vec<usize> = (0..self.pods.len())
            .filter(|&i| !self.pods[i].ready && !self.pods[i].terminating)
            .collect();
        if !candidates.is_empty() {
            let i = candidates[n % candidates.len()];
            self.pods[i].ready = true;
        }
    }

    fn reap(&mut self) {
        self.pods.retain(|p| !p.terminating);
    }

    fn step(&mut self, s: Step) {
        self.tick();
        match s {
            Step::Deploy => self.deploy(),
            Step::SyncSet(i) => {
                let n = self.sets.len().max(1);
                self.sync_set(i % n);
            }
            Step::Ready(n) => self.make_ready(n),
            Step::Reap => self.reap(),
        }
    }

    /// Pods that serve: ready and not terminating.
    fn serving(&self) -> usize {
        self.pods
            .iter()
            .filter(|p| p.ready && !p.terminating)
            .count()
    }

    fn total_spec(&self) -> i32 {
        self.sets
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum()
    }

    /// Run every actor in turn until nothing changes.
    fn settle(&mut self, check: &mut dyn FnMut(&Sim)) {
        for _ in 0..30 {
            self.step(Step::Deploy);
            check(self);
            for i in 0..self.sets.len() {
                self.step(Step::SyncSet(i));
                check(self);
            }
            self.step(Step::Ready(0));
            check(self);
            self.step(Step::Reap);
            check(self);
        }
    }

    fn replicas_of(&self, image: &str) -> i32 {
        self.sets
            .iter()
            .filter(|rs| image_of(rs) == Some(image))
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum()
    }
}

fn rolled_out(strategy: DeploymentStrategy) -> Sim {
    let mut sim = Sim::new(deployment(3, Some(strategy)));
    sim.settle(&mut |_| {});
    assert_eq!(sim.serving(), 3, "the first rollout completes");
    sim
}

#[test]
fn a_rolling_update_with_surge_one_never_drops_below_three() {
    let mut sim = rolled_out(rolling(IntOrString::Int(1), IntOrString::Int(0)));
    sim.d = with_image(&sim.d, "v2");
    let mut lowest = usize::MAX;
    let mut highest_spec = 0;
    sim.settle(&mut |s| {
        lowest = lowest.min(s.serving());
        highest_spec = highest_spec.max(s.total_spec());
    });
    assert_eq!(lowest, 3, "availability never dropped");
    assert_eq!(highest_spec, 4, "never more than one surge pod");
    assert_eq!(sim.replicas_of("v2"), 3);
    assert_eq!(sim.replicas_of("v1"), 0);
    assert_eq!(sim.serving(), 3);
    let status = sim.d.status.clone().unwrap_or_default();
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(3));
    let p = condition_of(&status, "Progressing").expect("Progressing");
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
}

#[test]
fn recreate_never_runs_both_versions() {
    let mut sim = rolled_out(recreate());
    sim.d = with_image(&sim.d, "v2");
    let mut both = false;
    sim.settle(&mut |s| {
        let v1_pods = s
            .pods
            .iter()
            .filter(|p| {
                s.sets
                    .iter()
                    .any(|rs| Sim::uid(rs) == p.rs && image_of(rs) == Some("v1"))
            })
            .count();
        if v1_pods > 0 && s.replicas_of("v2") > 0 {
            both = true;
        }
    });
    assert!(!both, "a v2 ReplicaSet was scaled up while v1 pods existed");
    assert_eq!(sim.replicas_of("v2"), 3);
    assert_eq!(sim.serving(), 3);
}

fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Deploy),
        (0usize..4).prop_map(Step::SyncSet),
        (0usize..8).prop_map(Step::Ready),
        Just(Step::Reap),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever order the controllers and kubelets act in, and however
    /// stale the ReplicaSet statuses are, a rollout with maxUnavailable 0
    /// keeps three pods serving and at most one surge pod.
    #[test]
    fn rolling_updates_keep_availability_in_any_order(
        steps in proptest::collection::vec(step_strategy(), 0..120),
        images in 1usize..3,
    ) {
        let mut sim = rolled_out(rolling(IntOrString::Int(1), IntOrString::Int(0)));
        let mut lowest = usize::MAX;
        let mut highest_spec = 0;
        for round in 0..images {
            sim.d = with_image(&sim.d, &format!("v{}", round + 2));
            for s in &steps {
                sim.step(*s);
                lowest = lowest.min(sim.serving());
                highest_spec = highest_spec.max(sim.total_spec());
            }
        }
        sim.settle(&mut |s| {
            lowest = lowest.min(s.serving());
            highest_spec = highest_spec.max(s.total_spec());
        });
        prop_assert_eq!(lowest, 3);
        prop_assert!(highest_spec <= 4, "total replicas reached {}", highest_spec);
        prop_assert_eq!(sim.replicas_of(&format!("v{}", images + 1)), 3);
        prop_assert_eq!(sim.serving(), 3);
    }
}
