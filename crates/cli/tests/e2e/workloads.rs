//! Pods that really run: `switchboard up` with its node agent, Deployments
//! from the controllers, traffic through the userspace proxy. Each test has
//! its own cluster and pod CIDR (see `Switchboard::up_with_agent`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchboard_testkit::{Switchboard, wait_for};

use super::proxy::http_get;
use super::{binary, cli};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.52";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

async fn cluster_ip(client: &kube::Client, name: &str) -> IpAddr {
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .expect("the service exists");
    svc.spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP")
        .parse()
        .expect("an IP")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until requests to `addr` have been answered by exactly `want`.
async fn served_by(addr: SocketAddr, want: &BTreeSet<String>, timeout: Duration) {
    let what = format!("{addr} to be served by exactly {want:?}");
    wait_for(timeout, &what, || async move {
        let mut seen = BTreeSet::new();
        for _ in 0..(want.len() * 5) {
            seen.insert(http_get(addr, "/").await.ok()?);
        }
        (&seen == want).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_hello_example_round_robins_over_three_pods_and_serves_logs() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let example = super::examples().with_file_name("hello.yaml");
    let applied = ok(cli(&sb, &["apply", "-f", example.to_str().unwrap()]));
    assert!(
        applied.contains("deployment.apps/hello created"),
        "{applied}"
    );

    let status = ok(cli(
        &sb,
        &[
            "rollout",
            "status",
            "deployment",
            "hello",
            "--timeout",
            "60s",
        ],
    ));
    assert!(
        status.contains("deployment \"hello\" successfully rolled out"),
        "{status}"
    );

    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let listed = pods
        .list(&ListParams::default().labels("app=hello"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);
    let mut names = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for pod in &listed.items {
        assert!(is_ready(pod), "{:?} is not ready", pod.metadata.name);
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        ips.insert(status.pod_ip.clone().expect("a pod IP"));
        names.insert(pod.metadata.name.clone().unwrap());
    }
    assert_eq!(ips.len(), 3, "each pod has its own IP: {ips:?}");

    // The table a user reads.
    let wide = ok(cli(&sb, &["get", "pods", "-l", "app=hello", "-o", "wide"]));
    assert_eq!(wide.matches("Running").count(), 3, "{wide}");
    assert_eq!(wide.matches("1/1").count(), 3, "{wide}");
    for ip in &ips {
        assert!(wide.contains(ip.as_str()), "{ip} not in {wide}");
    }

    // Through the ClusterIP: every pod answers, with its own name.
    let ip = cluster_ip(&client, "hello").await;
    served_by(SocketAddr::new(ip, 80), &names, Duration::from_secs(20)).await;

    // Logs, through the apiserver from the agent.
    let first = names.iter().next().unwrap();
    let logs = ok(cli(&sb, &["logs", first]));
    assert!(!logs.is_empty(), "no log output from {first}");
    if super::which("kubectl") {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(sb.kubeconfig())
            .args(["logs", first.as_str()])
            .output()
            .unwrap();
        let first_line = logs.lines().next().unwrap_or_default();
        assert!(
            stdout(&out).starts_with(first_line),
            "kubectl logs reads the same log: {first_line:?}"
        );
    }

    // kubectl's strategic merge patch keeps the rest of the container.
    if super::which("kubectl") {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(sb.kubeconfig())
            .args(["set", "env", "deployment/hello", "GREETING=hi"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let spec = deploys.get("hello").await.unwrap().spec.unwrap();
        let c = &spec.template.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some(AGNHOST));
        let env = c.env.clone().unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "GREETING" && e.value.as_deref() == Some("hi"))
        );
        ok(cli(
            &sb,
            &[
                "rollout",
                "status",
                "deployment",
                "hello",
                "--timeout",
                "60s",
            ],
        ));
    }

    // Scaling down leaves two.
    ok(cli(
        &sb,
        &["scale", "deployment", "hello", "--replicas", "2"],
    ));
    wait_for(Duration::from_secs(30), "two hello pods", || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=hello"))
                .await
                .ok()?;
            (l.items.len() == 2).then_some(())
        }
    })
    .await
    .unwrap();
}

use std::process::Command;

fn pod(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
        .expect("a valid Pod literal")
}

fn agnhost_container(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"name": "app", "image": AGNHOST,
                       "args": ["serve-hostname", "--port=8080"],
                       "ports": [{"containerPort": 8080, "name": "http"}]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

async fn make_service(client: &kube::Client, app: &str) -> SocketAddr {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": "http"}]}}))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    SocketAddr::new(cluster_ip(client, app).await, 80)
}

#[tokio::test]
async fn a_failing_readiness_probe_takes_the_pod_out_of_the_service_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let marker = dir.path().join("gate-ready");
    let addr = make_service(&client, "gate").await;

    pods.create(
        &PostParams::default(),
        &pod(
            "steady",
            json!({"app": "gate"}),
            json!({"containers": [agnhost_container(json!({}))]}),
        ),
    )
    .await
    .unwrap();
    let probe = json!({"readinessProbe": {
        "exec": {"command": ["test", "-f", marker.to_str().unwrap()]},
        "periodSeconds": 1, "failureThreshold": 1}});
    pods.create(
        &PostParams::default(),
        &pod(
            "gated",
            json!({"app": "gate"}),
            json!({"containers": [agnhost_container(probe)]}),
        ),
    )
    .await
    .unwrap();

    let only = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    // The probe fails: no traffic reaches "gated".
    served_by(addr, &only(&["steady"]), Duration::from_secs(20)).await;
    let gated = pods.get("gated").await.unwrap();
    assert_eq!(
        gated.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );
    assert!(!is_ready(&gated));

    std::fs::write(&marker, b"").unwrap();
    served_by(addr, &only(&["steady", "gated"]), Duration::from_secs(20)).await;

    std::fs::remove_file(&marker).unwrap();
    served_by(addr, &only(&["steady"]), Duration::from_secs(20)).await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=gate"))
        .await
        .unwrap()
        .items
        .remove(0);
    let gated_ready = slice
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some("gated"))
        .and_then(|e| e.conditions.as_ref())
        .and_then(|c| c.ready);
    assert_eq!(gated_ready, Some(false), "the endpoint stays, not ready");
}

