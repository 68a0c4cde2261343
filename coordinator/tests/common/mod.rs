//! What the `failoverctl` tests share: a test's own table and queue prefix on the shared
//! moto server, and running the real binary with static test credentials and an empty AWS
//! profile, so nothing on the machine running the tests leaks in.

use std::time::Duration;

use anyhow::Result;
use assert_cmd::Command;
use failover_tests::aws::{AwsEnv, moto};

/// A test's own table and queue prefix on the shared moto server.
pub struct TestEnv {
    pub moto: AwsEnv,
    pub table: String,
    pub prefix: String,
    /// Holds the empty AWS config and credentials files.
    pub home: tempfile::TempDir,
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl TestEnv {
    /// A fresh table named `<table_prefix>-<name>-…` and queue prefix `<name>-…-`, with
    /// empty AWS config and credentials files. Creates nothing on moto.
    pub async fn create(table_prefix: &str, name: &str) -> Result<Self> {
        let moto = moto().await?;
        let table = moto.unique(&format!("{table_prefix}-{name}"));
        let prefix = format!("{}-", moto.unique(name));
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join("config"), "")?;
        std::fs::write(home.path().join("credentials"), "")?;
        Ok(Self {
            moto,
            table,
            prefix,
            home,
        })
    }

    /// `failoverctl` with this test's AWS environment, but no table or prefix.
    pub fn bare_command(&self) -> Command {
        let mut cmd = Command::cargo_bin("failoverctl").expect("the failoverctl binary is built");
        for var in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "FAILOVER_TABLE",
            "FAILOVER_QUEUE_PREFIX",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("AWS_ENDPOINT_URL", &self.moto.endpoint_url)
            .env("AWS_REGION", &self.moto.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.home.path().join("credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// Runs `failoverctl --table <t> --queue-prefix <p> <args>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.bare_command();
        cmd.args(["--table", &self.table, "--queue-prefix", &self.prefix]);
        cmd.args(args);
        output(cmd)
    }
}

/// Runs `cmd` to completion and captures its exit code and output.
pub fn output(mut cmd: Command) -> Run {
    let out = cmd.output().expect("failoverctl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The run's stdout as JSON; panics with the run if it is not.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{run}"))
}
