//! The agent against the real apiserver (in process, TLS on loopback, the
//! embedded store in a temporary directory): pods bound to the agent's node
//! run as processes, restart, pass probes, stop on deletion, and survive an
//! agent restart. No other agent runs against this apiserver.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "agent-test-node";

/// The in-process apiserver every test starts (its `dir` also holds the
/// agent's data).
type Cluster = switchboard_testkit::InProcess;

async fn cluster() -> Cluster {
    Cluster::start().await.expect("an in-process apiserver")
}

/// An agent config on `data_dir` with its own /24 of 127.244/16 (tests run
/// in parallel and pods bind their IP). The "agnhost" is a shell that
/// prints its arguments.
fn config(data_dir: &Path, subnet: u8) -> switchboard_agent::Config {
    let mut c = switchboard_agent::Config::new(NODE);
    c.data_dir = data_dir.to_path_buf();
    c.listen = "127.0.0.1:0".parse().expect("literal address");
    c.pod_cidr = ipnet::Ipv4Net::new(Ipv4Addr::new(127, 244, subnet, 0), 24).expect("a /24");
    c.agnhost_command = [
        "sh",
        "-c",
        "echo agnhost-args \"$@\"; exec sleep 1000",
        "agnhost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.heartbeat = Duration::from_secs(1);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "containers": containers}
    }))
    .expect("a valid pod")
}

async fn create(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), pod)
        .await
        .expect("the pod is created");
    api
}

/// The pod as JSON, if it exists.
async fn get(api: &Api<Pod>, name: &str) -> Option<Value> {
    let pod = api.get_opt(name).await.expect("get works")?;
    Some(serde_json::to_value(pod).expect("a pod serializes"))
}

fn condition(pod: &Value, kind: &str) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

async fn wait_ready(api: &Api<Pod>, name: &str) -> Value {
    wait_for(
        Duration::from_secs(30),
        &format!("{name} Running and Ready"),
        || async {
            let p = get(api, name).await?;
            (p["status"]["phase"] == "Running" && condition(&p, "Ready").as_deref() == Some("True"))
                .then_some(p)
        },
    )
    .await
}

/// GET over HTTP/1.0 (the server closes after the body): status and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

async fn logs(addr: SocketAddr, pod: &str, container: &str) -> String {
    http_get(addr, &format!("/containerLogs/default/{pod}/{container}"))
        .await
        .1
}

