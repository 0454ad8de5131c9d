//! `ezk certs` / `ezk kca-renew` as an operator runs them: the real binary on a cluster made
//! by `ezk new` from the shipped multi-node example, judged by openssl and kubectl.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::common::ezk::{ezk, ezk_ok};
use crate::support::{fingerprints, run, verify, x509_text};

/// The shipped multi-node example (inventory-examples/hosts.multi-node, config.yml).
const MASTERS: [&str; 3] = ["198.51.100.11", "198.51.100.12", "198.51.100.13"];
const VIP: &str = "198.51.100.250";
const MASTER_CERT_HOSTS: [&str; 2] = ["IP:203.0.113.10", "DNS:k8s.example.test"];
const NODES: [(&str, &str); 5] = [
    ("master-01", "198.51.100.11"),
    ("master-02", "198.51.100.12"),
    ("master-03", "198.51.100.13"),
    ("worker-01", "198.51.100.21"),
    ("worker-02", "198.51.100.22"),
];

/// `ezk` that must exit 0; its stdout.
fn ok(home: &Path, args: &[&str]) -> String {
    ezk_ok(home, args).stdout
}

/// A fresh home with cluster `demo` from the multi-node example.
fn new_cluster() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    ok(home.path(), &["new", "demo"]);
    home
}

fn ssl(home: &Path) -> std::path::PathBuf {
    home.join("clusters/demo/ssl")
}

/// Table rows by file name: the SANS column split.
fn rows(table: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    table
        .lines()
        .skip(1)
        .filter(|l| l.contains(".pem "))
        .map(|l| {
            let file = l.split_whitespace().next().unwrap().to_string();
            let last = l.split_whitespace().last().unwrap();
            let sans =
                if last.contains(':') && (last.starts_with("IP:") || last.starts_with("DNS:")) {
                    last.split(',').map(str::to_string).collect()
                } else {
                    BTreeSet::new()
                };
            (file, (l.to_string(), sans))
        })
        .collect()
}

fn openssl_sans(cert: &Path) -> BTreeSet<String> {
    let text = x509_text(cert);
    let line = text
        .lines()
        .skip_while(|l| !l.contains("Subject Alternative Name"))
        .nth(1)
        .unwrap_or_default();
    line.split(',')
        .map(|s| s.trim().replace("IP Address:", "IP:"))
        .filter(|s| !s.is_empty())
        .collect()
}

fn set(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

fn apiserver_sans(masters: &[&str]) -> BTreeSet<String> {
    let mut s = set(masters.iter().map(|m| format!("IP:{m}")));
    s.extend(["IP:127.0.0.1", "IP:10.68.0.1", &format!("IP:{VIP}")].map(String::from));
    s.extend(MASTER_CERT_HOSTS.map(String::from));
    for d in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        s.insert(format!("DNS:{d}"));
    }
    s
}

