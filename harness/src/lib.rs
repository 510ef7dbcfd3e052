//! placeholder
pub mod envoy_config;