#[tokio::test]
async fn a_pod_runs_gets_an_ip_and_its_log_is_served() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 1))
        .await
        .expect("the agent starts");

    // The Node is registered with the agent's port and Ready.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = serde_json::to_value(nodes.get(NODE).await.expect("the node exists")).expect("json");
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        json!(agent.listen_addr.port())
    );
    assert!(
        node["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    // The heartbeat renews the Ready condition (every second here).
    let beat = |n: &Value| {
        n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["lastHeartbeatTime"].clone())
    };
    let first = beat(&node);
    wait_for(Duration::from_secs(10), "a newer heartbeat", || async {
        let n = serde_json::to_value(nodes.get(NODE).await.ok()?).ok()?;
        (beat(&n) != first).then_some(())
    })
    .await;

    let svc: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let kubernetes_ip = svc
        .get("kubernetes")
        .await
        .expect("the kubernetes service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");

    let api = create(
        &c.client,
        &pod(
            "hello",
            json!([
                {"name": "main", "image": "busybox",
                 "command": ["sh", "-c", "echo hi; echo ip=$POD_IP host=$HOSTNAME k8s=$KUBERNETES_SERVICE_HOST greeting=$GREETING expanded=$(WORD); sleep 1000"],
                 "env": [{"name": "GREETING", "value": "hello-$(MISSING)"}, {"name": "WORD", "value": "word"}]},
                {"name": "fake-agnhost", "image": "registry.k8s.io/e2e-test-images/agnhost:2.52",
                 "args": ["netexec", "--http-port=8080"]}
            ]),
        ),
    )
    .await;
    let p = wait_ready(&api, "hello").await;
    let ip: Ipv4Addr = p["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a pod IP");
    assert_eq!(ip.octets()[..3], [127, 244, 1], "from the pod CIDR");
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    assert!(p["status"]["startTime"].is_string());
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&p, kind).as_deref(), Some("True"), "{kind}");
    }
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .expect("statuses");
    assert!(
        statuses
            .iter()
            .all(|s| s["ready"] == true && s["state"]["running"].is_object())
    );

    let want =
        format!("ip={ip} host=hello k8s={kubernetes_ip} greeting=hello-$(MISSING) expanded=word");
    let log = wait_for(Duration::from_secs(10), "the log lines", || async {
        let l = logs(agent.listen_addr, "hello", "main").await;
        (l.contains("hi\n") && l.contains(&want)).then_some(l)
    })
    .await;
    assert_eq!(log, format!("hi\n{want}\n"));
    assert!(log.starts_with("hi\n"), "{log:?}");
    let agnhost = wait_for(Duration::from_secs(10), "agnhost's log", || async {
        let l = logs(agent.listen_addr, "hello", "fake-agnhost").await;
        l.contains("agnhost-args netexec --http-port=8080")
            .then_some(l)
    })
    .await;
    assert!(!agnhost.is_empty());
    let (code, tail) = http_get(
        agent.listen_addr,
        "/containerLogs/default/hello/main?tailLines=1",
    )
    .await;
    assert_eq!((code, tail.as_str()), (200, format!("{want}\n").as_str()));
    assert_eq!(
        http_get(agent.listen_addr, "/healthz").await,
        (200, "ok".to_owned())
    );
    let (code, _) = http_get(agent.listen_addr, "/containerLogs/default/nope/main").await;
    assert_eq!(code, 404);

    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn an_exiting_process_is_restarted() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 2))
        .await
        .expect("the agent starts");
    let api = create(
        &c.client,
        &pod(
            "crash",
            json!([{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo run; exit 3"]}]),
        ),
    )
    .await;
    let status = wait_for(Duration::from_secs(30), "restartCount 1", || async {
        let p = get(&api, "crash").await?;
        let s = p["status"]["containerStatuses"][0].clone();
        (s["restartCount"].as_i64() >= Some(1) && s["lastState"]["terminated"].is_object())
            .then_some(s)
    })
    .await;
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    // The second exit backs off 10 s.
    let waiting = wait_for(Duration::from_secs(30), "CrashLoopBackOff", || async {
        let p = get(&api, "crash").await?;
        let s = p["status"]["containerStatuses"][0].clone();
        (s["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(s)
    })
    .await;
    assert_eq!(waiting["restartCount"], 1);
    assert!(
        waiting["state"]["waiting"]["message"].as_str().is_some_and(
            |m| m.starts_with("back-off 10s restarting failed container=c pod=crash_default(")
        ),
        "{waiting}"
    );
    let p = get(&api, "crash").await.expect("the pod");
    assert_eq!(p["status"]["phase"], "Running", "Always: restarting");
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn a_readiness_probe_makes_the_pod_ready() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 3))
        .await
        .expect("the agent starts");
    let api = create(
        &c.client,
        &pod(
            "web",
            json!([{
                "name": "web", "image": "python",
                "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 30}
            }]),
        ),
    )
    .await;
    let p = wait_ready(&api, "web").await;
    let s = &p["status"]["containerStatuses"][0];
    assert_eq!(s["ready"], true);
    assert_eq!(s["restartCount"], 0);
    // The server listens on the pod's own address.
    let ip: Ipv4Addr = p["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a pod IP");
    tokio::net::TcpStream::connect((ip, 8080))
        .await
        .expect("the pod serves on its IP");
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn a_probe_that_never_passes_keeps_the_pod_unready_and_says_why() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 4))
        .await
        .expect("the agent starts");
    let api = create(
        &c.client,
        &pod(
            "never",
            json!([{
                "name": "c", "image": "busybox", "command": ["sleep", "1000"],
                "readinessProbe": {"httpGet": {"port": 9}, "periodSeconds": 1}
            }]),
        ),
    )
    .await;
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let message = wait_for(Duration::from_secs(20), "an Unhealthy event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Unhealthy"))
            .and_then(|e| e.message)
    })
    .await;
    assert!(message.starts_with("Readiness probe failed: "), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    let p = get(&api, "never").await.expect("the pod");
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn deletion_sends_sigterm_then_removes_the_pod() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 5))
        .await
        .expect("the agent starts");
    let api = create(
        &c.client,
        &pod(
            "graceful",
            json!([{
                "name": "c", "image": "busybox",
                "command": ["sh", "-c", "trap \"echo got-term; exit 0\" TERM; echo started; while true; do sleep 0.1; done"],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop > /dev/null"]}}}
            }]),
        ),
    )
    .await;
    wait_ready(&api, "graceful").await;
    wait_for(Duration::from_secs(10), "the trap is set", || async {
        logs(agent.listen_addr, "graceful", "c")
            .await
            .contains("started")
            .then_some(())
    })
    .await;
    // Follow the log: the stream ends when the pod is gone, with what the
    // process printed on SIGTERM.
    let addr = agent.listen_addr;
    let follow = tokio::spawn(async move {
        http_get(addr, "/containerLogs/default/graceful/c?follow=true").await
    });
    let started = Instant::now();
    api.delete("graceful", &DeleteParams::default())
        .await
        .expect("the delete is accepted");
    let (code, body) = tokio::time::timeout(Duration::from_secs(20), follow)
        .await
        .expect("the follow ends when the pod goes")
        .expect("the follow task");
    assert_eq!(code, 200);
    assert!(body.contains("got-term"), "{body:?}");
    wait_for(Duration::from_secs(20), "the pod to disappear", || async {
        get(&api, "graceful").await.is_none().then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "removed by the agent, not the 30 s grace reaper"
    );
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn bad_commands_and_images_show_in_the_status() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 6))
        .await
        .expect("the agent starts");
    let api = create(
        &c.client,
        &pod(
            "bad",
            json!([
                {"name": "missing", "image": "busybox", "command": ["no-such-command-xyz"]},
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "fine", "image": "busybox", "command": ["sleep", "1000"]}
            ]),
        ),
    )
    .await;
    let p = wait_for(
        Duration::from_secs(30),
        "StartError and ImageNotRunnable",
        || async {
            let p = get(&api, "bad").await?;
            let s = p["status"]["containerStatuses"].as_array()?.clone();
            let missing = &s[0];
            let start_error = missing["state"]["terminated"]["reason"] == "StartError"
                || missing["lastState"]["terminated"]["reason"] == "StartError";
            let not_runnable = s[1]["state"]["waiting"]["reason"] == "ImageNotRunnable";
            let fine = s[2]["state"]["running"].is_object();
            (start_error && not_runnable && fine).then_some(p)
        },
    )
    .await;
    let s = &p["status"]["containerStatuses"];
    let term = if s[0]["state"]["terminated"].is_object() {
        &s[0]["state"]["terminated"]
    } else {
        &s[0]["lastState"]["terminated"]
    };
    assert_eq!(term["exitCode"], 128);
    assert!(
        term["message"].as_str().is_some_and(
            |m| m.contains("exec: \"no-such-command-xyz\": executable file not found in $PATH")
        ),
        "{term}"
    );
    assert_eq!(
        s[1]["state"]["waiting"]["message"],
        switchboard_agent::IMAGE_NOT_RUNNABLE
    );
    assert_eq!(p["status"]["phase"], "Pending", "a container never started");
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));

    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    wait_for(Duration::from_secs(10), "the Failed events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let failed: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Failed"))
            .filter_map(|e| e.message)
            .collect();
        (failed.iter().any(|m| m.contains("ImageNotRunnable"))
            && failed.iter().any(|m| m.contains("no-such-command-xyz")))
        .then_some(())
    })
    .await;

    // Another pod on the same agent is unaffected.
    let other = create(
        &c.client,
        &pod(
            "other",
            json!([{"name": "c", "image": "busybox", "command": ["sleep", "1000"]}]),
        ),
    )
    .await;
    wait_ready(&other, "other").await;
    agent.shutdown().await.expect("a clean stop");
}