#[test]
fn certs_reports_without_writing_then_issue_gives_every_cert_with_the_example_sans() {
    let home = new_cluster();
    let h = home.path();

    // Reporting alone writes nothing, and says how to issue.
    let o = ezk(h, &["certs", "--local", "demo"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("missing") && o.stdout.contains("ezk certs demo --issue"),
        "{}",
        o.stdout
    );
    assert!(!ssl(h).exists(), "ezk certs without --issue wrote ssl/");

    let issued = ok(h, &["certs", "--local", "demo", "--issue"]);
    assert!(
        issued.contains("created CAs: ca, etcd-ca, front-proxy-ca"),
        "{issued}"
    );
    // No cluster named: the current one (`ezk new` made demo current).
    let table = ok(h, &["certs", "--local"]);
    let r = rows(&table);
    let mut want: BTreeSet<String> = [
        "ca",
        "etcd-ca",
        "front-proxy-ca",
        "etcd",
        "kubernetes",
        "apiserver-etcd-client",
        "apiserver-kubelet-client",
        "aggregator-proxy",
        "admin",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "etcd-client",
    ]
    .map(|s| format!("{s}.pem"))
    .into();
    want.extend(NODES.iter().map(|(n, _)| format!("kubelet-{n}.pem")));
    assert_eq!(r.keys().cloned().collect::<BTreeSet<_>>(), want, "{table}");

    // The apiserver cert: every master, the ex_lb VIP, MASTER_CERT_HOSTS, the service IP and
    // names — in the table and as openssl reads the file.
    let api = apiserver_sans(&MASTERS);
    assert_eq!(r["kubernetes.pem"].1, api, "{table}");
    assert_eq!(openssl_sans(&ssl(h).join("kubernetes.pem")), api);

    // etcd: members named etcd-<host> (kubeasz), every etcd IP and loopback.
    let mut etcd = set(MASTERS
        .iter()
        .flat_map(|m| [format!("IP:{m}"), format!("DNS:etcd-{m}")]));
    etcd.extend(["IP:127.0.0.1", "DNS:localhost"].map(String::from));
    assert_eq!(openssl_sans(&ssl(h).join("etcd.pem")), etcd);

    // One kubelet cert per node, named by K8S_NODENAME (from k8s_nodename).
    for (name, ip) in NODES {
        let file = format!("kubelet-{name}.pem");
        assert_eq!(
            r[&file].1,
            set([format!("IP:{ip}"), format!("DNS:{name}")]),
            "{file}"
        );
        assert!(
            r[&file].0.contains(&format!("CN=system:node:{name}")),
            "{}",
            r[&file].0
        );
        assert!(
            verify(
                &ssl(h).join("ca.pem"),
                &ssl(h).join(&file),
                Some("sslclient")
            )
            .0
        );
    }

    // CLUSTER_NAME / CONTEXT_NAME and the admin server (VIP:EX_APISERVER_PORT) reach kubectl.
    let kc = h.join("clusters/demo/kubectl.kubeconfig");
    let view = |path: &str| {
        let (ok, s) = run(Command::new("kubectl")
            .arg("config")
            .arg("view")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["-o", &format!("jsonpath={path}")]));
        assert!(ok, "{s}");
        s
    };
    assert_eq!(view("{.clusters[0].name}"), "demo");
    assert_eq!(view("{.current-context}"), "context-demo");
    assert_eq!(
        view("{.clusters[0].cluster.server}"),
        format!("https://{VIP}:8443")
    );

    // A second --issue changes nothing.
    let before = fingerprints(&ssl(h));
    let again = ok(h, &["certs", "--local", "demo", "--issue"]);
    assert!(again.contains("issued nothing"), "{again}");
    assert_eq!(fingerprints(&ssl(h)), before);
}

