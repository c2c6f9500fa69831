//! `[metrics]`: where `/metrics`, `/healthz` and `/readyz` are served.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::units::HumanDuration;

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 24231))
}

fn default_backpressure_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// `[metrics]`: the HTTP endpoint for Prometheus and probes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Serves `/metrics`, `/healthz` and `/readyz`. 24231 is the port
    /// Fluentd's prometheus plugin uses.
    #[serde(
        default = "default_metrics_listen",
        deserialize_with = "crate::config::units::listen_addr"
    )]
    pub(crate) listen: SocketAddr,
    /// `/readyz` fails once backpressure (the roller not keeping up) has
    /// lasted this long, so a load balancer can send traffic elsewhere.
    #[serde(default = "default_backpressure_grace")]
    pub(crate) backpressure_grace: HumanDuration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
            backpressure_grace: default_backpressure_grace(),
        }
    }
}
