//! Each module's arguments, rendered for one host, typed into `Action`s. Certificates,
//! kubeconfigs, binaries and local files come from `DeployFiles`; keys and kubeconfigs are secret and 0600.
//!
//! Under 400 lines of code; the rest of the file is its tests.

use minijinja::Value;

use super::action::{Action, Content, FileSpec, UnitState, WaitTarget};
use super::convert::{parse_tcp, scalar, unit_state};
use super::host_render::{HostRender, RenderFailure};
use super::task::{self, Arg, Module, TaskDef};

impl HostRender<'_, '_> {
    fn file(
        &self,
        path: String,
        content: Vec<u8>,
        mode: u32,
        owner: String,
        group: String,
        secret: bool,
    ) -> Action {
        Action::File(FileSpec {
            path,
            content: Content::Inline(self.compiled.intern_bytes(content)),
            mode,
            owner,
            group,
            secret,
        })
    }

    /// A file made on the deploy machine that holds a secret (a kubeconfig with its key, the
    /// encryption config): root's, 0600, never shown.
    fn private_file(&self, dest: &Arg, ctx: &Value, content: String) -> Result<Action, String> {
        Ok(self.file(self.path(dest, ctx, "dest")?, content.into_bytes(), 0o600, "root".into(), "root".into(), true))
    }

