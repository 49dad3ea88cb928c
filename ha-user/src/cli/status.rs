use std::path::Path;

use serde_json::Value;

use crate::{cli, proto::socket::Request};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn status(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let answer = cli::ask(config, Request::Status).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<10} {:<10} {:<16} {:<8} LAST CHANGE",
        "PREFIX", "OWNER", "CONFIGURED", "WHY", "PINNED"
    );
    for p in answer["prefixes"].as_array().into_iter().flatten() {
        let pinned = match &p["pinned"] {
            Value::Null => "-".to_owned(),
            pin if pin["force"] == Value::Bool(true) => format!("{}!", text(&pin["host"])),
            pin => text(&pin["host"]),
        };
        let last = match &p["last_change"] {
            Value::Null => "-".to_owned(),
            c => format!(
                "{} -> {} ({}), detection {} ms, switch {} µs",
                text(&c["old"]),
                text(&c["new"]),
                text(&c["reason"]),
                c["detection_ms"]
                    .as_f64()
                    .map_or("-".to_owned(), |d| format!("{d:.1}")),
                text(&c["switch_us"])
            ),
        };
        println!(
            "{:<18} {:<10} {:<10} {:<16} {:<8} {last}",
            text(&p["prefix"]),
            text(&p["owner"]),
            text(&p["configured_owner"]),
            text(&p["why"]),
            pinned
        );
    }
    println!();
    println!(
        "{:<10} {:<15} {:<8} {:<17} {:<8} LAST ERROR",
        "HOST", "ADDRESS", "HEALTH", "MAC", "DRAINED"
    );
    for h in answer["hosts"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<15} {:<8} {:<17} {:<8} {}",
            text(&h["name"]),
            text(&h["address"]),
            text(&h["health"]),
            text(&h["mac"]),
            if h["drained"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            },
            text(&h["last_error"])
        );
    }
    Ok(())
}
