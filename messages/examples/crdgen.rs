//! Writes the CRD YAML generated from `failover_messages::crd` into `deploy/crds/`.
//!
//! ```sh
//! cargo run -p failover-messages --example crdgen            # writes <workspace>/deploy/crds/
//! cargo run -p failover-messages --example crdgen -- OUT_DIR # writes OUT_DIR/
//! ```
//!
//! `make crds` runs the first form; `messages/tests/crd_drift.rs` fails when the committed
//! files differ from what this writes.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let messages = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            messages
                .parent()
                .expect("messages/ has a parent")
                .join("deploy/crds")
        });
    std::fs::create_dir_all(&dir)?;
    for (name, yaml) in failover_messages::crd::crd_files() {
        let path = dir.join(&name);
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == yaml);
        if !unchanged {
            std::fs::write(&path, yaml)?;
        }
        println!(
            "{} {}",
            if unchanged { "unchanged" } else { "wrote" },
            path.display()
        );
    }
    Ok(())
}
