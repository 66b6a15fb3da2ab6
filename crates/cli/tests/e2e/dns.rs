//! Cluster DNS end to end: the built binary, Services and Pods created
//! through the API, queried with `dig` and the hickory resolver. Forwarding
//! goes to a resolver the test starts on loopback, never the outside network.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use switchboard_testkit::resolver::Upstream;
use switchboard_testkit::{Switchboard, wait_for};

use super::binary;

fn have_dig() -> bool {
    let ok = Command::new("dig").arg("-v").output().is_ok();
    if !ok {
        eprintln!("skipping: dig not found (install dnsutils; scripts/test.sh does)");
    }
    ok
}

/// `dig @addr -p port <args>`; stdout.
fn dig(dns: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dig +short`, sorted lines.
fn short(dns: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(dns, &["+short", name, qtype])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.starts_with(';'))
        .collect();
    lines.sort();
    lines
}

/// The `status:` of a full dig answer.
fn status(dns: SocketAddr, name: &str, qtype: &str) -> String {
    let out = dig(dns, &[name, qtype]);
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string()
}

fn start(upstream: Option<&Upstream>) -> (tempfile::TempDir, Switchboard, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream.map(|u| u.addr.to_string());
    let mut args = vec![
        "--dns-listen",
        "127.0.0.1:0",
        "--dns-pod-records",
        "verified",
    ];
    if let Some(up) = &up {
        args.extend(["--dns-upstream", up.as_str()]);
    }
    let sb = Switchboard::up_with(binary(), dir.path(), &args).unwrap();
    let dns = sb.dns.expect("the ready line names the DNS address");
    (dir, sb, dns)
}

async fn create_service(client: &kube::Client, ns: &str, spec: serde_json::Value) -> Service {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc: Service = serde_json::from_value(spec).unwrap();
    api.create(&PostParams::default(), &svc).await.unwrap()
}

/// Creates a pod labelled `app` and, when `ip` is given, marks it Ready
/// with that address (what the kubelet would report).
async fn create_pod(
    client: &kube::Client,
    name: &str,
    app: &str,
    hostname: Option<(&str, &str)>,
    ip: Option<&str>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut spec = json!({"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]});
    if let Some((host, sub)) = hostname {
        spec["hostname"] = json!(host);
        spec["subdomain"] = json!(sub);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    if let Some(ip) = ip {
        set_ready(client, name, ip, true).await;
    }
}

async fn set_ready(client: &kube::Client, name: &str, ip: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Waits until `dig +short` gives `want`; returns how long it took.
async fn wait_short(dns: SocketAddr, name: &str, qtype: &str, want: &[&str]) -> Duration {
    let started = Instant::now();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let what = format!("{name} {qtype} = {want:?}");
    wait_for(Duration::from_secs(15), &what, || {
        let got = short(dns, name, qtype);
        let ok = got == want;
        async move { ok.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; last answer {:?}", short(dns, name, qtype)));
    started.elapsed()
}

#[tokio::test]
async fn dig_gets_every_record_of_the_spec() {
    if !have_dig() {
        return;
    }
    let upstream = Upstream::start().unwrap();
    upstream.add_address("www.example.com", "192.0.2.53".parse().unwrap());
    upstream.add_txt("outside.example.org", "from upstream");
    let (_dir, sb, dns) = start(Some(&upstream));
    let client = sb.client().await.unwrap();

    let web = create_service(
        &client,
        "default",
        json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]},
        }),
    )
    .await;
    let web_ip = web.spec.unwrap().cluster_ip.unwrap();
    create_service(&client, "default", json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .await;
    create_service(
        &client,
        "default",
        json!({
            "metadata": {"name": "foo"},
            "spec": {"type": "ExternalName", "externalName": "www.example.com"},
        }),
    )
    .await;
    create_pod(
        &client,
        "db-0",
        "db",
        Some(("db-0", "db")),
        Some("127.244.1.10"),
    )
    .await;
    create_pod(&client, "db-1", "db", None, Some("127.244.1.11")).await;

    // ClusterIP A (and the spec's TXT) as soon as the table has them.
    wait_short(dns, "web.default.svc.cluster.local", "A", &[&web_ip]).await;
    assert_eq!(
        short(dns, "dns-version.cluster.local", "TXT"),
        ["\"1.1.0\""]
    );
    // SRV per named port; the target's address in the additional section.
    assert_eq!(
        short(dns, "_http._tcp.web.default.svc.cluster.local", "SRV"),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(dns, "_dns._udp.web.default.svc.cluster.local", "SRV"),
        ["0 100 53 web.default.svc.cluster.local."]
    );
    let full = dig(dns, &["_http._tcp.web.default.svc.cluster.local", "SRV"]);
    assert!(
        full.contains("ADDITIONAL SECTION") && full.contains(&web_ip),
        "{full}"
    );
    // PTR of the ClusterIP.
    let octets: Vec<&str> = web_ip.split('.').rev().collect();
    let reverse = format!("{}.in-addr.arpa", octets.join("."));
    assert_eq!(
        short(dns, &reverse, "PTR"),
        ["web.default.svc.cluster.local."]
    );
    assert_eq!(
        short(dns, "-x", &web_ip),
        ["web.default.svc.cluster.local."]
    );

    // Headless: one A per ready endpoint, hostname records, SRV to hosts, PTR.
    wait_short(
        dns,
        "db.default.svc.cluster.local",
        "A",
        &["127.244.1.10", "127.244.1.11"],
    )
    .await;
    assert_eq!(
        short(dns, "db-0.db.default.svc.cluster.local", "A"),
        ["127.244.1.10"]
    );
    assert_eq!(
        short(dns, "127-244-1-11.db.default.svc.cluster.local", "A"),
        ["127.244.1.11"]
    );
    assert_eq!(
        short(dns, "_http._tcp.db.default.svc.cluster.local", "SRV"),
        [
            "0 100 8080 127-244-1-11.db.default.svc.cluster.local.",
            "0 100 8080 db-0.db.default.svc.cluster.local."
        ]
    );
    assert_eq!(
        short(dns, "-x", "127.244.1.10"),
        ["db-0.db.default.svc.cluster.local."]
    );
    // Pod records (verified: the address is a pod behind a Service here).
    assert_eq!(
        short(dns, "127-244-1-10.default.pod.cluster.local", "A"),
        ["127.244.1.10"]
    );
    assert_eq!(
        status(dns, "127-244-9-9.default.pod.cluster.local", "A"),
        "NXDOMAIN"
    );

    // ExternalName: the CNAME, then the target resolved by the upstream.
    assert_eq!(
        short(dns, "foo.default.svc.cluster.local", "CNAME"),
        ["www.example.com."]
    );
    let got = short(dns, "foo.default.svc.cluster.local", "A");
    assert_eq!(got, ["192.0.2.53", "www.example.com."]);

    // Apex, NODATA and NXDOMAIN (both with the SOA), case-insensitivity.
    assert_eq!(short(dns, "cluster.local", "NS"), ["ns.dns.cluster.local."]);
    let soa = short(dns, "cluster.local", "SOA");
    assert!(
        soa[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local."),
        "{soa:?}"
    );
    assert_eq!(
        status(dns, "web.default.svc.cluster.local", "AAAA"),
        "NOERROR"
    );
    let nodata = dig(dns, &["web.default.svc.cluster.local", "AAAA"]);
    assert!(
        nodata.contains("ANSWER: 0") && nodata.contains("AUTHORITY: 1"),
        "{nodata}"
    );
    assert_eq!(status(dns, "default.svc.cluster.local", "A"), "NOERROR");
    assert_eq!(
        status(dns, "nope.default.svc.cluster.local", "A"),
        "NXDOMAIN"
    );
    let nx = dig(dns, &["nope.default.svc.cluster.local", "A"]);
    assert!(nx.contains("AUTHORITY: 1") && nx.contains("SOA"), "{nx}");
    assert_eq!(
        short(dns, "WEB.Default.SVC.cluster.LOCAL", "A"),
        [web_ip.as_str()]
    );

    // Outside the zone: forwarded to the loopback upstream, then cached.
    let before = upstream.queries();
    assert_eq!(
        short(dns, "outside.example.org", "TXT"),
        ["\"from upstream\""]
    );
    assert_eq!(
        short(dns, "outside.example.org", "TXT"),
        ["\"from upstream\""]
    );
    assert_eq!(
        upstream.queries(),
        before + 1,
        "the second answer comes from the cache"
    );
    assert_eq!(status(dns, "missing.example.org", "A"), "NXDOMAIN");
    // ANY is answered minimally (one RRset), not refused.
    assert_eq!(
        short(dns, "web.default.svc.cluster.local", "ANY"),
        [web_ip.as_str()]
    );
}

#[tokio::test]
async fn search_path_queries_resolve_like_a_pod_s_resolver() {
    let (_dir, sb, dns) = start(None);
    let client = sb.client().await.unwrap();
    let web = create_service(
        &client,
        "default",
        json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }),
    )
    .await;
    let web_ip: IpAddr = web.spec.unwrap().cluster_ip.unwrap().parse().unwrap();

    // The resolv.conf the kubelet writes for a pod in `default`:
    // search default.svc.cluster.local svc.cluster.local cluster.local; ndots:5.
    let search = [
        "default.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
    ]
    .map(|s| Name::from_ascii(s).unwrap());
    let mut server = NameServerConfig::udp_and_tcp(dns.ip());
    for c in &mut server.connections {
        c.port = dns.port();
    }
    let config = ResolverConfig::from_parts(None, search.to_vec(), vec![server]);
    let mut opts = ResolverOpts::default();
    opts.ndots = 5;
    opts.cache_size = 0;
    let resolver =
        hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .unwrap();

    wait_for(Duration::from_secs(15), "web to resolve", || {
        let r = resolver.clone();
        async move { r.lookup_ip("web").await.ok().map(|_| ()) }
    })
    .await
    .unwrap();
    for short_name in [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
    ] {
        let ips: Vec<IpAddr> = resolver
            .lookup_ip(short_name)
            .await
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ips, [web_ip], "{short_name}");
    }
    let srv = resolver
        .lookup("_http._tcp.web.default.svc", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        srv.answers()[0].data.to_string(),
        "0 100 80 web.default.svc.cluster.local."
    );
    assert!(resolver.lookup_ip("nope").await.is_err());
}

#[tokio::test]
async fn external_name_to_cluster_ip_is_reflected() {
    if !have_dig() {
        return;
    }
    let (_dir, sb, dns) = start(None);
    let client = sb.client().await.unwrap();
    create_service(
        &client,
        "default",
        json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "foo.example.com"},
        }),
    )
    .await;
    wait_short(
        dns,
        "ext.default.svc.cluster.local",
        "CNAME",
        &["foo.example.com."],
    )
    .await;

    // The conformance test's steps: change the name, then the type.
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let patch = json!({"spec": {"externalName": "bar.example.com"}});
    api.patch("ext", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    wait_short(
        dns,
        "ext.default.svc.cluster.local",
        "CNAME",
        &["bar.example.com."],
    )
    .await;

    let patch =
        json!({"spec": {"type": "ClusterIP", "externalName": null, "ports": [{"port": 80}]}});
    let svc = api
        .patch("ext", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let ip = svc
        .spec
        .unwrap()
        .cluster_ip
        .expect("a ClusterIP is allocated");
    let took = wait_short(dns, "ext.default.svc.cluster.local", "A", &[&ip]).await;
    assert_eq!(
        status(dns, "ext.default.svc.cluster.local", "CNAME"),
        "NOERROR"
    );
    eprintln!("ExternalName -> ClusterIP answered after {took:?}");
}

#[tokio::test]
async fn an_endpoint_becoming_ready_appears_in_the_headless_answer() {
    if !have_dig() {
        return;
    }
    let (_dir, sb, dns) = start(None);
    let client = sb.client().await.unwrap();
    create_service(&client, "default", json!({
        "metadata": {"name": "pets"},
        "spec": {"clusterIP": "None", "selector": {"app": "pets"}, "ports": [{"name": "http", "port": 80}]},
    }))
    .await;
    create_pod(&client, "pet-0", "pets", Some(("pet-0", "pets")), None).await;
    set_ready(&client, "pet-0", "127.244.2.10", false).await;
    // Not ready, not published: the spec's NXDOMAIN.
    wait_for(
        Duration::from_secs(15),
        "the namespace to exist in DNS",
        || {
            let ok = status(dns, "default.svc.cluster.local", "A") == "NOERROR";
            async move { ok.then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        status(dns, "pets.default.svc.cluster.local", "A"),
        "NXDOMAIN"
    );

    let started = Instant::now();
    set_ready(&client, "pet-0", "127.244.2.10", true).await;
    wait_short(
        dns,
        "pets.default.svc.cluster.local",
        "A",
        &["127.244.2.10"],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        short(dns, "pet-0.pets.default.svc.cluster.local", "A"),
        ["127.244.2.10"]
    );
    eprintln!("Ready -> headless A answered after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    if !have_dig() {
        return;
    }
    let (_dir, sb, dns) = start(None);
    let client = sb.client().await.unwrap();
    create_service(&client, "default", json!({
        "metadata": {"name": "many"},
        "spec": {"clusterIP": "None", "selector": {"app": "many"}, "ports": [{"name": "http", "port": 80}]},
    }))
    .await;
    // 60 A records (16 bytes each) do not fit in 512 bytes.
    let ips: Vec<String> = (0..60).map(|i| format!("127.244.3.{}", i + 1)).collect();
    for (i, ip) in ips.iter().enumerate() {
        create_pod(&client, &format!("many-{i}"), "many", None, Some(ip)).await;
    }
    let want: Vec<&str> = ips.iter().map(String::as_str).collect();
    wait_short(dns, "many.default.svc.cluster.local", "A", &want).await;

    // Over UDP without EDNS: TC set, no answers.
    let udp = dig(
        dns,
        &["+noedns", "+ignore", "many.default.svc.cluster.local", "A"],
    );
    assert!(udp.contains(" tc") && udp.contains("ANSWER: 0"), "{udp}");
    // dig's default retries over TCP on TC and gets all of them.
    let retried = dig(dns, &["+noedns", "many.default.svc.cluster.local", "A"]);
    assert!(
        retried.contains("Truncated, retrying in TCP mode"),
        "{retried}"
    );
    assert!(retried.contains("ANSWER: 60"), "{retried}");
    let tcp = dig(
        dns,
        &["+tcp", "+short", "many.default.svc.cluster.local", "A"],
    );
    assert_eq!(tcp.lines().count(), 60);
}

#[tokio::test]
async fn metrics_count_queries_by_type_and_rcode() {
    if !have_dig() {
        return;
    }
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = free.local_addr().unwrap();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let m = metrics_addr.to_string();
    // An upstream that is not there: forwarding fails, and is counted.
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap().to_string();
    drop(gone);
    let sb = Switchboard::up_with(
        binary(),
        dir.path(),
        &["--dns-metrics-listen", &m, "--dns-upstream", &gone_addr],
    )
    .unwrap();
    let dns = sb.dns.unwrap();
    wait_for(Duration::from_secs(15), "DNS to sync", || {
        let ok = status(dns, "kubernetes.default.svc.cluster.local", "A") == "NOERROR";
        async move { ok.then_some(()) }
    })
    .await
    .unwrap();
    dig(dns, &["nope.default.svc.cluster.local", "A"]);
    assert_eq!(status(dns, "outside.example.org", "A"), "SERVFAIL");
    let out = Command::new("curl")
        .args(["-s", &format!("http://{metrics_addr}/metrics")])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"switchboard_dns_queries_total{qtype="A",rcode="NOERROR",proto="udp"}"#),
        "{text}"
    );
    assert!(text.contains(r#"rcode="NXDOMAIN""#), "{text}");
    assert!(
        text.contains("switchboard_dns_query_duration_seconds_bucket"),
        "{text}"
    );
    let errors = format!("switchboard_dns_upstream_errors_total{{upstream=\"{gone_addr}\"}} 1");
    assert!(text.contains(&errors), "{text}");
    assert!(text.contains(r#"rcode="SERVFAIL""#), "{text}");
}

#[test]
fn a_busy_dns_address_fails_up_with_a_clear_message() {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args([
            "up",
            "--api-listen",
            "127.0.0.1:0",
            "--dns-metrics-listen",
            "none",
        ])
        .args([
            "--dns-listen",
            &addr,
            "--dns-upstream",
            "none",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot start cluster DNS on {addr}"))
            && err.contains("--dns-listen 127.0.0.1:5353")
            && err.contains("--dns-listen none")
            && err.contains("in use"),
        "{err}"
    );
}

/// A `switchboard dns` process, stopped when dropped.
struct DnsAlone(std::process::Child);

impl Drop for DnsAlone {
    fn drop(&mut self) {
        switchboard_testkit::stop_child(&mut self.0, Duration::from_secs(5));
    }
}

/// `switchboard dns` runs cluster DNS alone against the apiserver of a
/// kubeconfig (as CoreDNS beside a cluster), from its own discovery watch.
#[tokio::test]
async fn switchboard_dns_alone_serves_the_cluster_of_its_kubeconfig() {
    if !have_dig() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with(binary(), dir.path(), &["--proxy-mode", "none"]).unwrap();
    let (child, lines) = switchboard_testkit::spawn_with_stdout(
        Command::new(binary())
            .arg("--kubeconfig")
            .arg(sb.kubeconfig())
            .args([
                "dns",
                "--dns-listen",
                "127.0.0.1:0",
                "--dns-upstream",
                "none",
            ])
            .args([
                "--dns-metrics-listen",
                "none",
                "--cluster-domain",
                "example.test",
            ]),
    )
    .expect("switchboard dns starts");
    let alone = DnsAlone(child);
    let line = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("a ready line within 30 s");
    assert!(
        line.starts_with("switchboard dns is up"),
        "ready line {line:?}"
    );
    let dns: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dns://"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no dns:// address in {line:?}"));

    let client = sb.client().await.unwrap();
    let svc = create_service(
        &client,
        "default",
        json!({"metadata": {"name": "alone"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    wait_short(dns, "alone.default.svc.example.test", "A", &[&ip]).await;
    assert_eq!(
        short(dns, "_http._tcp.alone.default.svc.example.test", "SRV"),
        vec!["0 100 80 alone.default.svc.example.test.".to_string()]
    );
    // Its own --cluster-domain: the default zone is not served here.
    assert_eq!(
        status(dns, "alone.default.svc.cluster.local", "A"),
        "REFUSED",
        "outside the zone with forwarding off"
    );
    drop(alone);
}

/// `switchboard dns` with nothing to serve says so instead of idling.
#[test]
fn switchboard_dns_with_dns_listen_none_is_refused() {
    let out = Command::new(binary())
        .args([
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "dns",
            "--dns-listen",
            "none",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dns-listen none has nothing to do"), "{err}");
}
