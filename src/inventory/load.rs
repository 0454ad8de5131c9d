//! Loading an inventory: the inventory file (`hosts` INI or `hosts.yml`), `config.yml` and the
//! `-e` values read into their definitions (each with file:line), the group tree built, and
//! the resolver that renders every host's variables made; `load` then validates.

use std::path::Path;
use std::sync::OnceLock;

use indexmap::IndexMap;

use super::error::{InventoryError, InventoryErrors, Location};
use super::{Inventory, KUBEASZ_GROUPS, ini, limits, model, resolve, validate, vars, yaml};
use crate::home::Home;

impl Inventory {
    /// Read and validate `clusters/<cluster>/` under `home`; every problem is returned at once.
    pub fn load(
        home: &Home,
        cluster: &str,
        extra_vars: &[(String, String)],
    ) -> Result<Inventory, InventoryErrors> {
        let inv = Inventory::parse(home, cluster, extra_vars)?;
        let errors = validate::validate(&inv);
        if errors.is_empty() {
            Ok(inv)
        } else {
            Err(InventoryErrors(errors))
        }
    }

    /// Read without semantic validation (syntax errors are still errors).
    pub fn parse(
        home: &Home,
        cluster: &str,
        extra_vars: &[(String, String)],
    ) -> Result<Inventory, InventoryErrors> {
        Inventory::from_dir(&home.cluster_dir(cluster), cluster, extra_vars)
    }

    /// Read a cluster directory directly (`hosts` or `hosts.yml`, and `config.yml` if present).
    pub fn from_dir(
        dir: &Path,
        cluster: &str,
        extra_vars: &[(String, String)],
    ) -> Result<Inventory, InventoryErrors> {
        Inventory::from_dir_with(dir, cluster, extra_vars, None)
    }

    /// As `from_dir`, with `hosts_text` read as `dir/hosts` when given: an edit of the INI
    /// inventory checked (and planned) before it is written.
    pub fn from_dir_with(
        dir: &Path,
        cluster: &str,
        extra_vars: &[(String, String)],
        hosts_text: Option<&str>,
    ) -> Result<Inventory, InventoryErrors> {
        let ini_path = dir.join("hosts");
        let yaml_path = dir.join("hosts.yml");
        let config_file = dir.join("config.yml");
        let read = limits::read_text;
        let mut errors = Vec::new();
        let (hosts_file, (source, errs)) = if let Some(text) = hosts_text {
            (ini_path.clone(), ini::parse(text, &ini_path))
        } else if ini_path.is_file() {
            (
                ini_path.clone(),
                ini::parse(
                    &read(&ini_path).map_err(|e| InventoryErrors(vec![e]))?,
                    &ini_path,
                ),
            )
        } else if yaml_path.is_file() {
            (
                yaml_path.clone(),
                yaml::parse_inventory(
                    &read(&yaml_path).map_err(|e| InventoryErrors(vec![e]))?,
                    &yaml_path,
                ),
            )
        } else {
            return Err(InventoryErrors(vec![InventoryError::NoInventory {
                dir: dir.to_path_buf(),
            }]));
        };
        errors.extend(errs);
        let config = if config_file.is_file() {
            match read(&config_file).and_then(|t| yaml::parse_config(&t, &config_file)) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e);
                    model::VarDefs::new()
                }
            }
        } else {
            model::VarDefs::new()
        };
        let mut source = source;
        for g in KUBEASZ_GROUPS {
            if !source.groups.contains_key(*g) {
                source.group_mut(g, &Location::new(&hosts_file, 0));
            }
        }
        let (tree, errs) = vars::GroupTree::build(&source);
        errors.extend(errs);
        let (extra, errs) = vars::extra_defs(extra_vars);
        errors.extend(errs);
        if !errors.is_empty() {
            return Err(InventoryErrors(errors));
        }
        let too_big = limits::check_counts(&source, &tree, &config, &extra, &hosts_file);
        if !too_big.is_empty() {
            return Err(InventoryErrors(too_big));
        }
        let mut groups: IndexMap<String, Vec<String>> = IndexMap::new();
        groups.insert("all".into(), tree.members["all"].clone());
        for (g, m) in &tree.members {
            groups.entry(g.clone()).or_insert_with(|| m.clone());
        }
        let hosts: Vec<String> = source.hosts.keys().cloned().collect();
        let base = resolve::Resolver::build(vars::layers(&source, &tree, &config, &extra), &groups);
        Ok(Inventory {
            cluster: cluster.to_string(),
            dir: dir.to_path_buf(),
            groups,
            hosts,
            hosts_file,
            config_file,
            source,
            base,
            scopes: Default::default(),
            hostvars: OnceLock::new(),
        })
    }
}
