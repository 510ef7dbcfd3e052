//! One module per `meshward` subcommand: its clap `Args` and its `run`.

pub mod audit;
pub mod bench;
pub mod bench_waf;
pub mod chain;
pub mod envoy_config;
pub mod ftw;
pub mod oci;
pub mod replay;
pub mod run;
pub mod validate;
