//! The rendered roles every check reads, made once per test run with ezk itself, and helpers to
//! run the real tools on them.
//!
//! Home: `$CARGO_TARGET_TMPDIR/roles-validate/` (the artifact store `down/` is kept between runs,
//! so the pinned .debs are fetched once; clusters and renders are made fresh each run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::ezk::{ezk, ezk_ok};

/// The 5-host lab inventory as `ezk lab up demo --hosts 5` writes it (198.18.9.11–15, VIP .250,
/// ex_lb .14 master / .15 backup, chrony server .11), with the shipped example config.yml.
pub const LAB5_HOSTS: &str = "tests/fixtures/lab-inventory/5-hosts/hosts";
pub const FIRST_MASTER: &str = "198.18.9.11";
pub const LB_MASTER: &str = "198.18.9.14";
pub const LB_BACKUP: &str = "198.18.9.15";

/// Renders of the shipped roles: `<variant>/<host>/<path on the host>` plus `PLAN.txt`.
/// Variants: `default` (steps 01, 02, 03, 10 of the 5-host lab), `nginx` (10 with
/// EX_LB_IMPL=nginx), `options` (all steps with non-default LB_IF, ETCD_WAL_DIR,
/// CHRONY_SET_CLOCK=true, local_network, PROXY_MODE=iptables, CLUSTER_STATE=existing, and
/// containerd's root, snapshotter, sandbox image, insecure registries and docker.io mirrors), `one-lb`
/// (10 for a single ex_lb host).
pub struct Rendered {
    pub root: PathBuf,
    /// A real network interface of this machine for keepalived configs (`keepalived -t`
    /// refuses an interface that does not exist); `None` when the machine has none but `lo`.
    pub iface: Option<String>,
    /// What `ezk render … -e EX_LB_IMPL=envoy` said (it must refuse).
    pub envoy: (i32, String),
}

impl Rendered {
    pub fn variant(&self, v: &str) -> PathBuf {
        self.root.join(v)
    }

    /// Every rendered file whose host path ends with `suffix`, in every variant.
    pub fn files(&self, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.root, &mut |p| {
            if p.to_string_lossy().ends_with(suffix) {
                out.push(p.to_path_buf());
            }
        });
        out.sort();
        out
    }

    /// Every host directory (`<variant>/<host>`).
    pub fn host_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for v in read_dir(&self.root) {
            out.extend(read_dir(&v).into_iter().filter(|h| h.is_dir()));
        }
        out
    }

    pub fn read(&self, variant: &str, host: &str, path: &str) -> String {
        let p = self
            .variant(variant)
            .join(host)
            .join(path.trim_start_matches('/'));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// Render once for the whole test binary (a failure is reported by every test, made once).
pub fn rendered() -> &'static Rendered {
    static R: OnceLock<Result<Rendered, String>> = OnceLock::new();
    let r = R.get_or_init(|| {
        std::panic::catch_unwind(render_all).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "render failed".into())
        })
    });
    match r {
        Ok(r) => r,
        Err(e) => panic!("rendering the roles failed:\n{e}"),
    }
}

