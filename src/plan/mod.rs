//! Plan: playbooks (`playbooks/NN.step.yml`) and roles (`roles/<role>/`) as data, the role DAG,
//! template rendering, and the per-host typed actions that `exec` applies. A plan is pure data.

pub mod action;
