//! Kubernetes Events on Pods, as the kubelet records them (`Started`,
//! `Killing`, `BackOff`, `Unhealthy`, `Failed`), written as core/v1 Events
//! that `kubectl describe pod` shows. Reasons that would repeat every
//! probe period are recorded once per distinct message.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};

/// Who reports (`source.component`, `reportingComponent`), as the kubelet.
pub const COMPONENT: &str = "kubelet";

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// Something expected happened.
    Normal,
    /// Something the user may have to fix.
    Warning,
}

/// The Events of one pod.
pub(crate) struct Recorder {
    client: kube::Client,
    node: String,
    pod: ObjectReference,
    last: HashMap<(Option<String>, &'static str), String>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: String, pod: &Pod) -> Recorder {
        Recorder {
            client,
            node,
            pod: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            },
            last: HashMap::new(),
        }
    }

    /// Records an Event about `container` (or the pod itself). A reason
    /// that repeats on every probe or retry (`Unhealthy`, `Failed`,
    /// `FailedPreStopHook`) is recorded only when its message changes.
    pub fn record(
        &mut self,
        type_: Type,
        container: Option<&str>,
        reason: &'static str,
        message: String,
    ) {
        if matches!(reason, "Unhealthy" | "Failed" | "FailedPreStopHook") {
            let key = (container.map(str::to_owned), reason);
            if self.last.get(&key) == Some(&message) {
                return;
            }
            self.last.insert(key, message.clone());
        }
        let pod_name = self.pod.name.as_deref().unwrap_or("");
        match type_ {
            Type::Normal => tracing::info!(pod = pod_name, container, reason, "{message}"),
            Type::Warning => tracing::warn!(pod = pod_name, container, reason, "{message}"),
        }
        let mut involved = self.pod.clone();
        involved.field_path = container.map(|c| format!("spec.containers{{{c}}}"));
        let client = self.client.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(e) = publish(client, involved, &node, type_, reason, message).await {
                tracing::debug!(error = %e, "cannot record an Event");
            }
        });
    }

    /// Forgets the last message of `reason` for `container`, so the next
    /// one is recorded even if it repeats an earlier one.
    pub fn clear(&mut self, container: Option<&str>, reason: &'static str) {
        self.last.remove(&(container.map(str::to_owned), reason));
    }
}

async fn publish(
    client: kube::Client,
    involved: ObjectReference,
    node: &str,
    type_: Type,
    reason: &str,
    message: String,
) -> Result<(), kube::Error> {
    let namespace = involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let name = involved.name.as_deref().unwrap_or("pod");
    let event = Event {
        metadata: ObjectMeta {
            // client-go's naming (`<name>.<unix nanos in hex>`).
            name: Some(format!("{name}.{:x}", now.0.as_nanosecond().max(0))),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: involved,
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(
            match type_ {
                Type::Normal => "Normal",
                Type::Warning => "Warning",
            }
            .to_owned(),
        ),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: Some(node.to_owned()),
        }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(node.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    };
    Api::<Event>::namespaced(client, &namespace)
        .create(&PostParams::default(), &event)
        .await?;
    Ok(())
}
