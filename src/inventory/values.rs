//! What each known variable becomes on a host, and the check that goes with it: a path is
//! written into unit files and command lines and some are deleted by `ezk destroy`, a port is
//! listened on next to other services, a name becomes a DNS name or a certificate SAN. The
//! checks are pure (value in, problem out); `validate` walks every host's variables through
//! them and adds file:line. Role defaults get the same checks (`validate::role_defaults`).
//!
//! The SSH settings that need the deploy machine (key files, jump hosts) are checked where the
//! connection is built, `session::check_connections`.
//!
//! One file because it is one table: each known variable's use next to its pure check, read side by
//! side (a quarter of the file is their tests); split by kind, the table `validate` walks would be
//! scattered.

use std::net::IpAddr;

use minijinja::Value;
use minijinja::value::ValueKind;

use crate::addr;

/// What a variable becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A path on the hosts (or, for `base_dir` and `cluster_dir`, the deploy machine).
    Path { empty_ok: bool, removed: Removed },
    /// A TCP port, 1-65535.
    Port,
    /// `LOW-HIGH`, two ports (NODE_PORT_RANGE).
    PortRange,
    /// An SSH login name.
    User,
    /// A DNS domain (RFC 1123, lower case).
    Domain,
    /// A list (or comma-separated string) of DNS names and IP addresses: certificate SANs.
    NamesOrIps,
    /// A list of NTP servers: host names or IP addresses.
    Hosts,
    /// A list of registry URLs `http(s)://host[:port]`, each also a directory name.
    Registries,
    /// A list of mirror URLs `http(s)://host[:port][/path]`.
    Mirrors,
    /// A network interface name; empty: detected on the host.
    Interface,
    /// An IP address (a listen address).
    Ip,
    /// A whole number within bounds.
    Int { min: i64, max: i64 },
}

/// What `ezk destroy` does with a path (the clean-* roles; a test in this file keeps the list
/// and the roles in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    No,
    /// The path itself is removed, recursively.
    Itself,
    /// Its directory is removed (a log file whose directory goes with it).
    Parent,
}

/// Paths `ezk destroy` removes, and whether they may be empty (a feature turned off).
const REMOVED_PATHS: &[(&str, bool)] = &[
    ("ca_dir", false),
    ("ETCD_DATA_DIR", false),
    ("ETCD_WAL_DIR", true),
    ("CONTAINERD_CONFIG_DIR", false),
    ("CONTAINERD_ROOT_DIR", false),
    ("CONTAINERD_STORAGE_DIR", false),
    ("CONTAINERD_STATE_DIR", false),
    ("KUBELET_ROOT_DIR", false),
    ("KUBE_LB_DIR", false),
    ("LOCAL_REGISTRY_DIR", false),
];

/// Paths that must be set.
const REQUIRED_PATHS: &[&str] = &["bin_dir", "base_dir", "cluster_dir", "CHRONY_CONF"];

/// The kind of variable `name`, when ezk knows what it becomes.
pub fn kind_of(name: &str) -> Option<Kind> {
    if let Some((_, empty_ok)) = REMOVED_PATHS.iter().find(|(n, _)| *n == name) {
        return Some(Kind::Path {
            empty_ok: *empty_ok,
            removed: Removed::Itself,
        });
    }
    let path = |empty_ok| {
        Some(Kind::Path {
            empty_ok,
            removed: Removed::No,
        })
    };
    let int = |min, max| Some(Kind::Int { min, max });
    match name {
        "KUBE_APISERVER_AUDIT_LOG" => Some(Kind::Path {
            empty_ok: false,
            removed: Removed::Parent,
        }),
        n if REQUIRED_PATHS.contains(&n) => path(false),
        "HARBOR_PATH" => path(true),
        // Set by `ezk restore` itself to a directory of this machine (under the home, which may
        // be relative): read by the `copy` module, never written into a command.
        "ETCD_RESTORE_DIR" => None,
        "ansible_port" | "ansible_ssh_port" => Some(Kind::Port),
        "NODE_PORT_RANGE" => Some(Kind::PortRange),
        "ansible_user" | "ansible_ssh_user" => Some(Kind::User),
        "CLUSTER_DNS_DOMAIN" | "HARBOR_DOMAIN" => Some(Kind::Domain),
        "MASTER_CERT_HOSTS" => Some(Kind::NamesOrIps),
        "ntp_servers" => Some(Kind::Hosts),
        "INSECURE_REG" => Some(Kind::Registries),
        "DOCKER_IO_MIRRORS" => Some(Kind::Mirrors),
        "LB_IF" | "HOST_GW_BRIDGE" => Some(Kind::Interface),
        "EX_LB_BIND" => Some(Kind::Ip),
        // VRRP: a virtual router id is 1-255, an advert interval 1-255 s.
        "ROUTER_ID" | "LB_ADVERT_INT" => int(1, 255),
        "EX_LB_MAXCONN" => int(1, 10_000_000),
        "ETCD_SNAPSHOT_COUNT"
        | "ETCD_MAX_REQUEST_BYTES"
        | "ETCD_QUOTA_BACKEND_BYTES"
        | "ETCD_HEALTH_TIMEOUT" => int(1, i64::MAX),
        n if n.ends_with("_DIR") || n.ends_with("_dir") => path(true),
        n if n.ends_with("_PORT") => Some(Kind::Port),
        _ => None,
    }
}

