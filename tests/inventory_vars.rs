//! Variable resolution through the library API: Ansible precedence, lazy per-host Jinja
//! (kubeasz's K8S_NODENAME, CONTEXT_NAME, groups/hostvars), typed values, connections.

use std::path::Path;

use ezk::exec::Connection;
use ezk::inventory::{Inventory, Value, Vars};
use ezk::session::connection;

fn inventory(hosts: &str, config: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, Inventory) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), hosts).unwrap();
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let inv = Inventory::from_dir(dir.path(), "t", &extra).unwrap_or_else(|e| panic!("{e}"));
    (dir, inv)
}

const HOSTS: &str = "\
[etcd]
198.51.100.11 NODE_NAME=etcd1
[kube_master]
198.51.100.11 k8s_nodename='Master_01'
[kube_node]
198.51.100.21 k8s_nodename=''
node-b.example.test k8s_nodename='' ansible_host=198.51.100.22 ansible_ssh_port=2222 ansible_user=ops ansible_become=true ansible_ssh_private_key_file=/keys/id
[k8s:children]
kube_master
kube_node
[k8s:vars]
LEVEL=k8s-group
[kube_node:vars]
LEVEL=node-group
[all:vars]
LEVEL=all-vars
FROM_ALL=\"all\"
PORT=8443
";

const CONFIG: &str = r#"
CLUSTER_NAME: "demo"
CONTEXT_NAME: "context-{{ CLUSTER_NAME }}"
LEVEL: config
K8S_NODENAME: "{%- if k8s_nodename != '' -%}
                 {{ k8s_nodename|replace('_', '-')|lower }}
               {%- else -%}
                 k8s-{{ inventory_hostname|replace('.', '-') }}
               {%- endif -%}"
IP_AUTODETECTION_METHOD: "can-reach={{ groups['kube_master'][0] }}"
FIRST_ETCD_NAME: "{{ hostvars[groups['etcd'][0]]['NODE_NAME'] }}"
MASTERS: "{{ groups['kube_master'] + groups['kube_node'] }}"
CERT_HOSTS:
  - "{{ inventory_hostname }}"
  - "api.{{ CLUSTER_NAME }}.test"
NEXT_PORT: "{{ PORT + 1 }}"
BROKEN: "{{ not_defined_anywhere }}"
"#;

fn s(v: &Vars, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
    }
}

#[test]
fn kubeasz_templated_values_resolve_per_host() {
    let (_d, inv) = inventory(HOSTS, CONFIG, &[]);
    assert_eq!(
        inv.var_str("198.51.100.11", "K8S_NODENAME").as_deref(),
        Some("master-01")
    );
    assert_eq!(
        inv.var_str("198.51.100.21", "K8S_NODENAME").as_deref(),
        Some("k8s-198-51-100-21")
    );
    assert_eq!(
        inv.var_str("node-b.example.test", "K8S_NODENAME")
            .as_deref(),
        Some("k8s-node-b-example-test")
    );
    assert_eq!(
        inv.var_str("198.51.100.21", "CONTEXT_NAME").as_deref(),
        Some("context-demo")
    );
    assert_eq!(
        inv.var_str("198.51.100.21", "IP_AUTODETECTION_METHOD")
            .as_deref(),
        Some("can-reach=198.51.100.11")
    );
    assert_eq!(
        inv.var_str("198.51.100.21", "FIRST_ETCD_NAME").as_deref(),
        Some("etcd1"),
        "hostvars of another host"
    );
}

