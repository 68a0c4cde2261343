//! `make image` (`deploy/image/build.sh`): the OCI image of `failover-agent`, assembled on
//! nothing (no base image pulled). The test packages the workspace's debug build of the
//! agent with the same script (`AGENT_BIN`; `make image` builds and packages the release
//! build), then unpacks the image with `umoci` and runs what its configuration says to run
//! (entrypoint, user) in a `chroot` of the unpacked root filesystem: `--version` must print
//! the agent's version, so the libraries `ldd` named and the loader are all there. Then it
//! loads the archive into podman (storage of its own under `target/tmp`) and runs the image
//! there (`podman run --network=none <image> --version`). It also checks the image's
//! configuration (non-root user 65532, port 9090, the CA certificates) and that there is no
//! shell in it.
//!
//! podman runs with runc and no default ulimits (`containers.conf` of the test's own): on
//! the build machines crun refuses the host's cgroup layout ("cgroups in hybrid mode") and
//! podman's default `nofile` limit is above the machine's hard limit.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use failover_tests::agents::workspace_binary;
use failover_tests::env::repo_root;
use failover_tests::kube::TestEnv;

fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "{what} exited {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[tokio::test]
async fn the_image_runs_the_agent_as_its_configuration_says() -> Result<()> {
    // Installs umoci on a fresh machine (tests/env/build.sh).
    TestEnv::attach().await?;
    let agent = workspace_binary("failover-agent")?;
    let dir = repo_root().join("target/tmp/image-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("image");
    run(Command::new("bash")
        .arg(repo_root().join("deploy/image/build.sh"))
        .env("AGENT_BIN", &agent)
        .env("IMAGE_DIR", &out))?;
    let version = run(Command::new(&agent).arg("--version"))?;
    let tag = version
        .split_whitespace()
        .nth(1)
        .context("no version in --version")?
        .to_owned();
    ensure!(out.join("failover-agent.tar").is_file(), "no archive");
    let tags = run(Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(out.join("oci")))?;
    ensure!(
        tags.split_whitespace().any(|t| t == tag),
        "tags {tags:?}, expected {tag}"
    );

    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{tag}", out.join("oci").display()))
        .arg(&bundle))?;
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json"))?)?;
    let process = &config["process"];
    let args: Vec<&str> = process["args"]
        .as_array()
        .context("no process.args")?
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    ensure!(
        args == [
            "/usr/local/bin/failover-agent",
            "--admin-addr",
            "0.0.0.0:9090"
        ],
        "{args:?}"
    );
    let (uid, gid) = (&process["user"]["uid"], &process["user"]["gid"]);
    ensure!(uid == 65532 && gid == 65532, "user {uid}:{gid}");
    ensure!(
        process["env"].as_array().is_some_and(|e| e
            .iter()
            .any(|v| v == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")),
        "{process}"
    );

    let rootfs = bundle.join("rootfs");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd"))?;
    ensure!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let certs = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt"))?;
    ensure!(
        certs.matches("BEGIN CERTIFICATE").count() > 50,
        "too few CA certificates"
    );
    ensure!(!rootfs.join("bin/sh").exists(), "the image has a shell");

    // The entrypoint, as the image's user, in a chroot of the image's root filesystem: no
    // file of this machine is reachable, so a missing library fails here.
    let printed = run(Command::new("chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(&rootfs)
        .arg(args[0])
        .arg("--version"))?;
    ensure!(
        printed.trim() == version.trim(),
        "{printed:?} vs {version:?}"
    );
    // The CRDs it prints come from the binary alone.
    let crds = run(Command::new("chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(&rootfs)
        .arg(args[0])
        .arg("crd"))?;
    ensure!(crds.contains("kind: CustomResourceDefinition"), "{crds}");

    let printed = podman_run(&dir, &out.join("failover-agent.tar"))?;
    ensure!(
        printed.trim() == version.trim(),
        "{printed:?} vs {version:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Loads `archive` into a podman storage under `dir` and runs the image with `--version`;
/// returns what it printed.
fn podman_run(dir: &std::path::Path, archive: &std::path::Path) -> Result<String> {
    let conf = dir.join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n")?;
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &conf)
            .arg("--root")
            .arg(dir.join("podman/root"))
            .arg("--runroot")
            .arg(dir.join("podman/run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args);
        cmd
    };
    let loaded = run(podman(&["load", "--input"]).arg(archive))?;
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .with_context(|| format!("podman load named no image: {loaded}"))?
        .trim()
        .to_owned();
    let printed = run(&mut podman(&[
        "run",
        "--rm",
        "--network=none",
        &image,
        "--version",
    ]));
    // The storage under `dir` goes with it (the caller removes `dir`).
    let _ = run(&mut podman(&["rmi", "--all", "--force"]));
    printed
}

#[test]
fn the_dockerfile_pins_its_base_images_by_digest() -> Result<()> {
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile"))?;
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    ensure!(froms.len() >= 2, "{froms:?}");
    for from in froms {
        let image = from
            .split_whitespace()
            .nth(1)
            .context("FROM without image")?;
        let digest = image
            .split_once("@sha256:")
            .map(|(_, d)| d)
            .with_context(|| format!("{image} is not pinned by digest"))?;
        ensure!(
            digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
            "{image}: malformed digest"
        );
    }
    Ok(())
}
