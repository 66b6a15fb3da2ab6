//! Driving many requests with bounded concurrency through one shared
//! client, timing each one, and the client itself.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::api::{Api, PostParams};
use serde::Serialize;

use crate::stats::{self, Summary};

/// Builds the one client every scenario shares from a kubeconfig file.
pub async fn client(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client from {}", path.display()))
}

/// Creates namespace `name` unless it exists (a fresh server has only the
/// system namespaces; a reused one may have it already).
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &crate::objects::namespace(name))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot create namespace {name}"))),
    }
}

/// What a batch of requests did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Latency of every request that succeeded.
    pub latencies: Vec<Duration>,
    /// Requests that failed.
    pub errors: usize,
    /// The first failure, as the server (or the transport) put it.
    pub first_error: Option<String>,
    /// Wall time from the first request sent to the last answer.
    pub elapsed: Duration,
}

/// The JSON form of an [`Outcome`].
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeReport {
    /// Requests that succeeded.
    pub ok: usize,
    /// Requests that failed.
    pub errors: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Successful requests per second of wall time.
    pub per_s: f64,
    /// Latency of the successful requests.
    pub latency: Option<Summary>,
}

impl Outcome {
    /// Summarises for the JSON line.
    pub fn report(&self) -> OutcomeReport {
        OutcomeReport {
            ok: self.latencies.len(),
            errors: self.errors,
            first_error: self.first_error.clone(),
            elapsed_s: round_s(self.elapsed),
            per_s: stats::rate(self.latencies.len(), self.elapsed),
            latency: Summary::of(&self.latencies),
        }
    }

    /// Fails when any request failed: fills that leave holes would make the
    /// next phase measure something else than it says.
    pub fn require_all_ok(&self, what: &str) -> anyhow::Result<()> {
        match &self.first_error {
            None => Ok(()),
            Some(e) => anyhow::bail!(
                "{what}: {} of {} requests failed; first: {e}",
                self.errors,
                self.errors + self.latencies.len()
            ),
        }
    }
}

/// Seconds with millisecond resolution.
pub fn round_s(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

/// Runs `request(i)` for every `i` in `0..n`, at most `concurrency` at a
/// time, and times each. Progress goes to stderr (labelled `what`) every
/// tenth of the way, so a long fill shows it is alive.
pub async fn run<F, Fut, T>(what: &str, n: usize, concurrency: usize, request: F) -> Outcome
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    let step = (n / 10).max(1);
    let mut outcome = Outcome {
        latencies: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    let mut done = 0usize;
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let fut = request(i);
            async move {
                let t = Instant::now();
                let r = fut.await;
                (t.elapsed(), r)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((latency, result)) = results.next().await {
        match result {
            Ok(_) => outcome.latencies.push(latency),
            Err(e) => {
                outcome.errors += 1;
                if outcome.first_error.is_none() {
                    outcome.first_error = Some(describe(&e));
                }
            }
        }
        done += 1;
        if done.is_multiple_of(step) && n >= 10_000 {
            eprintln!(
                "  {what}: {done}/{n} ({} errors, {:.1} s)",
                outcome.errors,
                start.elapsed().as_secs_f64()
            );
        }
    }
    outcome.elapsed = start.elapsed();
    outcome
}

/// One line for a kube error: the Status (code, reason, message) for API
/// errors, the transport's chain otherwise.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("HTTP {} {}: {}", s.code, s.reason, s.message),
        other => format!("{:#}", anyhow::anyhow!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_every_request_and_counts_failures() {
        let outcome = run("t", 10, 3, |i| async move {
            if i % 5 == 0 {
                Err(kube::Error::LinesCodecMaxLineLengthExceeded)
            } else {
                Ok(i)
            }
        })
        .await;
        assert_eq!(outcome.latencies.len(), 8);
        assert_eq!(outcome.errors, 2);
        assert!(outcome.first_error.is_some());
        assert!(outcome.require_all_ok("fill").is_err());
        let r = outcome.report();
        assert_eq!(r.ok, 8);
        assert_eq!(r.latency.map(|s| s.count), Some(8));
    }

    #[tokio::test]
    async fn zero_concurrency_still_makes_progress() {
        let outcome = run("t", 4, 0, |i| async move { Ok::<_, kube::Error>(i) }).await;
        assert_eq!(outcome.latencies.len(), 4);
        assert!(outcome.require_all_ok("fill").is_ok());
    }
}