/// What is wrong with a value, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub msg: String,
    pub fix: String,
}

fn problem(msg: impl Into<String>, fix: impl Into<String>) -> Option<Problem> {
    Some(Problem {
        msg: msg.into(),
        fix: fix.into(),
    })
}

/// Check the rendered value `v` of variable `name`, of kind `kind`. `msg` starts with what
/// the value is (`ETCD_DATA_DIR "/var"`); the caller adds where and for which host.
pub fn check(name: &str, kind: Kind, v: &Value) -> Option<Problem> {
    match kind {
        Kind::Path { empty_ok, removed } => path(name, &text(v)?, empty_ok, removed),
        Kind::Port => port(name, v),
        // Worded as `validate::cluster_vars` says it for the first host: one report, not two.
        Kind::PortRange => {
            let s = text(v)?;
            port_range(&s).is_none().then(|| Problem {
                msg: format!("{name} {s:?} is not a port range"),
                fix: "write it as LOW-HIGH, e.g. 30000-32767".into(),
            })
        }
        Kind::User => user(name, &text(v)?),
        Kind::Domain => {
            let s = text(v)?;
            (!s.is_empty() && !addr::is_dns_name(&s)).then(|| Problem {
                msg: format!("{name} {s:?} is not a valid DNS domain"),
                fix: "use lower-case letters, digits, '-' and '.', each label starting and ending \
                      with a letter or digit and at most 63 long (e.g. cluster.local)"
                    .into(),
            })
        }
        Kind::NamesOrIps => each(name, v, |s| {
            (s.parse::<IpAddr>().is_err() && !addr::is_dns_name(s)).then(|| {
                format!("{s:?} is neither an IP address nor a DNS name (lower case, no '_' or '*')")
            })
        })
        .map(|msg| Problem {
            msg,
            fix: format!("list only IP addresses and lower-case DNS names in {name}, e.g. [\"203.0.113.10\", \"k8s.example.test\"]"),
        }),
        Kind::Hosts => each(name, v, |s| {
            (s.parse::<IpAddr>().is_err() && !addr::is_hostname(s))
                .then(|| format!("{s:?} is not an IP address or host name"))
        })
        .map(|msg| Problem { msg, fix: format!("list host names or IP addresses in {name}, e.g. [\"pool.ntp.org\"]") }),
        Kind::Registries => each(name, v, |s| url(s, false)).map(|msg| Problem {
            msg,
            fix: format!("write each entry of {name} as scheme://host[:port], e.g. \"http://198.51.100.5:5000\""),
        }),
        Kind::Mirrors => each(name, v, |s| url(s, true)).map(|msg| Problem {
            msg,
            fix: format!("write each entry of {name} as https://host[:port][/path], e.g. \"https://mirror.example.test\""),
        }),
        Kind::Interface => {
            let s = text(v)?;
            (!s.is_empty() && !addr::is_interface_name(&s)).then(|| Problem {
                msg: format!("{name} {s:?} is not a network interface name"),
                fix: format!("write the interface's name as `ip link` shows it (at most 15 characters, e.g. eth0), or leave {name} empty"),
            })
        }
        Kind::Ip => {
            let s = text(v)?;
            s.parse::<IpAddr>().is_err().then(|| Problem {
                msg: format!("{name} {s:?} is not an IP address"),
                fix: format!("set {name} to an address of the host, or 0.0.0.0 for all"),
            })
        }
        Kind::Int { min, max } => {
            let n = integer(v);
            (!n.is_some_and(|n| (min..=max).contains(&n))).then(|| Problem {
                msg: format!("{name} {} is not a whole number from {min} to {max}", shown(v)),
                fix: format!("write {name} as a plain number, e.g. {name}={min}"),
            })
        }
    }
}

