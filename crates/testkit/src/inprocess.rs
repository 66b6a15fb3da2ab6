//! An apiserver inside the test process, on a free loopback port with the
//! embedded store in a temporary directory: for crates whose tests need a
//! real API but not the whole `switchboard` binary.

use std::sync::Arc;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running in-process apiserver and an authenticated client for it.
pub struct InProcess {
    /// The data directory; it lives as long as the cluster.
    pub dir: tempfile::TempDir,
    /// The apiserver (serving until dropped with the test's runtime).
    pub server: switchboard_apiserver::Server,
    /// A kube-rs client with the apiserver's kubeconfig.
    pub client: kube::Client,
}

impl InProcess {
    /// Starts an apiserver with the default configuration.
    pub async fn start() -> anyhow::Result<InProcess> {
        let dir = tempfile::tempdir().context("a temporary directory")?;
        let mut config = switchboard_apiserver::Config::new(dir.path());
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let store =
            switchboard_store::Embedded::open(&dir.path().join("store.redb"), Default::default())
                .context("the store opens")?;
        let server = switchboard_apiserver::Server::start(
            config,
            store as Arc<dyn switchboard_store::Store>,
        )
        .await
        .context("the apiserver starts")?;
        let kubeconfig =
            Kubeconfig::read_from(server.kubeconfig_path()).context("the kubeconfig parses")?;
        let client_config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .context("the kubeconfig is usable")?;
        let client = kube::Client::try_from(client_config).context("a client")?;
        Ok(InProcess {
            dir,
            server,
            client,
        })
    }
}
