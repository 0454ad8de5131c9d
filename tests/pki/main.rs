//! PKI integration tests, one test binary (one link instead of six on a small machine).
//! Each module is a topic; `support` holds the openssl wrappers, `common` (shared with the
//! other test binaries) the hand-built specs and the ezk runner.

#![allow(dead_code)]

#[path = "../common/mod.rs"]
mod common;

mod adopt;
mod audit;
mod catalog;
mod certs;
mod cli;
mod etcd;
mod hosts;
mod kubectl_tls;
mod support;
