//! placeholder
pub mod envoy_config;
pub mod oci;
pub mod certs;
