//! The model's states as SQLite parameters: each enum binds as its stored
//! name (`.bind(OperationState::Running)`), and a set of states binds as one
//! JSON array that SQL reads with `IN (SELECT value FROM json_each(?))`, so
//! no state is ever written into a query's text.
//!
//! Reading goes the other way through `db::parse_name` (an unknown name is
//! `DbError::Corrupt`, never a default).

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo};
use sqlx::{Encode, Sqlite, Type};

use crate::model::{
    AccountRequestState, AgentCommandState, OperationKind, OperationState, Phase, PowerOperation, PowerRequestState, ResetOutcome,
};

/// `Type` and `Encode` as the enum's stored name (TEXT).
macro_rules! bind_as_name {
    ($($ty:ty),+ $(,)?) => {$(
        impl Type<Sqlite> for $ty {
            fn type_info() -> SqliteTypeInfo {
                <str as Type<Sqlite>>::type_info()
            }
        }

        impl Encode<'_, Sqlite> for $ty {
            fn encode_by_ref(&self, args: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Sqlite>>::encode(self.as_str(), args)
            }
        }
    )+};
}

bind_as_name!(
    AccountRequestState,
    OperationKind,
    OperationState,
    Phase,
    ResetOutcome,
    PowerOperation,
    PowerRequestState,
    AgentCommandState
);

/// A set of stored names as one parameter, for `json_each(?)`.
pub(super) fn name_set<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(names.into_iter().collect::<Vec<_>>()).to_string()
}
