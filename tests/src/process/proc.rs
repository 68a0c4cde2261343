//! One child process of a [`crate::agents::Stack`] with its log file: started, signalled, stopped,
//! and checked for how it exited.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// How long a process may take to exit after SIGTERM.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

/// One child process with its log file; dropping the guard kills it.
pub struct Proc {
    /// Its name in logs and errors (`agent-east`, `storage-sim`, …).
    pub name: String,
    child: Child,
    pub(crate) log: PathBuf,
    /// Sent SIGTERM by [`Proc::terminate`]: exiting is expected (with status 0).
    stopped: bool,
}

impl Proc {
    /// Starts `cmd`, stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
            stopped: false,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How the process exited (`None`: still running).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Fails, naming the process and the tail of its log, when it exited other than with
    /// status 0 after [`Proc::terminate`]: it died while it should run, or failed.
    pub fn check_exit(&mut self) -> Result<()> {
        let status = match self.exit_status()? {
            None => return Ok(()),
            Some(s) if s.success() && self.stopped => return Ok(()),
            Some(s) => s,
        };
        let how = if self.stopped {
            "exited with"
        } else {
            "died while it should run:"
        };
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        bail!(
            "{} {how} {status}\n--- last lines of its log ({}) ---\n{tail}",
            self.name,
            self.log.display()
        )
    }

    /// Sends SIGTERM and waits until the process exits.
    pub async fn terminate(&mut self) -> Result<()> {
        self.stopped = true;
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        let deadline = Instant::now() + EXIT_DEADLINE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("{} did not exit after SIGTERM", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("proc-{name}-{}.log", std::process::id()))
    }

    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    async fn wait_exit(p: &mut Proc) -> ExitStatus {
        loop {
            if let Some(s) = p.exit_status().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_process_that_dies_is_named_with_the_tail_of_its_log() {
        let log = log_path("dies");
        let script = "for i in $(seq 1 60); do echo line-$i >&2; done; echo boom >&2; exit 3";
        let mut p = Proc::spawn("storage-sim-x", shell(script), log.clone()).unwrap();
        let status = wait_exit(&mut p).await;
        assert_eq!(status.code(), Some(3));
        let err = format!("{:#}", p.check_exit().unwrap_err());
        assert!(
            err.contains("storage-sim-x died while it should run"),
            "{err}"
        );
        assert!(err.contains("boom") && err.contains("line-60"), "{err}");
        // Only the tail: the first lines are left out.
        assert!(!err.contains("line-5\n"), "{err}");
        let _ = std::fs::remove_file(log);
    }

    #[tokio::test]
    async fn a_process_stopped_with_sigterm_passes_only_with_status_0() {
        let log = log_path("term");
        let mut ok = Proc::spawn(
            "clean",
            shell("trap 'exit 0' TERM; while true; do sleep 0.05; done"),
            log.clone(),
        )
        .unwrap();
        ok.check_exit().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        ok.terminate().await.unwrap();
        ok.check_exit().unwrap();

        let mut bad = Proc::spawn(
            "failing",
            shell("trap 'echo cannot write >&2; exit 1' TERM; while true; do sleep 0.05; done"),
            log.clone(),
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        bad.terminate().await.unwrap();
        let err = format!("{:#}", bad.check_exit().unwrap_err());
        assert!(err.contains("failing exited with"), "{err}");
        assert!(err.contains("cannot write"), "{err}");
        let _ = std::fs::remove_file(log);
    }
}