#[test]
fn kca_renew_changes_every_leaf_and_keeps_the_ca_unless_asked() {
    let home = new_cluster();
    let h = home.path();
    ok(h, &["certs", "--local", "demo", "--issue"]);
    let before = fingerprints(&ssl(h));

    let out = ok(h, &["kca-renew", "demo"]);
    assert!(out.contains("reissued 15 certificates"), "{out}");
    let after = fingerprints(&ssl(h));
    for (file, data) in &before {
        let keep = matches!(
            file.as_str(),
            "ca.pem"
                | "ca-key.pem"
                | "etcd-ca.pem"
                | "etcd-ca-key.pem"
                | "etcd-trust.pem"
                | "front-proxy-ca.pem"
                | "front-proxy-ca-key.pem"
                | "sa.key"
                | "sa.pub"
                | "manifest.json"
        );
        if keep && file != "manifest.json" {
            assert_eq!(&after[file], data, "{file} changed without --new-ca");
        } else if file.ends_with(".pem") {
            assert_ne!(&after[file], data, "{file} was not reissued");
        }
    }
    assert!(
        verify(
            &ssl(h).join("ca.pem"),
            &ssl(h).join("kubernetes.pem"),
            Some("sslserver")
        )
        .0
    );
    // The previous set is kept as a backup next to ssl/.
    let backups: Vec<_> = std::fs::read_dir(h.join("clusters/demo"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ssl.bak-"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(fingerprints(&backups[0].path()), before);

    ok(h, &["kca-renew", "--new-ca"]);
    let renewed = fingerprints(&ssl(h));
    assert_ne!(renewed["ca.pem"], after["ca.pem"]);
    assert_ne!(renewed["etcd-ca.pem"], after["etcd-ca.pem"]);
    assert_eq!(
        renewed["sa.key"], before["sa.key"],
        "the service-account key survives renewals"
    );
    assert!(verify(&ssl(h).join("etcd-ca.pem"), &ssl(h).join("etcd.pem"), None).0);
    assert!(
        !verify(
            &backups[0].path().join("ca.pem"),
            &ssl(h).join("admin.pem"),
            None
        )
        .0
    );
}

#[test]
fn adding_a_master_to_the_inventory_reissues_only_the_apiserver_cert() {
    let home = new_cluster();
    let h = home.path();
    ok(h, &["certs", "--local", "demo", "--issue"]);
    let before = fingerprints(&ssl(h));

    let hosts = h.join("clusters/demo/hosts");
    let text = std::fs::read_to_string(&hosts).unwrap();
    let edited = text.replacen(
        "198.51.100.13 k8s_nodename='master-03'\n",
        "198.51.100.13 k8s_nodename='master-03'\n198.51.100.14 k8s_nodename='master-04'\n",
        1,
    );
    assert_ne!(
        edited, text,
        "the example's [kube_master] changed; update this test"
    );
    std::fs::write(&hosts, edited).unwrap();

    let out = ok(h, &["certs", "--local", "demo", "--issue"]);
    assert!(
        out.contains("issued 2: kubernetes, kubelet-master-04"),
        "{out}"
    );
    let after = fingerprints(&ssl(h));
    let changed: BTreeSet<&str> = before
        .keys()
        .filter(|f| after[*f] != before[*f])
        .map(String::as_str)
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from(["kubernetes.pem", "kubernetes-key.pem", "manifest.json"])
    );
    let added: BTreeSet<&str> = after
        .keys()
        .filter(|f| !before.contains_key(*f))
        .map(String::as_str)
        .collect();
    assert_eq!(
        added,
        BTreeSet::from(["kubelet-master-04.pem", "kubelet-master-04-key.pem"]),
        "the new master is also a node"
    );
    let mut masters = MASTERS.to_vec();
    masters.push("198.51.100.14");
    assert_eq!(
        openssl_sans(&ssl(h).join("kubernetes.pem")),
        apiserver_sans(&masters)
    );
}

#[test]
fn a_broken_inventory_is_a_clear_error_and_writes_nothing() {
    let home = new_cluster();
    let h = home.path();
    let hosts = h.join("clusters/demo/hosts");
    let good = std::fs::read_to_string(&hosts).unwrap();
    let cluster = h.join("clusters/demo");
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(&cluster)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };

    // A VIP that is not an address: `ezk check`'s error, with file:line, from both commands.
    std::fs::write(
        &hosts,
        good.replacen(
            "EX_APISERVER_VIP=198.51.100.250",
            "EX_APISERVER_VIP=198.51.100.999",
            1,
        ),
    )
    .unwrap();
    let files = listing();
    for args in [
        &["certs", "--local", "demo", "--issue"][..],
        &["kca-renew", "demo"][..],
    ] {
        let o = ezk(h, args);
        assert_eq!(o.code, 1, "{args:?}: {}{}", o.stdout, o.stderr);
        assert!(
            o.stderr.contains("EX_APISERVER_VIP") && o.stderr.contains("198.51.100.999"),
            "{}",
            o.stderr
        );
        assert!(
            o.stderr.contains(&format!("{}:", hosts.display())),
            "no file:line in {}",
            o.stderr
        );
        assert_eq!(listing(), files, "{args:?} wrote into the cluster dir");
    }

    // A host without an IP: check accepts names, but certificates need the address.
    std::fs::write(
        &hosts,
        good.replacen(
            "198.51.100.22 k8s_nodename",
            "worker-two.example.test k8s_nodename",
            1,
        ),
    )
    .unwrap();
    let o = ezk(h, &["certs", "--local", "demo", "--issue"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("worker-two.example.test") && o.stderr.contains("ansible_host"),
        "{}",
        o.stderr
    );
    assert!(!ssl(h).exists());

    // With certificates issued, a broken inventory leaves them (and makes no backup).
    std::fs::write(&hosts, &good).unwrap();
    ok(h, &["certs", "--local", "demo", "--issue"]);
    let before = fingerprints(&ssl(h));
    let files = listing();
    std::fs::write(
        &hosts,
        good.replacen("[etcd]\n198.51.100.11\n", "[etcd]\n", 1),
    )
    .unwrap();
    let o = ezk(h, &["kca-renew", "demo", "--new-ca"]);
    assert_eq!(o.code, 1, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("etcd group has 2 members"),
        "{}",
        o.stderr
    );
    assert_eq!(fingerprints(&ssl(h)), before);
    assert_eq!(listing(), files);

    // An unknown cluster is named.
    let o = ezk(h, &["certs", "--local", "nosuch"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("nosuch"), "{}", o.stderr);
}