/// Processes whose command line contains `token`.
fn count_processes(token: &str) -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(token))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_agent_restart_adopts_its_processes() {
    let c = cluster().await;
    let data = c.dir.path().join("agent");
    let first = switchboard_agent::spawn(c.client.clone(), config(&data, 7))
        .await
        .expect("the agent starts");
    let token = format!("adopt-me-{}", std::process::id());
    let api = create(
        &c.client,
        &pod(
            "survivor",
            json!([{"name": "c", "image": "busybox",
                    "command": ["sh", "-c", format!("echo {token}; while true; do sleep 0.2; done")]}]),
        ),
    )
    .await;
    let before = wait_ready(&api, "survivor").await;
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();
    let ip = before["status"]["podIP"].clone();
    assert_eq!(count_processes(&token), 1);

    // A crash: the agent goes, its processes stay.
    drop(first);
    let second = switchboard_agent::spawn(c.client.clone(), config(&data, 7))
        .await
        .expect("the agent starts again");
    // Serving the pod's log means the new agent took the pod over.
    wait_for(
        Duration::from_secs(10),
        "the new agent to serve the pod",
        || async {
            logs(second.listen_addr, "survivor", "c")
                .await
                .contains(&token)
                .then_some(())
        },
    )
    .await;
    let after = get(&api, "survivor").await.expect("the pod");
    let s = &after["status"]["containerStatuses"][0];
    assert_eq!(s["containerID"], id, "the same process");
    assert_eq!(s["restartCount"], 0);
    assert_eq!(after["status"]["podIP"], ip, "the same IP");
    assert_eq!(count_processes(&token), 1, "no duplicate");

    // The adopted process stops with the agent.
    second.shutdown().await.expect("a clean stop");
    wait_for(
        Duration::from_secs(10),
        "the adopted process to stop",
        || async { (count_processes(&token) == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn init_containers_run_first_and_liveness_failures_restart() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 8))
        .await
        .expect("the agent starts");
    let mut p = pod(
        "lively",
        json!([{
            "name": "main", "image": "busybox",
            "command": ["sh", "-c", "echo instance; sleep 1000"],
            "livenessProbe": {"exec": {"command": ["sh", "-c", "exit 1"]},
                              "periodSeconds": 1, "failureThreshold": 2}
        }]),
    );
    if let Some(spec) = p.spec.as_mut() {
        spec.termination_grace_period_seconds = Some(2);
        spec.init_containers = Some(vec![
            serde_json::from_value(json!({
                "name": "setup", "image": "busybox", "command": ["sh", "-c", "echo init-done"]
            }))
            .expect("a container"),
        ]);
    }
    let api = create(&c.client, &p).await;
    let p = wait_for(Duration::from_secs(30), "a liveness restart", || async {
        let p = get(&api, "lively").await?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)).then_some(p)
    })
    .await;
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
    assert_eq!(
        logs(agent.listen_addr, "lively", "setup").await,
        "init-done\n"
    );
    let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 143, "SIGTERM: {last}");
    let (code, previous) = http_get(
        agent.listen_addr,
        "/containerLogs/default/lively/main?previous=true",
    )
    .await;
    assert_eq!((code, previous.as_str()), (200, "instance\n"));

    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("events");
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Killing")
                && e.message.as_deref()
                    == Some("Container main failed liveness probe, will be restarted")),
        "a Killing event"
    );
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn a_finished_container_ends_its_follow_and_the_pod_succeeds() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 9))
        .await
        .expect("the agent starts");
    let mut p = pod(
        "job",
        json!([{"name": "c", "image": "busybox",
                "command": ["sh", "-c", "echo a; sleep 0.5; echo b"]}]),
    );
    if let Some(spec) = p.spec.as_mut() {
        spec.restart_policy = Some("Never".into());
    }
    let api = create(&c.client, &p).await;
    wait_for(Duration::from_secs(10), "the first line", || async {
        logs(agent.listen_addr, "job", "c")
            .await
            .starts_with("a\n")
            .then_some(())
    })
    .await;
    let (code, body) = tokio::time::timeout(
        Duration::from_secs(10),
        http_get(
            agent.listen_addr,
            "/containerLogs/default/job/c?follow=true",
        ),
    )
    .await
    .expect("the follow ends with the container");
    assert_eq!((code, body.as_str()), (200, "a\nb\n"));
    let p = wait_for(Duration::from_secs(10), "Succeeded", || async {
        let p = get(&api, "job").await?;
        (p["status"]["phase"] == "Succeeded").then_some(p)
    })
    .await;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn a_port_already_taken_shows_as_a_crashing_unready_container() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 10))
        .await
        .expect("the agent starts");
    // A fresh agent hands out .2 first: take the pod's port before it starts.
    let squatter = tokio::net::TcpListener::bind("127.244.10.2:8080")
        .await
        .expect("the port is free before the pod");
    let api = create(
        &c.client,
        &pod(
            "clash",
            json!([{
                "name": "web", "image": "python",
                "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                "readinessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 1}
            }]),
        ),
    )
    .await;
    let s = wait_for(
        Duration::from_secs(30),
        "a failed start on the taken port",
        || async {
            let p = get(&api, "clash").await?;
            if !p["status"]["podIP"].is_null() {
                assert_eq!(p["status"]["podIP"], "127.244.10.2");
            }
            let s = p["status"]["containerStatuses"][0].clone();
            (s["lastState"]["terminated"]["exitCode"] == 1).then_some(s)
        },
    )
    .await;
    assert_eq!(s["ready"], false);
    let log = wait_for(Duration::from_secs(10), "the error in the log", || async {
        for previous in ["false", "true"] {
            let (_, body) = http_get(
                agent.listen_addr,
                &format!("/containerLogs/default/clash/web?previous={previous}"),
            )
            .await;
            if body.contains("Address already in use") {
                return Some(body);
            }
        }
        None
    })
    .await;
    assert!(!log.is_empty());
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    wait_for(Duration::from_secs(10), "a BackOff event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("BackOff"))
            .then_some(())
    })
    .await;
    drop(squatter);
    agent.shutdown().await.expect("a clean stop");
}