fn render_all() -> Rendered {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("roles-validate");
    let home = base.join("home");
    let _ = std::fs::remove_dir_all(home.join("clusters"));
    let root = base.join("render");
    let _ = std::fs::remove_dir_all(&root);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    let demo = home.join("clusters/demo");
    std::fs::create_dir_all(&demo).unwrap();
    std::fs::copy(repo.join(LAB5_HOSTS), demo.join("hosts")).unwrap();
    std::fs::copy(
        repo.join("inventory-examples/config.yml"),
        demo.join("config.yml"),
    )
    .unwrap();
    // A single ex_lb host: keepalived has no VRRP peer there.
    let one = home.join("clusters/one-lb");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::write(
        one.join("hosts"),
        "[etcd]\n198.18.9.11\n[kube_master]\n198.18.9.11\n[kube_node]\n198.18.9.11\n\
         [ex_lb]\n198.18.9.12 LB_ROLE=master EX_APISERVER_VIP=198.18.9.250 EX_APISERVER_PORT=8443\n\
         [chrony]\n[all:vars]\nCONTAINER_RUNTIME=\"containerd\"\nCLUSTER_NETWORK=\"calico\"\n\
         SERVICE_CIDR=\"198.19.0.0/17\"\nCLUSTER_CIDR=\"198.19.128.0/17\"\nK8S_VER=\"lab-debian\"\nINSTALL_CRICTL=false\nk8s_nodename=''\n",
    )
    .unwrap();
    std::fs::copy(
        repo.join("inventory-examples/config.yml"),
        one.join("config.yml"),
    )
    .unwrap();

    // Every binary and image the steps push comes from the store: the lab-debian set, through
    // apt (its Kubernetes from this machine's build cache), kept in $CARGO_TARGET_TMPDIR between
    // runs.
    ezk_ok(&home, &["download", "demo", "--from-apt"]);

    let iface = real_iface();
    let lb_if = format!("LB_IF={}", iface.as_deref().unwrap_or("eth0"));
    let out = |v: &str| root.join(v).to_string_lossy().into_owned();
    ezk_ok(&home, &["render", "demo", "all", "--out", &out("default")]);
    ezk_ok(
        &home,
        &[
            "render",
            "demo",
            "10",
            "--out",
            &out("nginx"),
            "-e",
            "EX_LB_IMPL=nginx",
        ],
    );
    // Typed lists (registries) come from a YAML file, as users pass them (-e @file).
    let vars_file = base.join("containerd-vars.yml");
    std::fs::write(
        &vars_file,
        "ENABLE_MIRROR_REGISTRY: true\n\
         DOCKER_IO_MIRRORS: [\"https://mirror-a.example.test\", \"https://mirror-b.example.test\"]\n\
         INSECURE_REG: [\"http://reg.example.test:5000\", \"https://harbor.example.test\", \"https://registry.k8s.io\"]\n",
    )
    .unwrap();
    let containerd_vars = format!("@{}", vars_file.display());
    let opts = [
        "-e",
        &lb_if,
        "-e",
        "ETCD_WAL_DIR=/var/lib/etcd-wal",
        "-e",
        "CHRONY_SET_CLOCK=true",
        "-e",
        "local_network=198.18.9.0/24",
        "-e",
        "PROXY_MODE=iptables",
        "-e",
        "CLUSTER_STATE=existing",
        "-e",
        "CONTAINERD_ROOT_DIR=/data/containerd",
        "-e",
        "CONTAINERD_SNAPSHOTTER=native",
        "-e",
        "SANDBOX_IMAGE=reg.example.test:5000/pause:3.10",
        "-e",
        "CONTAINERD_RESTRICT_OOM_SCORE_ADJ=false",
        "-e",
        "IMAGE_DELIVERY=registry",
        "-e",
        &containerd_vars,
    ];
    let mut args = vec!["render", "demo", "all", "--out"];
    let o = out("options");
    args.push(&o);
    args.extend(opts);
    ezk_ok(&home, &args);
    ezk_ok(&home, &["render", "one-lb", "10", "--out", &out("one-lb")]);
    let envoy_out = base.join("envoy").to_string_lossy().into_owned();
    let envoy = ezk(
        &home,
        &[
            "render",
            "demo",
            "10",
            "--out",
            &envoy_out,
            "-e",
            "EX_LB_IMPL=envoy",
        ],
    );
    let envoy = (envoy.code, envoy.text());
    Rendered { root, iface, envoy }
}

/// A tool of this machine, or `None` after saying which check is skipped and how to get it.
pub fn tool(name: &str, check: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED {check}: `{name}` is not installed on this machine (tests/deps.sh installs it)"
        );
    }
    found
}

/// Run a tool; `Err(output)` unless it exits 0 *and* prints nothing on stderr (systemd-analyze
/// and chronyd report unknown keys as warnings with exit code 0).
pub fn quiet_ok(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && err.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{err}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// A non-loopback interface of this machine that can carry VRRP (multicast flag).
fn real_iface() -> Option<String> {
    let mut names: Vec<PathBuf> = read_dir(Path::new("/sys/class/net"));
    names.sort();
    names.into_iter().find_map(|p| {
        let name = p.file_name()?.to_string_lossy().into_owned();
        let flags = std::fs::read_to_string(p.join("flags")).ok()?;
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
        (name != "lo" && flags & 0x1000 != 0).then_some(name)
    })
}

pub fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every regular file or symlink below `dir`.
pub fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for p in read_dir(dir) {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// `<variant>/<host>/<path>` of a rendered file, for messages.
pub fn label(r: &Rendered, p: &Path) -> String {
    p.strip_prefix(&r.root).unwrap_or(p).display().to_string()
}
