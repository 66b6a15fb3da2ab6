//! `switchboard apply -f`: create each object, or replace it keeping the
//! server's resourceVersion, and say what happened as kubectl does.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::api::{DynamicObject, PostParams};
use serde_json::Value;

use super::{Target, resolve};
use crate::GlobalArgs;
use crate::client;
use crate::manifest::Document;

/// Flags of `apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Manifest file, directory (*.yaml, *.yml, *.json) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// What apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The object did not exist.
    Created,
    /// The object existed and changed.
    Configured,
    /// The object existed and the write changed nothing a user wrote.
    Unchanged,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Runs `apply`.
pub async fn run(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let docs = crate::manifest::read_all(&args.files)?;
    let client = client::client(global).await?;
    let report = apply_all(&client, global, &docs).await;
    for line in &report.lines {
        match line {
            Ok(l) => println!("{l}"),
            Err(l) => eprintln!("{l}"),
        }
    }
    Ok(if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `apply` prints: one line per object, `Ok` for stdout, `Err` for stderr.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines in order.
    pub lines: Vec<Result<String, String>>,
    /// Whether any object failed.
    pub failed: bool,
}

/// Applies every document in order, going on after a failure.
pub async fn apply_all(client: &kube::Client, global: &GlobalArgs, docs: &[Document]) -> Report {
    let mut report = Report::default();
    for doc in docs {
        let target = match resolve(global, doc) {
            Ok(t) => t,
            Err(e) => {
                report.lines.push(Err(format!(
                    "error: {}: {}/{}: {e}",
                    doc.origin,
                    doc.kind(),
                    doc.name()
                )));
                report.failed = true;
                continue;
            }
        };
        let shown = client::type_name(target.rt, doc.name());
        match apply_one(client, &target).await {
            Ok(outcome) => report.lines.push(Ok(format!("{shown} {}", outcome.word()))),
            Err(e) => {
                report
                    .lines
                    .push(Err(format!("error: {}: {shown}: {e}", doc.origin)));
                report.failed = true;
            }
        }
    }
    report
}

async fn apply_one(client: &kube::Client, target: &Target<'_>) -> Result<Outcome, String> {
    let mut desired = target.doc.object.clone();
    set_namespace(&mut desired, target.namespace.as_deref());
    let mut obj: DynamicObject =
        serde_json::from_value(desired).map_err(|e| format!("not a Kubernetes object: {e}"))?;
    let api = client::api(client, target.rt, target.namespace.as_deref());
    let name = target.doc.name();
    let err = |e: kube::Error| client::describe_error(&e);
    let Some(existing) = api.get_opt(name).await.map_err(err)? else {
        api.create(&PostParams::default(), &obj)
            .await
            .map_err(err)?;
        return Ok(Outcome::Created);
    };
    obj.metadata.resource_version = existing.metadata.resource_version.clone();
    // A replace ignores status on the main resource; carrying the current one
    // keeps servers that do not ignore it from wiping it.
    if obj.data.get("status").is_none_or(Value::is_null)
        && let Some(status) = existing.data.get("status")
    {
        obj.data["status"] = status.clone();
    }
    let updated = api
        .replace(name, &PostParams::default(), &obj)
        .await
        .map_err(err)?;
    Ok(if user_fields(&existing) == user_fields(&updated) {
        Outcome::Unchanged
    } else {
        Outcome::Configured
    })
}

fn set_namespace(obj: &mut Value, namespace: Option<&str>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.into()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    }
}

