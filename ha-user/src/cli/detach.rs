use std::path::Path;

use anyhow::Context as _;

use crate::{cli::require_root, config::Config, datapath};

pub fn detach(config: &Path) -> anyhow::Result<()> {
    require_root("ha-user detach")?;
    let config = Config::load(config)?;
    let removed = datapath::detach_all(&config.pin_dir)
        .with_context(|| format!("detaching {}", config.pin_dir.display()))?;
    if removed.is_empty() {
        println!("nothing pinned under {}", config.pin_dir.display());
    }
    for path in removed {
        println!("removed {}", path.display());
    }
    Ok(())
}
