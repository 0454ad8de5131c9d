//! kubectl (Go's TLS) uses the issued admin kubeconfig against a TLS endpoint serving the
//! issued apiserver certificate. Test double: `openssl s_server -www` stands in for
//! kube-apiserver (no apiserver binary exists here); it still checks something real — it
//! demands a client certificate and verifies it against the cluster CA, and kubectl verifies
//! the serving certificate's chain and its 127.0.0.1 SAN.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{run, spec};
use ezk::pki::Pki;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kubectl_with_admin_kubeconfig_completes_mutual_tls_with_the_apiserver_cert() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::ensure(d.path(), &spec()).unwrap();
    let ssl = pki.ssl_dir();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("openssl")
            .args(["s_server", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(ssl.join("kubernetes.pem"))
            .arg("-key")
            .arg(ssl.join("kubernetes-key.pem"))
            .arg("-CAfile")
            .arg(ssl.join("ca.pem"))
            .args(["-Verify", "1", "-verify_return_error"])
            .stdin(Stdio::piped()) // s_server exits when stdin closes; keep it open
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kubectl = |kubeconfig: &str| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(&p, kubeconfig).unwrap();
        run(Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&p)
            .arg(format!("--server=https://127.0.0.1:{port}"))
            .args(["--request-timeout=5s", "get", "--raw", "/"]))
    };

    let (ok, out) = kubectl(&pki.kubeconfig("admin", "198.18.9.11").unwrap());
    assert!(
        ok && out.contains("s_server"),
        "kubectl could not talk TLS to the apiserver cert: {out}"
    );

    // Another cluster's admin: its CA does not trust our server, and ours does not trust it.
    let other = tempfile::tempdir().unwrap();
    let stranger = Pki::ensure(other.path(), &spec()).unwrap();
    let (ok, out) = kubectl(&stranger.kubeconfig("admin", "198.18.9.11").unwrap());
    assert!(
        !ok && out.contains("certificate"),
        "foreign kubeconfig accepted: {out}"
    );

    // Our CA but a client cert from elsewhere: the server side refuses the client alone.
    let ours = pki.cert_files("admin", "198.18.9.11").unwrap();
    let theirs = stranger.cert_files("admin", "198.18.9.11").unwrap();
    let mixed = ezk::pki::kubeconfig::render(&ezk::pki::kubeconfig::KubeconfigInput {
        cluster: "c",
        context: "x",
        user: "admin",
        server: "https://127.0.0.1:1",
        ca_pem: ours.ca_pem.as_deref().unwrap(),
        cert_pem: &theirs.cert_pem,
        key_pem: theirs.key_pem.as_ref().unwrap().expose(),
    });
    let (ok, out) = kubectl(&mixed);
    assert!(!ok, "client cert from another CA accepted: {out}");
}
