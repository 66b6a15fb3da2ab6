//! `list`: latency of listing every Service of a namespace once it holds
//! many (the whole list in one response, as `kubectl get svc` asks).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, PostParams};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::{Ctx, Report};
use crate::stats::Summary;
use crate::{load, objects};

/// Flags of `list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Services to create before listing.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub services: u32,
    /// Timed lists.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub lists: u32,
    /// Creates in flight at once while filling.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub fill_concurrency: u32,
}

/// Only the item count of a list body; the items are skipped unparsed.
#[derive(Deserialize)]
struct Items {
    items: Vec<IgnoredAny>,
}

/// Fills the namespace with Services, then times `lists` full lists.
pub async fn run(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<Report> {
    load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pp = PostParams::default();
    let n = args.services as usize;
    let fill = load::run("fill services", n, args.fill_concurrency as usize, |i| {
        let (api, pp) = (&api, &pp);
        async move {
            let name = format!("svc-{i}");
            api.create(pp, &objects::service(&name, &name)).await
        }
    })
    .await;
    fill.require_all_ok("filling Services")?;

    // The raw body, not typed decoding: the figure is the server's (and the
    // wire's), not serde's on the bench side of a shared 2-core machine.
    let url = api.resource_url().to_string();
    let list_once = || async {
        let req = kube::core::Request::new(url.as_str())
            .list(&ListParams::default())
            .context("cannot build the list request")?;
        let t = Instant::now();
        let body = ctx
            .client
            .request_text(req)
            .await
            .map_err(|e| anyhow::anyhow!("list {url}: {}", load::describe(&e)))?;
        Ok::<(Duration, String), anyhow::Error>((t.elapsed(), body))
    };

    let (first, body) = list_once().await?;
    let bytes = body.len();
    let items: Items = serde_json::from_str(&body).context("the list body is not a List")?;
    anyhow::ensure!(
        items.items.len() >= n,
        "the list returned {} Services, expected at least {n}",
        items.items.len()
    );
    let count = items.items.len();
    drop(body);

    let mut samples = Vec::with_capacity(args.lists as usize);
    for _ in 0..args.lists {
        let (d, body) = list_once().await?;
        anyhow::ensure!(
            body.len() + body.len() / 10 >= bytes,
            "a later list returned {} bytes against {bytes} at first",
            body.len()
        );
        samples.push(d);
    }
    let latency = Summary::of(&samples);
    let human = format!(
        "list: {count} Services ({:.1} MB per list), {} lists: {}; first list {:.1} ms",
        bytes as f64 / 1e6,
        args.lists,
        latency.map(|s| s.short()).unwrap_or_else(|| "n/a".into()),
        first.as_secs_f64() * 1e3
    );
    Ok(Report {
        json: json!({
            "scenario": "list",
            "services": n,
            "items_listed": count,
            "bytes_per_list": bytes,
            "lists": args.lists,
            "first_list_ms": first.as_secs_f64() * 1e3,
            "latency": latency,
            "fill": fill.report(),
        }),
        human,
    })
}
