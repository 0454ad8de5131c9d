//! The task syntax of `roles/<role>/tasks.yml`: exactly one module key per task plus the common
//! keys `name`, `when`, `loop`, `notify`. Unknown keys and unknown module arguments are refused
//! by serde (`deny_unknown_fields`), so the error carries the file's line and column.
//!
//! Argument values stay YAML values here: they are Jinja-rendered per host before being typed
//! (see `render.rs`); what can be checked without a host (literal modes, states, names, that a
//! template or file exists, Jinja syntax) is checked at load time by `validate.rs`.

use serde::Deserialize;

use super::error::PlanError;

/// An argument value before per-host rendering.
pub type Arg = serde_yaml::Value;

macro_rules! args {
    ($(#[$m:meta])* $name:ident { $($req:ident),* ; $($opt:ident),* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(pub $req: Arg,)*
            $(#[serde(default)] pub $opt: Option<Arg>,)*
        }
    };
}

args!(/// `template: {src, dest, mode, owner, group, secret}`
    TemplateArgs { src, dest; mode, owner, group, secret });
args!(/// `copy: {content | src, dest, mode, owner, group, secret}`
    CopyArgs { dest; content, src, mode, owner, group, secret });
args!(/// `file: {path, state: directory|link|absent, mode, src}`
    FileArgs { path, state; mode, src });
args!(/// `binary: {name, dest, mode}` — installed from the artifact store.
    BinaryArgs { name, dest; mode });
args!(/// `cert: {name, dest, key, ca}` — issued by the PKI on the deploy host.
    CertArgs { name, dest; key, ca });
args!(/// `kubeconfig: {name, dest}`
    KubeconfigArgs { name, dest; });
args!(/// `secret: {name, dest}` — a secret file made and kept on the deploy machine (the PKI's
    /// `encryption-config`), installed 0600 and never shown.
    SecretArgs { name, dest; });
args!(/// `image: {name, ctr, dir}` — a container image of the artifact set (in the deploy
    /// machine's store, see `artifacts::oci`), its archive pushed into `dir` (default
    /// /var/lib/ezk/images) and imported with `ctr` (the containerd client command line) unless
    /// containerd already has that image at that digest. `image: {name, registry_dir}` instead
    /// lays it into the storage of the registry whose root is `registry_dir` (its manifest and
    /// blobs, each a file checked by sha256, and the repository's links), for that registry to
    /// serve it read-only.
    ImageArgs { name; ctr, dir, registry_dir });
args!(/// `sysctl: {file, entries: {key: value}}`
    SysctlArgs { file, entries; });
args!(/// `modprobe: {file, modules: [...]}`
    ModprobeArgs { file, modules; });
args!(/// `package: {names: [...]}`
    PackageArgs { names; });
args!(/// `systemd: {unit, enabled, state, restart_last_if}` — `restart_last_if`: a command; in a
    /// `serial` role's rolling restart, the host where it succeeds restarts after the others
    /// (etcd: the leader, so that the leadership moves once, not once per member).
    SystemdArgs { unit; enabled, state, restart_last_if });
args!(/// `command: {cmd, creates, unless, unless_slow}` — `unless_slow: true`: the guard waits on
    /// a service (asks the Kubernetes API): gathered at the same time as the role's other slow
    /// guards and wait probes instead of one after another. Any other guard runs in its place.
    CommandArgs { cmd; creates, unless, unless_slow });
args!(/// `wait_for: {tcp | command, timeout, diagnose}`
    WaitForArgs { ; tcp, command, timeout, diagnose });

/// The module of a task, with its (unrendered) arguments.
#[derive(Debug, Clone)]
pub enum Module {
    Template(TemplateArgs),
    Copy(CopyArgs),
    File(FileArgs),
    Binary(BinaryArgs),
    Cert(CertArgs),
    Kubeconfig(KubeconfigArgs),
    Secret(SecretArgs),
    Image(ImageArgs),
    Sysctl(SysctlArgs),
    Modprobe(ModprobeArgs),
    Package(PackageArgs),
    Systemd(SystemdArgs),
    Command(CommandArgs),
    WaitFor(WaitForArgs),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: String,
    #[serde(default)]
    when: Option<Arg>,
    #[serde(default, rename = "loop")]
    loop_: Option<Arg>,
    #[serde(default)]
    notify: Option<Arg>,
    #[serde(default)]
    template: Option<TemplateArgs>,
    #[serde(default)]
    copy: Option<CopyArgs>,
    #[serde(default)]
    file: Option<FileArgs>,
    #[serde(default)]
    binary: Option<BinaryArgs>,
    #[serde(default)]
    cert: Option<CertArgs>,
    #[serde(default)]
    kubeconfig: Option<KubeconfigArgs>,
    #[serde(default)]
    secret: Option<SecretArgs>,
    #[serde(default)]
    image: Option<ImageArgs>,
    #[serde(default)]
    sysctl: Option<SysctlArgs>,
    #[serde(default)]
    modprobe: Option<ModprobeArgs>,
    #[serde(default)]
    package: Option<PackageArgs>,
    #[serde(default)]
    systemd: Option<SystemdArgs>,
    #[serde(default)]
    command: Option<CommandArgs>,
    #[serde(default)]
    wait_for: Option<WaitForArgs>,
}

/// One task of a role, as loaded.
#[derive(Debug, Clone)]
pub struct TaskDef {
    pub name: String,
    /// `tasks.yml` path and line, for messages (`roles/etcd/tasks.yml:12`).
    pub origin: String,
    pub when: Option<Arg>,
    pub loop_: Option<Arg>,
    /// Unit names (may hold Jinja).
    pub notify: Vec<Arg>,
    pub module: Module,
}

const MODULES: &str = "template, copy, file, binary, cert, kubeconfig, secret, image, sysctl, modprobe, package, systemd, command, wait_for";

/// Parse a `tasks.yml`. `file` is the name shown in messages. Returns the tasks that parsed and
/// every problem found (a YAML/shape error stops at that point; per-task problems do not).
pub fn parse_tasks(file: &str, text: &str) -> (Vec<TaskDef>, Vec<PlanError>) {
    let raws: Option<Vec<RawTask>> = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), vec![reword(PlanError::yaml(file, &e))]),
    };
    let raws = raws.unwrap_or_default();
    let lines = item_lines(text);
    let lines = (lines.len() == raws.len()).then_some(lines);
    let mut out = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (i, r) in raws.into_iter().enumerate() {
        let line = lines.as_ref().map(|l| l[i]);
        let origin = match line {
            Some(l) => format!("{file}:{l}"),
            None => format!("{file} (task {})", i + 1),
        };
        let mut mods = Vec::new();
        macro_rules! take { ($($f:ident => $v:ident),*) => { $( if let Some(a) = r.$f { mods.push(Module::$v(a)); } )* } }
        take!(template => Template, copy => Copy, file => File, binary => Binary, cert => Cert,
              kubeconfig => Kubeconfig, secret => Secret, image => Image, sysctl => Sysctl, modprobe => Modprobe, package => Package,
              systemd => Systemd, command => Command, wait_for => WaitFor);
        if mods.len() != 1 {
            errors.push(PlanError::load(
                file,
                line,
                format!(
                    "task `{}` must have exactly one module key ({MODULES}), found {}",
                    r.name,
                    mods.len()
                ),
            ));
            continue;
        }
        let notify = match r.notify {
            None => Vec::new(),
            Some(Arg::Sequence(v)) => v,
            Some(v @ Arg::String(_)) => vec![v],
            Some(_) => {
                errors.push(PlanError::load(
                    file,
                    line,
                    "notify must be a unit name or a list of unit names",
                ));
                continue;
            }
        };
        out.push(TaskDef {
            name: r.name,
            origin,
            when: r.when,
            loop_: r.loop_,
            notify,
            module: mods.pop().unwrap(),
        });
    }
    (out, errors)
}

