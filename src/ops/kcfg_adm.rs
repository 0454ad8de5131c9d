//! `ezk kcfg-adm` (kubeasz's `ezctl kcfg-adm`; arguments in `cli/kcfg_adm.rs`): kubeconfigs for
//! people. A user is a client certificate from the cluster CA (CN = the name, no group) and a
//! ClusterRoleBinding `ezk-user-<name>` (labelled `ezk.io/user`) to `cluster-admin` or `view`.
//!
//! | action | phases |
//! |---|---|
//! | add (`-A`) | check the name, take the lock, issue `ssl/users/<name>.pem`, write `ssl/users/<name>.kubeconfig` (0600), apply the binding |
//! | list (`-L`) | read the bindings |
//! | delete (`-D`) | check the name, ask, take the lock, delete the binding, remove the user's files |
//!
//! A certificate cannot be revoked: the API server checks no revocation list. Deleting a user
//! deletes its binding, so its certificate still authenticates and is authorized for nothing
//! (until it expires: hence `-e`, days of validity).

use serde_json::json;

use super::Error;
use super::confirm::confirmed;
use super::phase::{Flow, Phase, Step, skip};
use crate::home::Home;
use crate::session::Session;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `cluster-admin`.
    Admin,
    /// `view`: read most objects (not Secrets), change nothing.
    View,
}

impl Role {
    fn cluster_role(self) -> &'static str {
        match self {
            Role::Admin => "cluster-admin",
            Role::View => "view",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Add { user: String, days: u32, role: Role },
    List,
    Delete { user: String, yes: bool },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub cluster: String,
    pub action: Action,
    pub plan_only: bool,
    pub json: bool,
}

struct Kcfg {
    req: Request,
    session: Session,
}

const PHASES: &[Phase<Kcfg>] = &[
    Phase::new("check the user name", check_name).when(|k| !matches!(k.req.action, Action::List)),
    Phase::new("ask", ask).when(|k| matches!(k.req.action, Action::Delete { yes: false, .. })).dry_run(skip),
    Phase::new("take the cluster lock", lock).when(|k| !matches!(k.req.action, Action::List)).dry_run(skip),
    Phase::new("issue the certificate, write the kubeconfig, bind the role", add)
        .when(|k| matches!(k.req.action, Action::Add { .. }))
        .dry_run(say_add),
    Phase::new("list the users", list).when(|k| matches!(k.req.action, Action::List)),
    Phase::new("delete the binding and the user's files", delete)
        .when(|k| matches!(k.req.action, Action::Delete { .. }))
        .dry_run(say_delete),
];

/// Run `ezk kcfg-adm`; the exit code is 0, or 1 when not confirmed.
pub fn run(home: &Home, req: Request) -> Result<i32, Error> {
    let session = match super::open_or_report(home, &req.cluster, &[]) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let plan_only = req.plan_only;
    super::phase::run(PHASES, &mut Kcfg { req, session }, plan_only)
}

fn user(k: &Kcfg) -> &str {
    match &k.req.action {
        Action::Add { user, .. } | Action::Delete { user, .. } => user,
        Action::List => "",
    }
}

fn binding(user: &str) -> String {
    format!("ezk-user-{user}")
}

/// A DNS label (it names the binding and labels it), and none of the names the cluster's own
/// certificates use (their groups would give rights no binding takes away).
fn check_name(k: &mut Kcfg) -> Step {
    let u = user(k);
    let label = !u.is_empty()
        && u.len() <= 63
        && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !u.starts_with('-')
        && !u.ends_with('-');
    if !label {
        return Err(format!("user name {u:?}: lower-case letters, digits and '-', at most 63, not starting or ending with '-'").into());
    }
    if u == "admin" || u.starts_with("kube") || u.starts_with("system") || u.starts_with("etcd") {
        return Err(format!("user name {u:?} is reserved for the cluster's own certificates (admin, kube*, system*, etcd*): pick another").into());
    }
    Ok(Flow::Next)
}

fn ask(k: &mut Kcfg) -> Step {
    let u = user(k).to_string();
    let what = format!("This deletes user {u}'s role binding in cluster {} and its kubeconfig here.", k.req.cluster);
    if confirmed("kcfg-adm -D", &k.req.cluster, &what)? {
        return Ok(Flow::Next);
    }
    eprintln!("kcfg-adm -D cancelled: nothing changed");
    Ok(Flow::Stop(1))
}

fn lock(k: &mut Kcfg) -> Step {
    k.session.lock()?;
    Ok(Flow::Next)
}

fn kubeconfig_path(k: &Kcfg, user: &str) -> std::path::PathBuf {
    k.session.dir().join("ssl/users").join(format!("{user}.kubeconfig"))
}

fn say_add(k: &mut Kcfg) -> Step {
    let Action::Add { user, days, role } = &k.req.action else { unreachable!("when: add") };
    println!(
        "would issue a client certificate for user {user} (CN={user}, {days} days) from the cluster CA, write {}, and bind {user} to ClusterRole {} (ClusterRoleBinding {})",
        kubeconfig_path(k, user).display(),
        role.cluster_role(),
        binding(user)
    );
    Ok(Flow::Next)
}

fn add(k: &mut Kcfg) -> Step {
    let Action::Add { user, days, role } = k.req.action.clone() else { unreachable!("when: add") };
    let ssl = k.session.dir().join("ssl");
    let admin = std::fs::read_to_string(k.session.dir().join("kubectl.kubeconfig"))
        .map_err(|e| format!("{}: {e}; set the cluster up first (step 04 writes it)", k.session.dir().join("kubectl.kubeconfig").display()))?;
    let admin: serde_yaml::Value = serde_yaml::from_str(&admin)?;
    let server = admin["clusters"][0]["cluster"]["server"].as_str().ok_or("the admin kubeconfig names no server")?.to_string();
    let cluster = admin["clusters"][0]["name"].as_str().unwrap_or("kubernetes").to_string();
    let cert = crate::pki::user::issue_user(&ssl, &user, days)?;
    let context = format!("{user}@{cluster}");
    let text = crate::pki::kubeconfig::render(&crate::pki::kubeconfig::KubeconfigInput {
        cluster: &cluster,
        context: &context,
        user: &user,
        server: &server,
        ca_pem: &cert.ca_pem,
        cert_pem: &cert.cert_pem,
        key_pem: cert.key_pem.expose(),
    });
    let path = kubeconfig_path(k, &user);
    crate::pki::ssl_dir::write_atomic(&path, text.as_bytes(), 0o600)?;
    let expires = (::time::OffsetDateTime::now_utc() + ::time::Duration::days(days.into())).date().to_string();
    let manifest = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": binding(&user),
            "labels": {"ezk.io/user": user},
            "annotations": {"ezk.io/expires": expires, "ezk.io/cert-sha256": crate::pki::sha256_hex(cert.cert_pem.as_bytes())},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role.cluster_role()},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    });
    apply(&k.session, &manifest.to_string())?;
    if k.req.json {
        println!("{}", json!({"user": user, "role": role.cluster_role(), "expires": expires, "kubeconfig": path}));
    } else {
        println!("user {user}: ClusterRole {} until {expires}; kubeconfig {}", role.cluster_role(), path.display());
    }
    Ok(Flow::Next)
}