#[test]
fn precedence_from_role_defaults_to_extra_vars() {
    let config = CONFIG.replace("BROKEN: \"{{ not_defined_anywhere }}\"\n", "");
    let (_d, inv) = inventory(HOSTS, &config, &[]);
    let mut defaults = Vars::new();
    defaults.insert("LEVEL".into(), "role-default".into());
    defaults.insert("ONLY_DEFAULT".into(), "d".into());
    defaults.insert("CLUSTER_NAME".into(), "from-defaults".into());
    defaults.insert(
        "ETCD_URL".into(),
        "https://{{ inventory_hostname }}:2379".into(),
    );
    let master = inv
        .vars_for("198.51.100.11", &defaults)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s(&master, "ONLY_DEFAULT"),
        "d",
        "role defaults are the lowest layer"
    );
    assert_eq!(
        s(&master, "CLUSTER_NAME"),
        "demo",
        "config.yml over role defaults"
    );
    assert_eq!(
        s(&master, "LEVEL"),
        "k8s-group",
        "group vars over [all:vars] over config.yml"
    );
    assert_eq!(
        s(&master, "ETCD_URL"),
        "https://198.51.100.11:2379",
        "defaults are templates too"
    );
    let node = inv
        .vars_for("198.51.100.21", &defaults)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s(&node, "LEVEL"),
        "node-group",
        "child group (kube_node) over parent (k8s)"
    );
    let etcd_only_cfg = inv.var_str("198.51.100.11", "FROM_ALL");
    assert_eq!(etcd_only_cfg.as_deref(), Some("all"));

    let (_d2, inv) = inventory(
        HOSTS,
        &config,
        &[("LEVEL", "extra"), ("k8s_nodename", "forced")],
    );
    let master = inv
        .vars_for("198.51.100.11", &defaults)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s(&master, "LEVEL"), "extra", "-e over everything");
    assert_eq!(
        s(&master, "K8S_NODENAME"),
        "forced",
        "-e over host vars, seen by templates"
    );
}

fn load_err(dir: &Path, extra: &[(String, String)]) -> String {
    match Inventory::from_dir(dir, "t", extra) {
        Ok(_) => panic!("loaded despite a bad -e file"),
        Err(e) => e.to_string(),
    }
}

/// `-e @file.yml` (Ansible's form): a YAML map read with its types, in command-line order with
/// the key=value form (a later -e wins); a broken file is an error naming it and its line.
#[test]
fn extra_vars_from_a_yaml_file() {
    let config = CONFIG.replace("BROKEN: \"{{ not_defined_anywhere }}\"\n", "");
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("more.yml");
    std::fs::write(&file, "LEVEL: from-file\nPORT: 9443\nFLAGS: [a, b]\nCLUSTER_NAME: file\n").unwrap();
    let f = file.to_str().unwrap();
    let (_d, inv) = inventory(HOSTS, &config, &[("@", f), ("CLUSTER_NAME", "cli")]);
    let v = inv
        .vars_for("198.51.100.21", &Vars::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s(&v, "LEVEL"), "from-file", "-e @file over group vars");
    assert_eq!(v["PORT"], Value::Number(9443.into()), "typed, over [all:vars]");
    assert_eq!(v["NEXT_PORT"], Value::Number(9444.into()), "seen by templates");
    assert_eq!(v["FLAGS"][1], Value::String("b".into()));
    assert_eq!(s(&v, "CLUSTER_NAME"), "cli", "a later -e KEY=VALUE wins");
    assert_eq!(s(&v, "CONTEXT_NAME"), "context-cli");

    std::fs::write(&file, "LEVEL: ok\nPORT: 9443: x\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts"), HOSTS).unwrap();
    let extra = vec![("@".to_string(), f.to_string())];
    let err = load_err(dir.path(), &extra);
    assert!(err.contains(&format!("{f}:2")), "{err}");
    let missing = vec![("@".to_string(), d.path().join("nope.yml").display().to_string())];
    let err = load_err(dir.path(), &missing);
    assert!(err.contains("nope.yml") && err.contains("-e @"), "{err}");
}

