//! Stored names of the model's field-less enums (states, kinds, outcomes):
//! [`named!`] declares them from one table per enum, the one place each name
//! is written; reading an unknown name back is an [`UnknownName`] error (a
//! corrupt row), never a default. [`same_variants!`] converts both ways
//! between such an enum and the API's of the same variants, at the edge.

/// An unknown stored name of one of the model's enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}'")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

/// Declares `as_str`, `ALL` and `FromStr` for a field-less enum from one
/// table of (variant, stored name): the one place each name is written.
macro_rules! named {
    ($ty:ident, $what:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err($crate::names::UnknownName { what: $what, name: s.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Stored as its name, in a text column.
        #[cfg(feature = "sqlx")]
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        /// An unknown name is a decoding error naming the enum and the name.
        #[cfg(feature = "sqlx")]
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&str as sqlx::Decode<DB>>::decode(value)?.parse()?)
            }
        }
    };
}
pub(crate) use named;

/// Both ways between a domain enum and the API's one of the same variants.
macro_rules! same_variants {
    ($domain:ident, $api:path, [$($variant:ident),+ $(,)?]) => {
        impl From<$domain> for $api {
            fn from(value: $domain) -> Self {
                match value {
                    $($domain::$variant => <$api>::$variant),+
                }
            }
        }

        impl From<$api> for $domain {
            fn from(value: $api) -> Self {
                match value {
                    $(<$api>::$variant => $domain::$variant),+
                }
            }
        }
    };
}
pub(crate) use same_variants;
