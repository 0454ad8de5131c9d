//! A PKI laid out as kubeasz 3.x leaves it in `clusters/<name>/ssl/`, made with the real
//! openssl binary from what kubeasz's cfssl requests say (not from its files): one RSA 2048
//! CA, `CN=kubernetes-ca`, subject `C=CN, ST=HangZhou, L=XS, O=k8s, OU=System`; every leaf
//! signed by it with the `kubernetes` profile (signing, key encipherment, server and client
//! auth), keys in PKCS#1 ("RSA PRIVATE KEY") as cfssljson writes them.

use std::path::Path;
use std::process::Command;

/// kubeasz's subject prefix: its CSRs' `names` block.
const NAMES: &str = "/C=CN/ST=HangZhou/L=XS/O=k8s/OU=System";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `ca.pem` + `ca-key.pem` in `dir` (created if needed).
pub fn ca(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    openssl(dir, &["genrsa", "-traditional", "-out", "ca-key.pem", "2048"]);
    let subj = format!("{NAMES}/CN=kubernetes-ca");
    openssl(dir, &["req", "-x509", "-new", "-key", "ca-key.pem", "-subj", &subj, "-days", "36500", "-config", "ca.cnf", "-extensions", "v3", "-out", "ca.pem"]);
    std::fs::remove_file(dir.join("ca.cnf")).unwrap();
}

/// `<stem>.pem` + `<stem>-key.pem` signed by the `ca.pem` in `dir`: subject `O=<org or k8s>,
/// CN=<cn>`, these SANs ("IP:…", "DNS:…"), valid `days`.
pub fn leaf(dir: &Path, stem: &str, cn: &str, org: Option<&str>, sans: &[String], days: u32) {
    let key = format!("{stem}-key.pem");
    openssl(dir, &["genrsa", "-traditional", "-out", &key, "2048"]);
    let subj = match org {
        Some(o) => format!("/C=CN/ST=HangZhou/L=XS/O={o}/OU=System/CN={cn}"),
        None => format!("{NAMES}/CN={cn}"),
    };
    let csr = format!("{stem}.csr");
    openssl(dir, &["req", "-new", "-key", &key, "-subj", &subj, "-out", &csr]);
    let mut ext = String::from(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nauthorityKeyIdentifier=keyid\n",
    );
    if !sans.is_empty() {
        ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
    }
    let extfile = format!("{stem}.ext");
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let days = days.to_string();
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-set_serial", &format!("0x{:x}", rand_serial()), "-days", &days, "-extfile", &extfile, "-out", &format!("{stem}.pem")]);
    std::fs::remove_file(dir.join(&csr)).unwrap();
    std::fs::remove_file(dir.join(&extfile)).unwrap();
}

fn rand_serial() -> u128 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    (t ^ (std::process::id() as u128) << 64) & ((1u128 << 120) - 1)
}

/// What kubeasz's 01 (deploy) and 02 (etcd) leave in ssl/ for these etcd members and masters:
/// the CA; `etcd.pem` (CN etcd, every member's address and 127.0.0.1); `kubernetes.pem` (the
/// apiserver's, which it also presents to etcd as a client: 127.0.0.1, the masters, the
/// service IP 10.68.0.1, kubernetes.default.svc.cluster.local and its short forms); `admin.pem`
/// (CN admin, O system:masters).
pub fn ssl(dir: &Path, etcd: &[&str], masters: &[&str]) {
    ssl_for(dir, etcd, masters, "10.68.0.1", &[])
}

/// As `ssl`, with `kubernetes.pem` naming `svc_ip` (the first address of SERVICE_CIDR, as
/// kubeasz derives it) instead of the example config's 10.68.0.1, and `cert_hosts`
/// (config.yml's MASTER_CERT_HOSTS: addresses or names).
pub fn ssl_for(dir: &Path, etcd: &[&str], masters: &[&str], svc_ip: &str, cert_hosts: &[&str]) {
    ca(dir);
    let ips = |list: &[&str]| list.iter().map(|i| format!("IP:{i}")).collect::<Vec<_>>();
    let mut etcd_sans = ips(etcd);
    etcd_sans.push("IP:127.0.0.1".into());
    leaf(dir, "etcd", "etcd", None, &etcd_sans, 36500);
    let mut api = vec!["IP:127.0.0.1".to_string()];
    api.extend(ips(masters));
    api.push(format!("IP:{svc_ip}"));
    for h in cert_hosts {
        let kind = if h.parse::<std::net::IpAddr>().is_ok() { "IP" } else { "DNS" };
        api.push(format!("{kind}:{h}"));
    }
    for d in ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster", "kubernetes.default.svc.cluster.local"] {
        api.push(format!("DNS:{d}"));
    }
    leaf(dir, "kubernetes", "kubernetes", None, &api, 36500);
    leaf(dir, "admin", "admin", Some("system:masters"), &[], 36500);
}

/// What kubeasz's 01 (deploy) and 04 (kube-master) add in ssl/ for the control plane: the
/// controller-manager's and the scheduler's client certificates (CN and O both
/// `system:kube-controller-manager` / `system:kube-scheduler`) and the aggregator's
/// (`aggregator-proxy.pem`, CN aggregator).
pub fn control_plane(dir: &Path) {
    for who in ["kube-controller-manager", "kube-scheduler"] {
        let id = format!("system:{who}");
        leaf(dir, who, &id, Some(&id), &[], 36500);
    }
    leaf(dir, "aggregator-proxy", "aggregator", None, &[], 36500);
}