#[test]
fn vars_for_keeps_types_and_exposes_magic_vars() {
    let (_d, inv) = inventory(
        HOSTS,
        &CONFIG.replace("BROKEN: \"{{ not_defined_anywhere }}\"\n", ""),
        &[],
    );
    let v = inv
        .vars_for("198.51.100.21", &Vars::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v["PORT"],
        Value::Number(8443.into()),
        "INI numbers are numbers, as in Ansible"
    );
    assert_eq!(
        v["NEXT_PORT"],
        Value::Number(8444.into()),
        "a single expression keeps its type"
    );
    let masters: Vec<String> = serde_yaml::from_value(v["MASTERS"].clone()).unwrap();
    assert_eq!(
        masters,
        vec!["198.51.100.11", "198.51.100.21", "node-b.example.test"]
    );
    let certs: Vec<String> = serde_yaml::from_value(v["CERT_HOSTS"].clone()).unwrap();
    assert_eq!(
        certs,
        vec!["198.51.100.21", "api.demo.test"],
        "templates inside lists"
    );
    assert_eq!(s(&v, "inventory_hostname"), "198.51.100.21");
    assert_eq!(
        v["groups"]["etcd"][0],
        Value::String("198.51.100.11".into())
    );
    assert_eq!(
        v["hostvars"]["198.51.100.11"]["K8S_NODENAME"],
        Value::String("master-01".into())
    );
}

#[test]
fn evaluation_is_lazy_and_errors_name_the_cause() {
    let (_d, inv) = inventory(HOSTS, CONFIG, &[]);
    // A template that does not use the broken variable renders fine.
    let ctx = inv.context("198.51.100.21", &Vars::new());
    let out = ezk::template::environment()
        .render_str("{{ K8S_NODENAME }}/{{ CONTEXT_NAME }}", ctx.clone())
        .unwrap();
    assert_eq!(out, "k8s-198-51-100-21/context-demo");
    // Using it fails, naming the variable and the cause.
    let err = inv.resolve("198.51.100.21", "BROKEN").unwrap_err();
    assert_eq!((err.var.as_str(), err.at.line), ("BROKEN", 17));
    assert!(
        err.msg
            .contains("undefined variable 'not_defined_anywhere'"),
        "{err:?}"
    );
    let render = ezk::template::environment().render_str("{{ BROKEN }}", ctx);
    assert!(render.is_err());
    // vars_for is lazy like Ansible: the unusable value is left out, the rest is there.
    let v = inv
        .vars_for("198.51.100.21", &Vars::new())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!v.contains_key("BROKEN") && v.contains_key("CONTEXT_NAME"));
    // A syntax error, though, is an error of vars_for.
    let (_d, bad) = inventory(HOSTS, "X: \"{{ oops \"\n", &[]);
    let err = bad
        .vars_for("198.51.100.21", &Vars::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.yml:1: variable X") && err.contains("syntax error"),
        "{err}"
    );

    // A variable failing deep inside a chain is reported at its own line.
    let cfg = "A: \"{{ B }}\"\nB: \"{{ C | nosuchfilter }}\"\nC: 1\n";
    let (_d, inv) = inventory(HOSTS, cfg, &[]);
    let e = inv.resolve("198.51.100.21", "A").unwrap_err();
    assert_eq!((e.var.as_str(), e.at.line), ("B", 2), "{e:?}");
}

#[test]
fn connection_from_ansible_vars() {
    let (_d, inv) = inventory(HOSTS, CONFIG, &[]);
    assert_eq!(
        connection(&inv, "node-b.example.test"),
        Connection {
            address: "198.51.100.22".into(),
            port: 2222,
            user: "ops".into(),
            key_file: Some("/keys/id".into()),
            become_root: true,
            jump: None,
        }
    );
    assert_eq!(
        connection(&inv, "198.51.100.11"),
        Connection {
            address: "198.51.100.11".into(),
            port: 22,
            user: "root".into(),
            key_file: None,
            become_root: false,
            jump: None,
        }
    );
    assert_eq!(
        inv.hosts_in("k8s"),
        ["198.51.100.11", "198.51.100.21", "node-b.example.test"]
    );
    assert!(
        inv.hosts_in("harbor").is_empty() && inv.groups.contains_key("harbor"),
        "kubeasz groups always exist"
    );
    assert_eq!(inv.hosts_path(), inv.dir.join("hosts"));
    assert_eq!(inv.config_path(), inv.dir.join("config.yml"));
}

