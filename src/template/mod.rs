//! The one minijinja environment ezk renders with — config.yml values evaluated per host and
//! role templates alike — configured like Ansible's Jinja (trim_blocks, trailing newline kept,
//! undefined variables are errors) with the Ansible filters kubeasz templates use.
//!
//! Filters live in `filters.rs`; add new ones there and register them in `environment()`.
//! The quoting filters (one per syntax a role writes into: shell, systemd, YAML, TOML, nginx,
//! haproxy, plain config words and lines) are in `quote.rs`.

use minijinja::{Environment, UndefinedBehavior};

mod filters;
mod methods;
mod quote;

/// A fresh environment with ezk's settings and filters. Templates are added by the caller
/// (`add_template_owned`) or rendered ad hoc with `render_str`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // As Ansible: output is never escaped. (minijinja would JSON-quote every value in a
    // template named *.yaml.j2 or *.json.j2, turning `{{ ca_dir }}/ca.pem` into `"/etc/…"/ca.pem`.)
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_keep_trailing_newline(true);
    filters::register(&mut env);
    quote::register(&mut env);
    env.set_unknown_method_callback(methods::call);
    env
}

/// Ansible's fully qualified filter names (`ansible.utils.ipaddr`, `ansible.builtin.bool`)
/// written as the short names ezk registers; minijinja filter names cannot contain dots.
pub fn normalize(src: &str) -> std::borrow::Cow<'_, str> {
    const PREFIXES: &[&str] = &["ansible.builtin.", "ansible.utils.", "ansible.netcommon."];
    if PREFIXES.iter().any(|p| src.contains(p)) {
        let mut s = src.to_string();
        for p in PREFIXES {
            s = s.replace(p, "");
        }
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Borrowed(src)
    }
}

/// True when a string would be changed by rendering (contains Jinja markup).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a template named *.yaml.j2 had every value JSON-quoted.
    #[test]
    fn yaml_templates_are_not_escaped() {
        let mut env = environment();
        env.add_template("kubelet-config.yaml.j2", "file: {{ dir }}/ca.pem").unwrap();
        let out = env.get_template("kubelet-config.yaml.j2").unwrap().render(minijinja::context! { dir => "/etc/k" }).unwrap();
        assert_eq!(out, "file: /etc/k/ca.pem");
    }

    #[test]
    fn undefined_is_an_error() {
        let env = environment();
        let err = env
            .render_str("{{ nope }}", minijinja::context! {})
            .unwrap_err();
        assert_eq!(err.kind(), minijinja::ErrorKind::UndefinedError);
    }

    #[test]
    fn ansible_bool_filter() {
        let env = environment();
        let out = env
            .render_str(
                "{{ a|bool }} {{ b|bool }} {{ c|bool }} {{ d|bool }}",
                minijinja::context! { a => "yes", b => "false", c => true, d => "1" },
            )
            .unwrap();
        assert_eq!(
            out, "True False True True",
            "rendered like Python Jinja, as Ansible does"
        );
    }

    fn r(src: &str) -> String {
        environment().render_str(&normalize(src), minijinja::context! {
            svc => "10.68.0.0/16", ver => "3.26.4", l1 => vec!["a", "b"], l2 => vec!["b", "c"],
        }).unwrap()
    }

    #[test]
    fn ipaddr_like_kubeasz() {
        assert_eq!(
            r("{{ svc | ansible.utils.ipaddr('net') | ipaddr(1) | ipaddr('address') }}"),
            "10.68.0.1"
        );
        assert_eq!(
            r("{{ svc | ipaddr('net') | ipaddr(2) | ipaddr('address') }}"),
            "10.68.0.2"
        );
        assert_eq!(r("{{ 'nope' | ipaddr }}"), "False");
        assert_eq!(r("{{ '198.51.100.7' | ipaddr }}"), "198.51.100.7");
    }

    #[test]
    fn python_methods_and_list_filters() {
        assert_eq!(r("{{ ver.split('.')[0] }}.{{ ver.split('.')[1] }}"), "3.26");
        assert_eq!(r("{{ 'v1.30'.startswith('v') }}"), "True");
        assert_eq!(r("{{ l1 | union(l2) | join(',') }}"), "a,b,c");
        assert_eq!(r("{{ l1 | difference(l2) | join(',') }}"), "a");
        assert_eq!(r("{{ l1 | intersect(l2) | join(',') }}"), "b");
        assert_eq!(r("{{ ['x','x','y'] | unique | join(',') }}"), "x,y");
        assert_eq!(r("{{ '8443' | int + 1 }}"), "8444");
        assert_eq!(r("{{ 1 | string }}"), "1");
        assert_eq!(
            r("{{ 'k8s_node-01' | regex_replace('_', '-') }}"),
            "k8s-node-01"
        );
        assert_eq!(
            r(r#"{{ 'v1.30.2' | regex_replace('^v(\\d+)\\.(\\d+).*$', '\\1-\\2') }}"#),
            "1-30"
        );
        assert_eq!(
            r("{{ (ver is version('3.19', '>=')) | ternary('new', 'old') }}"),
            "new"
        );
        assert_eq!(
            r("{{ '/opt/kube/bin/etcd' | basename }} {{ '/opt/kube/bin/etcd' | dirname }}"),
            "etcd /opt/kube/bin"
        );
    }
}
