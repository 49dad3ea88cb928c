use std::path::Path;

use crate::{
    cli,
    proto::{Request, Stats},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub async fn stats(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let stats: Stats = cli::ask(config, Request::Stats, args.json).await?;
    if args.json {
        return cli::print_json(&stats);
    }
    let Stats {
        prefixes,
        hosts,
        counters,
        flows,
    } = stats;
    println!("{:<18} {:>14} {:>16}", "PREFIX", "PACKETS", "BYTES");
    for p in prefixes {
        println!(
            "{:<18} {:>14} {:>16}",
            p.prefix.to_string(),
            p.packets,
            p.bytes
        );
    }
    println!();
    println!("{:<18} {:>14} {:>16}", "HOST", "PACKETS", "BYTES");
    for h in hosts {
        println!("{:<18} {:>14} {:>16}", h.host, h.packets, h.bytes);
    }
    println!();
    println!("{:<22} {:>14}", "VERDICT", "PACKETS");
    for (verdict, packets) in counters {
        println!("{:<22} {packets:>14}", verdict.to_string());
    }
    println!();
    println!("{:<22} {:>14}", "FLOW TABLE", "COUNT");
    for (tally, count) in flows {
        println!("{:<22} {count:>14}", tally.to_string());
    }
    Ok(())
}