/// What a user writes in a manifest: labels, annotations and every top-level
/// field except metadata and status. Equal before and after a replace means
/// the apply changed nothing.
fn user_fields(obj: &DynamicObject) -> Value {
    let mut data = obj.data.clone();
    if let Value::Object(map) = &mut data {
        map.remove("status");
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
    }
    serde_json::json!({
        "labels": obj.metadata.labels.clone().unwrap_or_default(),
        "annotations": obj.metadata.annotations.clone().unwrap_or_default(),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn server_bookkeeping_is_not_a_change() {
        let before = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "resourceVersion": "5", "labels": {"a": "b"}},
            "spec": {"clusterIP": "127.96.0.5"}, "status": {}}));
        let after = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "resourceVersion": "9", "labels": {"a": "b"}},
            "spec": {"clusterIP": "127.96.0.5"}, "status": {"x": 1}}));
        assert_eq!(user_fields(&before), user_fields(&after));
    }

    #[test]
    fn label_and_spec_edits_are_changes() {
        let base = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}});
        let mut relabelled = base.clone();
        relabelled["metadata"]["labels"]["a"] = json!("c");
        let mut edited = base.clone();
        edited["data"]["k"] = json!("w");
        assert_ne!(
            user_fields(&obj(base.clone())),
            user_fields(&obj(relabelled))
        );
        assert_ne!(user_fields(&obj(base)), user_fields(&obj(edited)));
    }

    #[test]
    fn namespace_is_set_or_stripped() {
        let mut v = json!({"metadata": {"name": "x", "namespace": "a"}});
        set_namespace(&mut v, Some("b"));
        assert_eq!(v["metadata"]["namespace"], "b");
        set_namespace(&mut v, None);
        assert!(v["metadata"].get("namespace").is_none());
    }
}

#[cfg(test)]
mod against_fake {
    use super::*;
    use crate::manifest::{Format, parse};

    use super::super::fake::global;

    fn lines(report: &Report) -> Vec<String> {
        report
            .lines
            .iter()
            .map(|l| l.clone().unwrap_or_else(|e| e))
            .collect()
    }

    #[tokio::test]
    async fn create_then_unchanged_then_configured() {
        let client = super::super::fake::client();
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/web.yaml"
        ))
        .unwrap();
        let docs = parse("examples/web.yaml", &text, Format::Yaml).unwrap();
        let g = global(None);

        let first = apply_all(&client, &g, &docs).await;
        assert_eq!(
            lines(&first),
            [
                "service/web created",
                "pod/web-0 created",
                "pod/web-1 created",
                "pod/web-2 created"
            ]
        );
        assert!(!first.failed);

        let again = apply_all(&client, &g, &docs).await;
        assert!(
            lines(&again).iter().all(|l| l.ends_with(" unchanged")),
            "{:?}",
            lines(&again)
        );

        let edited = parse(
            "edit.yaml",
            &text.replacen("app: web\nspec:", "app: web\n    tier: front\nspec:", 1),
            Format::Yaml,
        )
        .unwrap();
        let third = apply_all(&client, &g, &edited[..1]).await;
        assert_eq!(lines(&third), ["service/web configured"]);

        // The server's allocated ClusterIP survived the replaces.
        let api = client::api(
            &client,
            switchboard_api::ResourceType::lookup("svc").unwrap(),
            Some("default"),
        );
        let svc = api.get("web").await.unwrap();
        assert!(
            svc.data["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("127.96."))
        );
    }

    #[tokio::test]
    async fn failures_name_file_document_and_object_and_the_rest_still_apply() {
        let client = super::super::fake::client();
        let text = "\
apiVersion: v1
kind: Service
metadata: {name: bad}
spec: {ports: [{port: 0}]}
---
apiVersion: v1
kind: Widget
metadata: {name: w}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: good, namespace: other}
";
        let docs = parse("m.yaml", text, Format::Yaml).unwrap();
        let report = apply_all(&client, &global(None), &docs).await;
        assert!(report.failed);
        assert_eq!(
            lines(&report),
            [
                "error: m.yaml (document 1): service/bad: Error from server (Invalid): Service \"bad\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "error: m.yaml (document 2): Widget/w: no resource type for apiVersion \"v1\", kind \"Widget\"",
                "configmap/good created",
            ]
        );
        // An explicit -n that contradicts the object is refused.
        let report = apply_all(&client, &global(Some("elsewhere")), &docs[2..]).await;
        assert!(lines(&report)[0].contains("does not match the namespace \"elsewhere\""));
    }
}