/// A string value as text; numbers as their digits; None for lists and maps (reported by the
/// caller's kind when that matters), null and undefined.
fn text(v: &Value) -> Option<String> {
    match v.kind() {
        ValueKind::String | ValueKind::Number | ValueKind::Bool => Some(v.to_string()),
        _ => None,
    }
}

fn shown(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => v.to_string(),
    }
}

/// A port number as written (a number, or a string of digits without a leading zero).
pub fn as_port(v: &Value) -> Option<u16> {
    integer(v)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|p| *p > 0)
}

fn integer(v: &Value) -> Option<i64> {
    if v.kind() == ValueKind::Number {
        return i64::try_from(v.clone()).ok();
    }
    let s = v.as_str()?;
    // Digits only: "+1", " 1", "0x10", "08" are not written the same by every reader.
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

/// Items of a list, or of a comma-separated string (how the PKI reads MASTER_CERT_HOSTS);
/// the first item's problem.
fn each(name: &str, v: &Value, bad: impl Fn(&str) -> Option<String>) -> Option<String> {
    let items: Vec<String> = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable => v.try_iter().ok()?.map(|i| i.to_string()).collect(),
        ValueKind::String => v
            .to_string()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        ValueKind::None | ValueKind::Undefined => return None,
        _ => return Some(format!("{name} must be a list, got {v}")),
    };
    items
        .iter()
        .find_map(|i| bad(i).map(|m| format!("{name}: {m}")))
}

/// A private key file as `ssh -i` reads it (the path as the connection has it, `~/`
/// expanded): there, a readable regular file, and not readable by others (ssh ignores a key
/// whose owner is the user and that group or others can read).
pub fn key_file(name: &str, path: &std::path::Path) -> Option<Problem> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return problem(
                format!("{name} {shown}: {}", io_reason(&e)),
                format!(
                    "point {name} at the private key this machine logs in with (e.g. ~/.ssh/id_ed25519)"
                ),
            );
        }
    };
    if !meta.is_file() {
        return problem(
            format!("{name} {shown} is not a file"),
            format!("point {name} at the private key file itself"),
        );
    }
    if let Err(e) = std::fs::File::open(path) {
        return problem(
            format!("{name} {shown} cannot be read: {}", io_reason(&e)),
            format!("run ezk as the user who owns {shown}, or make it readable by that user only"),
        );
    }
    let mode = meta.mode() & 0o777;
    let mine = meta.uid() == current_uid();
    if mode & 0o004 != 0 || (mine && mode & 0o077 != 0) {
        return problem(
            format!(
                "{name} {shown} can be read by {} (mode {mode:04o}): ssh ignores such a key",
                if mode & 0o004 != 0 {
                    "everyone"
                } else {
                    "its group"
                }
            ),
            format!("chmod 600 {shown}"),
        );
    }
    None
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The uid ezk runs as (the owner of files it creates).
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The process's own /proc entry belongs to its (real) user: no libc call needed.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// The ssh jump host(s) of an `ansible_ssh_common_args` ProxyJump (`a,b`: one hop after the
/// other): what is wrong with the first bad hop.
pub fn jump(name: &str, spec: &str) -> Option<Problem> {
    let (hop, bad) = spec
        .split(',')
        .find_map(|hop| Some((hop, addr::jump_problem(hop)?)))?;
    problem(
        format!("{name}: jump host {hop:?}: {bad}"),
        "write it as -o ProxyJump=[user@]host[:port] (several hops separated by commas)",
    )
}

