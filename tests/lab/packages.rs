//! `INSTALL_SOURCE: online` (kubeasz's default): step 01 installs the OS packages a host lacks
//! with the host's own apt. The lab hosts have no route out, so the test builds a real Debian
//! package (`dpkg-deb`), serves it as a flat apt repository on the lab bridge (198.18.N.1, the
//! deploy machine's side), points each host's apt at it alone and empties the hosts' package
//! lists, as on a freshly installed machine: ezk's first install attempt fails, it runs
//! `apt-get update` and retries. A re-run changes nothing and fetches nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::steps_support::{assert_nothing_changed, fill_store, setup, setup_ok};
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[Test {
    name: "packages::online_install_refreshes_apt_lists_and_installs",
    run: online_install_refreshes_apt_lists_and_installs,
}];

const PKG: &str = "ezk-lab-probe";
const DEB: &str = "ezk-lab-probe_1.0_all.deb";

/// Puts each host's apt sources back (and removes the probe) even when the test fails.
struct RestoreApt<'a>(&'a Lab);

impl Drop for RestoreApt<'_> {
    fn drop(&mut self) {
        for i in 0..self.0.hosts.len() {
            let _ = self.0.ssh(
                i,
                &format!(
                    "dpkg --purge {PKG} >/dev/null 2>&1; rm -f /etc/apt/sources.list.d/ezk-lab.list \
                     /etc/apt/apt.conf.d/99ezk-lab; \
                     [ -e /root/ezk-apt-saved/sources.list ] && mv /root/ezk-apt-saved/sources.list /etc/apt/; \
                     rmdir /root/ezk-apt-saved 2>/dev/null; true"
                ),
            );
        }
    }
}

fn online_install_refreshes_apt_lists_and_installs(lab: &Lab) {
    fill_store(lab);
    let repo = tempfile::tempdir().unwrap();
    build_repo(repo.path());
    let srv = FileServer::start(&format!("198.18.{}.1:0", lab.index), repo.path());
    let _restore = RestoreApt(lab);
    for i in 0..lab.hosts.len() {
        lab.sh(
            i,
            &format!(
                "mkdir -p /root/ezk-apt-saved && \
                 {{ [ ! -e /etc/apt/sources.list ] || mv /etc/apt/sources.list /root/ezk-apt-saved/; }} && \
                 echo 'deb [trusted=yes] http://{}/ ./' > /etc/apt/sources.list.d/ezk-lab.list && \
                 echo 'Acquire::http::Pipeline-Depth \"0\";' > /etc/apt/apt.conf.d/99ezk-lab && \
                 find /var/lib/apt/lists -maxdepth 1 -type f -delete && \
                 ! dpkg-query -W {PKG} 2>/dev/null",
                srv.addr
            ),
        );
    }
    let vars = repo.path().join("packages.yml");
    std::fs::write(&vars, format!("INSTALL_SOURCE: online\nPREPARE_PACKAGES: [{PKG}, jq]\n")).unwrap();
    let e = format!("@{}", vars.display());
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();

    // --plan names the install (jq is in the lab image already) and touches no repository.
    let plan = setup(lab, "01", &["-e", &e, "--plan"]);
    assert_eq!(plan.code, 0, "{}", plan.output);
    for ip in &ips {
        let p = plan.plan(ip).join("\n");
        assert!(p.contains(PKG) && !p.contains("jq"), "plan for {ip}:\n{p}");
    }
    assert!(srv.log().is_empty(), "--plan fetched {:?}", srv.log());

    let run = setup_ok(lab, "01", &["-e", &e]);
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(
            lab.sh(i, &format!("dpkg-query -W -f '${{Status}} ${{Version}}' {PKG}")),
            "install ok installed 1.0",
            "{ip}:\n{}",
            run.output
        );
        assert_eq!(lab.sh(i, &format!("cat /usr/share/{PKG}/marker")), "served by the ezk lab suite");
    }
    let log = srv.log();
    let debs = log.iter().filter(|p| p.ends_with(DEB)).count();
    let indexes = log.iter().filter(|p| p.ends_with("/Packages")).count();
    assert_eq!(debs, ips.len(), "one .deb fetch per host: {log:?}");
    assert!(indexes >= ips.len(), "each host refreshed its lists: {log:?}");

    let again = setup_ok(lab, "01", &["-e", &e]);
    assert_nothing_changed(&again, &ips);
    assert_eq!(srv.log().len(), log.len(), "a re-run fetched: {:?}", &srv.log()[log.len()..]);
}

/// A real .deb (dpkg-deb) and a flat repository index for it: `Packages` and a `Release`.
fn build_repo(dir: &Path) {
    let root = dir.join("pkgroot");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/{PKG}"))).unwrap();
    let control = format!(
        "Package: {PKG}\nVersion: 1.0\nArchitecture: all\nMaintainer: ezk tests <root@localhost>\n\
         Description: probe package the ezk lab suite serves to its hosts\n"
    );
    std::fs::write(root.join("DEBIAN/control"), &control).unwrap();
    std::fs::write(root.join(format!("usr/share/{PKG}/marker")), "served by the ezk lab suite\n").unwrap();
    let deb = dir.join(DEB);
    let ok = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(ok.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&ok.stderr));
    let bytes = std::fs::read(&deb).unwrap();
    let packages = format!(
        "{control}Filename: ./{DEB}\nSize: {}\nSHA256: {}\n\n",
        bytes.len(),
        hex(&bytes)
    );
    std::fs::write(dir.join("Packages"), &packages).unwrap();
    let release = format!(
        "Origin: ezk-lab\nLabel: ezk-lab\nDate: Sat, 01 Jan 2000 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
        hex(packages.as_bytes()),
        packages.len()
    );
    std::fs::write(dir.join("Release"), release).unwrap();
}

fn hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A static file server for the lab hosts (GET only, one request per connection), logging
/// every path asked for. Stops with the test process (its thread blocks in accept).
struct FileServer {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    fn start(bind: &str, root: &Path) -> FileServer {
        let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (root, l) = (root.to_path_buf(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (root, l) = (root.clone(), l.clone());
                std::thread::spawn(move || serve(conn, &root, &l));
            }
        });
        FileServer { addr, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, root: &Path, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    log.lock().unwrap().push(path.clone());
    let rel = path.trim_start_matches('/').trim_start_matches("./");
    let file = (!rel.contains("..") && !rel.is_empty())
        .then(|| std::fs::read(root.join(rel)).ok())
        .flatten();
    let _ = match file {
        Some(body) => conn
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| conn.write_all(&body)),
        None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}
