//! Step 03 runtime on the shared 3-host lab: Debian's real containerd and runc, installed from
//! the artifact store by ezk, started from ezk's unit and config, serving CRI; an OCI image built
//! here is imported and unpacked by the configured snapshotter under the configured root.
//!
//! Not checked: running a container. The lab hosts' cgroup controllers are the deploy machine's
//! cgroup v1 hierarchies, which systemd-nspawn mounts read-only inside a container, so runc
//! cannot create a container's cgroup there (nor with a unified hierarchy: none of this
//! machine's controllers are on cgroup v2). Kubelet is not part of step 03 either.

use std::io::Write;
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::steps_support::*;
use crate::{Lab, Test};

pub const TESTS: &[Test] = &[
    Test {
        name: "runtime::containerd_serves_cri_and_unpacks_an_image",
        run: containerd_serves_cri_and_unpacks_an_image,
    },
    Test {
        name: "runtime::rerun_is_a_no_op_and_a_config_change_restarts_only_containerd",
        run: rerun_is_a_no_op_and_a_config_change_restarts_only_containerd,
    },
    Test {
        name: "runtime::registry_hosts_files_need_no_restart",
        run: registry_hosts_files_need_no_restart,
    },
];

const CTR: &str = "/opt/kube/bin/containerd-bin/ctr --address /run/containerd/containerd.sock";
const IMAGE: &str = "ezk.test/probe:1";
const PROBE: &[u8] = b"unpacked by containerd for ezk's lab test\n";

fn hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An OCI image layout archive (what `ctr images import` reads) of one uncompressed layer
/// holding `etc/ezk-probe`. Returns (archive, layer digest hex).
fn oci_archive() -> (Vec<u8>, String) {
    fn add(t: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        t.append_data(&mut h, path, data).unwrap();
    }
    let mut layer = tar::Builder::new(Vec::new());
    add(&mut layer, "etc/ezk-probe", PROBE, 0o644);
    let layer = layer.into_inner().unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        hex(&layer)
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#,
        hex(config.as_bytes()),
        config.len(),
        hex(&layer),
        layer.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{IMAGE}"}}}}]}}"#,
        hex(manifest.as_bytes()),
        manifest.len()
    );
    let mut out = tar::Builder::new(Vec::new());
    add(
        &mut out,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    );
    add(&mut out, "index.json", index.as_bytes(), 0o644);
    for blob in [&layer[..], config.as_bytes(), manifest.as_bytes()] {
        add(
            &mut out,
            &format!("blobs/sha256/{}", hex(blob)),
            blob,
            0o644,
        );
    }
    (out.into_inner().unwrap(), hex(&layer))
}


fn main_pid(lab: &Lab, i: usize, unit: &str) -> String {
    lab.sh(i, &format!("systemctl show -p MainPID --value {unit}"))
}

