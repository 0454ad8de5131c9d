//! Load-time checks of a task: what can be known without a host — Jinja syntax of every
//! string, literal modes and states, that a template or file exists.

use std::collections::BTreeSet;

use minijinja::Environment;

use super::task::{Arg, BinaryArgs, CopyArgs, FileArgs, Module, TaskDef, TemplateArgs, detail};

/// What a role offers a task to refer to, for load-time checks.
pub struct RoleFiles<'a> {
    pub templates: &'a BTreeSet<String>,
    pub files: &'a BTreeSet<String>,
}

/// Load-time checks of one task: Jinja syntax of every string, and every literal value that
/// can be checked without a host.
pub fn validate(t: &TaskDef, env: &Environment<'static>, role: &RoleFiles) -> Result<(), String> {
    if let Some(w) = &t.when {
        check_when(env, w)?;
    }
    let mut strings = Vec::new();
    collect_strings(t.loop_.as_ref(), &mut strings);
    for n in &t.notify {
        collect_strings(Some(n), &mut strings);
    }
    let lit = |a: &Arg| {
        a.as_str()
            .filter(|s| !crate::template::is_template(s))
            .map(str::to_string)
    };
    match &t.module {
        Module::Template(a) => {
            for v in [
                Some(&a.src),
                Some(&a.dest),
                a.mode.as_ref(),
                a.owner.as_ref(),
                a.group.as_ref(),
                a.secret.as_ref(),
            ] {
                collect_strings(v, &mut strings);
            }
            if let Some(src) = lit(&a.src)
                && !role.templates.contains(&src)
            {
                return Err(format!(
                    "template `{src}` not found in the role's templates/ (have: {})",
                    list(role.templates)
                ));
            }
        }
        Module::Copy(a) => {
            for v in [
                Some(&a.dest),
                a.content.as_ref(),
                a.src.as_ref(),
                a.mode.as_ref(),
                a.owner.as_ref(),
                a.group.as_ref(),
                a.secret.as_ref(),
            ] {
                collect_strings(v, &mut strings);
            }
            if a.content.is_some() == a.src.is_some() {
                return Err("copy needs exactly one of `content` or `src`".into());
            }
            // An absolute `src` is a file on the deploy machine (as in Ansible), read at plan time.
            if let Some(src) = a.src.as_ref().and_then(lit)
                && !src.starts_with('/')
                && !role.files.contains(&src)
            {
                return Err(format!(
                    "file `{src}` not found in the role's files/ (have: {})",
                    list(role.files)
                ));
            }
        }
        Module::File(a) => {
            for v in [
                Some(&a.path),
                Some(&a.state),
                a.mode.as_ref(),
                a.src.as_ref(),
            ] {
                collect_strings(v, &mut strings);
            }
            if let Some(s) = lit(&a.state) {
                match s.as_str() {
                    "directory" | "absent" => {}
                    "link" if a.src.is_some() => {}
                    "link" => return Err("file state `link` needs `src` (the link target)".into()),
                    other => {
                        return Err(format!(
                            "file state `{other}` is not one of directory, link, absent"
                        ));
                    }
                }
            }
        }
        Module::Binary(a) => collect_all(&[&a.name, &a.dest], &[&a.mode], &mut strings),
        Module::Cert(a) => collect_all(&[&a.name, &a.dest], &[&a.key, &a.ca], &mut strings),
        // Which names exist is the PKI's to say (its catalog is the one list of ids): checked
        // when the task is planned, by `ezk check` too.
        Module::Kubeconfig(a) => collect_all(&[&a.name, &a.dest], &[], &mut strings),
        Module::Secret(a) => collect_all(&[&a.name, &a.dest], &[], &mut strings),
        Module::Image(a) => {
            collect_all(&[&a.name], &[&a.ctr, &a.dir, &a.registry_dir], &mut strings);
            match (&a.ctr, &a.registry_dir) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => return Err("image needs exactly one of `ctr` (import on the host) or `registry_dir` (serve from its registry)".into()),
            }
            if a.registry_dir.is_some() && a.dir.is_some() {
                return Err("image: `dir` goes with `ctr`, not with `registry_dir`".into());
            }
        }
        Module::Sysctl(a) => collect_all(&[&a.file, &a.entries], &[], &mut strings),
        Module::Modprobe(a) => collect_all(&[&a.file, &a.modules], &[], &mut strings),
        Module::Package(a) => collect_all(&[&a.names], &[], &mut strings),
        Module::Systemd(a) => {
            collect_all(&[&a.unit], &[&a.enabled, &a.state, &a.restart_last_if], &mut strings);
            if let Some(s) = a.state.as_ref().and_then(lit) {
                super::convert::unit_state(&s)?;
            }
        }
        Module::Command(a) => {
            collect_all(&[&a.cmd], &[&a.creates, &a.unless, &a.unless_slow], &mut strings);
            if a.unless_slow.is_some() && a.unless.is_none() {
                return Err("command: `unless_slow` says how the `unless` guard runs; there is no `unless`".into());
            }
        }
        Module::WaitFor(a) => {
            collect_all(
                &[],
                &[&a.tcp, &a.command, &a.timeout, &a.diagnose],
                &mut strings,
            );
            if a.tcp.is_some() == a.command.is_some() {
                return Err("wait_for needs exactly one of `tcp` or `command`".into());
            }
        }
    }
    if let Module::Template(TemplateArgs { mode: Some(m), .. })
    | Module::Copy(CopyArgs { mode: Some(m), .. })
    | Module::File(FileArgs { mode: Some(m), .. })
    | Module::Binary(BinaryArgs { mode: Some(m), .. }) = &t.module
        && !m.as_str().is_some_and(crate::template::is_template)
    {
        super::convert::parse_mode(m)?;
    }
    for s in strings {
        if crate::template::is_template(&s) {
            env.template_from_str(&s)
                .map_err(|e| format!("Jinja syntax error in {s:?}: {}", detail(&e)))?;
        }
    }
    Ok(())
}

/// Check a `when` value compiles (a string expression, a list of them, or a bool).
pub fn check_when(env: &Environment<'static>, w: &Arg) -> Result<(), String> {
    match w {
        Arg::Bool(_) => Ok(()),
        Arg::String(s) => env
            .compile_expression(super::convert::strip_braces(s))
            .map(|_| ())
            .map_err(|e| format!("Jinja syntax error in `when: {s}`: {}", detail(&e))),
        Arg::Sequence(v) => v.iter().try_for_each(|x| check_when(env, x)),
        _ => Err("`when` must be an expression, a list of expressions, or a boolean".into()),
    }
}

fn list(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn collect_all(req: &[&Arg], opt: &[&Option<Arg>], out: &mut Vec<String>) {
    for a in req {
        collect_strings(Some(a), out);
    }
    for a in opt {
        collect_strings(a.as_ref(), out);
    }
}

fn collect_strings(v: Option<&Arg>, out: &mut Vec<String>) {
    match v {
        Some(Arg::String(s)) => out.push(s.clone()),
        Some(Arg::Sequence(v)) => v.iter().for_each(|x| collect_strings(Some(x), out)),
        Some(Arg::Mapping(m)) => m.iter().for_each(|(k, x)| {
            collect_strings(Some(k), out);
            collect_strings(Some(x), out)
        }),
        _ => {}
    }
}
