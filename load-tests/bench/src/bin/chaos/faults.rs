//! Doing the faults to the local cells' processes: signals to the pids that
//! `infra/local/cells.sh` recorded, restarts through its launchers (`cells.sh
//! start NAME`, as a supervisor would restart a crashed pod).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::plan::{Fault, Kind};

/// Where the local cells keep their pid files, launchers and data.
#[derive(Clone, Debug)]
pub struct Processes {
    pub state: PathBuf,
    pub cells_script: PathBuf,
}

impl Processes {
    /// The launcher name (`cells.sh start NAME`) of the fault's process.
    fn service(&self, f: &Fault) -> String {
        let t = f.target;
        match f.kind {
            Kind::KillShard | Kind::PauseShard => format!("shard-{t}"),
            Kind::KillGlobal | Kind::PauseGlobal => f.target_name(),
            Kind::KillBroker | Kind::PauseBroker => format!("broker-shard-{t}"),
            Kind::KillPostgres | Kind::PausePostgres => format!("pg-shard-{t}"),
            Kind::CutNetwork => format!("netproxy-shard-{t}"),
        }
    }

    /// Every pid of the fault's target: the process, or a Postgres server's
    /// postmaster and all its children (a crash or a pause of the server
    /// takes them all, as a container's would).
    fn pids(&self, f: &Fault) -> anyhow::Result<Vec<u32>> {
        let service = self.service(f);
        if let Some(cell) = service.strip_prefix("pg-") {
            let file = self.state.join("pg").join(cell).join("postmaster.pid");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let master: u32 = text.lines().next().unwrap_or("").trim().parse()?;
            let mut pids = vec![master];
            pids.extend(children(master));
            return Ok(pids);
        }
        let file = self.state.join("pids").join(&service);
        let pid = std::fs::read_to_string(&file)
            .with_context(|| format!("read {}", file.display()))?
            .trim()
            .parse()?;
        Ok(vec![pid])
    }

    /// Starts the fault: SIGKILL, SIGSTOP, or (a cut) SIGSTOP of the cell's
    /// network link. Returns the pids it touched.
    pub fn inject(&self, f: &Fault) -> anyhow::Result<Vec<u32>> {
        let pids = self.pids(f)?;
        let sig = match f.kind {
            Kind::KillShard | Kind::KillGlobal | Kind::KillBroker | Kind::KillPostgres => "KILL",
            _ => "STOP",
        };
        signal(sig, &pids)?;
        Ok(pids)
    }

    /// Ends the fault: restarts what was killed, continues what was paused.
    pub fn heal(&self, f: &Fault, pids: &[u32]) -> anyhow::Result<()> {
        match f.kind {
            Kind::KillShard | Kind::KillGlobal | Kind::KillBroker | Kind::KillPostgres => {
                self.wait_gone(pids);
                self.start(&self.service(f))
            }
            _ => signal("CONT", pids),
        }
    }

    /// Waits (bounded) until killed pids have left the process table.
    fn wait_gone(&self, pids: &[u32]) {
        for _ in 0..100 {
            if pids
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Every service cells.sh started (its launchers' names).
    pub fn services(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.state.join("run")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".sh")
                    .map(str::to_owned)
            })
            .collect();
        names.sort();
        names
    }

    /// Whether the service's process (a Postgres server's postmaster) lives.
    pub fn alive(&self, service: &str) -> bool {
        let file = match service.strip_prefix("pg-") {
            Some(cell) => self.state.join("pg").join(cell).join("postmaster.pid"),
            None => self.state.join("pids").join(service),
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                // A zombie or a dead pid is not alive.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|st| st.get(st.rfind(')')? + 2..).map(|r| !r.starts_with('Z')))
                    .unwrap_or(false)
            })
    }

    /// The launcher name of the process a fault is done to.
    pub fn service_of(&self, f: &Fault) -> String {
        self.service(f)
    }

    /// `cells.sh start NAME`.
    pub fn start(&self, service: &str) -> anyhow::Result<()> {
        let out = Command::new("bash")
            .arg(&self.cells_script)
            .arg("start")
            .arg(service)
            .env("CELLBANK_STATE", &self.state)
            .output()?;
        if !out.status.success() {
            bail!(
                "cells.sh start {service}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

fn signal(sig: &str, pids: &[u32]) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pids:?} failed");
    }
    Ok(())
}

/// The direct children of `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