fn pid_of(data_dir: &std::path::Path, uid: &str) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("agent/state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["processes"]
        .as_object()?
        .values()
        .find(|p| p["pod_uid"] == uid)
        .and_then(|p| p["pid"].as_i64())
        .and_then(|p| i32::try_from(p).ok())
}

async fn restart_count(pods: &Api<Pod>, name: &str) -> Option<i32> {
    let pod = pods.get(name).await.ok()?;
    pod.status?
        .container_statuses?
        .first()
        .map(|c| c.restart_count)
}

#[tokio::test]
async fn a_killed_process_is_restarted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(
            &PostParams::default(),
            &pod(
                "crashy",
                json!({"app": "crashy"}),
                json!({"containers": [{"name": "main", "image": "busybox",
                                   "command": ["sh", "-c", "echo started; exec sleep 1000"]}]}),
            ),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    wait_for(Duration::from_secs(20), "crashy to be ready", || {
        let pods = pods.clone();
        async move { is_ready(&pods.get("crashy").await.ok()?).then_some(()) }
    })
    .await
    .unwrap();
    let pid = wait_for(
        Duration::from_secs(5),
        "the pid in the agent's state",
        || async { pid_of(&sb.data_dir, &uid) },
    )
    .await
    .unwrap();
    assert_eq!(restart_count(&pods, "crashy").await, Some(0));

    switchboard_testkit::signal(
        u32::try_from(pid).expect("pids are positive"),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_for(
        Duration::from_secs(30),
        "crashy restarted once and ready",
        || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("crashy").await.ok()?;
                let count = pod
                    .status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .first()?
                    .restart_count;
                (count == 1 && is_ready(&pod)).then_some(())
            }
        },
    )
    .await
    .unwrap();
    let new_pid = pid_of(&sb.data_dir, &uid).expect("a new pid");
    assert_ne!(new_pid, pid);
    let pod = pods.get("crashy").await.unwrap();
    let last = pod
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .remove(0)
        .last_state;
    let code = last.and_then(|s| s.terminated).map(|t| t.exit_code);
    assert_eq!(code, Some(137), "SIGKILL reads as exit code 137");
}

