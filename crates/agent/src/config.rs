//! The agent's validated configuration; the CLI builds it from flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

/// The Docker default `PATH`: what a container gets when its image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Node's name (a DNS subdomain); pods with this `spec.nodeName` run here.
    pub node_name: String,
    /// The node's InternalIP addresses; the first is each pod's `hostIP`.
    pub node_addresses: Vec<IpAddr>,
    /// Where pod IPs come from; also written as the Node's `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
    /// Logs (`pods/<ns>_<name>_<uid>/<container>.log`) and `state.json`.
    pub data_dir: PathBuf,
    /// The agent's HTTP server (container logs); port 0 picks a free one.
    pub listen: SocketAddr,
    /// The argv prefix that runs the built-in agnhost (`[current_exe, "agnhost"]`).
    pub agnhost_command: Vec<String>,
    /// The cluster domain (`cluster.local`), for the pods' DNS search path.
    pub cluster_domain: String,
    /// The cluster DNS address, if there is one.
    pub cluster_dns: Option<IpAddr>,
    /// How often the Node's status is renewed.
    pub heartbeat: Duration,
    /// The environment every container starts from, as an image's would
    /// (`PATH`); the pod's own variables override it.
    pub base_env: Vec<(String, String)>,
    /// The longest a stop of the agent waits for a pod's processes after
    /// SIGTERM before SIGKILL (a pod's own shorter grace period wins).
    pub shutdown_grace: Duration,
    /// The Node's `status.capacity.pods`.
    pub max_pods: u32,
}

impl Config {
    /// The defaults for a node named `node_name`.
    pub fn new(node_name: impl Into<String>) -> Config {
        Config {
            node_name: node_name.into(),
            node_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(127, 244, 0, 0), 16)
                .unwrap_or_else(|_| unreachable!("16 is a valid IPv4 prefix length")),
            data_dir: PathBuf::from("switchboard-data/agent"),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 10250)),
            agnhost_command: Vec::new(),
            cluster_domain: "cluster.local".to_owned(),
            cluster_dns: None,
            heartbeat: Duration::from_secs(10),
            base_env: vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())],
            shutdown_grace: Duration::from_secs(10),
            max_pods: 110,
        }
    }

    /// Checks what the types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = self.node_name.as_str();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(ConfigError::NodeName(name.to_owned()));
        }
        if self.node_addresses.is_empty() {
            return Err(ConfigError::NoAddress);
        }
        if self.pod_cidr.prefix_len() > 30 {
            return Err(ConfigError::PodCidr(self.pod_cidr));
        }
        if self.agnhost_command.first().is_none_or(|p| p.is_empty()) {
            return Err(ConfigError::Agnhost);
        }
        if self.heartbeat.is_zero() {
            return Err(ConfigError::Heartbeat);
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::DataDir);
        }
        Ok(())
    }
}

impl Default for Config {
    /// The defaults with the node named `localhost`.
    fn default() -> Config {
        Config::new("localhost")
    }
}

/// The machine's host name as a node name (lower case, as the kubelet's
/// `--hostname-override` default), or `localhost` when it is not a valid
/// DNS subdomain. For the CLI's `--node-name` default.
pub fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let mut probe = Config::new(name.clone());
    probe.agnhost_command = vec!["agnhost".to_owned()];
    match probe.validate() {
        Ok(()) => name,
        Err(_) => "localhost".to_owned(),
    }
}

/// A configuration the agent cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The node name is not a DNS subdomain.
    #[error("node name {0:?} is not a lower-case DNS subdomain")]
    NodeName(String),
    /// No node address.
    #[error("the node needs at least one address")]
    NoAddress,
    /// The pod range has no room for pods.
    #[error("pod CIDR {0} is too small: the prefix must be /30 or shorter")]
    PodCidr(Ipv4Net),
    /// No way to run agnhost.
    #[error("the agnhost command is empty")]
    Agnhost,
    /// A zero heartbeat.
    #[error("the heartbeat interval must be positive")]
    Heartbeat,
    /// No data directory.
    #[error("the data directory is empty")]
    DataDir,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        let mut c = Config::new("node-1.example");
        c.agnhost_command = vec!["/bin/switchboard".into(), "agnhost".into()];
        c
    }

    #[test]
    fn the_host_name_is_a_valid_node_name() {
        let mut c = valid();
        c.node_name = host_name();
        assert_eq!(c.validate(), Ok(()), "{}", c.node_name);
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(valid().validate(), Ok(()));
        assert_eq!(valid().pod_cidr.to_string(), "127.244.0.0/16");
        assert_eq!(valid().listen.to_string(), "127.0.0.1:10250");
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = valid();
        c.node_name = "Node_1".into();
        assert!(matches!(c.validate(), Err(ConfigError::NodeName(_))));
        let mut c = valid();
        c.pod_cidr = "10.0.0.0/31".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(c.validate(), Err(ConfigError::PodCidr(_))));
        let mut c = valid();
        c.agnhost_command.clear();
        assert_eq!(c.validate(), Err(ConfigError::Agnhost));
        let mut c = valid();
        c.node_addresses.clear();
        assert_eq!(c.validate(), Err(ConfigError::NoAddress));
        let mut c = valid();
        c.heartbeat = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::Heartbeat));
    }
}