fn url(s: &str, path_ok: bool) -> Option<String> {
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return Some(format!("{s:?} does not start with http:// or https://"));
    };
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() && !path_ok {
        return Some(format!(
            "{s:?} has a path; a registry is scheme://host[:port]"
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~/".contains(*c)))
    {
        return Some(format!("{s:?} has {c:?} in its path"));
    }
    addr::jump_problem(hostport).map(|_| format!("{s:?}: {hostport:?} is not host[:port]"))
}

fn port(name: &str, v: &Value) -> Option<Problem> {
    as_port(v).is_none().then(|| Problem {
        msg: format!("{name} {} is not a port number (1-65535)", shown(v)),
        fix: format!(
            "write {name} as a whole number from 1 to 65535 (e.g. {name}={})",
            example_port(name)
        ),
    })
}

fn example_port(name: &str) -> u16 {
    LISTENERS
        .iter()
        .find(|l| l.var == Some(name))
        .map_or(22, |l| l.default)
}

fn user(name: &str, s: &str) -> Option<Problem> {
    if s.is_empty() {
        return problem(
            format!("{name} is empty"),
            format!(
                "set {name} to the SSH login (e.g. {name}=root), or remove it to log in as root"
            ),
        );
    }
    let ok = s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    (!ok).then(|| Problem {
        msg: format!("{name} {s:?} is not a user name"),
        fix: "use the login as the host knows it: letters, digits, '.', '_' and '-', at most 32"
            .into(),
    })
}

/// Characters a path may hold: nothing a shell, a systemd unit, a PATH list or a config
/// file reads as syntax.
fn path_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._-+@".contains(c)
}

/// Directories of the OS itself: deleting one breaks the host.
const SYSTEM_DIRS: &[&str] = &[
    "/etc/default",
    "/etc/ssl",
    "/etc/systemd",
    "/run/systemd",
    "/run/user",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/local/sbin",
    "/usr/sbin",
    "/usr/share",
    "/usr/src",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// Linux's PATH_MAX counts the final NUL.
const PATH_MAX: usize = 4096;
const NAME_MAX: usize = 255;

fn path(name: &str, s: &str, empty_ok: bool, removed: Removed) -> Option<Problem> {
    let what = format!("{name} {s:?}");
    if s.is_empty() {
        return (!empty_ok).then(|| Problem {
            msg: format!("{name} is empty"),
            fix: format!("set {name} to an absolute path"),
        });
    }
    if let Some(c) = s.chars().find(|c| !path_char_ok(*c)) {
        let (c, why) = if c.is_whitespace() || c.is_control() {
            (
                format!("{c:?}"),
                "it would split the command lines and unit files the path is written into",
            )
        } else {
            (
                format!("`{c}`"),
                "a shell or systemd would read it as syntax in the command lines and unit files the path is written into",
            )
        };
        return problem(
            format!("{what} contains {c}: {why}"),
            format!(
                "use only letters, digits and . _ - + @ / in {name} (e.g. {})",
                example_path(name)
            ),
        );
    }
    if !s.starts_with('/') {
        return problem(
            format!("{what} is not an absolute path"),
            format!("start {name} with /"),
        );
    }
    let parts: Vec<&str> = s.split('/').skip(1).collect();
    let normal: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| !p.is_empty() && *p != ".")
        .fold(Vec::new(), |mut acc, p| {
            if p == ".." {
                acc.pop();
            } else {
                acc.push(p);
            }
            acc
        });
    let normalised = format!("/{}", normal.join("/"));
    if normalised != s {
        return problem(
            format!("{what} is not written in its normal form (no //, /./, /../ or trailing /)"),
            format!("write {name}={normalised}"),
        );
    }
    if s == "/" {
        return problem(
            format!("{what} is the root directory"),
            format!(
                "set {name} to a directory of its own, e.g. {}",
                example_path(name)
            ),
        );
    }
    if s.len() >= PATH_MAX {
        return problem(
            format!(
                "{name} is {} bytes long; Linux paths are shorter than {PATH_MAX}",
                s.len()
            ),
            format!("shorten {name}"),
        );
    }
    if let Some(p) = normal.iter().find(|p| p.len() > NAME_MAX) {
        return problem(
            format!(
                "{name} has a part of {} bytes; a file name is at most {NAME_MAX}",
                p.len()
            ),
            format!("shorten {name}"),
        );
    }
    let gone = match removed {
        Removed::No => return None,
        Removed::Itself => s.to_string(),
        Removed::Parent => format!("/{}", normal[..normal.len() - 1].join("/")),
    };
    let why = if gone.matches('/').count() < 2 {
        "lies directly under /"
    } else if SYSTEM_DIRS.contains(&gone.as_str()) {
        "is a directory of the system"
    } else {
        return None;
    };
    let whose = if removed == Removed::Parent {
        format!("the directory of {what}")
    } else {
        what
    };
    problem(
        format!("{whose} is deleted by `ezk destroy`, and {gone} {why}"),
        format!(
            "give {name} a directory of its own, at least two levels below / (e.g. {})",
            example_path(name)
        ),
    )
}

fn example_path(name: &str) -> &'static str {
    match name {
        "ETCD_DATA_DIR" | "ETCD_WAL_DIR" => "/var/lib/etcd",
        "ca_dir" => "/etc/kubernetes/ssl",
        "KUBE_APISERVER_AUDIT_LOG" => "/var/log/kubernetes/audit.log",
        "KUBELET_ROOT_DIR" => "/var/lib/kubelet",
        "bin_dir" => "/opt/kube/bin",
        "base_dir" => "/etc/kubeasz",
        "CHRONY_CONF" => "/etc/chrony/chrony.conf",
        "CONTAINERD_STATE_DIR" => "/run/containerd",
        "CONTAINERD_CONFIG_DIR" => "/etc/containerd",
        n if n.starts_with("CONTAINERD_") => "/var/lib/containerd",
        _ => "/var/lib/<name>",
    }
}

