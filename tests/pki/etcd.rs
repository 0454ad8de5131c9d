//! A real TLS handshake with the issued certificates: Debian's etcd 3.4 (Go's TLS stack, as in
//! kube-apiserver) started on loopback with client-cert auth, peer TLS and no plaintext
//! listener, then etcdctl with good and wrong certificates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{run, spec};
use ezk::pki::Pki;

/// etcd members started by this test; killed by their own pids when dropped (also on panic).
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `n` members on 127.0.0.1 with the cluster's etcd certs; returns them and the client URLs.
fn start_etcd(ssl: &Path, data: &Path, n: usize) -> (Members, Vec<String>) {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let cluster: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect();
    let mut members = Members(Vec::new());
    for (i, (c, p)) in ports.iter().enumerate() {
        let log = std::fs::File::create(data.join(format!("m{i}.log"))).unwrap();
        let f = |name: &str| ssl.join(name);
        let child = Command::new("/usr/bin/etcd")
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                data.join(format!("m{i}")).display()
            ))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=https://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{p}"))
            .arg(format!(
                "--initial-advertise-peer-urls=https://127.0.0.1:{p}"
            ))
            .arg(format!("--initial-cluster={}", cluster.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=ezk-test")
            .arg(format!("--cert-file={}", f("etcd.pem").display()))
            .arg(format!("--key-file={}", f("etcd-key.pem").display()))
            .arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", f("etcd-ca.pem").display()))
            .arg(format!("--peer-cert-file={}", f("etcd.pem").display()))
            .arg(format!("--peer-key-file={}", f("etcd-key.pem").display()))
            .arg("--peer-client-cert-auth")
            .arg(format!(
                "--peer-trusted-ca-file={}",
                f("etcd-ca.pem").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd");
        members.0.push(child);
    }
    (
        members,
        ports
            .iter()
            .map(|(c, _)| format!("https://127.0.0.1:{c}"))
            .collect(),
    )
}

/// etcdctl against `endpoints` with the given CA and client cert (None: no client cert).
fn etcdctl(
    endpoints: &[String],
    ca: &Path,
    client: Option<(&Path, &Path)>,
    args: &[&str],
) -> (bool, String) {
    let mut c = Command::new("/usr/bin/etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s");
    c.arg(format!("--cacert={}", ca.display()));
    if let Some((cert, key)) = client {
        c.arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()));
    }
    run(c.args(args))
}

fn pair(ssl: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        ssl.join(format!("{stem}.pem")),
        ssl.join(format!("{stem}-key.pem")),
    )
}

fn wait_healthy(urls: &[String], ca: &Path, client: (&Path, &Path), data: &Path) {
    let t = Instant::now();
    loop {
        let (ok, out) = etcdctl(urls, ca, Some(client), &["endpoint", "health"]);
        if ok && out.matches("is healthy").count() == urls.len() {
            return;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let log = std::fs::read_to_string(data.join("m0.log")).unwrap_or_default();
            panic!(
                "etcd never became healthy: {out}\n--- m0.log tail ---\n{}",
                log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn etcd_cluster_over_tls_accepts_its_certs_and_rejects_others() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let ssl = pki.ssl_dir().to_path_buf();
    let data = tempfile::tempdir().unwrap();
    let (_members, urls) = start_etcd(&ssl, data.path(), 3);
    let etcd_ca = ssl.join("etcd-ca.pem");
    // The deploy machine's etcdctl files, as the PKI API names them.
    let (cc, ck, ca) = pki.local_paths("etcd-client", None).unwrap();
    assert_eq!(ca, etcd_ca);
    // Three members can only form a cluster through mutually authenticated peer TLS.
    wait_healthy(&urls, &etcd_ca, (&cc, &ck), data.path());

    // The apiserver's etcd client cert writes on one member; the deploy cert reads on another.
    let (ac, ak) = pair(&ssl, "apiserver-etcd-client");
    let (ok, out) = etcdctl(
        &urls[..1],
        &etcd_ca,
        Some((&ac, &ak)),
        &["put", "/ezk/probe", "tls-ok"],
    );
    assert!(ok, "{out}");
    let (ok, out) = etcdctl(
        &urls[2..],
        &etcd_ca,
        Some((&cc, &ck)),
        &["get", "/ezk/probe", "--print-value-only"],
    );
    assert!(ok && out.trim() == "tls-ok", "{out}");

    // Refused: a client cert from the cluster CA (the point of a separate etcd CA) ...
    let (adc, adk) = pair(&ssl, "admin");
    let (ok, out) = etcdctl(
        &urls[..1],
        &etcd_ca,
        Some((&adc, &adk)),
        &["endpoint", "health"],
    );
    assert!(!ok, "admin cert from the cluster CA reached etcd: {out}");
    // ... one from another cluster's etcd CA ...
    let other = tempfile::tempdir().unwrap();
    let stranger = Pki::ensure(other.path(), &spec()).unwrap();
    let (sc, sk) = pair(stranger.ssl_dir(), "etcd-client");
    let (ok, out) = etcdctl(
        &urls[..1],
        &etcd_ca,
        Some((&sc, &sk)),
        &["endpoint", "health"],
    );
    assert!(!ok, "foreign etcd-client cert accepted: {out}");
    // ... no client cert at all ...
    let (ok, out) = etcdctl(&urls[..1], &etcd_ca, None, &["endpoint", "health"]);
    assert!(!ok, "no client cert accepted: {out}");
    // ... a client that trusts the wrong CA does not trust the server ...
    let (ok, out) = etcdctl(
        &urls[..1],
        &ssl.join("ca.pem"),
        Some((&cc, &ck)),
        &["endpoint", "health"],
    );
    assert!(!ok, "server cert verified by the cluster CA: {out}");
    // ... and there is no plaintext listener.
    let plain = vec![urls[0].replace("https://", "http://")];
    let (ok, out) = etcdctl(&plain, &etcd_ca, None, &["endpoint", "health"]);
    assert!(!ok, "plaintext answered: {out}");
}

/// A kubeasz-style RSA CA (cfssl subject, PKCS#1 key) as the etcd CA: Go matches issuer and
/// subject byte for byte, so this proves the user's CA subject survives re-encoding.
#[test]
fn etcd_accepts_certs_from_a_user_rsa_ca() {
    let d = tempfile::tempdir().unwrap();
    let ssl = d.path().join("ssl");
    std::fs::create_dir(&ssl).unwrap();
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k8",
        ][..],
        &[
            "rsa",
            "-traditional",
            "-in",
            "k8",
            "-out",
            "etcd-ca-key.pem",
        ],
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "etcd-ca-key.pem",
            "-out",
            "etcd-ca.pem",
            "-days",
            "3650",
            "-subj",
            "/C=CN/ST=HangZhou/L=XS/O=k8s/OU=System/CN=etcd-ca",
        ],
    ] {
        let (ok, out) = run(Command::new("openssl").args(args).current_dir(&ssl));
        assert!(ok, "{out}");
    }
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    assert!(
        pki.outcome().created_cas == vec!["ca", "front-proxy-ca"],
        "{:?}",
        pki.outcome()
    );
    let data = tempfile::tempdir().unwrap();
    let (_members, urls) = start_etcd(&ssl, data.path(), 1);
    let (cc, ck) = pair(&ssl, "etcd-client");
    wait_healthy(&urls, &ssl.join("etcd-ca.pem"), (&cc, &ck), data.path());
}
