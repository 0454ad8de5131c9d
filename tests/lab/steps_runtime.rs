//! Step 03 runtime on the shared 3-host lab: Debian's real containerd and runc, installed from
//! the artifact store by ezk, started from ezk's unit and config, serving CRI; an OCI image built
//! here is imported and unpacked by the configured snapshotter under the configured root; and
//! containers from the store's busybox image run under runc with their memory and CPU limits
//! enforced, each host's containers in cgroups of that host only.

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
    Test {
        name: "runtime::containers_run_with_memory_and_cpu_limits",
        run: containers_run_with_memory_and_cpu_limits,
    },
];

const CTR: &str = "/opt/kube/bin/containerd-bin/ctr --address /run/containerd/containerd.sock";
/// CONTAINERD_STORAGE_DIR of lab clusters: below the directory each lab host has on the
/// machine's own filesystem (overlayfs snapshots cannot sit on the host's overlay root).
const STORAGE: &str = "/var/lib/ezk-lab-disk/containerd";
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
        ctr_import(lab, i, &archive);
        assert!(
            lab.sh(i, &format!("{CTR} -n k8s.io images ls -q"))
                .lines()
                .any(|l| l == IMAGE)
        );
        assert_eq!(
            lab.sh(
                i,
                &format!(
                    "sha256sum {STORAGE}/io.containerd.content.v1.content/blobs/sha256/{layer} | cut -d' ' -f1"
                )
            ),
            layer
        );
        assert_eq!(
            lab.sh(
                i,
                &format!("cat {STORAGE}/io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/etc/ezk-probe")
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
                "[containerd]     -  sandbox_image = \"ezk.local/pause:3.4\"",
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

/// `ctr images import` of an OCI archive into host `i`'s CRI namespace (through ssh's stdin).
fn ctr_import(lab: &Lab, i: usize, archive: &[u8]) {
    let mut child = lab
        .ssh_cmd(i)
        .arg(format!("{CTR} -n k8s.io images import -"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "import on host {i}: {}", text(&out));
}

/// Import the store's busybox image (made from Debian's busybox-static) on host `i`.
fn import_busybox(lab: &Lab, i: usize) -> String {
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.home.join("down/images/lab-debian/busybox.json")).unwrap(),
    )
    .unwrap();
    let archive = std::fs::read(lab.home.join("down/images/lab-debian/busybox.tar")).unwrap();
    ctr_import(lab, i, &archive);
    let reference = json["reference"].as_str().unwrap().to_string();
    let listed = lab.sh(i, &format!("{CTR} -n k8s.io images ls name=={reference}"));
    assert!(
        listed.contains(json["digest"].as_str().unwrap()),
        "{reference} not imported with its recorded digest:\n{listed}"
    );
    reference
}

fn containers_run_with_memory_and_cpu_limits(lab: &Lab) {
    ensure_runtime(lab);
    let image = import_busybox(lab, 0);
    import_busybox(lab, 1);

    // 64 MiB: a process holding 200 MiB is OOM-killed (137), the container's shell goes on.
    let out = lab.ssh(
        0,
        &format!(
            "{CTR} -n k8s.io run --rm --memory-limit 67108864 {image} ezk-oom sh -c 'head -c 200m /dev/zero | tail; echo tail=$?'"
        ),
    );
    let said = text(&out);
    assert!(said.contains("tail=137"), "not OOM-killed:\n{said}");
    let out = lab.ssh(
        0,
        &format!("{CTR} -n k8s.io run --rm --memory-limit 67108864 {image} ezk-fits sh -c 'head -c 20m /dev/zero | tail; echo tail=$?'"),
    );
    assert!(
        text(&out).contains("tail=0"),
        "20 MiB under a 64 MiB limit failed:\n{}",
        text(&out)
    );

    // 20% of a CPU: a busy loop is throttled.
    lab.sh(
        0,
        &format!("{CTR} -n k8s.io run -d --cpu-quota 20000 --cpu-period 100000 {image} ezk-cpu sh -c 'while :; do :; done'"),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stat = lab.sh(0, "cat /sys/fs/cgroup/cpu/k8s.io/ezk-cpu/cpu.stat");
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(throttled > 0, "CPU quota not enforced:\n{stat}");
    lab.sh(0, &format!("{CTR} -n k8s.io task kill -s KILL ezk-cpu; sleep 1; {CTR} -n k8s.io container rm ezk-cpu"));

    // The same container name on two hosts at once: two containers, each in its own host's
    // cgroups on this machine (no shared cgroup path), stopping one leaves the other running.
    for i in [0, 1] {
        lab.sh(
            i,
            &format!("{CTR} -n k8s.io run -d {image} ezk-same sleep 3600"),
        );
    }
    let pid = |i: usize| {
        lab.sh(
            i,
            &format!("{CTR} -n k8s.io task ls | awk '$1==\"ezk-same\"{{print $2}}'"),
        )
    };
    let (p0, p1) = (pid(0), pid(1));
    assert!(!p0.is_empty() && !p1.is_empty(), "both run: {p0:?} {p1:?}");
    // Seen from the machine: each container's pids cgroup is below its own host's.
    let machine_cgroups: Vec<String> = [0, 1]
        .iter()
        .map(|&i| {
            let host_pid = lab.sh(
                i,
                "cat /sys/fs/cgroup/pids/k8s.io/ezk-same/cgroup.procs | head -1",
            );
            assert!(
                !host_pid.is_empty(),
                "no process in host {i}'s container cgroup"
            );
            // The container's sleep, as the machine sees it: find it by its cgroup path.
            let mut found = String::new();
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                if let Some(l) = cg
                    .lines()
                    .find(|l| l.contains(":pids:") && l.ends_with("/k8s.io/ezk-same"))
                    && l.contains(&format!("/ezk-lab-ez{}-{}/", lab.index, i + 1))
                {
                    found = l.to_string();
                }
            }
            assert!(
                !found.is_empty(),
                "host {i}'s container is not in that host's cgroup"
            );
            found
        })
        .collect();
    assert_ne!(machine_cgroups[0], machine_cgroups[1]);
    lab.sh(1, &format!("{CTR} -n k8s.io task kill -s KILL ezk-same; sleep 1; {CTR} -n k8s.io container rm ezk-same"));
    assert_eq!(pid(0), p0, "stopping host 2's ezk-same touched host 1's");
    // Host 1's container stays running: `ezk lab down` at the end of the suite must remove it
    // (the suite's last check finds any process left in a host's cgroups).
}
