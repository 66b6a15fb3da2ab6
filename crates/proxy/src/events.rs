//! Kubernetes Events on Services, for what a user must fix (an unknown
//! scheduler name). Written as core/v1 Events, which every apiserver
//! serves and `kubectl describe` shows; each distinct message is reported
//! once per Service until it changes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use switchboard_discovery::ServiceKey;

/// Who reports (`source.component`, `reportingComponent`).
pub const COMPONENT: &str = "switchboard-proxy";

pub(crate) struct Events {
    client: Option<kube::Client>,
    node: String,
    reported: HashMap<ServiceKey, String>,
}

impl Events {
    pub fn new(client: Option<kube::Client>, node: String) -> Self {
        Events {
            client,
            node,
            reported: HashMap::new(),
        }
    }

    /// Reports `message` as a Warning with `reason` on the Service, unless
    /// the same message was the last one reported for it.
    pub fn warn(&mut self, key: &ServiceKey, reason: &'static str, message: String) {
        if self.reported.get(key) == Some(&message) {
            return;
        }
        tracing::warn!(service = %key, reason, "{message}");
        self.reported.insert(key.clone(), message.clone());
        let Some(client) = self.client.clone() else {
            return;
        };
        let key = key.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(e) = publish(client, &key, &node, reason, message).await {
                tracing::warn!(service = %key, error = %e, "cannot record an Event");
            }
        });
    }

    /// The Service no longer has a problem to report (or is gone).
    pub fn clear(&mut self, key: &ServiceKey) {
        self.reported.remove(key);
    }
}

async fn publish(
    client: kube::Client,
    key: &ServiceKey,
    node: &str,
    reason: &str,
    message: String,
) -> Result<(), kube::Error> {
    // The uid makes `kubectl describe` match the Event to this Service.
    let svc = Api::<Service>::namespaced(client.clone(), &key.namespace)
        .get(&key.name)
        .await?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            // client-go's naming (`<name>.<unix nanos in hex>`).
            name: Some(format!("{}.{:x}", key.name, now.0.as_nanosecond().max(0))),
            namespace: Some(key.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Service".to_owned()),
            name: Some(key.name.clone()),
            namespace: Some(key.namespace.clone()),
            uid: svc.metadata.uid,
            resource_version: svc.metadata.resource_version,
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some("Warning".to_owned()),
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
    Api::<Event>::namespaced(client, &key.namespace)
        .create(&PostParams::default(), &event)
        .await?;
    Ok(())
}
