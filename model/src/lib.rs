//! Domain types of ferrum's controller (crate `ferrum-model`, the
//! controller's `model`): typed ids, validated values (MAC addresses, BMC
//! addresses, time ranges) and the lifecycles of nodes, leases, node
//! operations, power requests and agent commands, with the one function
//! each that decides their transitions.
//!
//! Values here are validated once, when built, and trusted afterwards. This
//! module knows nothing of HTTP, SQL or BMC protocols; the API and the
//! datastore convert to and from these types explicitly.

pub mod account_request;
pub mod agent_command;
pub mod bmc;
pub mod ids;
pub mod import;
pub mod lease;
pub mod mac;
pub mod names;
pub mod node;
pub mod notification;
pub mod operation;
pub mod power;
pub mod privacy;
pub mod project;
pub mod properties;
pub mod time;
pub mod tokens;
pub mod usage;

pub use account_request::{AccountRequestInput, AccountRequestState};
pub use agent_command::{AgentCommandInput, AgentCommandState};
pub use bmc::BmcAddress;
pub use ids::{LeaseId, NodeId, ProjectId, UserId};
pub use lease::{LeaseInput, LeaseState, LeaseType};
pub use mac::MacAddr;
pub use node::{BootTarget, NodeInput, NodeLifecycle, NodePolicy};
pub use notification::NotificationKind;
pub use operation::{OperationInput, OperationKind, OperationState, Phase, ResetOutcome};
pub use power::{PowerInput, PowerOperation, PowerRequestState};
pub use properties::{PropValue, Properties};
pub use time::{Seconds, TimeRange};
