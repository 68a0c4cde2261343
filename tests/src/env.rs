//! Where the test environment lives and how to reach its scripts.
//!
//! The shell scripts under `tests/env/` own the processes (moto, two kwok clusters); this
//! module runs them and reads the env files they write under `target/testenv/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Where the running environment keeps its pids, logs and env files.
pub fn state_dir() -> PathBuf {
    std::env::var_os("FAILOVER_TESTENV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/testenv"))
}

/// Runs one of the environment scripts, failing with its output when it fails.
pub fn run_script(script: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Reads `export KEY=value` lines from an env file written by the scripts.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect())
}
