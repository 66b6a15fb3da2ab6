//! `creates`: Service creates through the API from concurrent clients:
//! writes per second and the latency of each acknowledged create.

use clap::Args;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{Ctx, Report};
use crate::{load, objects};

/// Flags of `creates`.
#[derive(Debug, Clone, Args)]
pub struct CreatesArgs {
    /// Services to create.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub services: u32,
    /// Requests in flight at once (clients).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
}

/// Creates `services` Services, `concurrency` at a time.
pub async fn run(ctx: &Ctx, args: &CreatesArgs) -> anyhow::Result<Report> {
    load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pp = PostParams::default();
    let n = args.services as usize;
    let outcome = load::run("creates", n, args.concurrency as usize, |i| {
        let (api, pp) = (&api, &pp);
        async move {
            let name = format!("svc-{i}");
            api.create(pp, &objects::service(&name, &name)).await
        }
    })
    .await;
    let r = outcome.report();
    let human = format!(
        "creates: {} Services at concurrency {}: {} ok, {} errors, {:.0} writes/s, latency {}",
        n,
        args.concurrency,
        r.ok,
        r.errors,
        r.per_s,
        r.latency.map(|s| s.short()).unwrap_or_else(|| "n/a".into())
    );
    Ok(Report {
        json: json!({
            "scenario": "creates",
            "services": n,
            "concurrency": args.concurrency,
            "writes_per_s": r.per_s,
            "result": r,
        }),
        human,
    })
}
