//! ezk: provision Kubernetes clusters from release binaries over SSH, kubeasz-compatible.
//!
//! The pipeline follows the folders: `inventory` (hosts + config.yml → resolved vars) →
//! `plan` (playbooks + roles → per-host typed actions) → `exec` (SSH, all hosts in parallel) →
//! `ui` (progress, recap, json). `pki` and `artifacts` feed it; `session` loads one cluster for
//! it; `ops` runs it, one list of named phases per command; `cli` maps arguments to `ops`;
//! `lab` is the sandbox. `docs/architecture.md` has the map and what may import what.

pub mod addr;
pub mod artifacts;
pub mod cli;
pub mod exec;
pub mod home;
pub mod inventory;
pub mod lab;
pub mod machine;
pub mod ops;
pub mod pki;
pub mod plan;
pub mod session;
pub mod template;
pub mod ui;
