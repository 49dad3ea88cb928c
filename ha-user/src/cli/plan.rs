use std::{io::Write as _, path::Path};

use anyhow::Context as _;

use crate::{
    config::Config,
    plan::{self, Format},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which part to print. Every format but `all` prints that part bare: the command
    /// formats print only command lines, ready to run.
    #[arg(long, value_enum, default_value_t = Format::All)]
    pub format: Format,
}

pub fn plan(config_path: &Path, args: Args) -> anyhow::Result<()> {
    let Args { format } = args;
    let config = Config::load(config_path)?;
    let text = plan::render(&config, format);
    // Not print!: that panics when the reader has gone (`ha-user plan | head`).
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the plan to standard output")
}
