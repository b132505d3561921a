//! The real binaries as child processes, for the tests that run them
//! (`e2e_processes`, `tls`): spawn with an environment and a log file, wait
//! until ready, stop with SIGTERM, read peak memory; killed on drop.
#![allow(dead_code)]

pub mod cluster;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed on drop (SIGKILL) unless it was stopped cleanly.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `env` (JSON logs at info into `dir/NAME.log`).
    pub fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        name: &str,
        bin: &Path,
        env: &[(K, V)],
        dir: &Path,
    ) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("CELLBANK__TELEMETRY__FORMAT", "json")
            .env("CELLBANK__TELEMETRY__FILTER", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// Peak resident memory of the process so far, in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kb / 1024
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!("{} did not stop within 10 s of SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Global's binary: the one cargo built for this test, or (an example run
/// from `target/<profile>/examples/`) the one beside the examples directory.
pub fn global_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_cellbank-global") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("the running executable");
            let profile_dir = exe
                .parent()
                .and_then(|d| d.parent())
                .expect("target/<profile>");
            profile_dir.join("cellbank-global")
        }
    }
}

/// The shard binary, built beside global's by `cargo test --workspace`.
pub fn shard_bin() -> PathBuf {
    let shard = global_bin().with_file_name("cellbank-shard");
    assert!(
        shard.exists(),
        "{} is missing: build the workspace first (`cargo test --workspace` does)",
        shard.display()
    );
    shard
}

/// Waits up to a minute for `{base}/readyz` to answer 2xx; fails with the
/// process's log otherwise.
pub async fn ready(http: &reqwest::Client, base: &str, p: &Proc) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never became ready; its log:\n{}",
            p.name,
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
