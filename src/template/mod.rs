//! The one minijinja environment ezk renders with — config.yml values evaluated per host and
//! role templates alike — configured like Ansible's Jinja (trim_blocks, trailing newline kept,
//! undefined variables are errors) with the Ansible filters kubeasz templates use.
//!
//! Filters live in `filters.rs`; add new ones there and register them in `environment()`.

use minijinja::{Environment, UndefinedBehavior};

mod filters;

/// A fresh environment with ezk's settings and filters. Templates are added by the caller
/// (`add_template_owned`) or rendered ad hoc with `render_str`.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_keep_trailing_newline(true);
    filters::register(&mut env);
    env
}

/// True when a string would be changed by rendering (contains Jinja markup).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_is_an_error() {
        let env = environment();
        let err = env.render_str("{{ nope }}", minijinja::context! {}).unwrap_err();
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
        assert_eq!(out, "True False True True", "rendered like Python Jinja, as Ansible does");
    }
}
