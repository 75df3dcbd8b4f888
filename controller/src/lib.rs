//! ferrum's controller: the REST API, the reservation calendar, inventory,
//! the clock loop that starts and ends leases, and the datastore.
//!
//! Layers, top to bottom: [`http`] (thin axum handlers) → [`app`] (rules)
//! → [`db`] (all SQL) → rows. [`calendar`] (placement), [`filter`] (the OAR
//! property language), [`oar`] (OAR resource strings and walltimes), [`reference`] (Grid'5000 reference import) and
//! [`model`] (ids, values, lifecycles) are pure and used by [`app`].
//! See ARCHITECTURE.md at the repository root.

pub mod app;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod db;
pub mod filter;
pub mod g5k;
pub mod http;
pub mod oar;
pub use ferrum_model as model;
pub mod power;
pub mod reference;
pub use ferrum_store::secrets;
pub mod server;
pub mod ssh;
pub mod web;