/// Who listens on a host: a service of the hosts of `groups` on `var`'s port (or `default`;
/// fixed ports have no variable), bound to every address, the host's own, or loopback.
#[derive(Debug)]
pub struct Listener {
    pub service: &'static str,
    pub groups: &'static [&'static str],
    pub var: Option<&'static str>,
    pub default: u16,
    pub bind: Bind,
    /// Unset, the port is this variable's (kube-lb listens on SECURE_PORT by default).
    pub follows: Option<&'static str>,
    /// Only where each (variable, value, unset) holds: the variable has that value, or is
    /// unset and `unset` is true (its role default is that value; a test checks). A network
    /// plugin's agents, a backend's daemon.
    pub when: &'static [(&'static str, &'static str, bool)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// Every address of the host.
    All,
    /// The inventory address.
    Host,
    Loopback,
    /// Loopback and the host address.
    HostAndLoopback,
    /// The address in EX_LB_BIND (0.0.0.0: every address).
    ExLbBind,
}

const K8S: &[&str] = &["kube_master", "kube_node"];

/// Not an inventory group: the one host that runs the cluster's image registry
/// (`IMAGE_DELIVERY: registry`, `LOCAL_REGISTRY_HOST`), for its listener.
pub const REGISTRY_HOST: &str = "(LOCAL_REGISTRY_HOST)";