#[tokio::test]
async fn a_deleted_pod_gets_sigterm_goes_terminating_then_disappears() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let seen = dir.path().join("got-term");
    // Takes ~1.5 s to finish after SIGTERM, so the terminating state shows.
    let script = format!(
        "trap 'echo term > {}; sleep 1.5; exit 0' TERM; while true; do sleep 0.1; done",
        seen.display()
    );
    make_service(&client, "term").await;
    pods.create(
        &PostParams::default(),
        &pod(
            "term",
            json!({"app": "term"}),
            json!({"terminationGracePeriodSeconds": 20,
               "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                               "ports": [{"containerPort": 8080, "name": "http"}]}]}),
        ),
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(20), "term to be ready", || {
        let pods = pods.clone();
        async move { is_ready(&pods.get("term").await.ok()?).then_some(()) }
    })
    .await
    .unwrap();

    pods.delete("term", &DeleteParams::default()).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the endpoint to be terminating",
        || {
            let slices = slices.clone();
            async move {
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=term"))
                    .await
                    .ok()?;
                let c = list.items.first()?.endpoints.first()?.conditions.clone()?;
                (c.terminating == Some(true) && c.ready == Some(false)).then_some(())
            }
        },
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(20), "the pod to be gone", || {
        let pods = pods.clone();
        async move { pods.get_opt("term").await.ok()?.is_none().then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().trim(),
        "term",
        "the process saw SIGTERM"
    );
}

// Several workers: the load keeps running while a CLI call blocks one.
//
// The pods sleep a second in preStop, as Kubernetes' zero-downtime guides
// advise: their endpoints turn terminating as the deletion starts, and the
// proxy must have stopped picking them before the process exits; without the
// pause, a connection the proxy opened in those milliseconds can meet a
// server that is already gone, on a real cluster as here.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_rolling_update_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let client = sb.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "roll"},
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "roll"}},
                 "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "minReadySeconds": 1,
                 "template": {"metadata": {"labels": {"app": "roll"}},
                              "spec": {"containers": [agnhost_container(json!({
                                  "env": [{"name": "VERSION", "value": "1"}],
                                  "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
                                  "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                                     "periodSeconds": 1}}))]}}}}))
    .unwrap();
    deploys
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();
    let addr = make_service(&client, "roll").await;
    ok(cli(
        &sb,
        &["rollout", "status", "deployment/roll", "--timeout", "60s"],
    ));
    let before: BTreeSet<String> = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("app=roll"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    served_by(addr, &before, Duration::from_secs(20)).await;

    // Continuous requests, each on a new connection, for the whole rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                sent.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = http_get(addr, "/").await {
                    failed.fetch_add(1, Ordering::Relaxed);
                    errors.push(e.to_string());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            errors
        }));
    }

    let patch = json!({"spec": {"template": {"spec": {"containers": [agnhost_container(json!({
        "env": [{"name": "VERSION", "value": "2"}],
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}))]}}}});
    deploys
        .patch("roll", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let kubeconfig = sb.kubeconfig();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["rollout", "status", "deployment/roll", "--timeout", "120s"])
            .output()
            .expect("the CLI runs")
    })
    .await
    .unwrap();
    ok(status);
    // The old pods are gone from the service before the load stops.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let after = wait_for(Duration::from_secs(60), "only new pods", || {
        let pods = pods.clone();
        let before = before.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=roll"))
                .await
                .ok()?;
            let names: BTreeSet<String> = l
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            (names.len() == 3 && names.is_disjoint(&before)).then_some(names)
        }
    })
    .await
    .unwrap();
    served_by(addr, &after, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for task in load {
        errors.extend(task.await.unwrap());
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("rolling update: {sent} requests, {failed} failed");
    assert!(
        sent > 30,
        "too little load to mean anything: {sent} requests"
    );
    assert_eq!(failed, 0, "{failed} of {sent} requests failed: {errors:?}");
}

#[tokio::test]
async fn logs_follow_new_output_and_name_a_wrong_container() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up_with_agent(binary(), dir.path(), &[]).unwrap();
    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "ticker",
            json!({"app": "ticker"}),
            json!({"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c",
            "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done"]}]}),
        ),
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(20), "ticker to be ready", || {
        let pods = pods.clone();
        async move { is_ready(&pods.get("ticker").await.ok()?).then_some(()) }
    })
    .await
    .unwrap();

    let wrong = cli(&sb, &["logs", "ticker", "-c", "nope"]);
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("container nope is not valid for pod ticker"),
        "{err}"
    );

    // `-f` keeps delivering lines written after it started.
    let mut follow = std::process::Command::new(binary())
        .arg("--kubeconfig")
        .arg(sb.kubeconfig())
        .args(["logs", "-f", "--tail", "1", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a first line");
    let n = |l: &str| l.trim_start_matches("tick-").parse::<u64>().unwrap_or(0);
    let start = n(&first);
    let mut last = start;
    while last < start + 10 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("more lines while following");
        last = n(&line);
    }
    let _ = follow.kill();
    let _ = follow.wait();
}

