//! Kubernetes Events for what the workload controllers do (the lines
//! `kubectl describe` shows: `ScalingReplicaSet`, `SuccessfulCreate`,
//! `Scheduled`, `FailedScheduling`, `NodeNotReady`, …), written as core/v1
//! Events in the background: a failed write is logged, never a failed sync.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

/// The reference an Event carries to the object it is about.
pub(crate) fn reference(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    meta: &ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: meta.name.clone(),
        namespace: namespace.map(str::to_owned),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

/// Writes Events as one component.
pub(crate) struct Recorder {
    client: kube::Client,
    /// Told apart so a burst of Events within one nanosecond keeps
    /// distinct names.
    sequence: AtomicU64,
}

impl Recorder {
    pub(crate) fn new(client: kube::Client) -> Recorder {
        Recorder {
            client,
            sequence: AtomicU64::new(0),
        }
    }

    /// A `Normal` Event.
    pub(crate) fn normal(
        &self,
        component: &'static str,
        about: ObjectReference,
        reason: &'static str,
        message: String,
    ) {
        self.record(component, about, "Normal", reason, message);
    }

    /// A `Warning` Event.
    pub(crate) fn warning(
        &self,
        component: &'static str,
        about: ObjectReference,
        reason: &'static str,
        message: String,
    ) {
        self.record(component, about, "Warning", reason, message);
    }

    fn record(
        &self,
        component: &'static str,
        about: ObjectReference,
        type_: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let now = Time(jiff::Timestamp::now());
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = about.name.clone().unwrap_or_default();
        // Events of cluster-scoped objects (Nodes) live in `default`, as
        // Kubernetes records them.
        let namespace = about
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let event = Event {
            metadata: ObjectMeta {
                // client-go's naming (`<name>.<unix nanos in hex>`), made
                // unique within the process.
                name: Some(format!("{name}.{:x}{seq:x}", now.0.as_nanosecond().max(0))),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: about,
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(type_.to_owned()),
            source: Some(EventSource {
                component: Some(component.to_owned()),
                host: None,
            }),
            reporting_component: Some(component.to_owned()),
            reporting_instance: Some(component.to_owned()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, reason, "cannot record an Event");
            }
        });
    }
}
