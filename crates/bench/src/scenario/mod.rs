//! One module per benchmark scenario; each fills what it needs, measures,
//! and returns a [`Report`].

pub mod creates;
pub mod dns_latency;
pub mod fanout;
pub mod list;
pub mod propagation;
pub mod rss;

use serde_json::Value;

/// What a scenario prints: one JSON line and one line for people.
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine-readable results (one object, printed on one line).
    pub json: Value,
    /// A one-line summary.
    pub human: String,
}

/// What every scenario gets: the shared client and its namespace.
#[derive(Clone)]
pub struct Ctx {
    /// The one client all requests go through.
    pub client: kube::Client,
    /// Namespace the scenario's objects live in.
    pub namespace: String,
}