/// `switchboard agent` beside a `switchboard server` (which runs neither
/// pods nor a proxy) is a whole node, as a kubelet with its kube-proxy: its
/// agent runs the pods bound to it and its proxy serves their Service; once
/// it stops, nothing serves the ClusterIP.
#[tokio::test]
async fn a_standalone_agent_runs_its_pods_and_proxies_their_service() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::server_with(
        binary(),
        &dir.path().join("cluster"),
        &[
            "--service-cidr",
            "127.112.0.0/16",
            "--lb-ip-pool",
            "127.2.12.0/24",
        ],
    )
    .unwrap();
    assert!(sb.proxy_metrics.is_none(), "the server runs no proxy");
    let agent_dir = dir.path().join("node-b");
    let (child, lines) = switchboard_testkit::spawn_with_stdout(
        Command::new(binary())
            .arg("--kubeconfig")
            .arg(sb.kubeconfig())
            .args(["agent", "--data-dir"])
            .arg(&agent_dir)
            .args([
                "--node-name",
                "node-b",
                "--node-address",
                "127.1.12.1",
                "--pod-cidr",
                "127.200.12.0/24",
                "--agent-listen",
                "127.0.0.1:0",
                "--proxy-metrics-listen",
                "127.0.0.1:0",
            ]),
    )
    .unwrap();
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            switchboard_testkit::stop_child(&mut self.0, Duration::from_secs(15));
        }
    }
    let mut agent = Stop(child);
    let ready = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        ready.starts_with("switchboard agent is up: http://") && ready.contains("/metrics"),
        "the ready line names the agent and the proxy's metrics: {ready}"
    );

    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut want = BTreeSet::new();
    for name in ["edge-1", "edge-2"] {
        let mut spec = json!({"containers": [agnhost_container(json!({}))]});
        spec["nodeName"] = json!("node-b");
        pods.create(
            &PostParams::default(),
            &pod(name, json!({"app": "edge"}), spec),
        )
        .await
        .unwrap();
        want.insert(name.to_owned());
    }
    let addr = make_service(&client, "edge").await;
    served_by(addr, &want, Duration::from_secs(60)).await;

    switchboard_testkit::stop_child(&mut agent.0, Duration::from_secs(15));
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "nothing serves the ClusterIP once the node is gone"
    );
}
