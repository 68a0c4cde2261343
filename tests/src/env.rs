//! Where the test environment lives and how to reach its scripts.
//!
//! The shell scripts under `tests/env/` own the processes (moto, toxiproxy, two kwok
//! clusters); this module runs them and reads the env files they write under
//! `target/testenv/`.

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

/// The toxiproxy server's API (`http://127.0.0.1:<port>`), from the `toxiproxy.env` that
/// `tests/env/toxiproxy-up.sh` writes (`up.sh` runs it); read from there rather than from
/// `env.sh`, which every `up.sh` run rewrites.
pub fn toxiproxy_url() -> Result<String> {
    let path = state_dir().join("toxiproxy.env");
    let url = read_env_file(&path)?
        .remove("TOXIPROXY_URL")
        .with_context(|| format!("{} has no TOXIPROXY_URL", path.display()))?;
    if !url.starts_with("http://127.0.0.1:") {
        bail!("the toxiproxy API {url} is not on loopback");
    }
    Ok(url)
}
