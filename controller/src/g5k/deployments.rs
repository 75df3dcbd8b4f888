//! `/stable`: deployments (see the module documentation of [`super`]).

use std::sync::Arc;

use axum::Router;

use crate::app::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
}
