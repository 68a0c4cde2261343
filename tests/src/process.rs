//! Child processes of the harness: [`Proc`] (a process with its log file, killed when
//! dropped; in `proc`), the workspace's binaries brought up to date ([`workspace_binary`]), a clean
//! environment for them ([`clean_command`]), and the loopback helpers (a free port, a
//! plain HTTP GET) the scenarios use to reach an agent's admin port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod proc;

pub use proc::Proc;

/// A workspace binary next to the running executable (`target/debug/` or
/// `target/release/`), brought up to date first (a no-op when `cargo test --workspace`
/// already built it), so a test never runs a stale agent.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("the executable has no folder")?;
    let dir = if here.file_name().is_some_and(|n| n == "deps") {
        here.parent().context("deps/ has no parent")?
    } else {
        here
    };
    let release = dir.file_name().is_some_and(|n| n == "release");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Build the way `cargo test --workspace` does (every member, every target), so the
    // features match and this is a no-op inside `make test`; building one package alone
    // would resolve other features and recompile half the dependency tree. A release build
    // (the bench) takes the binaries only: no test targets, so no failpoints.
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut built = BUILT.lock().map_err(|_| anyhow!("build lock poisoned"))?;
    if !*built {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--workspace"]);
        if release {
            cmd.args(["--release", "--bins"]);
        } else {
            cmd.arg("--all-targets");
        }
        let status = cmd
            .current_dir(crate::env::repo_root())
            .status()
            .with_context(|| format!("running cargo build for {name}"))?;
        ensure!(status.success(), "building {name} failed: {status}");
        *built = true;
    }
    ensure!(bin.exists(), "{} does not exist", bin.display());
    Ok(bin)
}

/// True when the child process `pid` has exited (a zombie not yet waited for, or gone).
pub(crate) fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `GET path` on the loopback port: status code and body.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// A command with nothing inherited that could change the child's configuration.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAILOVER_") || k.starts_with("AWS_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}
