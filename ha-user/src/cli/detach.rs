use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::{cli, datapath};

pub fn detach(config: Option<&Path>) -> anyhow::Result<()> {
    cli::require_root("ha-user detach")?;
    let pin_dir = cli::optional_config(config)?.map_or_else(
        || PathBuf::from(crate::config::DEFAULT_PIN_DIR),
        |c| c.pin_dir,
    );
    let removed = datapath::detach_all(&pin_dir)
        .with_context(|| format!("detaching {}", pin_dir.display()))?;
    if removed.is_empty() {
        println!("nothing pinned under {}", pin_dir.display());
    }
    for path in removed {
        println!("removed {}", path.display());
    }
    println!(
        "kernel routes with proto {} are left as they are: `ip route flush proto {}` removes them",
        crate::routes::ROUTE_PROTO,
        crate::routes::ROUTE_PROTO
    );
    Ok(())
}
