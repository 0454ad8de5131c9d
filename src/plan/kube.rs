//! Every choice that depends on the Kubernetes version, in one place.
//!
//! One set of roles serves every version the artifact manifest pins (the lab's 1.20.2 and every
//! upstream release 1.28-1.36). Where a flag or a config API differs between versions, the
//! roles ask the `kube` object in their template context instead of testing versions themselves.
//! Nothing ezk renders changed between 1.28 and 1.36, so the upstream column holds for all:
//!
//! | `kube.` | 1.20 | 1.28-1.36 | why |
//! |---|---|---|---|
//! | `version`, `minor` | `1.20.2`, 20 | e.g. `1.36.3`, 36 | the artifact set's kube-apiserver |
//! | `insecure_port_flags` | true | false | `--port=0` turns off the plain-HTTP port the 1.20 controller-manager and scheduler still serve by default (the apiserver's is gone since 1.20: its `--insecure-port` is a no-op there); the flag is gone since 1.24. Given a config file, the 1.20 scheduler serves its plain port whatever `--port` says (an empty address in the file means the default), so it gets flags instead, as kubeadm did |
//! | `scheduler_config_api` | `kubescheduler.config.k8s.io/v1beta1` | `…/v1` | 1.20 reads only v1beta1; v1 since 1.25 (v1beta2 in 1.22, v1beta3 in 1.23-1.24) |
//! | `kubelet_remote_runtime_flag` | true | false | 1.20 needs `--container-runtime=remote` (its default is docker); the flag is gone since 1.27 |
//! | `kubelet_endpoint_in_config` | false | true | `containerRuntimeEndpoint` in KubeletConfiguration exists since 1.27; 1.20 silently ignores it, so it gets `--container-runtime-endpoint` |
//! | `kubelet_seccomp_default` | false | true | `seccompDefault` (RuntimeDefault for every pod) is GA since 1.27; 1.20 refuses the flag |
//! | `daemonset_max_surge` | false | true | a DaemonSet's `rollingUpdate.maxSurge` (kube-ovn's ovs-ovn starts a node's new Open vSwitch pod before the old one stops) is a field since 1.21 behind a gate that is on by default from 1.22 (GA in 1.25); the 1.20 API refuses it, so there the old pod stops first |
//! | `sa_issuers_many` | false | true | `--service-account-issuer` given more than once: the first names new tokens, every one is accepted (since 1.22); 1.20 keeps only the last one given, so it gets one |
//! | `kubelet_pod_infra_flag` | true | false | `--pod-infra-container-image` keeps 1.20's image GC from deleting the sandbox image (the lab's containerd 1.6.20 does not pin it); from 1.27 kubelet takes the pin from the runtime, and containerd pins the sandbox image from 1.6.22 and 1.7.3 (every upstream set has 1.7.22 or later); the flag is deprecated from 1.27 and gone in 1.35 |
//!
//! Each rendered unit's flags are checked against the real flag list of every pinned minor
//! (the lab's 1.20 binaries' `--help`, and the published reference lists of 1.28-1.36 under
//! `tests/fixtures/k8s-flags/`, by `tests/kube_flags.rs`).

use minijinja::Value;
use serde::Serialize;

/// The version-dependent choices for one Kubernetes release (see the table above).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeRelease {
    pub version: String,
    pub minor: u32,
    pub insecure_port_flags: bool,
    pub scheduler_config_api: &'static str,
    pub kubelet_remote_runtime_flag: bool,
    pub kubelet_endpoint_in_config: bool,
    pub kubelet_seccomp_default: bool,
    pub kubelet_pod_infra_flag: bool,
    pub daemonset_max_surge: bool,
    pub sa_issuers_many: bool,
}

impl KubeRelease {
    /// The choices for `version` (`1.20.2`, `v1.36.3`); None unless it is `1.<minor>[.<patch>]`.
    pub fn for_version(version: &str) -> Option<KubeRelease> {
        let v = version.trim().trim_start_matches('v');
        let mut parts = v.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let minor: u32 = parts.next()?.parse().ok()?;
        Some(KubeRelease {
            version: v.to_string(),
            minor,
            insecure_port_flags: minor < 24,
            scheduler_config_api: match minor {
                0..=21 => "kubescheduler.config.k8s.io/v1beta1",
                22 => "kubescheduler.config.k8s.io/v1beta2",
                23 | 24 => "kubescheduler.config.k8s.io/v1beta3",
                _ => "kubescheduler.config.k8s.io/v1",
            },
            kubelet_remote_runtime_flag: minor < 27,
            kubelet_endpoint_in_config: minor >= 27,
            kubelet_seccomp_default: minor >= 27,
            kubelet_pod_infra_flag: minor < 27,
            daemonset_max_surge: minor >= 22,
            sa_issuers_many: minor >= 22,
        })
    }

    /// As a template value (`kube.minor`, `kube.scheduler_config_api`, ...).
    pub fn value(&self) -> Value {
        Value::from_serialize(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_and_upstream_versions() {
        let lab = KubeRelease::for_version("1.20.2").unwrap();
        assert_eq!(lab.minor, 20);
        assert!(lab.insecure_port_flags && lab.kubelet_remote_runtime_flag);
        assert!(!lab.kubelet_endpoint_in_config && !lab.kubelet_seccomp_default && !lab.daemonset_max_surge && !lab.sa_issuers_many);
        assert_eq!(lab.scheduler_config_api, "kubescheduler.config.k8s.io/v1beta1");
        for v in ["1.28.0", "1.31.2", "v1.33.13", "v1.36.3"] {
            let up = KubeRelease::for_version(v).unwrap();
            assert_eq!(up.version, v.trim_start_matches('v'));
            assert!(!up.insecure_port_flags && !up.kubelet_remote_runtime_flag && !up.kubelet_pod_infra_flag, "{v}");
            assert!(up.kubelet_endpoint_in_config && up.kubelet_seccomp_default && up.daemonset_max_surge && up.sa_issuers_many, "{v}");
            assert_eq!(up.scheduler_config_api, "kubescheduler.config.k8s.io/v1", "{v}");
        }
        assert_eq!(KubeRelease::for_version("1.31.2").unwrap().minor, 31);
        assert_eq!(KubeRelease::for_version("lab-debian"), None);
        assert_eq!(KubeRelease::for_version("2.0.0"), None);
    }
}
