//! A Kubernetes-compatible REST apiserver for the objects Switchboard serves:
//! discovery, get/list/watch/create/update/patch/delete, `/status`
//! subresources, `Status` errors, bearer-token auth over TLS, ClusterIP /
//! NodePort / LoadBalancer allocation, and a watch cache that serves lists and
//! fans out watch events.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchboard_store::Store;

pub mod alloc;
mod bootstrap;
pub mod cache;
pub mod error;
pub mod http;
pub mod metrics;
pub mod object;
pub use switchboard_api::pack;
pub mod registry;
mod serve;
pub mod strategy;
pub mod subresource;
pub mod tls;

use registry::Registry;

/// Apiserver configuration; every field is a `switchboard up`/`server` flag.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the CA, serving certificate, token and kubeconfig.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// ClusterIP range; `.1` is the `kubernetes` service, `.10` cluster DNS.
    pub service_cidr: ipnet::Ipv4Net,
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// LoadBalancer ingress IP pool.
    pub lb_ip_pool: ipnet::Ipv4Net,
    /// Watch events kept per resource type for watches that resume.
    pub watch_history: usize,
    /// Bytes of object versions the history of one resource type may hold;
    /// the oldest events go first when either limit is reached. Kubernetes
    /// sizes its watch cache by count (100 per type by default, later
    /// dynamic); a byte budget keeps a burst of large Pods from holding
    /// hundreds of megabytes. A client that resumes from before the history
    /// gets 410 Gone and relists, as with Kubernetes.
    pub watch_history_bytes: usize,
}

impl Config {
    /// The single-node defaults of `switchboard up`, rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            service_cidr: "127.96.0.0/16".parse().expect("literal CIDR is valid"),
            node_port_range: (30000, 32767),
            lb_ip_pool: "127.240.0.0/24".parse().expect("literal CIDR is valid"),
            watch_history: 10_000,
            watch_history_bytes: 8 << 20,
        }
    }
}

/// Errors that stop the apiserver from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding or serving the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the data directory failed.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be made or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] switchboard_store::Error),
}

/// A running apiserver.
pub struct Server {
    local_addr: SocketAddr,
    kubeconfig: PathBuf,
    serving: tokio::task::JoinHandle<()>,
    registry: Arc<Registry>,
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        // A bitmap per address: Kubernetes refuses ranges larger than a /12 too.
        if self.service_cidr.prefix_len() < 12 {
            return Err(Error::Config(format!(
                "--service-cidr {} is too large; the prefix length must be at least 12",
                self.service_cidr
            )));
        }
        if self.service_cidr.prefix_len() > 28 {
            return Err(Error::Config(format!(
                "--service-cidr {} is too small; the prefix length must be at most 28",
                self.service_cidr
            )));
        }
        let (first, last) = self.node_port_range;
        if first == 0 || first > last {
            return Err(Error::Config(format!(
                "--service-node-port-range {first}-{last} is not a range of ports 1-65535 with first <= last"
            )));
        }
        if self.lb_ip_pool.prefix_len() < 16 {
            return Err(Error::Config(format!(
                "--lb-ip-pool {} is too large; the prefix length must be at least 16",
                self.lb_ip_pool
            )));
        }
        if self.watch_history == 0 {
            return Err(Error::Config(
                "the watch history must hold at least one event".into(),
            ));
        }
        Ok(())
    }
}

impl Server {
    /// Starts serving `store` with `config`: makes or loads TLS material and the
    /// token, writes `DATA_DIR/kubeconfig`, repairs allocations, creates the
    /// default namespaces and the `kubernetes` service, and binds the listener.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Server, Error> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;

        let allocators = strategy::Allocators::new(
            config.service_cidr,
            config.node_port_range,
            config.lb_ip_pool,
        );
        let kubernetes_ip = allocators.kubernetes_ip();
        let creds = tls::load_or_create(&config.data_dir, local_addr, &[kubernetes_ip.into()])?;

        let cache = cache::WatchCache::start(
            store.clone(),
            cache::History {
                events: config.watch_history,
                bytes: config.watch_history_bytes,
            },
        )
        .await?;
        let services = switchboard_api::ResourceType::lookup("services")
            .expect("services are in the registry");
        let stored: Vec<serde_json::Value> = cache
            .of(services)
            .list(&services.key_prefix(), None)
            .iter()
            .filter_map(|s| serde_json::from_slice(&s.json.to_vec()).ok())
            .collect();
        for problem in allocators.repair(stored.iter()) {
            tracing::warn!(%problem, "allocation repair");
        }
        let registry = Arc::new(Registry {
            store,
            cache,
            allocators,
        });

        let advertise = if local_addr.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), local_addr.port())
        } else {
            local_addr
        };
        bootstrap::run(&registry, kubernetes_ip, advertise)
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot create the initial objects: {}",
                    e.0.message.unwrap_or_default()
                ))
            })?;
        let kubeconfig =
            tls::write_kubeconfig(&config.data_dir, &format!("https://{advertise}"), &creds)?;

        tokio::spawn(registry.clone().reap_pods());
        let state = Arc::new(http::AppState {
            registry: registry.clone(),
            token: creds.token.clone(),
            metrics: Arc::new(metrics::Metrics::new()),
            advertise: advertise.to_string(),
        });
        let serving = tokio::spawn(serve::serve(
            listener,
            creds.server_config.clone(),
            http::router(state),
        ));
        tracing::info!(%local_addr, kubeconfig = %kubeconfig.display(), "apiserver serving");
        Ok(Server {
            local_addr,
            kubeconfig,
            serving,
            registry,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Path of the kubeconfig written at start.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The store revision the watch cache has reached.
    pub fn revision(&self) -> i64 {
        self.registry.cache.revision()
    }

    /// Serves until the process ends or the listener task fails.
    pub async fn wait(self) -> Result<(), Error> {
        self.serving
            .await
            .map_err(|e| Error::Config(format!("the listener task failed: {e}")))
    }
}
