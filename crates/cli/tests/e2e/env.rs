//! Service environment variables end to end: Services created through the
//! API, then `switchboard env` and `switchboard run` against the built binary.
//! The ClusterIPs are only printed and compared, never dialed.

use std::process::Output;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, PostParams};
use serde_json::json;
use switchboard_testkit::Switchboard;

use super::{binary, cli};

async fn create(sb: &Switchboard, ns: &str, name: &str, ports: serde_json::Value) -> String {
    let client = sb.client().await.expect("client");
    let api: Api<Service> = Api::namespaced(client, ns);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": ports},
    }))
    .expect("valid Service");
    let created = api
        .create(&PostParams::default(), &svc)
        .await
        .expect("Service created");
    created
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP was allocated")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test]
async fn env_prints_and_run_passes_the_kubelet_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sb = Switchboard::up(binary(), dir.path()).expect("switchboard up");
    let web_ip = create(
        &sb,
        "default",
        "web",
        json!([{"name": "http", "port": 80, "targetPort": 8080},
               {"name": "metrics", "port": 9090, "protocol": "TCP"}]),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(sb.client().await.expect("client"));
    let shop: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "shop"}})).expect("valid Namespace");
    namespaces
        .create(&PostParams::default(), &shop)
        .await
        .expect("namespace shop created");
    let cart_ip = create(&sb, "shop", "cart", json!([{"port": 6379}])).await;

    let env = stdout(&cli(&sb, &["env"]));
    let got = lines(&env);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted, "sorted by name");
    for want in [
        format!("WEB_SERVICE_HOST={web_ip}"),
        "WEB_SERVICE_PORT=80".into(),
        "WEB_SERVICE_PORT_HTTP=80".into(),
        "WEB_SERVICE_PORT_METRICS=9090".into(),
        format!("WEB_PORT=tcp://{web_ip}:80"),
        format!("WEB_PORT_80_TCP=tcp://{web_ip}:80"),
        "WEB_PORT_80_TCP_PROTO=tcp".into(),
        "WEB_PORT_80_TCP_PORT=80".into(),
        format!("WEB_PORT_80_TCP_ADDR={web_ip}"),
        format!("WEB_PORT_9090_TCP=tcp://{web_ip}:9090"),
    ] {
        assert!(got.contains(&want.as_str()), "missing {want} in:\n{env}");
    }
    assert!(
        got.iter()
            .any(|l| l.starts_with("KUBERNETES_SERVICE_HOST=")),
        "{env}"
    );
    assert!(!env.contains("CART_"), "other namespace leaked:\n{env}");
    // web: host, 3 port variables, the first-port link, 4 links per port;
    // kubernetes (one named port): 8.
    assert_eq!(got.len(), 13 + 8, "{env}");

    // Another namespace: its own services and the kubernetes one.
    let shop = stdout(&cli(&sb, &["env", "-n", "shop"]));
    assert!(
        shop.contains(&format!("CART_SERVICE_HOST={cart_ip}\n")),
        "{shop}"
    );
    assert!(shop.contains("KUBERNETES_SERVICE_HOST="), "{shop}");
    assert!(!shop.contains("WEB_"), "{shop}");
    let no_links = stdout(&cli(&sb, &["env", "-n", "shop", "--no-service-links"]));
    assert!(!no_links.contains("CART_") && no_links.contains("KUBERNETES_SERVICE_HOST="));

    // run: the variables reach the command's environment.
    let echoed = stdout(&cli(
        &sb,
        &["run", "--", "sh", "-c", "echo $WEB_SERVICE_HOST"],
    ));
    assert_eq!(echoed.trim(), web_ip);
    let echoed = stdout(&cli(
        &sb,
        &[
            "run",
            "-n",
            "shop",
            "--",
            "sh",
            "-c",
            "echo $CART_SERVICE_PORT-${WEB_SERVICE_HOST:-none}",
        ],
    ));
    assert_eq!(echoed.trim(), "6379-none");

    // The command's exit status is passed through.
    let failed = cli(&sb, &["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7));

    // A command that does not exist: a clear error and the shell's 127.
    let missing = cli(&sb, &["run", "--", "no-such-command-for-switchboard"]);
    assert_eq!(missing.status.code(), Some(127));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("command not found: no-such-command-for-switchboard"),
        "{err}"
    );
    // And no command at all is a usage error.
    let usage = cli(&sb, &["run"]);
    assert!(!usage.status.success());
}
