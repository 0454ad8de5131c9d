//! A real OpenSSH server on 127.0.0.1 for transport tests, until the lab hosts exist: own
//! config, own host key, an authorized client key; started as a child and killed by pid.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ezk::exec::Connection;

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub client_key: PathBuf,
    child: Child,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

/// A free TCP port on loopback (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Sshd {
    /// Start sshd; `client_key`: reuse a key (so many servers share one client key).
    pub fn start(client_key: Option<&Path>) -> Sshd {
        assert!(Path::new("/usr/sbin/sshd").exists(), "install openssh-server for these tests");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        let client_key = match client_key {
            Some(k) => k.to_path_buf(),
            None => {
                keygen(&d.join("client_key"));
                d.join("client_key")
            }
        };
        std::fs::copy(client_key.with_extension("pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(
                d.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
                     StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nMaxSessions 10\nMaxStartups 100:30:200\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                    hk = d.join("host_key").display(),
                    d = d.display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .expect("start sshd");
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { dir, port, client_key, child };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start; log: {}", std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default());
    }

    /// The known_hosts line for this server.
    pub fn known_hosts_line(&self) -> String {
        let pubkey = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut it = pubkey.split_whitespace();
        format!("[127.0.0.1]:{} {} {}\n", self.port, it.next().unwrap(), it.next().unwrap())
    }

    pub fn connection(&self) -> Connection {
        Connection {
            address: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            key_file: Some(self.client_key.clone()),
            become_root: false,
            jump: None,
        }
    }

    /// Stop the server now (kill by pid).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
