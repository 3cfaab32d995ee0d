//! The custom resources homeostat serves, one module per API version.

pub mod v1alpha1;

/// The API group of every homeostat resource.
pub const GROUP: &str = "homeostat.dev";
