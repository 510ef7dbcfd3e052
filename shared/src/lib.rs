//! Code that more than one meshward filter uses.
//!
//! Plain Rust with no proxy-wasm dependency: the filters' shells call it, and so
//! can an upstream service or the `meshward` command line.

pub mod audit;
pub mod config;
pub mod filter_state;
pub mod local_reply;
pub mod metrics;
pub mod principal;
pub mod spiffe;
pub mod svid;
pub mod xfcc;