#[test]
fn shipped_examples_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory-examples");
    let config = std::fs::read_to_string(root.join("config.yml")).unwrap();
    for layout in ["hosts.multi-node", "hosts.allinone"] {
        let hosts = std::fs::read_to_string(root.join(layout)).unwrap();
        let (_d, inv) = inventory(&hosts, &config, &[]);
        let errors = ezk::inventory::validate::validate(&inv);
        assert!(errors.is_empty(), "{layout}: {errors:?}");
        let first = &inv.hosts_in("kube_master")[0];
        let v = inv.vars_for(first, &Vars::new()).unwrap();
        assert_eq!(s(&v, "K8S_NODENAME"), "master-01");
        assert_eq!(s(&v, "calico_ver_main"), "v3.28");
        assert_eq!(
            s(&v, "IP_AUTODETECTION_METHOD"),
            format!("can-reach={first}")
        );
        assert_eq!(s(&v, "HARBOR_REGISTRY"), "harbor.example.test:8443");
    }
}

/// The plan and executor share one inventory across threads.
#[test]
fn inventory_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Inventory>();
}

#[test]
fn examples_substitute_placeholders() {
    use ezk::inventory::examples::{self, Layout};
    let home = Path::new("/srv/ezk");
    let cfg = examples::config_yml("lab1", home);
    assert!(cfg.contains("CLUSTER_NAME: \"lab1\""));
    let hosts = examples::hosts(Layout::Allinone, "lab1", home);
    assert!(hosts.contains("base_dir=\"/srv/ezk\"") && hosts.contains("/clusters/lab1\""));
    assert!(!cfg.contains('_') || !cfg.contains("_cluster_name_"));
}

/// kubeasz users behind a bastion put ProxyJump in Ansible's ssh args; ezk connects the same way.
#[test]
fn proxy_jump_from_ansible_ssh_args() {
    use ezk::exec::connection::proxy_jump;
    assert_eq!(proxy_jump("-o ProxyJump=ops@bastion:2222").as_deref(), Some("ops@bastion:2222"));
    assert_eq!(proxy_jump("'-o ProxyJump=bastion' -o StrictHostKeyChecking=yes").as_deref(), Some("bastion"));
    assert_eq!(proxy_jump("-o \"ProxyJump bastion\"").as_deref(), Some("bastion"));
    assert_eq!(proxy_jump("-J root@jump").as_deref(), Some("root@jump"));
    assert_eq!(proxy_jump("-Jroot@jump").as_deref(), Some("root@jump"));
    assert_eq!(proxy_jump("-o ServerAliveInterval=30"), None);
    assert_eq!(proxy_jump(""), None);
}

/// `--limit`: groups (children included), host names, `!` exclusions, inventory order; a name
/// that matches nothing is an error listing what exists.
#[test]
fn limit_selects_groups_and_hosts_in_inventory_order() {
    let (_d, inv) = inventory(HOSTS, CONFIG, &[]);
    let sel = |p: &[&str]| inv.select(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(sel(&["kube_node"]).unwrap(), ["198.51.100.21", "node-b.example.test"]);
    assert_eq!(
        sel(&["node-b.example.test,etcd"]).unwrap(),
        ["198.51.100.11", "node-b.example.test"],
        "inventory order, not pattern order"
    );
    assert_eq!(sel(&["k8s", "!kube_master"]).unwrap(), ["198.51.100.21", "node-b.example.test"]);
    assert_eq!(sel(&["!kube_node"]).unwrap(), ["198.51.100.11"], "only exclusions: all but those");
    let err = sel(&["kube_nodes"]).unwrap_err();
    assert!(err.contains("\"kube_nodes\" names no group or host") && err.contains("kube_node"), "{err}");
    let err = sel(&["etcd", "!kube_master"]).unwrap_err();
    assert!(err.contains("selects no host"), "{err}");
}