/// Every listener the roles set up, with the addresses their configs bind (defaults as in
/// their defaults.yml; a test checks). A role that listens on a new port adds a row.
pub const LISTENERS: &[Listener] = &[
    Listener {
        service: "sshd",
        groups: &["all"],
        var: Some("ansible_port"),
        default: 22,
        bind: Bind::All,
        follows: None,
        when: &[],
    },
    Listener {
        service: "etcd clients",
        groups: &["etcd"],
        var: Some("ETCD_CLIENT_PORT"),
        default: 2379,
        bind: Bind::HostAndLoopback,
        follows: None,
        when: &[],
    },
    Listener {
        service: "etcd peers",
        groups: &["etcd"],
        var: Some("ETCD_PEER_PORT"),
        default: 2380,
        bind: Bind::Host,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-apiserver",
        groups: &["kube_master"],
        var: Some("SECURE_PORT"),
        default: 6443,
        bind: Bind::Host,
        follows: None,
        when: &[],
    },
    Listener {
        service: "the ex_lb load balancer",
        groups: &["ex_lb"],
        var: Some("EX_APISERVER_PORT"),
        default: 8443,
        bind: Bind::ExLbBind,
        follows: None,
        when: &[],
    },
    Listener {
        service: "harbor",
        groups: &["harbor"],
        var: Some("HARBOR_TLS_PORT"),
        default: 8443,
        bind: Bind::All,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-lb",
        groups: K8S,
        var: Some("KUBE_LB_PORT"),
        default: 6443,
        bind: Bind::Loopback,
        follows: Some("SECURE_PORT"),
        when: &[],
    },
    Listener {
        service: "kubelet",
        groups: K8S,
        var: None,
        default: 10250,
        bind: Bind::Host,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kubelet healthz",
        groups: K8S,
        var: None,
        default: 10248,
        bind: Bind::Loopback,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-proxy metrics",
        groups: K8S,
        var: None,
        default: 10249,
        bind: Bind::Loopback,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-proxy healthz",
        groups: K8S,
        var: None,
        default: 10256,
        bind: Bind::Loopback,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-controller-manager",
        groups: &["kube_master"],
        var: None,
        default: 10257,
        bind: Bind::Loopback,
        follows: None,
        when: &[],
    },
    Listener {
        service: "the cluster's image registry",
        groups: &[REGISTRY_HOST],
        var: Some("LOCAL_REGISTRY_PORT"),
        default: 5000,
        bind: Bind::All,
        follows: None,
        when: &[],
    },
    Listener {
        service: "kube-scheduler",
        groups: &["kube_master"],
        var: None,
        default: 10259,
        bind: Bind::Loopback,
        follows: None,
        when: &[],
    },
    // The image-based network plugins' agents (hostNetwork pods on every node).
    Listener {
        service: "calico's BGP daemon (bird)",
        groups: K8S,
        var: None,
        default: 179,
        bind: Bind::All,
        follows: None,
        when: &[("CLUSTER_NETWORK", "calico", false), ("CALICO_NETWORKING_BACKEND", "bird", true)],
    },
    Listener {
        service: "calico-node's health endpoint (felix)",
        groups: K8S,
        var: None,
        default: 9099,
        bind: Bind::Loopback,
        follows: None,
        when: &[("CLUSTER_NETWORK", "calico", false)],
    },
    Listener {
        service: "kube-router's BGP",
        groups: K8S,
        var: None,
        default: 179,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-router", false)],
    },
    Listener {
        service: "kube-router's health endpoint",
        groups: K8S,
        var: None,
        default: 20244,
        bind: Bind::All,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-router", false)],
    },
    // cilium's operator (one replica) may run on any node; kube-ovn's OVN databases and
    // controller on OVN_DB_NODES, every master by default (listed for kube_master).
    Listener {
        service: "cilium-agent's cluster health endpoint",
        groups: K8S,
        var: None,
        default: 4240,
        bind: Bind::All,
        follows: None,
        when: &[("CLUSTER_NETWORK", "cilium", false)],
    },
    Listener {
        service: "cilium-agent's health endpoint",
        groups: K8S,
        var: None,
        default: 9879,
        bind: Bind::Loopback,
        follows: None,
        when: &[("CLUSTER_NETWORK", "cilium", false)],
    },
    Listener {
        service: "cilium-agent's gops",
        groups: K8S,
        var: None,
        default: 9890,
        bind: Bind::Loopback,
        follows: None,
        when: &[("CLUSTER_NETWORK", "cilium", false)],
    },
    Listener {
        service: "cilium-operator's health endpoint",
        groups: K8S,
        var: None,
        default: 9234,
        bind: Bind::Loopback,
        follows: None,
        when: &[("CLUSTER_NETWORK", "cilium", false)],
    },
    Listener {
        service: "cilium-operator's gops",
        groups: K8S,
        var: None,
        default: 9891,
        bind: Bind::Loopback,
        follows: None,
        when: &[("CLUSTER_NETWORK", "cilium", false)],
    },
    Listener {
        service: "kube-ovn's OVN northbound database",
        groups: &["kube_master"],
        var: None,
        default: 6641,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
    Listener {
        service: "kube-ovn's OVN southbound database",
        groups: &["kube_master"],
        var: None,
        default: 6642,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
    Listener {
        service: "kube-ovn's OVN northbound raft",
        groups: &["kube_master"],
        var: None,
        default: 6643,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
    Listener {
        service: "kube-ovn's OVN southbound raft",
        groups: &["kube_master"],
        var: None,
        default: 6644,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
    Listener {
        service: "kube-ovn-controller's health and metrics",
        groups: &["kube_master"],
        var: None,
        default: 10660,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
    Listener {
        service: "kube-ovn-cni's health and metrics",
        groups: K8S,
        var: None,
        default: 10665,
        bind: Bind::Host,
        follows: None,
        when: &[("CLUSTER_NETWORK", "kube-ovn", false)],
    },
];

impl Bind {
    /// The addresses bound, as (every, host, loopback).
    fn covers(self, ex_lb_bind: Option<&str>) -> (bool, bool, bool) {
        match self {
            Bind::All => (true, true, true),
            Bind::Host => (false, true, false),
            Bind::Loopback => (false, false, true),
            Bind::HostAndLoopback => (false, true, true),
            Bind::ExLbBind => {
                // Unset: the role's default, 0.0.0.0.
                let ip = ex_lb_bind.map_or(Ok(IpAddr::from([0, 0, 0, 0])), str::parse);
                match ip {
                    Ok(ip) if ip.is_unspecified() => (true, true, true),
                    Ok(ip) if ip.is_loopback() => (false, false, true),
                    // A specific address (the VIP, or the host's): a clash only with a
                    // wildcard listener or one on the host address.
                    _ => (false, true, false),
                }
            }
        }
    }
}

/// Whether two listeners on one port would collide.
pub fn overlaps(a: Bind, b: Bind, ex_lb_bind: Option<&str>) -> bool {
    let (a, b) = (a.covers(ex_lb_bind), b.covers(ex_lb_bind));
    a.0 || b.0 || (a.1 && b.1) || (a.2 && b.2)
}

/// A `LOW-HIGH` range of ports, as NODE_PORT_RANGE is written.
pub fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    (a > 0 && a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(name: &str, s: &str) -> Option<Problem> {
        check(name, kind_of(name).unwrap(), &Value::from(s))
    }

    #[test]
    fn paths() {
        assert_eq!(path_of("ETCD_DATA_DIR", "/data/etcd"), None);
        assert_eq!(
            path_of("bin_dir", "/usr/local/bin"),
            None,
            "kept by destroy: any directory"
        );
        assert_eq!(path_of("ETCD_WAL_DIR", ""), None, "optional");
        assert!(
            path_of("ETCD_DATA_DIR", "")
                .unwrap()
                .msg
                .contains("is empty")
        );
        let p = path_of("ETCD_DATA_DIR", "/data/my etcd").unwrap();
        assert!(p.msg.contains("contains ' ': it would split"), "{p:?}");
        for bad in [
            "/a;reboot",
            "/a$(x)",
            "/a`x`",
            "/a%n",
            "/a'b",
            "/a\"b",
            "/a\\b",
            "/a:b",
            "/a\nb",
            "/ä",
        ] {
            assert!(path_of("bin_dir", bad).is_some(), "{bad:?}");
        }
        assert!(
            path_of("bin_dir", "opt/kube/bin")
                .unwrap()
                .msg
                .contains("not an absolute path")
        );
        let p = path_of("bin_dir", "/opt//kube/./bin/").unwrap();
        assert_eq!(p.fix, "write bin_dir=/opt/kube/bin");
        assert!(
            path_of("bin_dir", "/")
                .unwrap()
                .msg
                .contains("root directory")
        );
        for gone in ["/var", "/var/lib", "/etc/systemd", "/usr/local", "/data"] {
            let p = path_of("ETCD_DATA_DIR", gone).unwrap();
            assert!(
                p.msg.contains("is deleted by `ezk destroy`"),
                "{gone}: {p:?}"
            );
        }
        let p = path_of("KUBE_APISERVER_AUDIT_LOG", "/var/log/audit.log").unwrap();
        assert!(
            p.msg
                .starts_with("the directory of KUBE_APISERVER_AUDIT_LOG"),
            "{p:?}"
        );
        assert_eq!(
            path_of("KUBE_APISERVER_AUDIT_LOG", "/var/log/kubernetes/audit.log"),
            None
        );
        let long = format!("/{}", "a/".repeat(2100));
        assert!(
            path_of("bin_dir", long.trim_end_matches('/'))
                .unwrap()
                .msg
                .contains("Linux paths are shorter")
        );
        let part = format!("/opt/{}", "a".repeat(256));
        assert!(
            path_of("bin_dir", &part)
                .unwrap()
                .msg
                .contains("a file name is at most 255")
        );
    }

    #[test]
    fn ports_names_and_numbers() {
        let k = |n: &str, v: Value| check(n, kind_of(n).unwrap(), &v);
        assert_eq!(k("SECURE_PORT", Value::from("6443")), None);
        assert_eq!(k("ansible_port", Value::from(2222)), None);
        for bad in [
            Value::from("0"),
            Value::from(65536),
            Value::from("644 3"),
            Value::from("06443"),
            Value::from("+22"),
        ] {
            assert!(k("SECURE_PORT", bad.clone()).is_some(), "{bad}");
        }
        assert!(
            k("ansible_user", Value::from(""))
                .unwrap()
                .msg
                .contains("is empty")
        );
        assert!(k("ansible_user", Value::from("root;id")).is_some());
        assert_eq!(k("CLUSTER_DNS_DOMAIN", Value::from("cluster.local")), None);
        assert!(k("CLUSTER_DNS_DOMAIN", Value::from("Cluster_Local")).is_some());
        let hosts = Value::from(vec!["203.0.113.10", "k8s.example.test"]);
        assert_eq!(k("MASTER_CERT_HOSTS", hosts), None);
        let p = k(
            "MASTER_CERT_HOSTS",
            Value::from(vec!["203.0.113.10", "*.example.test"]),
        )
        .unwrap();
        assert!(p.msg.contains("\"*.example.test\" is neither"), "{p:?}");
        assert!(k("INSECURE_REG", Value::from(vec!["http://reg.local:5000"])).is_none());
        assert!(k("INSECURE_REG", Value::from(vec!["reg.local:5000"])).is_some());
        assert!(
            k(
                "INSECURE_REG",
                Value::from(vec!["http://reg.local/../../etc"])
            )
            .is_some()
        );
        assert!(k("ROUTER_ID", Value::from(0)).is_some());
        assert!(k("EX_LB_MAXCONN", Value::from("4000; x")).is_some());
        assert!(k("LB_IF", Value::from("")).is_none());
        assert!(k("LB_IF", Value::from("eth0 x")).is_some());
    }

    #[test]
    fn listener_overlap() {
        assert!(overlaps(Bind::All, Bind::Loopback, None));
        assert!(!overlaps(Bind::Host, Bind::Loopback, None));
        assert!(overlaps(Bind::ExLbBind, Bind::Host, Some("0.0.0.0")));
        assert!(overlaps(Bind::ExLbBind, Bind::Host, Some("198.51.100.250")));
        assert!(
            overlaps(Bind::ExLbBind, Bind::Loopback, None),
            "EX_LB_BIND defaults to 0.0.0.0"
        );
        assert!(!overlaps(
            Bind::ExLbBind,
            Bind::Loopback,
            Some("198.51.100.250")
        ));
        assert_eq!(port_range("30000-32767"), Some((30000, 32767)));
        assert_eq!(port_range("0-10"), None);
    }

    fn roles_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("roles")
    }

    fn yaml(path: &std::path::Path) -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Every variable whose path a clean role removes is known to be removed (so `ezk check`
    /// refuses a system directory there), and every listener's default is the roles' default.
    #[test]
    fn tables_follow_the_roles() {
        let mut roles: Vec<_> = std::fs::read_dir(roles_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        roles.sort();
        let var = regex_lite::Regex::new(r"\{\{\s*(\w+)\s*(\|\s*dirname\s*)?\}\}").unwrap();
        for role in &roles {
            let Ok(text) = std::fs::read_to_string(role.join("tasks.yml")) else {
                continue;
            };
            let tasks: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for t in tasks.as_sequence().into_iter().flatten() {
                let Some(file) = t.get("file") else { continue };
                if file.get("state").and_then(|s| s.as_str()) != Some("absent") {
                    continue;
                }
                let path = file.get("path").and_then(|p| p.as_str()).unwrap_or("");
                let mut paths = vec![path.to_string()];
                if path.contains("item") {
                    paths = t
                        .get("loop")
                        .and_then(|l| l.as_sequence())
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.as_str())
                        .map(|i| path.replace("{{ item }}", i))
                        .collect();
                }
                for p in paths {
                    // Only a path that is a variable (or its directory) is the inventory's to choose.
                    let Some(c) = var.captures(&p) else { continue };
                    if !p.starts_with("{{") {
                        continue;
                    }
                    let (name, parent) = (&c[1], c.get(2).is_some());
                    let want = if parent {
                        Removed::Parent
                    } else {
                        Removed::Itself
                    };
                    assert!(
                        matches!(kind_of(name), Some(Kind::Path { removed, .. }) if removed == want),
                        "{}: {p} is removed: add {name} to REMOVED_PATHS (values.rs)",
                        role.display()
                    );
                }
            }
        }
        // A listener's condition that holds when its variable is unset: the roles' default
        // is that value.
        for l in LISTENERS {
            for (v, want, _) in l.when.iter().filter(|(_, _, unset)| *unset) {
                let defaults: Vec<String> = roles
                    .iter()
                    .filter(|r| r.join("defaults.yml").exists())
                    .filter_map(|r| yaml(&r.join("defaults.yml")).get(*v).and_then(|d| d.as_str().map(str::to_string)))
                    .collect();
                assert!(!defaults.is_empty() && defaults.iter().all(|d| d == want), "{}: {v} defaults {defaults:?}, want {want}", l.service);
            }
        }
        for l in LISTENERS {
            let Some(v) = l.var else { continue };
            for role in roles.iter().filter(|r| r.join("defaults.yml").exists()) {
                let Some(d) = yaml(&role.join("defaults.yml")).get(v).cloned() else {
                    continue;
                };
                let d = match d {
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::String(s) => s,
                    other => panic!("{v}: {other:?}"),
                };
                if !d.contains("{{") {
                    assert_eq!(d, l.default.to_string(), "{v} in {}", role.display());
                }
            }
        }
    }
}
