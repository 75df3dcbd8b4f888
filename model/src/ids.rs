//! Typed database ids, so a node id can never be passed where a lease id is
//! expected.

use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

typed_id!(
    /// A node's row id.
    NodeId
);
typed_id!(
    /// A lease's id, also its public id in the API.
    LeaseId
);
typed_id!(
    /// A user's row id.
    UserId
);
typed_id!(
    /// A project's row id.
    ProjectId
);