fn containerd_serves_cri_and_unpacks_an_image(lab: &Lab) {
    fill_store(lab);
    setup_ok(lab, "01", &[]);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let r = setup_ok(lab, "03", &[]);
    println!("  timing: 03 runtime first run {:.1}s (3 hosts)", r.secs);
    // The binary the store holds is the one systemd runs.
    let store_bin = std::fs::read_dir(lab.home.join("down/bin/containerd"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("containerd");
    let want_sha = hex(&std::fs::read(&store_bin).unwrap());
    let (archive, layer) = oci_archive();
    for (i, ip) in ips.iter().enumerate() {
        assert!(
            r.count(ip, "changed") > 0,
            "03 changed nothing on {ip}:\n{}",
            r.output
        );
        assert_eq!(lab.sh(i, "systemctl is-active containerd"), "active");
        assert_eq!(lab.sh(i, "systemctl is-enabled containerd"), "enabled");
        let pid = main_pid(lab, i, "containerd");
        assert_eq!(
            lab.sh(i, &format!("readlink /proc/{pid}/exe")),
            "/opt/kube/bin/containerd-bin/containerd"
        );
        assert_eq!(
            lab.sh(i, &format!("sha256sum /proc/{pid}/exe | cut -d' ' -f1")),
            want_sha,
            "running containerd on {ip} is not the store's"
        );
        assert!(
            lab.sh(i, "systemctl show -p Environment --value containerd")
                .contains("PATH=/opt/kube/bin/containerd-bin:"),
            "the shim and runc are found on containerd's PATH"
        );
        assert_eq!(
            lab.sh(i, "/opt/kube/bin/containerd-bin/runc --version | head -1"),
            "runc version 1.1.5+ds1"
        );
        let plugins = lab.sh(i, &format!("{CTR} plugins ls"));
        assert!(
            plugins
                .lines()
                .any(|l| l.starts_with("io.containerd.grpc.v1")
                    && l.contains(" cri ")
                    && l.ends_with("ok")),
            "CRI plugin not ok on {ip}:\n{plugins}"
        );
        assert_eq!(
            lab.sh(
                i,
                "systemd-analyze verify --man=no /etc/systemd/system/containerd.service 2>&1"
            ),
            ""
        );
        // Import through the CRI namespace: content lands under the configured root, and the
        // configured snapshotter (overlayfs) unpacks the layer.
        let mut child = lab
            .ssh_cmd(i)
            .arg(format!("{CTR} -n k8s.io images import -"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "import on {ip}: {}", text(&out));
        assert!(
            lab.sh(i, &format!("{CTR} -n k8s.io images ls -q"))
                .lines()
                .any(|l| l == IMAGE)
        );
        assert_eq!(
            lab.sh(
                i,
                &format!(
                    "sha256sum /var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/{layer} | cut -d' ' -f1"
                )
            ),
            layer
        );
        assert_eq!(
            lab.sh(
                i,
                "cat /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/etc/ezk-probe"
            ),
            String::from_utf8_lossy(PROBE).trim()
        );
    }
}

fn rerun_is_a_no_op_and_a_config_change_restarts_only_containerd(lab: &Lab) {
    ensure_runtime(lab);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let pids: Vec<String> = (0..ips.len())
        .map(|i| main_pid(lab, i, "containerd"))
        .collect();
    let r = setup_ok(lab, "03", &[]);
    println!("  timing: 03 re-run {:.2}s", r.secs);
    assert_nothing_changed(&r, &ips);
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(
            main_pid(lab, i, "containerd"),
            pids[i],
            "a no-op run restarted containerd on {ip}"
        );
    }

    let new = ["-e", "SANDBOX_IMAGE=ezk.test/pause:2"];
    let p = setup_ok(lab, "03", &[&["--plan"][..], &new[..]].concat());
    for (i, ip) in ips.iter().enumerate() {
        let (diff, actions) = p.plan_split(ip, "containerd");
        assert_eq!(
            diff,
            [
                "[containerd]     -  sandbox_image = \"registry.k8s.io/pause:3.9\"",
                "[containerd]     +  sandbox_image = \"ezk.test/pause:2\""
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(
            actions,
            [
                "[containerd] changed /etc/containerd/config.toml",
                "[containerd] restart containerd (containerd config)"
            ],
            "{:#?}",
            p.plan(ip)
        );
        assert_eq!(
            main_pid(lab, i, "containerd"),
            pids[i],
            "--plan restarted containerd on {ip}"
        );
    }

    let r = setup_ok(lab, "03", &new);
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(
            r.count(ip, "changed"),
            2,
            "config + restart on {ip}:\n{}",
            r.output
        );
        assert_ne!(
            main_pid(lab, i, "containerd"),
            pids[i],
            "containerd not restarted on {ip}"
        );
        let dump = lab.sh(i, "/opt/kube/bin/containerd-bin/containerd --config /etc/containerd/config.toml config dump");
        assert!(
            dump.contains("sandbox_image = \"ezk.test/pause:2\""),
            "{dump}"
        );
    }
    // Back to the inventory's value: the same two changes, then quiet again.
    let r = setup_ok(lab, "03", &[]);
    for ip in &ips {
        assert_eq!(r.count(ip, "changed"), 2, "{}", r.output);
    }
    assert_nothing_changed(&setup_ok(lab, "03", &[]), &ips);
}

fn registry_hosts_files_need_no_restart(lab: &Lab) {
    ensure_runtime(lab);
    let ips: Vec<String> = lab.hosts.iter().map(|h| h.ip.clone()).collect();
    let pids: Vec<String> = (0..ips.len())
        .map(|i| main_pid(lab, i, "containerd"))
        .collect();
    let vars = lab.home.join("insecure-reg.yml");
    std::fs::write(&vars, "INSECURE_REG: [\"http://reg.ezk.test:5000\"]\n").unwrap();
    let at = format!("@{}", vars.display());
    let r = setup_ok(lab, "03", &["-e", &at]);
    for (i, ip) in ips.iter().enumerate() {
        // The directory and its hosts.toml; containerd reads them at each pull.
        assert_eq!(r.count(ip, "changed"), 2, "{}", r.output);
        let toml = lab.sh(
            i,
            "cat '/etc/containerd/certs.d/reg.ezk.test:5000/hosts.toml'",
        );
        assert!(
            toml.contains("server = \"http://reg.ezk.test:5000\""),
            "{toml}"
        );
        assert!(toml.contains("skip_verify = true"), "{toml}");
        assert_eq!(
            main_pid(lab, i, "containerd"),
            pids[i],
            "hosts.toml restarted containerd on {ip}"
        );
    }
    assert_nothing_changed(&setup_ok(lab, "03", &["-e", &at]), &ips);
}
