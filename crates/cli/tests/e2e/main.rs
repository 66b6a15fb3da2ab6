//! End to end: the built `switchboard` binary on a temporary data directory,
//! driven with kube-rs, the `switchboard` CLI, `kubectl` and `curl`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use switchboard_testkit::{Switchboard, wait_for};

mod dns;
mod env;
mod proxy;
mod workloads;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn cli(sb: &Switchboard, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("--kubeconfig")
        .arg(sb.kubeconfig())
        .args(args)
        .output()
        .expect("the CLI runs")
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web.yaml")
}

#[tokio::test]
async fn a_ready_pod_reaches_the_endpoint_slice_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up(binary(), dir.path()).unwrap();
    let applied = cli(&sb, &["apply", "-f", examples().to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(String::from_utf8_lossy(&applied.stdout).contains("service/web created"));

    let client = sb.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"podIP": "127.244.0.7", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("web-1", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let started = Instant::now();
    let ready = wait_for(
        Duration::from_secs(1),
        "web's slice to list 127.244.0.7 as ready",
        || {
            let slices = slices.clone();
            async move {
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .flat_map(|s| s.endpoints.iter())
                    .find(|e| {
                        e.addresses == ["127.244.0.7"]
                            && e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
                    })?;
                Some(started.elapsed())
            }
        },
    )
    .await
    .unwrap();
    assert!(ready < Duration::from_secs(1));

    // The CLI shows it, and kubectl reads the API unchanged.
    // (The legacy Endpoints mirror is written after the slice.)
    wait_for(
        Duration::from_secs(10),
        "endpoints web to list 127.244.0.7:8080",
        || async {
            let got = cli(&sb, &["get", "endpoints", "web"]);
            String::from_utf8_lossy(&got.stdout)
                .contains("127.244.0.7:8080")
                .then_some(())
        },
    )
    .await
    .unwrap();
    if which("kubectl") {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(sb.kubeconfig())
            .args(["get", "--raw", "/api/v1/namespaces/default/services"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        assert!(
            names.contains(&"web") && names.contains(&"kubernetes"),
            "{names:?}"
        );
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn no_token_is_401_and_an_invalid_service_is_422_with_causes() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Switchboard::up(binary(), dir.path()).unwrap();
    let out = Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            &format!("{}/api/v1/namespaces/default/services", sb.url),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("401"), "{text}");
    assert!(
        text.contains("\"kind\":\"Status\"") && text.contains("Unauthorized"),
        "{text}"
    );

    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"}, "spec": {"ports": [{"port": 0}]}});
    let out = Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("{}/api/v1/namespaces/default/services", sb.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("422"), "{text}");
    let status: serde_json::Value =
        serde_json::from_str(text.rsplit_once('\n').unwrap().0).unwrap();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.ports[0].port"
    );

    // The CLI names the file, the object and the field, and exits non-zero.
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 0\n",
    )
    .unwrap();
    let out = cli(&sb, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml")
            && err.contains("service/bad")
            && err.contains("spec.ports[0].port"),
        "{err}"
    );
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut sb = Switchboard::up(binary(), dir.path()).unwrap();
    let client = sb.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // Writers run until the process dies under them; each records what was acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let api = api.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10_000 {
                let name = format!("w{w}-{i}");
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for(Duration::from_secs(30), "200 acknowledged writes", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 200).then_some(()) }
    })
    .await
    .unwrap();
    sb.kill();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();

    let sb = Switchboard::up(binary(), dir.path()).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sb.client().await.unwrap(), "default");
    let stored: std::collections::BTreeSet<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
