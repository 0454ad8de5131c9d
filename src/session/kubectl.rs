//! kubectl on the deploy machine: the artifact set's binary with the cluster's admin
//! kubeconfig (`clusters/<name>/kubectl.kubeconfig`, server: the VIP or the first master), for
//! the operations that ask the API themselves (drain, delete a node, user bindings).

use std::process::{Command, Stdio};

use super::{Error, Session};

impl Session {
    /// `kubectl --kubeconfig <admin> <args>` (stdin closed); a failure is an error with
    /// kubectl's own message. Its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, Error> {
        let out = self.kubectl_command()?.args(args).output()?;
        if !out.status.success() {
            return Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// The command `kubectl` runs, to add arguments (or stdin) to.
    pub fn kubectl_command(&self) -> Result<Command, Error> {
        let files = self.files()?;
        let kubectl = crate::plan::DeployFiles::binary(files, "kubectl")?;
        let mut c = Command::new(&kubectl.path);
        c.arg("--kubeconfig").arg(self.dir().join("kubectl.kubeconfig")).stdin(Stdio::null());
        Ok(c)
    }
}