/// `kubectl apply -f -` of one manifest (a role binding changes in place when re-added with
/// another role: the roleRef cannot change, so the binding is replaced).
fn apply(s: &Session, manifest: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut c = s.kubectl_command()?;
    c.args(["--request-timeout=20s", "apply", "--force", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn()?;
    child.stdin.take().expect("piped").write_all(manifest.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("kubectl apply (the user's binding): {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(())
}

fn list(k: &mut Kcfg) -> Step {
    let out = k.session.kubectl(&["--request-timeout=10s", "get", "clusterrolebindings", "-l", "ezk.io/user", "-o", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let rows: Vec<serde_json::Value> = v["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let user = b["metadata"]["labels"]["ezk.io/user"].as_str().unwrap_or_default();
            json!({
                "user": user,
                "role": b["roleRef"]["name"],
                "expires": b["metadata"]["annotations"]["ezk.io/expires"],
                "kubeconfig": kubeconfig_path(k, user).is_file().then(|| kubeconfig_path(k, user)),
            })
        })
        .collect();
    if k.req.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(Flow::Next);
    }
    println!("{:<24} {:<14} {:<11} KUBECONFIG", "USER", "ROLE", "EXPIRES");
    for r in rows {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
        println!("{:<24} {:<14} {:<11} {}", s(&r["user"]), s(&r["role"]), s(&r["expires"]), s(&r["kubeconfig"]));
    }
    Ok(Flow::Next)
}

fn say_delete(k: &mut Kcfg) -> Step {
    let u = user(k);
    println!("would delete ClusterRoleBinding {} and {} (with the user's certificate and key)", binding(u), kubeconfig_path(k, u).display());
    Ok(Flow::Next)
}

fn delete(k: &mut Kcfg) -> Step {
    let u = user(k).to_string();
    let out = k.session.kubectl(&["--request-timeout=20s", "delete", "clusterrolebinding", &binding(&u), "--ignore-not-found", "-o", "name"])?;
    let path = kubeconfig_path(k, &u);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: {e}", path.display()).into()),
        _ => {}
    }
    crate::pki::user::remove_user(&k.session.dir().join("ssl"), &u)?;
    let found = !out.trim().is_empty();
    if k.req.json {
        println!("{}", json!({"user": u, "binding_deleted": found}));
    } else if found {
        println!("user {u}: binding deleted; its certificate still authenticates until it expires but is authorized for nothing");
    } else {
        println!("user {u}: no binding (already deleted); its files here are gone");
    }
    Ok(Flow::Next)
}
