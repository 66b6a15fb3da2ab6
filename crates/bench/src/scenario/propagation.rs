//! `propagation`: Pod marked Ready through `pods/status` until a watcher of
//! EndpointSlices sees that pod's endpoint ready in its Service's slice.
//! One Service per Pod, so every write concerns a different slice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Ctx, Report};
use crate::stats::Summary;
use crate::{load, objects};

/// The target for the p99, milliseconds.
const TARGET_P99_MS: f64 = 50.0;
/// Prefix of the Services and Pods (`prop-<i>`).
const PREFIX: &str = "prop-";

/// Flags of `propagation`.
#[derive(Debug, Clone, Args)]
pub struct PropagationArgs {
    /// Services, each selecting one Pod (so as many Pods).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub services: u32,
    /// Requests in flight while creating the Services and Pods.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
    /// Ready writes in flight at once (1: one pod becomes ready at a time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Start Ready write i no earlier than i x this many milliseconds after
    /// the first (0: as fast as the acknowledgements allow).
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// How long the controller may take to publish the not-ready endpoints
    /// before the measurement starts.
    #[arg(long, default_value_t = 180)]
    pub settle_secs: u64,
    /// How long after the last acknowledged write every endpoint must be seen.
    #[arg(long, default_value_t = 60)]
    pub deadline_secs: u64,
}

fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// Sets up Services, Pods (with an IP, not ready) and waits for their
/// not-ready endpoints; then marks each Pod ready and times its endpoint.
pub async fn run(ctx: &Ctx, args: &PropagationArgs) -> anyhow::Result<Report> {
    let n = args.services as usize;
    let ips: Vec<String> = (0..n)
        .map(objects::pod_ip)
        .collect::<Option<_>>()
        .context("too many pods for the pod CIDR")?;
    load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pp = PostParams::default();
    let patch_params = PatchParams::default();
    let c = args.setup_concurrency as usize;

    load::run("create services", n, c, |i| {
        let (api, pp) = (&services, &pp);
        async move {
            let name = format!("{PREFIX}{i}");
            api.create(pp, &objects::service(&name, &name)).await
        }
    })
    .await
    .require_all_ok("creating Services")?;
    load::run("create pods", n, c, |i| {
        let (api, pp) = (&pods, &pp);
        async move {
            let name = format!("{PREFIX}{i}");
            api.create(pp, &objects::pod(&name, &name)).await
        }
    })
    .await
    .require_all_ok("creating Pods")?;
    load::run("pod IPs (not ready)", n, c, |i| {
        let (api, pp, ips) = (&pods, &patch_params, &ips);
        async move {
            let patch = Patch::Merge(objects::pod_status_patch(&ips[i], false));
            api.patch_status(&format!("{PREFIX}{i}"), pp, &patch).await
        }
    })
    .await
    .require_all_ok("writing Pod IPs through pods/status")?;

    let settle =
        wait_for_not_ready_endpoints(ctx, &ips, Duration::from_secs(args.settle_secs)).await?;
    eprintln!(
        "  {n} not-ready endpoints published {:.2} s after the last status write",
        settle.as_secs_f64()
    );

    // One watch over every namespace's EndpointSlices, as kube-proxy has.
    let all: Api<EndpointSlice> = Api::all(ctx.client.clone());
    let rv = all
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| anyhow::anyhow!("list EndpointSlices: {}", load::describe(&e)))?
        .metadata
        .resource_version
        .context("the EndpointSlice list has no resourceVersion")?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_ready(
        ctx.client.clone(),
        all.resource_url().to_string(),
        rv,
        ctx.namespace.clone(),
        ips.clone(),
        seen_tx,
        ready_tx,
    ));
    match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
        Ok(Ok(())) => {}
        _ => {
            watcher.abort();
            return match watcher.await {
                Ok(Err(e)) => Err(e.context("the EndpointSlice watch did not start")),
                _ => Err(anyhow::anyhow!(
                    "the EndpointSlice watch did not start within 30 s"
                )),
            };
        }
    }

    // Mark each pod ready; keep when its write was sent and acknowledged.
    let t0 = Instant::now();
    let interval = Duration::from_millis(args.interval_ms);
    let mut writes = futures::stream::iter(0..n)
        .map(|i| {
            let (api, pp, ips) = (&pods, &patch_params, &ips);
            async move {
                if !interval.is_zero() {
                    let at = tokio::time::Instant::from_std(t0) + interval * i as u32;
                    tokio::time::sleep_until(at).await;
                }
                let patch = Patch::Merge(objects::pod_status_patch(&ips[i], true));
                let sent = Instant::now();
                let r = api.patch_status(&format!("{PREFIX}{i}"), pp, &patch).await;
                (i, sent, Instant::now(), r)
            }
        })
        .buffer_unordered(args.concurrency as usize);
    let mut sent_at = vec![t0; n];
    let mut acked_at: Vec<Option<Instant>> = vec![None; n];
    let mut write_latency = Vec::with_capacity(n);
    while let Some((i, sent, acked, r)) = writes.next().await {
        r.map_err(|e| anyhow::anyhow!("mark {PREFIX}{i} ready: {}", load::describe(&e)))?;
        sent_at[i] = sent;
        acked_at[i] = Some(acked);
        write_latency.push(acked - sent);
    }
    drop(writes);
    let writes_elapsed = t0.elapsed();

    let mut seen_at: Vec<Option<Instant>> = vec![None; n];
    let mut missing = n;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.deadline_secs);
    while missing > 0 {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((i, at))) => {
                if seen_at[i].is_none() {
                    seen_at[i] = Some(at);
                    missing -= 1;
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    watcher.abort();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(1), watcher).await {
        // Only worth a word when it ended on its own before the endpoints came.
        if missing > 0 {
            eprintln!("  the EndpointSlice watch ended: {e:#}");
        }
    }

    let mut since_ack = Vec::with_capacity(n);
    let mut since_send = Vec::with_capacity(n);
    let mut before_ack = 0usize;
    for i in 0..n {
        let (Some(seen), Some(acked)) = (seen_at[i], acked_at[i]) else {
            continue;
        };
        // The slice can reach the watcher before the write's answer reaches
        // the writer; that counts as 0, and is counted.
        if seen < acked {
            before_ack += 1;
        }
        since_ack.push(seen.saturating_duration_since(acked));
        since_send.push(seen.saturating_duration_since(sent_at[i]));
    }
    let latency = Summary::of(&since_ack);
    let meets = missing == 0 && latency.is_some_and(|s| s.p99_ms < TARGET_P99_MS);
    let human = format!(
        "propagation: {n} pods across {n} services, Ready write ack -> EndpointSlice watch: {}; \
         missing {missing}; target p99 < {TARGET_P99_MS} ms {}",
        latency.map(|s| s.short()).unwrap_or_else(|| "n/a".into()),
        if meets { "met" } else { "NOT met" }
    );
    Ok(Report {
        json: json!({
            "scenario": "propagation",
            "services": n,
            "pods": n,
            "write_concurrency": args.concurrency,
            "interval_ms": args.interval_ms,
            "initial_publish_s": load::round_s(settle),
            "ready_writes": {
                "elapsed_s": load::round_s(writes_elapsed),
                "per_s": crate::stats::rate(n, writes_elapsed),
                "latency": Summary::of(&write_latency),
            },
            "latency_since_ack": latency,
            "latency_since_send": Summary::of(&since_send),
            "seen_before_ack": before_ack,
            "missing": missing,
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": meets,
        }),
        human,
    })
}

