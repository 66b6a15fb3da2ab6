//! The apiserver against a real client: kube-rs over TLS on loopback, with the
//! embedded store in a temporary directory.

mod crud;
mod services;
mod watch;
mod workloads;

use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig};
use switchboard_apiserver::{Config, Server};

/// A running apiserver on a free loopback port, with a client for it.
pub struct Cluster {
    /// Keeps the data directory alive for the test.
    pub dir: tempfile::TempDir,
    /// The server.
    pub server: Server,
    /// An authenticated kube-rs client.
    pub client: kube::Client,
}

/// Starts an apiserver with `tweak` applied to the default configuration.
pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Cluster {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::new(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("literal address");
    tweak(&mut config);
    let store =
        switchboard_store::Embedded::open(&dir.path().join("store.redb"), Default::default())
            .expect("the store opens");
    let server = Server::start(config, store as Arc<dyn switchboard_store::Store>)
        .await
        .expect("the apiserver starts");
    let kubeconfig =
        Kubeconfig::read_from(server.kubeconfig_path()).expect("the kubeconfig parses");
    let client_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("the kubeconfig is usable");
    let client = kube::Client::try_from(client_config).expect("a client");
    Cluster {
        dir,
        server,
        client,
    }
}

/// Starts an apiserver with the defaults.
pub async fn start() -> Cluster {
    start_with(|_| {}).await
}

/// The code of a kube-rs API error.
pub fn code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