#[tokio::test]
async fn readiness_follows_the_probe_both_ways() {
    let c = cluster().await;
    let agent = switchboard_agent::spawn(c.client.clone(), config(&c.dir.path().join("agent"), 11))
        .await
        .expect("the agent starts");
    let flag = c.dir.path().join("ready-flag");
    let api = create(
        &c.client,
        &pod(
            "flip",
            json!([{
                "name": "c", "image": "busybox", "command": ["sleep", "1000"],
                "workingDir": c.dir.path(),
                "readinessProbe": {"exec": {"command": ["test", "-f", "ready-flag"]},
                                   "periodSeconds": 1, "failureThreshold": 1}
            }]),
        ),
    )
    .await;
    let ready = |want: &'static str| {
        let api = api.clone();
        async move {
            wait_for(
                Duration::from_secs(20),
                &format!("Ready={want}"),
                || async {
                    let p = get(&api, "flip").await?;
                    (p["status"]["phase"] == "Running"
                        && condition(&p, "Ready").as_deref() == Some(want))
                    .then_some(())
                },
            )
            .await
        }
    };
    ready("False").await;
    std::fs::write(&flag, b"").expect("the flag is written");
    ready("True").await;
    std::fs::remove_file(&flag).expect("the flag is removed");
    ready("False").await;
    std::fs::write(&flag, b"").expect("the flag is written");
    ready("True").await;
    let p = get(&api, "flip").await.expect("the pod");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    agent.shutdown().await.expect("a clean stop");
}
