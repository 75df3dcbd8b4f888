//! Account requests (no token needed to ask) and project administration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::User;

/// Body of `POST /api/v1/account-requests` (no token).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequestCreate {
    /// The login asked for: letters, digits, `-`, `_`, `.`.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// `local@domain.tld`, no spaces.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+@[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff.][^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*\.[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*[^@\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff.]$"
    )]
    pub email: String,
    /// University, laboratory or company.
    #[schema(min_length = 1, max_length = 200)]
    pub affiliation: String,
    /// An existing project to join, or a new one to create.
    #[schema(min_length = 1, max_length = 64)]
    pub project: String,
    /// For a new project: the policy class asked for (`student`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub class: Option<String>,
    /// What the account is for (20 to 4000 characters; line feeds allowed,
    /// no other control or bidirectional formatting characters).
    #[schema(min_length = 20, max_length = 4000)]
    pub motivation: String,
    /// What the requester is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RequesterStatus>,
}

/// What someone asking for an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequesterStatus {
    Student,
    Academic,
    Startup,
    Company,
}

impl RequesterStatus {
    pub const ALL: [RequesterStatus; 4] =
        [RequesterStatus::Student, RequesterStatus::Academic, RequesterStatus::Startup, RequesterStatus::Company];

    pub fn as_str(self) -> &'static str {
        match self {
            RequesterStatus::Student => "student",
            RequesterStatus::Academic => "academic",
            RequesterStatus::Startup => "startup",
            RequesterStatus::Company => "company",
        }
    }

    pub fn parse(s: &str) -> Option<RequesterStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// As a form shows it.
    pub fn label(self) -> &'static str {
        match self {
            RequesterStatus::Student => "Student",
            RequesterStatus::Academic => "Academic (researcher, engineer, teacher)",
            RequesterStatus::Startup => "Start-up",
            RequesterStatus::Company => "Company",
        }
    }
}

/// Answer of `POST /api/v1/account-requests`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountRequestAccepted {
    pub id: i64,
    pub state: AccountRequestState,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountRequestState {
    Pending,
    Approved,
    Rejected,
}

impl AccountRequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRequestState::Pending => "pending",
            AccountRequestState::Approved => "approved",
            AccountRequestState::Rejected => "rejected",
        }
    }
}

/// An account request as admins see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountRequest {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub affiliation: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_class: Option<String>,
    pub motivation: String,
    pub state: AccountRequestState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// The client address it came from.
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// Why a pending request cannot be approved as it is: its login is a
    /// user's, or another pending request's (regardless of case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RequesterStatus>,
    /// When the requester followed the link mailed to them (absent: not
    /// yet, or no mail server is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified_at: Option<DateTime<Utc>>,
}

/// Query of `GET /api/v1/account-requests`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountRequestListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AccountRequestState>,
}

/// Body of `POST /api/v1/account-requests/{id}/approve`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequestApprove {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: Option<String>,
    /// For a new project: its class (default: the one asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub project_class: Option<String>,
    /// For a new project: its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub quota_node_hours: Option<i64>,
}

/// Body of `POST /api/v1/account-requests/{id}/reject`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRequestReject {
    /// Shown to the requester.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// Answer of an approval: the new user and, to an admin, their first
/// token, shown once.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountRequestApproved {
    pub request: AccountRequest,
    pub user: User,
    /// The user's first API token, shown once, to an admin; absent when
    /// the project's manager approved (the user makes their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Where the user sets their portal password: mailed to them when a
    /// mail server is configured (then absent here), else for the admin
    /// to pass on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_url: Option<String>,
}

/// `null` and absent differ: `Some(None)` clears, `None` leaves.
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PATCH /api/v1/projects/{name}` (admin): absent fields stay,
/// `null` clears.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// A policy class (one line, no control characters).
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub class: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub quota_node_hours: Option<Option<i64>>,
    /// A user, who becomes a member if not one already.
    #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub manager: Option<Option<String>>,
}

/// Body of `POST /api/v1/projects/{name}/members`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberAdd {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub user: String,
}
