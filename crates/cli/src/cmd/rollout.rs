//! `switchboard scale` and `switchboard rollout status`: the two workload
//! commands of kubectl that the Deployment controller's users reach for.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};

use crate::GlobalArgs;
use crate::client;
use crate::up::parse_duration;

/// Flags of `scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// `deployment NAME`, `deployment/NAME`, `replicaset NAME`, ...
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// The new number of replicas.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub replicas: i32,
}

/// Flags of `rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// What `rollout` does.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Wait until a Deployment's rollout is complete, printing its progress.
    Status(RolloutStatusArgs),
}

/// Flags of `rollout status`.
#[derive(Debug, clap::Args)]
pub struct RolloutStatusArgs {
    /// `deployment NAME` or `deployment/NAME`.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// Give up after this long (e.g. 90s, 5m; 0 waits forever).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print the current status once instead of waiting.
    #[arg(long = "watch", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,
}

/// Splits `TYPE NAME` or `TYPE/NAME` into the resource type and the name.
fn type_and_name(
    target: &[String],
) -> anyhow::Result<(&'static switchboard_api::ResourceType, String)> {
    let (kind, name) = match target {
        [one] => one
            .split_once('/')
            .ok_or_else(|| anyhow!("{one:?} names no type: use TYPE/NAME or TYPE NAME"))?,
        [kind, name] => (kind.as_str(), name.as_str()),
        _ => bail!("expected TYPE NAME or TYPE/NAME"),
    };
    let rt = client::lookup(kind)?;
    if name.is_empty() {
        bail!("a name is required");
    }
    Ok((rt, name.to_string()))
}

/// Runs `scale`.
pub async fn scale(global: &GlobalArgs, args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let (rt, name) = type_and_name(&args.target)?;
    if !rt.has_scale() {
        bail!(
            "{} cannot be scaled: only deployments and replicasets have a scale",
            rt.plural
        );
    }
    let client = client::client(global).await?;
    let api = client::api(&client, rt, Some(client::namespace(global)));
    let patch = serde_json::json!({"spec": {"replicas": args.replicas}});
    api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot scale {}: {}",
                client::type_name(rt, &name),
                client::describe_error(&e)
            )
        })?;
    println!("{} scaled", client::type_name(rt, &name));
    Ok(ExitCode::SUCCESS)
}

/// Runs `rollout`.
pub async fn rollout(global: &GlobalArgs, args: RolloutArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RolloutCommand::Status(status) => rollout_status(global, status).await,
    }
}

async fn rollout_status(global: &GlobalArgs, args: RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    let (rt, name) = type_and_name(&args.target)?;
    if rt.kind != "Deployment" {
        bail!("rollout status supports deployments, not {}", rt.plural);
    }
    let client = client::client(global).await?;
    let api: Api<Deployment> = Api::namespaced(client, client::namespace(global));
    let started = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        let deploy = api.get(&name).await.map_err(|e| {
            anyhow!(
                "cannot read deployment {name:?}: {}",
                client::describe_error(&e)
            )
        })?;
        let progress = progress(&deploy);
        let (line, done) = match &progress {
            Progress::Done => (format!("deployment {name:?} successfully rolled out"), true),
            Progress::Failed(why) => {
                bail!("deployment {name:?} exceeded its progress deadline: {why}")
            }
            Progress::Waiting(why) => (
                format!("Waiting for deployment {name:?} rollout to finish: {why}"),
                false,
            ),
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        if done || !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.timeout.is_zero() && started.elapsed() >= args.timeout {
            bail!(
                "timed out waiting for the rollout of deployment {name:?} after {:?}",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where a rollout stands, by kubectl's rules (`DeploymentStatusViewer`).
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

fn progress(deploy: &Deployment) -> Progress {
    let generation = deploy.metadata.generation.unwrap_or(0);
    let Some(status) = &deploy.status else {
        return Progress::Waiting("waiting for deployment spec update to be observed...".into());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting("waiting for deployment spec update to be observed...".into());
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Progress::Failed(c.message.clone().unwrap_or_default());
    }
    let want = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return Progress::Waiting(format!(
            "{updated} out of {want} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated replicas are available..."
        ));
    }
    Progress::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn progress_follows_kubectl() {
        let p = |g, s| progress(&deploy(g, s));
        assert!(
            matches!(p(2, serde_json::json!({"observedGeneration": 1})), Progress::Waiting(w) if w.contains("observed"))
        );
        assert_eq!(
            p(
                1,
                serde_json::json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 4})
            ),
            Progress::Waiting("1 out of 3 new replicas have been updated...".into())
        );
        assert_eq!(
            p(
                1,
                serde_json::json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 4})
            ),
            Progress::Waiting("1 old replicas are pending termination...".into())
        );
        assert_eq!(
            p(
                1,
                serde_json::json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2})
            ),
            Progress::Waiting("2 of 3 updated replicas are available...".into())
        );
        assert_eq!(
            p(
                1,
                serde_json::json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})
            ),
            Progress::Done
        );
        assert!(matches!(
            p(1, serde_json::json!({"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "slow"}]})),
            Progress::Failed(m) if m == "slow"
        ));
    }

    #[test]
    fn targets_parse_both_spellings() {
        let (rt, name) = type_and_name(&["deploy/web".into()]).unwrap();
        assert_eq!((rt.kind, name.as_str()), ("Deployment", "web"));
        let (rt, name) = type_and_name(&["rs".into(), "web-1".into()]).unwrap();
        assert_eq!((rt.kind, name.as_str()), ("ReplicaSet", "web-1"));
        assert!(type_and_name(&["web".into()]).is_err());
    }
}
