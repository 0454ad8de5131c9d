//! The `ezk` binary under test, with an explicit ezk home (`--home`; `EZK_HOME` is removed so
//! the caller's environment cannot point the test elsewhere).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `ezk` binary cargo built for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ezk"))
}

/// `ezk --home <home>`, ready for the subcommand and its arguments.
pub fn command(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("--home").arg(home).env_remove("EZK_HOME");
    c
}

/// What one run of ezk gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `ezk --home <home> <args>` to the end.
pub fn ezk(home: &Path, args: &[&str]) -> Run {
    let out = command(home).args(args).output().expect("run ezk");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ezk`, which must exit 0 (else the test fails showing both streams).
pub fn ezk_ok(home: &Path, args: &[&str]) -> Run {
    let r = ezk(home, args);
    assert_eq!(r.code, 0, "ezk {}\nstdout:\n{}\nstderr:\n{}", args.join(" "), r.stdout, r.stderr);
    r
}
