//! The bench's loopback variant, for host counts the nspawn lab cannot boot on this machine:
//! N real sshd processes on 127.0.0.1 (one per "host", each with its own host key), a
//! 12-task file role (directories, text files, a secret, a link, guarded commands, a tcp wait)
//! rooted per host in a temp dir. No systemd here, so no unit tasks.
//!
//! Caveat, measured: these "hosts" are this machine, so every remote command runs under root's
//! login shell here, and Debian's bash sources ~/.bashrc for commands started by sshd. On the
//! build machine that file runs `pyenv init` (hundreds of ms per command, seconds under load),
//! which dominates the loopback figures; lab hosts have a plain root account.

use std::path::Path;

use ezk::plan::action::{Action, Content, FileSpec, HostRolePlan, Task, WaitTarget};

fn task(name: &str, action: Action) -> Task {
    Task { name: name.into(), origin: format!("bench ({name})"), action, notify: vec![] }
}

fn file(path: &Path, content: String, mode: u32, secret: bool) -> Action {
    Action::File(FileSpec { path: path.display().to_string(), content: Content::Inline(content.into_bytes()), mode, owner: "root".into(), group: "root".into(), secret })
}

fn dir(path: &Path, mode: u32) -> Action {
    Action::Directory { path: path.display().to_string(), mode, owner: "root".into(), group: "root".into() }
}

/// The 12-task role for one loopback host.
pub fn role(base: &Path, host: &str, port: u16) -> HostRolePlan {
    let h = base.join(host);
    let tasks = vec![
        task("etc", dir(&h.join("etc"), 0o755)),
        task("data", dir(&h.join("data"), 0o700)),
        task("conf", file(&h.join("etc/app.conf"), format!("name = {host}\nport = 8080\n"), 0o644, false)),
        task("env", file(&h.join("etc/app.env"), "TOKEN=x\n".into(), 0o600, true)),
        task("a", file(&h.join("etc/a.conf"), "a\n".repeat(200), 0o644, false)),
        task("b", file(&h.join("etc/b.conf"), "b\n".repeat(200), 0o644, false)),
        task("c", file(&h.join("etc/c.conf"), "c\n".repeat(200), 0o644, false)),
        task("link", Action::Link { path: h.join("current").display().to_string(), target: h.join("etc/app.conf").display().to_string() }),
        task("absent", Action::Absent { path: h.join("old").display().to_string() }),
        task("once", Action::Command { cmd: format!("touch {}", h.join("data/once").display()), creates: Some(h.join("data/once").display().to_string()), unless: None }),
        task("unless", Action::Command { cmd: format!("touch {}", h.join("data/u").display()), creates: None, unless: Some(format!("test -e {}", h.join("data/u").display())) }),
        task("wait", Action::WaitFor { target: WaitTarget::Tcp { host: "127.0.0.1".into(), port }, timeout_secs: 30, diagnose: None }),
    ];
    HostRolePlan { host: host.into(), role: "files".into(), tasks }
}
