//! `ha-user events`: the controller's events as they happen, until it stops.

use std::{io::Write as _, path::Path};

use anyhow::Context as _;

use crate::{
    cli,
    proto::{StreamItem, socket::Connection},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object per event (the protocol's event records) instead of one
    /// line of text.
    #[arg(long)]
    pub json: bool,
    /// First replay the events the controller still holds with a sequence number
    /// above SEQ: its start-up, then up to the last 1024 (0: all of them).
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
}

pub async fn events(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let Args { json, since } = args;
    let socket = cli::control_socket(config)?;
    let mut events = Connection::open(&socket).await?.subscribe(since).await?;
    let mut stdout = std::io::stdout().lock();
    // Not println!: that panics when the reader has gone (`ha-user events | head`).
    let mut write = |line: String| {
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .context("writing the events to standard output")
    };
    while let Some(item) = events.next().await? {
        match item {
            StreamItem::Event(record) if json => write(serde_json::to_string(&record)?)?,
            StreamItem::Event(record) => write(record.to_string())?,
            StreamItem::Lagged { missed } if json => {
                write(serde_json::to_string(&StreamItem::Lagged { missed })?)?;
            }
            StreamItem::Lagged { missed } => {
                write(format!(
                    "({missed} events missed: this reader was too slow)"
                ))?;
            }
            StreamItem::Subscribed { .. } => {}
        }
    }
    Ok(())
}
