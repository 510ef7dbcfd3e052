//! Helpers shared by the integration tests.

pub mod e2e;