/// serde's "`.[1].template: unknown field `force`, expected one of ...`" in task terms.
fn reword(mut e: PlanError) -> PlanError {
    if let PlanError::Load { msg, .. } = &mut e {
        let (path, rest) = match msg.split_once(": ") {
            Some((p, r)) if p.starts_with(".[") => (p.to_string(), r.to_string()),
            _ => return e,
        };
        let (idx, module) = match path[2..].split_once(']') {
            Some((i, m)) => (
                i.parse::<usize>().map(|i| i + 1).ok(),
                m.trim_start_matches('.').to_string(),
            ),
            None => (None, String::new()),
        };
        let task = idx
            .map(|i| format!("task {i}"))
            .unwrap_or_else(|| "task".into());
        *msg = match rest.strip_prefix("unknown field ") {
            Some(r) if module.is_empty() => {
                let name = r.split(',').next().unwrap_or(r);
                format!(
                    "{task}: unknown module or key {name}; modules: {MODULES}; other keys: name, when, loop, notify"
                )
            }
            Some(r) => format!("{task}: `{module}` has no argument {r}"),
            None if module.is_empty() => format!("{task}: {rest}"),
            None => format!("{task}, `{module}`: {rest}"),
        };
    }
    e
}

/// 1-based lines where the top-level sequence items of a YAML document start.
fn item_lines(text: &str) -> Vec<usize> {
    let mut indent = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let ind = line.len() - trimmed.len();
        let is_item = trimmed == "-" || trimmed.starts_with("- ");
        match indent {
            None if is_item => {
                indent = Some(ind);
                out.push(i + 1);
            }
            None => return out,
            Some(n) if n == ind && is_item => out.push(i + 1),
            _ => {}
        }
    }
    out
}

/// A minijinja error's message without the location suffix.
pub fn detail(e: &minijinja::Error) -> String {
    e.detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lines_skip_comments_headers_and_nested_lists() {
        let text = "---\n# header\n\n- name: one\n  command: {cmd: x}\n  notify:\n  - a\n  - b\n- name: two\n  copy:\n    dest: /x\n    content: |\n      - not a task\n# trailing\n-   name: three\n    command: {cmd: y}\n";
        assert_eq!(item_lines(text), vec![4, 9, 15]);
        let (tasks, errors) = parse_tasks("t.yml", text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            tasks.iter().map(|t| t.origin.as_str()).collect::<Vec<_>>(),
            ["t.yml:4", "t.yml:9", "t.yml:15"]
        );
        assert_eq!(tasks[0].notify.len(), 2);
    }

    #[test]
    fn missing_argument_is_named_with_task_number_and_line() {
        let (_, errors) = parse_tasks(
            "t.yml",
            "- name: a\n  command: {cmd: x}\n- name: b\n  template: {src: x.j2}\n",
        );
        let e = errors[0].to_string();
        assert!(
            e.starts_with("t.yml:4: task 2, `template`: missing field `dest`"),
            "{e}"
        );
    }
}
