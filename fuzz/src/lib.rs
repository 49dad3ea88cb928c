//! What the fuzz targets share.

use std::{path::Path, sync::LazyLock};

use ha_user::config::Config;

/// The classic four-server configuration (`ha-user/tests/golden/classic.toml`),
/// parsed once.
pub fn classic() -> &'static Config {
    static CLASSIC: LazyLock<Config> = LazyLock::new(|| {
        let text = include_str!("../../ha-user/tests/golden/classic.toml");
        Config::parse(Path::new("classic.toml"), text).expect("classic.toml is valid")
    });
    &CLASSIC
}
