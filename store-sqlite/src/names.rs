//! The model's states as SQLite parameters: each enum binds as its stored
//! name (`OperationState::Running.as_str()`), and a set of states
//! binds as one JSON array that SQL reads with
//! `IN (SELECT value FROM json_each(?))`, so no state is ever written into a
//! query's text.
//!
//! Reading goes the other way through `ferrum_store::parse_name` (an
//! unknown name is `DbError::Corrupt`, never a default).

/// A set of stored names as one parameter, for `json_each(?)`.
pub(super) fn name_set<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(names.into_iter().collect::<Vec<_>>()).to_string()
}
