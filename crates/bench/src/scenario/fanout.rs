//! `watch-fanout`: many watches on one resource while it changes; how long
//! until every watcher has seen every event, and how many events per second
//! the server delivered in total.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Ctx, Report};
use crate::stats::Summary;
use crate::{load, objects};

/// Flags of `watch-fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Concurrent watches (each its own connection through the shared client).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub watchers: u32,
    /// Writes, hence events each watcher must see.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events: u32,
    /// What the writes are.
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    pub mode: Mode,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Give up when not every watcher has seen every event this long after
    /// the first write.
    #[arg(long, default_value_t = 300)]
    pub deadline_secs: u64,
}

/// The writes that make the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Create one ConfigMap per event (ADDED events).
    Create,
    /// Merge-patch one ConfigMap once per event (MODIFIED events).
    Patch,
}

/// Name of the ConfigMap patched in `patch` mode.
const TARGET: &str = "fanout-target";
/// Prefix of the ConfigMaps created in `create` mode.
const PREFIX: &str = "fanout-";

/// The part of a watched object the watchers read. The rest of the body is
/// skipped unparsed: real consumers decode whole objects, but here the bench
/// shares two cores with the server, and its own decoding of a million
/// events would be measured as the server's slowness.
#[derive(Debug, Clone, Deserialize)]
struct Thin {
    metadata: ThinMeta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ThinMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_version: String,
}

/// What a watcher is told to count.
#[derive(Clone)]
struct Watch {
    client: kube::Client,
    url: String,
    mode: Mode,
    want: usize,
}

/// Watches from `rv` until `want` matching events arrived; resumes from the
/// last seen resourceVersion when the server ends the watch (its timeout).
/// Says on `ready` when its first watch request was answered.
async fn watch_until(w: Watch, mut rv: String, ready: mpsc::Sender<()>) -> anyhow::Result<Instant> {
    let mut seen = 0usize;
    let mut first = true;
    loop {
        let req = kube::core::Request::new(w.url.as_str())
            .watch(&WatchParams::default().timeout(290), &rv)
            .context("cannot build the watch request")?;
        let stream = w
            .client
            .request_events::<Thin>(req)
            .await
            .map_err(|e| anyhow::anyhow!("watch {}: {}", w.url, load::describe(&e)))?;
        if first {
            first = false;
            // The receiver only goes away when the run is being abandoned.
            let _ = ready.send(()).await;
        }
        futures::pin_mut!(stream);
        while let Some(event) = stream
            .try_next()
            .await
            .map_err(|e| anyhow::anyhow!("watch stream: {}", load::describe(&e)))?
        {
            let counts = match (&event, w.mode) {
                (WatchEvent::Added(o), Mode::Create) => o.metadata.name.starts_with(PREFIX),
                (WatchEvent::Modified(o), Mode::Patch) => o.metadata.name == TARGET,
                _ => false,
            };
            match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                    rv = o.metadata.resource_version
                }
                WatchEvent::Bookmark(b) => rv = b.metadata.resource_version,
                WatchEvent::Error(s) => anyhow::bail!(
                    "the watch failed after {seen} events: HTTP {} {}: {}",
                    s.code,
                    s.reason,
                    s.message
                ),
            }
            if counts {
                seen += 1;
                if seen >= w.want {
                    return Ok(Instant::now());
                }
            }
        }
    }
}

