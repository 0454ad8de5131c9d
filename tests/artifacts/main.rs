//! Artifact store integration tests, one test binary (one link instead of five on a small
//! machine). Each module is a topic; `support` holds the loopback HTTP server and the
//! release-format archives built from this machine's real Debian binaries.

#[path = "../common/mod.rs"]
mod common;

mod apt;
mod cli;
mod download;
mod local;
mod manifest;
mod registry;
mod roles;
mod source_build;
mod support;
mod unpinned;