/// Polls the namespace's EndpointSlices until every pod's address is in its
/// Service's slice (not ready); returns how long that took.
async fn wait_for_not_ready_endpoints(
    ctx: &Ctx,
    ips: &[String],
    limit: Duration,
) -> anyhow::Result<Duration> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let start = Instant::now();
    let deadline = start + limit;
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| anyhow::anyhow!("list EndpointSlices: {}", load::describe(&e)))?;
        let mut published = HashSet::new();
        for slice in &list.items {
            let Some(i) = objects::slice_service(slice).and_then(index_of) else {
                continue;
            };
            if i < ips.len() && objects::endpoint_state(slice, &ips[i]) == Some(false) {
                published.insert(i);
            }
        }
        if published.len() == ips.len() {
            return Ok(start.elapsed());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "after {} s only {} of {} Services have an EndpointSlice with their pod's \
                 address not ready ({} slices in namespace {}); is the EndpointSlice \
                 controller running?",
                limit.as_secs(),
                published.len(),
                ips.len(),
                list.items.len(),
                ctx.namespace
            );
        }
        // Poll interval of a condition wait with a deadline, not a guess at
        // how long the controller takes.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Watches every namespace's EndpointSlices from `rv` and reports
/// `(i, when)` the first time pod `i`'s endpoint shows ready in its slice.
async fn watch_ready(
    client: kube::Client,
    url: String,
    mut rv: String,
    namespace: String,
    ips: Vec<String>,
    seen: mpsc::UnboundedSender<(usize, Instant)>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut ready = Some(ready);
    let mut reported = vec![false; ips.len()];
    loop {
        let req = kube::core::Request::new(url.as_str())
            .watch(&WatchParams::default().timeout(290), &rv)
            .context("cannot build the watch request")?;
        let stream = client
            .request_events::<EndpointSlice>(req)
            .await
            .map_err(|e| anyhow::anyhow!("watch EndpointSlices: {}", load::describe(&e)))?;
        if let Some(tx) = ready.take() {
            let _ = tx.send(());
        }
        futures::pin_mut!(stream);
        while let Some(event) = stream
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!("EndpointSlice watch stream: {}", load::describe(&e)))?
        {
            let at = Instant::now();
            let slice = match event {
                WatchEvent::Added(s) | WatchEvent::Modified(s) => s,
                WatchEvent::Deleted(s) => {
                    rv = s.metadata.resource_version.unwrap_or(rv);
                    continue;
                }
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(s) => anyhow::bail!(
                    "the EndpointSlice watch failed: HTTP {} {}: {}",
                    s.code,
                    s.reason,
                    s.message
                ),
            };
            if let Some(v) = &slice.metadata.resource_version {
                rv.clone_from(v);
            }
            if slice.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let Some(i) = objects::slice_service(&slice).and_then(index_of) else {
                continue;
            };
            if i < ips.len() && !reported[i] && objects::slice_has_ready(&slice, &ips[i]) {
                reported[i] = true;
                if seen.send((i, at)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_index_comes_from_the_name() {
        assert_eq!(index_of("prop-0"), Some(0));
        assert_eq!(index_of("prop-999"), Some(999));
        assert_eq!(index_of("prop-x"), None);
        assert_eq!(index_of("kubernetes"), None);
    }
}