/// Starts the watchers, makes the events, waits for every watcher.
pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> anyhow::Result<Report> {
    load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    if args.mode == Mode::Patch {
        api.create(
            &PostParams::default(),
            &objects::config_map(TARGET, "start"),
        )
        .await
        .map_err(|e| anyhow::anyhow!("create ConfigMap {TARGET}: {}", load::describe(&e)))?;
    }
    // Every watch starts at the same revision, so each must see exactly the
    // events of the writes below, whenever its connection came up.
    let rv = api
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| anyhow::anyhow!("list ConfigMaps: {}", load::describe(&e)))?
        .metadata
        .resource_version
        .context("the ConfigMap list has no resourceVersion")?;

    let (w, e) = (args.watchers as usize, args.events as usize);
    let (ready_tx, mut ready_rx) = mpsc::channel(w);
    let mut watchers = JoinSet::new();
    for _ in 0..w {
        let watch = Watch {
            client: ctx.client.clone(),
            url: api.resource_url().to_string(),
            mode: args.mode,
            want: e,
        };
        watchers.spawn(watch_until(watch, rv.clone(), ready_tx.clone()));
    }
    drop(ready_tx);
    let setup_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for i in 0..w {
        match tokio::time::timeout_at(setup_deadline, ready_rx.recv()).await {
            Ok(Some(())) => {}
            // Every sender is gone: some watcher failed before its first answer.
            Ok(None) => match watchers.join_next().await {
                Some(Ok(Err(err))) => return Err(err.context("a watcher failed to start")),
                other => anyhow::bail!("only {i} of {w} watches started ({other:?})"),
            },
            Err(_) => anyhow::bail!("only {i} of {w} watches started within 60 s"),
        }
    }
    eprintln!("  {w} watches open; writing {e} events ({:?})", args.mode);

    let t0 = Instant::now();
    let pp = PostParams::default();
    let patch_params = PatchParams::default();
    let writes = load::run("writes", e, args.concurrency as usize, |i| {
        let (api, pp, patch_params) = (&api, &pp, &patch_params);
        async move {
            match args.mode {
                Mode::Create => {
                    let name = format!("{PREFIX}{i}");
                    api.create(pp, &objects::config_map(&name, &i.to_string()))
                        .await
                }
                Mode::Patch => {
                    let patch = Patch::Merge(json!({"data": {"value": i.to_string()}}));
                    api.patch(TARGET, patch_params, &patch).await
                }
            }
        }
    })
    .await;
    writes.require_all_ok("writing events")?;
    let writes_done = Instant::now();

    let deadline = tokio::time::Instant::from_std(t0) + Duration::from_secs(args.deadline_secs);
    let mut done: Vec<Instant> = Vec::with_capacity(w);
    while !watchers.is_empty() {
        match tokio::time::timeout_at(deadline, watchers.join_next()).await {
            Ok(Some(Ok(Ok(at)))) => done.push(at),
            Ok(Some(Ok(Err(err)))) => return Err(err.context("a watcher failed")),
            Ok(Some(Err(join))) => anyhow::bail!("a watcher task died: {join}"),
            Ok(None) => break,
            Err(_) => {
                watchers.abort_all();
                anyhow::bail!(
                    "after {} s only {} of {w} watchers had seen all {e} events",
                    args.deadline_secs,
                    done.len()
                );
            }
        }
    }
    let last = done.iter().max().copied().unwrap_or(writes_done);
    let all_seen = last.duration_since(t0);
    let lag_after_writes = last.saturating_duration_since(writes_done);
    let delivered = (w * e) as f64;
    let events_per_s = (delivered / all_seen.as_secs_f64()).round();
    let mut completion_ms: Vec<f64> = done
        .iter()
        .map(|d| d.duration_since(t0).as_secs_f64() * 1e3)
        .collect();
    let completion = Summary::of_ms(&mut completion_ms);
    let wr = writes.report();
    let human = format!(
        "watch-fanout: {w} watchers x {e} events ({:?}): all seen {:.2} s after the first write \
         ({:.2} s after the last ack), {:.0} events/s delivered; writes {:.0}/s",
        args.mode,
        all_seen.as_secs_f64(),
        lag_after_writes.as_secs_f64(),
        events_per_s,
        wr.per_s
    );
    Ok(Report {
        json: json!({
            "scenario": "watch-fanout",
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "watchers": w,
            "events": e,
            "all_seen_s": load::round_s(all_seen),
            "lag_after_last_write_s": load::round_s(lag_after_writes),
            "events_delivered_per_s": events_per_s,
            "watcher_completion_since_first_write": completion,
            "writes": wr,
        }),
        human,
    })
}
