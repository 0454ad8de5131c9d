//! Plan: playbooks (`playbooks/NN.step.yml`) and roles (`roles/<role>/`) as data, the role DAG,
//! template rendering, and the per-host typed actions that `exec` applies. A plan is pure data.
//!
//! Flow: [`Library`] (embedded files + on-disk overrides) → [`Catalog::load`] (parse and
//! validate every role and playbook) → [`Planner::plan_steps`] (per host, per role, in DAG
//! waves, with variables from [`Variables`] and certificates, kubeconfigs, binaries and local
//! files from [`DeployFiles`]) → [`action::StepPlan`]. [`check_all`] renders everything for
//! `ezk check`; [`write_render`] writes what `ezk render` shows.
//!
//! Files: `library` (where role files come from), `playbook`, `role`, `task` (parsing),
//! `load_checks` (what a task can be checked for at load), `catalog` (all of it, validated),
//! `dag` (role order), `planner` (a step for every host), `host_render` + `modules` +
//! `convert` (one role's tasks for one host, each module's arguments typed into an action),
//! `compiled` (task texts parsed once per step, not once per host),
//! `inputs` (the traits above), `kube` (every choice that depends on the Kubernetes version),
//! `output` (what `ezk render` writes), `action` (the result).

pub mod action;
mod catalog;
mod compiled;
mod convert;
pub mod dag;
mod error;
mod host_render;
mod inputs;
pub mod kube;
mod library;
mod load_checks;
mod modules;
mod output;
mod planner;
mod playbook;
mod role;
mod task;

pub use catalog::Catalog;
pub use compiled::compile_count;
pub use error::PlanError;
pub use inputs::{CertPem, DeployFiles, ImageBlobs, ImageName, StoredBinary, StoredImage, Variables};
pub use library::{Entry, Library};
pub use output::{describe, write_render, RenderSummary};
pub use planner::{Planner, check_all, check_catalog};
pub use playbook::{Body, Play, Playbook, RoleRef};
pub use role::Role;
pub use task::{Module, TaskDef};
