//! `/metrics` in the Prometheus (OpenMetrics) text format: request latency
//! by route, and leases and nodes by state, counted from the database at
//! each scrape (so every controller replica reports the same truth).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::ApiError;
use crate::app::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Metrics that live across scrapes.
#[derive(Debug)]
pub struct Metrics {
    latency: Family<RequestLabels, Histogram>,
    app: Arc<App>,
}

impl Metrics {
    pub fn new(app: Arc<App>) -> Self {
        // 100 µs to ~6.5 s.
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17)));
        Metrics { latency, app }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.latency
            .get_or_create(&RequestLabels { method: method.to_owned(), route: route.to_owned(), status })
            .observe(elapsed.as_secs_f64());
    }
}

pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Result<Response, ApiError> {
    let mut registry = Registry::with_prefix("ferrum");
    registry.register("http_request_duration_seconds", "HTTP request latency by route", metrics.latency.clone());

    let leases = Family::<StateLabels, Gauge>::default();
    for state in ferrum_api::LeaseState::ALL {
        leases.get_or_create(&StateLabels { state: state.as_str().into() }).set(0);
    }
    for (state, n) in metrics.app.store.count_leases_by_state().await.map_err(|e| ApiError::from(crate::app::AppError::from(e)))? {
        leases.get_or_create(&StateLabels { state }).set(n);
    }
    registry.register("leases", "Leases by state", leases);

    let nodes = Family::<StateLabels, Gauge>::default();
    for state in ferrum_api::NodeState::ALL {
        nodes.get_or_create(&StateLabels { state: state.as_str().into() }).set(0);
    }
    for (state, policy, n) in metrics.app.store.count_nodes_by_state().await.map_err(|e| ApiError::from(crate::app::AppError::from(e)))? {
        let shown = match (crate::model::NodeLifecycle::parse(&state), crate::model::NodePolicy::parse(&policy)) {
            (Some(s), Some(p)) => crate::model::node::shown_state(s, p).as_str().to_owned(),
            _ => state,
        };
        nodes.get_or_create(&StateLabels { state: shown }).inc_by(n);
    }
    registry.register("nodes", "Nodes by state", nodes);

    let leader = Gauge::<i64>::default();
    leader.set(i64::from(metrics.app.is_leader()));
    registry.register("leader", "1 when this replica runs the background loops (clock, power, operations)", leader);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|_| ApiError::bad_request("cannot encode metrics"))?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
