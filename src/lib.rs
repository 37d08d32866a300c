//! lib
pub mod auth;
pub mod policy;
