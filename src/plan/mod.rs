//! Plan: playbooks (`playbooks/NN.step.yml`) and roles (`roles/<role>/`) as data, the role DAG,
//! template rendering, and the per-host typed actions that `exec` applies. A plan is pure data.
//!
//! Flow: [`Library`] (embedded files + on-disk overrides) → [`Catalog::load`] (parse and
//! validate every role and playbook) → [`Planner::plan_steps`] (per host, per role, in DAG
//! waves, with variables from a [`VarSource`] and certificates/binaries from [`Sources`]) →
//! [`action::StepPlan`]. [`check_all`] renders everything for `ezk check`; [`write_render`]
//! writes what `ezk render` shows.

pub mod action;
mod catalog;
mod check;
mod convert;
pub mod dag;
mod error;
mod library;
mod modules;
mod output;
mod planner;
mod playbook;
mod render;
mod role;
mod sources;
mod task;
mod validate;

pub use catalog::Catalog;
pub use check::{check_all, check_catalog};
pub use error::PlanError;
pub use library::{Entry, Library};
pub use output::{describe, write_render, RenderSummary};
pub use planner::Planner;
pub use playbook::{Body, Play, Playbook, RoleRef};
pub use role::Role;
pub use sources::{CertPem, NoFiles, Sources, StoredBinary, VarSource};
pub use task::{Module, TaskDef};
