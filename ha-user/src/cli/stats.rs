use std::path::Path;

use crate::{cli, proto::socket::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn count(value: &serde_json::Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

pub async fn stats(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let answer = cli::ask(config, Request::Stats).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!("{:<18} {:>14} {:>16}", "PREFIX", "PACKETS", "BYTES");
    for p in answer["prefixes"].as_array().into_iter().flatten() {
        println!(
            "{:<18} {:>14} {:>16}",
            p["prefix"].as_str().unwrap_or("?"),
            count(&p["packets"]),
            count(&p["bytes"])
        );
    }
    println!();
    println!("{:<18} {:>14} {:>16}", "HOST", "PACKETS", "BYTES");
    for h in answer["hosts"].as_array().into_iter().flatten() {
        println!(
            "{:<18} {:>14} {:>16}",
            h["host"].as_str().unwrap_or("?"),
            count(&h["packets"]),
            count(&h["bytes"])
        );
    }
    println!();
    println!("{:<22} {:>14}", "VERDICT", "PACKETS");
    for (name, value) in answer["counters"].as_object().into_iter().flatten() {
        println!("{name:<22} {:>14}", count(value));
    }
    Ok(())
}
