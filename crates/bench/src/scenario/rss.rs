//! `rss`: resident memory of the server process (read from
//! `/proc/PID/status`) before and after it is filled with Services and
//! realistic Pods, and once the EndpointSlice controller has caught up.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::{Ctx, Report};
use crate::load;
use crate::objects::{self, ProcMemory};

/// How long the slice count may stand still before the wait gives up.
const STALL: Duration = Duration::from_secs(30);

/// The target, megabytes (10^6 bytes).
const TARGET_MB: f64 = 200.0;

/// Flags of `rss`.
#[derive(Debug, Clone, Args)]
pub struct RssArgs {
    /// Process id of the `switchboard server` under test (on this machine).
    #[arg(long)]
    pub pid: u32,
    /// Services to fill with.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    pub services: u32,
    /// Pods to fill with (pod j belongs to Service j mod services).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(0..=65_000))]
    pub pods: u32,
    /// Requests in flight while filling.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Measure only: the server is already filled.
    #[arg(long)]
    pub no_fill: bool,
    /// How long to wait for the EndpointSlice controller to have a slice for
    /// every Service with pods before sampling.
    #[arg(long, default_value_t = 300)]
    pub slices_wait_secs: u64,
    /// RSS samples taken one second apart after the fill.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub samples: u32,
}

/// Reads `/proc/<pid>/status`.
pub fn read_memory(pid: u32) -> anyhow::Result<ProcMemory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    objects::parse_proc_status(&text).with_context(|| format!("no VmRSS in {path}"))
}

fn mb(kib: u64) -> f64 {
    (kib as f64 * 1024.0 / 1e6 * 10.0).round() / 10.0
}

#[derive(Deserialize)]
struct Items {
    items: Vec<IgnoredAny>,
}

/// Fills the server, waits for its slices, samples its RSS.
pub async fn run(ctx: &Ctx, args: &RssArgs) -> anyhow::Result<Report> {
    let before = read_memory(args.pid)?;
    let (s, p) = (args.services as usize, args.pods as usize);
    let c = args.concurrency as usize;
    let mut fill = serde_json::Map::new();
    if !args.no_fill {
        anyhow::ensure!(
            s > 0 || p == 0,
            "pods need at least one service to belong to"
        );
        load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let pp = PostParams::default();
        let patch_params = PatchParams::default();
        let out = load::run("create services", s, c, |i| {
            let (api, pp) = (&services, &pp);
            async move {
                let name = format!("svc-{i}");
                api.create(pp, &objects::service(&name, &name)).await
            }
        })
        .await;
        out.require_all_ok("creating Services")?;
        fill.insert("services".into(), json!(out.report()));
        let out = load::run("create pods", p, c, |j| {
            let (api, pp) = (&pods, &pp);
            async move {
                let app = format!("svc-{}", j % s);
                api.create(pp, &objects::pod(&format!("pod-{j}"), &app))
                    .await
            }
        })
        .await;
        out.require_all_ok("creating Pods")?;
        fill.insert("pods".into(), json!(out.report()));
        let out = load::run("pod status", p, c, |j| {
            let (api, pp) = (&pods, &patch_params);
            async move {
                // pod_ip covers 65534 pods; the flag's range keeps j below.
                let ip = objects::pod_ip(j).unwrap_or_else(|| "127.244.255.254".into());
                let patch = Patch::Merge(objects::pod_status_patch(&ip, true));
                api.patch_status(&format!("pod-{j}"), pp, &patch).await
            }
        })
        .await;
        out.require_all_ok("writing Pod status")?;
        fill.insert("pod_status".into(), json!(out.report()));
    }
    let after_fill = read_memory(args.pid)?;

    // Services with at least one pod get a slice each (5 pods per slice at
    // the default sizes, well under the 100-endpoint slice limit).
    let want_slices = s.min(p);
    let slices = Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(
        ctx.client.clone(),
        &ctx.namespace,
    );
    let url = slices.resource_url().to_string();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.slices_wait_secs);
    let mut slice_count;
    let (mut last_count, mut last_change) = (usize::MAX, Instant::now());
    loop {
        let req = kube::core::Request::new(url.as_str())
            .list(&ListParams::default())
            .context("cannot build the list request")?;
        let body = ctx
            .client
            .request_text(req)
            .await
            .map_err(|e| anyhow::anyhow!("list EndpointSlices: {}", load::describe(&e)))?;
        slice_count = serde_json::from_str::<Items>(&body)
            .context("the EndpointSlice list is not a List")?
            .items
            .len();
        if slice_count >= want_slices || Instant::now() >= deadline {
            break;
        }
        // A controller that has made no slice for a while is not coming
        // (e.g. not running); sampling then beats waiting out the deadline.
        if slice_count != last_count {
            (last_count, last_change) = (slice_count, Instant::now());
        } else if last_change.elapsed() >= STALL {
            eprintln!(
                "  no new EndpointSlice for {} s; sampling now",
                STALL.as_secs()
            );
            break;
        }
        // Poll interval of a condition wait with a deadline.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let slices_wait = start.elapsed();
    let caught_up = slice_count >= want_slices;
    if !caught_up {
        eprintln!(
            "  only {slice_count} of {want_slices} EndpointSlices after {:.0} s; sampling anyway",
            slices_wait.as_secs_f64()
        );
    }

    let mut samples = Vec::with_capacity(args.samples as usize);
    for k in 0..args.samples {
        if k > 0 {
            // Sampling period of the measurement itself.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples.push(read_memory(args.pid)?);
    }
    let last = samples.last().copied().unwrap_or(after_fill);
    let max_rss = samples.iter().map(|m| m.vm_rss_kib).max().unwrap_or(0);
    let meets = mb(last.vm_rss_kib) < TARGET_MB;
    let human = format!(
        "rss: server pid {} holding {s} Services + {p} Pods ({slice_count} EndpointSlices): \
         VmRSS {:.1} MB (anon {:.1} MB), peak VmHWM {:.1} MB; before fill {:.1} MB; \
         target < {TARGET_MB} MB {}{}",
        args.pid,
        mb(last.vm_rss_kib),
        mb(last.rss_anon_kib),
        mb(last.vm_hwm_kib),
        mb(before.vm_rss_kib),
        if meets { "met" } else { "NOT met" },
        if caught_up {
            ""
        } else {
            " (the EndpointSlice controller had not caught up: figure incomplete)"
        }
    );
    Ok(Report {
        json: json!({
            "scenario": "rss",
            "pid": args.pid,
            "services": s,
            "pods": p,
            "filled": !args.no_fill,
            "endpointslices": slice_count,
            "slices_caught_up": caught_up,
            "slices_wait_s": load::round_s(slices_wait),
            "vm_rss_mb": mb(last.vm_rss_kib),
            "rss_anon_mb": mb(last.rss_anon_kib),
            "rss_file_mb": mb(last.rss_file_kib),
            "vm_hwm_mb": mb(last.vm_hwm_kib),
            "max_sampled_rss_mb": mb(max_rss),
            "before_fill_rss_mb": mb(before.vm_rss_kib),
            "after_fill_rss_mb": mb(after_fill.vm_rss_kib),
            "target_mb": TARGET_MB,
            "meets_target": meets,
            "fill": fill,
        }),
        human,
    })
}