    pub(super) fn actions(&self, t: &TaskDef, ctx: &Value) -> Result<Vec<Action>, RenderFailure> {
        let fail = |msg: String| RenderFailure {
            origin: t.origin.clone(),
            msg,
        };
        let root = || "root".to_string();
        let owner = |o: &Option<Arg>, f| self.opt_string(o, ctx, f).map(|o| o.unwrap_or_else(root));
        Ok(match &t.module {
            Module::Template(a) => {
                let src = self.string(&a.src, ctx, "src").map_err(fail)?;
                if !self.role.templates.contains(&src) {
                    return Err(fail(format!(
                        "template `{src}` not found in {}/templates/",
                        self.role.dir
                    )));
                }
                let name = self.role.template_name(&src);
                let tmpl = self
                    .env
                    .get_template(&name)
                    .map_err(|e| fail(task::detail(&e)))?;
                let content = tmpl.render(ctx).map_err(|err| RenderFailure {
                    origin: match err.line() {
                        Some(l) => format!("{name}:{l}"),
                        None => name.clone(),
                    },
                    msg: format!(
                        "{} (template task {})",
                        self.explain(&err, &tmpl.undeclared_variables(false), ctx),
                        t.origin
                    ),
                })?;
                let (dest, mode) = (
                    self.path(&a.dest, ctx, "dest").map_err(fail)?,
                    self.mode(&a.mode, ctx, 0o644).map_err(fail)?,
                );
                let secret = self.bool(&a.secret, ctx, "secret", false).map_err(fail)?;
                vec![self.file(
                    dest,
                    content.into_bytes(),
                    mode,
                    owner(&a.owner, "owner").map_err(fail)?,
                    owner(&a.group, "group").map_err(fail)?,
                    secret,
                )]
            }
            Module::Copy(a) => {
                let src = self.opt_string(&a.src, ctx, "src").map_err(fail)?;
                let content = match (&a.content, src) {
                    (Some(c), _) => self.string(c, ctx, "content").map_err(fail)?.into_bytes(),
                    // As in Ansible, an absolute `src` is a file on the deploy machine: pushed
                    // from disk (streamed, checked by sha256), not held in the plan.
                    (None, Some(src)) if src.starts_with('/') => {
                        let sha256 = self
                            .files
                            .local_file(std::path::Path::new(&src))
                            .map_err(|e| fail(format!("copy src: {e}")))?;
                        return Ok(vec![Action::File(FileSpec {
                            path: self.path(&a.dest, ctx, "dest").map_err(fail)?,
                            content: Content::Local { path: src.into(), sha256 },
                            mode: self.mode(&a.mode, ctx, 0o644).map_err(fail)?,
                            owner: owner(&a.owner, "owner").map_err(fail)?,
                            group: owner(&a.group, "group").map_err(fail)?,
                            secret: self.bool(&a.secret, ctx, "secret", false).map_err(fail)?,
                        })]);
                    }
                    (None, Some(src)) => {
                        self.role.files.get(&src).cloned().ok_or_else(|| {
                            fail(format!(
                                "file `{src}` not found in {}/files/",
                                self.role.dir
                            ))
                        })?
                    }
                    (None, None) => return Err(fail("copy needs `content` or `src`".into())),
                };
                let (dest, mode) = (
                    self.path(&a.dest, ctx, "dest").map_err(fail)?,
                    self.mode(&a.mode, ctx, 0o644).map_err(fail)?,
                );
                let secret = self.bool(&a.secret, ctx, "secret", false).map_err(fail)?;
                vec![self.file(
                    dest,
                    content,
                    mode,
                    owner(&a.owner, "owner").map_err(fail)?,
                    owner(&a.group, "group").map_err(fail)?,
                    secret,
                )]
            }
            Module::File(a) => {
                let path = self.path(&a.path, ctx, "path").map_err(fail)?;
                match self.string(&a.state, ctx, "state").map_err(fail)?.as_str() {
                    "directory" => vec![Action::Directory {
                        path,
                        mode: self.mode(&a.mode, ctx, 0o755).map_err(fail)?,
                        owner: root(),
                        group: root(),
                    }],
                    "absent" => vec![Action::Absent { path: removable(path).map_err(fail)? }],
                    "link" => {
                        let src = a
                            .src
                            .as_ref()
                            .ok_or_else(|| fail("file state `link` needs `src`".into()))?;
                        vec![Action::Link {
                            path,
                            target: self.string(src, ctx, "src").map_err(fail)?,
                        }]
                    }
                    other => {
                        return Err(fail(format!(
                            "file state `{other}` is not one of directory, link, absent"
                        )));
                    }
                }
            }
            Module::Binary(a) => {
                let name = self.string(&a.name, ctx, "name").map_err(fail)?;
                let content = self
                    .files
                    .binary_content(&name)
                    .map_err(|e| fail(format!("binary `{name}`: {e}")))?;
                vec![Action::File(FileSpec {
                    path: self.path(&a.dest, ctx, "dest").map_err(fail)?,
                    content,
                    mode: self.mode(&a.mode, ctx, 0o755).map_err(fail)?,
                    owner: root(),
                    group: root(),
                    secret: false,
                })]
            }
            Module::Image(a) => {
                let name = self.string(&a.name, ctx, "name").map_err(fail)?;
                if let Some(root) = &a.registry_dir {
                    let root = self.path(root, ctx, "registry_dir").map_err(fail)?;
                    let img = self
                        .files
                        .image_blobs(&name)
                        .map_err(|e| fail(format!("image `{name}`: {e}")))?;
                    return Ok(registry_storage(&root, &img));
                }
                let ctr = match &a.ctr {
                    Some(c) => self.string(c, ctx, "ctr").map_err(fail)?,
                    None => return Err(fail("image needs `ctr` or `registry_dir`".into())),
                };
                let dir = match &a.dir {
                    Some(d) => self.path(d, ctx, "dir").map_err(fail)?,
                    None => "/var/lib/ezk/images".to_string(),
                };
                let img = self.files.image(&name).map_err(|e| fail(format!("image `{name}`: {e}")))?;
                let tar = format!("{}/{name}.tar", dir.trim_end_matches('/'));
                vec![
                    Action::Directory { path: dir, mode: 0o755, owner: root(), group: root() },
                    Action::File(FileSpec {
                        path: tar.clone(),
                        content: Content::Local { path: img.path, sha256: img.sha256 },
                        mode: 0o644,
                        owner: root(),
                        group: root(),
                        secret: false,
                    }),
                    // Imported into the namespace kubelet's pods come from, unless containerd
                    // already has this reference at this digest.
                    Action::Command {
                        cmd: self.compiled.intern_str(format!("{ctr} -n k8s.io images import {tar}")),
                        creates: None,
                        unless: Some(self.compiled.intern_str(format!(
                            "{ctr} -n k8s.io images ls 'name=={}' | grep -q '{}'",
                            img.reference, img.digest
                        ))),
                        // ctr asks containerd (a Go binary's start, then the socket).
                        unless_slow: true,
                    },
                ]
            }
            Module::Cert(a) => {
                let id = self.string(&a.name, ctx, "name").map_err(fail)?;
                let c = self
                    .files
                    .cert(self.host, &id)
                    .map_err(|e| fail(format!("cert `{id}`: {e}")))?;
                // (argument, PEM, mode, secret, what to say when the id has no such part)
                let parts = [
                    (Some(&a.dest), Some(c.cert_pem), 0o644, false, "dest"),
                    (a.key.as_ref(), c.key_pem, 0o600, true, "key"),
                    (a.ca.as_ref(), c.ca_pem, 0o644, false, "ca"),
                ];
                let mut v = Vec::new();
                for (arg, pem, mode, secret, name) in parts {
                    let Some(arg) = arg else { continue };
                    let pem = pem.ok_or_else(|| {
                        fail(format!("cert `{id}` has no `{name}` part; remove `{name}:`"))
                    })?;
                    let path = self.path(arg, ctx, name).map_err(fail)?;
                    v.push(self.file(path, pem.into_bytes(), mode, root(), root(), secret));
                }
                v
            }
            Module::Kubeconfig(a) => {
                let name = self.string(&a.name, ctx, "name").map_err(fail)?;
                let k = self
                    .files
                    .kubeconfig(self.host, &name)
                    .map_err(|e| fail(format!("kubeconfig `{name}`: {e}")))?;
                vec![self.private_file(&a.dest, ctx, k).map_err(fail)?]
            }
            Module::Secret(a) => {
                let name = self.string(&a.name, ctx, "name").map_err(fail)?;
                let k = self
                    .files
                    .secret(self.host, &name)
                    .map_err(|e| fail(format!("secret `{name}`: {e}")))?;
                vec![self.private_file(&a.dest, ctx, k).map_err(fail)?]
            }
            Module::Sysctl(a) => {
                let entries = match self.value(&a.entries, ctx).map_err(fail)? {
                    Arg::Mapping(m) => m
                        .iter()
                        .map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            fail("sysctl `entries` keys and values must be scalars".into())
                        })?,
                    _ => return Err(fail("sysctl `entries` must be a map of key: value".into())),
                };
                vec![Action::Sysctl {
                    file: self.path(&a.file, ctx, "file").map_err(fail)?,
                    entries,
                }]
            }
            Module::Modprobe(a) => vec![Action::Modprobe {
                file: self.path(&a.file, ctx, "file").map_err(fail)?,
                modules: self.list(&a.modules, ctx, "modules").map_err(fail)?,
            }],
            Module::Package(a) => {
                let offline = ctx
                    .get_attr("INSTALL_SOURCE")
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s == "offline"))
                    .unwrap_or(false);
                vec![Action::Package {
                    names: self.list(&a.names, ctx, "names").map_err(fail)?,
                    offline,
                }]
            }
            Module::Systemd(a) => {
                let state = match &a.state {
                    Some(s) => {
                        unit_state(&self.string(s, ctx, "state").map_err(fail)?).map_err(fail)?
                    }
                    None => UnitState::Started,
                };
                vec![Action::Service {
                    unit: self.string(&a.unit, ctx, "unit").map_err(fail)?,
                    enabled: self.bool(&a.enabled, ctx, "enabled", true).map_err(fail)?,
                    state,
                    last_if: self.opt_string(&a.restart_last_if, ctx, "restart_last_if").map_err(fail)?,
                }]
            }
            Module::Command(a) => vec![Action::Command {
                cmd: self.text(&a.cmd, ctx, "cmd").map_err(fail)?,
                creates: self.opt_string(&a.creates, ctx, "creates").map_err(fail)?,
                unless: self.opt_text(&a.unless, ctx, "unless").map_err(fail)?,
                unless_slow: self.bool(&a.unless_slow, ctx, "unless_slow", false).map_err(fail)?,
            }],
            Module::WaitFor(a) => {
                let target = match (&a.tcp, &a.command) {
                    (Some(t), None) => {
                        parse_tcp(&self.string(t, ctx, "tcp").map_err(fail)?).map_err(fail)?
                    }
                    (None, Some(c)) => WaitTarget::Command {
                        cmd: self.string(c, ctx, "command").map_err(fail)?,
                    },
                    _ => {
                        return Err(fail(
                            "wait_for needs exactly one of `tcp` or `command`".into(),
                        ));
                    }
                };
                let timeout_secs = match &a.timeout {
                    None => 60,
                    Some(v) => self
                        .string(v, ctx, "timeout")
                        .map_err(fail)?
                        .trim()
                        .parse()
                        .map_err(|_| fail("`timeout` must be whole seconds".into()))?,
                };
                vec![Action::WaitFor {
                    target,
                    timeout_secs,
                    diagnose: self
                        .opt_string(&a.diagnose, ctx, "diagnose")
                        .map_err(fail)?,
                }]
            }
        })
    }
}

