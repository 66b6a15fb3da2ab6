//! `dns-latency`: Service created → its name answered by cluster DNS.
//!
//! One Service at a time is created through the API; from the moment the
//! create is acknowledged, the scenario asks the DNS server for the
//! Service's A record over UDP, again as soon as each answer comes back,
//! until one has the address. The latency is acknowledgment → that answer,
//! so it spans the apiserver's watch fan-out, discovery's table and the DNS
//! zone rebuild, as a user's `kubectl apply` then `dig` would see it (with
//! the polling's resolution, one round trip on loopback: tens of µs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::net::UdpSocket;

use super::{Ctx, Report};
use crate::stats::Summary;
use crate::{dnswire, load, objects};

/// Flags of `dns-latency`.
#[derive(Debug, Clone, Args)]
pub struct DnsLatencyArgs {
    /// The cluster DNS server (UDP).
    #[arg(long)]
    pub dns: SocketAddr,
    /// Services to create, one after the other.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub services: u32,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub zone: String,
    /// Seconds to wait for one name before counting it missing.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub wait: u64,
}

/// Creates the Services one by one and times each until it is answered.
pub async fn run(ctx: &Ctx, args: &DnsLatencyArgs) -> anyhow::Result<Report> {
    load::ensure_namespace(&ctx.client, &ctx.namespace).await?;
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let local: SocketAddr = if args.dns.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(args.dns).await?;
    let wait = Duration::from_secs(args.wait);
    let mut samples = Vec::with_capacity(args.services as usize);
    let mut missing = 0usize;
    let mut probes = 0u64;
    let mut id: u16 = 0;
    let mut buf = [0u8; 512];
    for i in 0..args.services {
        let name = format!("dnslat-{i}");
        let qname = format!("{name}.{}.svc.{}", ctx.namespace, args.zone);
        let mut query = dnswire::query(&qname, 1)
            .with_context(|| format!("{qname:?} is not a valid DNS name"))?;
        api.create(&PostParams::default(), &objects::service(&name, &name))
            .await
            .with_context(|| format!("creating Service {name}"))?;
        let acked = Instant::now();
        let answered = loop {
            if acked.elapsed() > wait {
                break None;
            }
            id = id.wrapping_add(1);
            query[..2].copy_from_slice(&id.to_be_bytes());
            socket.send(&query).await?;
            probes += 1;
            // Skips stale answers to earlier probes (by ID); a lost
            // datagram is retried after 50 ms.
            let got = tokio::time::timeout(Duration::from_millis(50), async {
                loop {
                    let n = socket.recv(&mut buf).await?;
                    match dnswire::header(&buf[..n]) {
                        Some(h) if h.id == id => return Ok::<_, std::io::Error>(h),
                        _ => continue,
                    }
                }
            })
            .await;
            match got {
                Ok(Ok(h)) if h.rcode == 0 && h.answers > 0 => break Some(acked.elapsed()),
                Ok(Ok(_)) | Err(_) => continue,
                // ICMP unreachable: DNS not (yet) listening; keep asking.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Ok(Err(e)) => return Err(e).context("receiving a DNS answer"),
            }
        };
        match answered {
            Some(d) => samples.push(d),
            None => missing += 1,
        }
    }
    let latency = Summary::of(&samples);
    let human = format!(
        "dns-latency: {} Services created one by one, answered after {}; {} never answered within {} s",
        args.services,
        latency.map(|s| s.short()).unwrap_or_else(|| "n/a".into()),
        missing,
        args.wait
    );
    Ok(Report {
        json: json!({
            "scenario": "dns-latency",
            "services": args.services,
            "dns": args.dns.to_string(),
            "missing": missing,
            "probes": probes,
            "latency": latency,
        }),
        human,
    })
}
