//! Helpers shared by the integration-test binaries. Each binary includes this folder as its
//! `common` module (`mod common;`, or `#[path = "../common/mod.rs"] mod common;` from a
//! binary in its own folder), so nothing here is a test binary of its own.
//!
//! - `ezk`: the `ezk` binary under test, run with `--home` (every test that runs the real
//!   command line goes through it);
//! - `pki`: hand-built `PkiSpec`s for tests that issue certificates without an inventory;
//! - `files`: a `DeployFiles` double, for plans built and inspected without PKI or store;
//! - `kubeasz`: a PKI laid out as kubeasz 3.x leaves it (one CA, its file names), by openssl.

#![allow(dead_code)]

pub mod ezk;
pub mod files;
pub mod kubeasz;
pub mod pki;
