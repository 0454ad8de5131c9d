//! PKI integration tests, one test binary (one link instead of six on a small machine).
//! Each module is a topic; `support` holds the shared spec and openssl wrappers.

#![allow(dead_code)]

mod catalog;
mod certs;
mod cli;
mod etcd;
mod hosts;
mod kubectl_tls;
mod support;