/// A path `file: {state: absent}` may remove (recursively): absolute, at least two levels deep
/// after `.`/`..` and repeated slashes are resolved, so that a variable left empty or set to a
/// system directory (`ETCD_DATA_DIR: /var`) cannot make a role delete `/`, `/etc` or `/var`.
pub(super) fn removable(path: String) -> Result<String, String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.len() < 2 {
        return Err(format!(
            "refusing to remove {path:?}: a path removed with `state: absent` must lie at least two \
             levels below / (check the variable that names it)"
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod removable_tests {
    use super::removable;

    #[test]
    fn shallow_or_root_paths_are_refused() {
        for p in ["/", "/var", "/etc/", "//etc", "/var/lib/..", "/opt/./", "/a/b/../.."] {
            assert!(removable(p.into()).is_err(), "{p} must be refused");
        }
        for p in ["/var/lib/etcd", "/etc/kubernetes", "/etc/systemd/system/etcd.service"] {
            assert_eq!(removable(p.into()).unwrap(), p);
        }
    }
}

/// An image laid into the storage of a registry (the `filesystem` driver's layout under
/// `root`, as Debian's docker-registry reads it): every blob under
/// `docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data`, pushed from the store and checked by
/// sha256 like any file; the repository's links to its config and layers (`_layers`), to its
/// manifest (`_manifests/revisions`) and from its tag (`_manifests/tags/<tag>/current` and
/// `index`), each holding `sha256:<hex>`. A host that has the blobs gets nothing again. The
/// directories are 0755 and the files 0644, root's: the registry reads them as its own user.
fn registry_storage(root: &str, img: &super::inputs::ImageBlobs) -> Vec<Action> {
    let v2 = format!("{}/docker/registry/v2", root.trim_end_matches('/'));
    let repo = format!("{v2}/repositories/{}", img.repository);
    let file = |path: String, content: Content| {
        Action::File(FileSpec {
            path,
            content,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
        })
    };
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let blob = |(digest, path): &(String, std::path::PathBuf)| {
        let h = hex(digest);
        file(
            format!("{v2}/blobs/sha256/{}/{h}/data", &h[..2.min(h.len())]),
            Content::Local { path: path.clone(), sha256: h.clone() },
        )
    };
    let link = |path: String, digest: &str| file(path, Content::Inline(format!("sha256:{}", hex(digest)).into_bytes().into()));
    let mut out = Vec::new();
    for b in &img.blobs {
        out.push(blob(b));
        out.push(link(format!("{repo}/_layers/sha256/{}/link", hex(&b.0)), &b.0));
    }
    let m = &img.manifest.0;
    out.push(blob(&img.manifest));
    out.push(link(format!("{repo}/_manifests/revisions/sha256/{}/link", hex(m)), m));
    out.push(link(format!("{repo}/_manifests/tags/{}/index/sha256/{}/link", img.tag, hex(m)), m));
    out.push(link(format!("{repo}/_manifests/tags/{}/current/link", img.tag), m));
    // The registry runs unprivileged and ezk creates missing parents 0700: every directory
    // between the root and a file is made 0755 first (a set: parents sort before children).
    let top = root.trim_end_matches('/');
    let mut dirs = std::collections::BTreeSet::new();
    for a in &out {
        let Action::File(f) = a else { continue };
        let mut d = std::path::Path::new(&f.path).parent();
        while let Some(p) = d.and_then(|p| p.to_str()).filter(|p| p.len() > top.len()) {
            dirs.insert(p.to_string());
            d = std::path::Path::new(p).parent();
        }
    }
    let dirs = dirs.into_iter().map(|path| Action::Directory { path, mode: 0o755, owner: "root".into(), group: "root".into() });
    dirs.chain(out).collect()
}

#[cfg(test)]
mod registry_storage_tests {
    use super::*;

    #[test]
    fn every_file_has_its_directories_readable_made_first() {
        let sha = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let img = super::super::inputs::ImageBlobs {
            repository: "ezk.local/busybox".into(),
            tag: "1.35.0".into(),
            manifest: (sha('a'), "/store/m".into()),
            blobs: vec![(sha('b'), "/store/b".into()), (sha('c'), "/store/c".into())],
        };
        let actions = registry_storage("/srv/reg/", &img);
        let mut made = vec!["/srv/reg".to_string()];
        let mut files = 0;
        for a in &actions {
            match a {
                Action::Directory { path, mode, .. } => {
                    assert_eq!(*mode, 0o755, "{path}");
                    let parent = std::path::Path::new(path).parent().unwrap().to_str().unwrap();
                    assert!(made.iter().any(|m| m == parent), "{path} before its parent");
                    made.push(path.clone());
                }
                Action::File(f) => {
                    files += 1;
                    let parent = std::path::Path::new(&f.path).parent().unwrap().to_str().unwrap();
                    assert!(made.iter().any(|m| m == parent), "{} before its directory", f.path);
                    assert_eq!(f.mode, 0o644);
                }
                other => panic!("{other:?}"),
            }
        }
        // 3 blobs, a layer link per config/layer blob, the manifest's revision, tag index and current.
        assert_eq!(files, 3 + 2 + 3);
        let data = format!("/srv/reg/docker/registry/v2/blobs/sha256/bb/{}/data", "b".repeat(64));
        assert!(actions.iter().any(|a| matches!(a, Action::File(f) if f.path == data)));
        let current = "/srv/reg/docker/registry/v2/repositories/ezk.local/busybox/_manifests/tags/1.35.0/current/link";
        assert!(actions.iter().any(|a| matches!(a, Action::File(f) if f.path == current
            && matches!(&f.content, Content::Inline(b) if &b[..] == sha('a').as_bytes()))));
    }
}
