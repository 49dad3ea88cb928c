use std::path::Path;

use crate::{
    cli,
    model::VipVerdict,
    proto::{
        Request, Status,
        reports::{DrainStatus, HostStatus, LanStatus, LastChange, MovingStatus, PrefixStatus},
    },
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub async fn status(config: Option<&Path>, args: Args) -> anyhow::Result<()> {
    let status: Status = cli::ask(config, Request::Status, args.json).await?;
    if args.json {
        return cli::print_json(&status);
    }
    let LanStatus {
        name,
        ifindex,
        steering,
        why,
    } = &status.lan;
    let at = ifindex.map_or_else(|| "gone".to_owned(), |i| format!("#{i}"));
    match (steering, why) {
        (true, _) => println!("LAN {name} ({at}): steering"),
        (false, why) => println!(
            "LAN {name} ({at}): NOT STEERING: {} (the kernel routes carry what they can)",
            or_dash(why.as_ref())
        ),
    }
    println!();
    println!(
        "{:<18} {:<10} {:<10} {:<16} {:<8} LAST CHANGE",
        "PREFIX", "OWNER", "CONFIGURED", "WHY", "PINNED"
    );
    for p in status.prefixes {
        let PrefixStatus {
            prefix,
            owner,
            configured_owner,
            why,
            pinned,
            last_change,
            moving,
        } = p;
        let pinned = match pinned {
            None => "-".to_owned(),
            Some(pin) if pin.force => format!("{}!", pin.host),
            Some(pin) => pin.host,
        };
        let last = match last_change {
            None => "-".to_owned(),
            Some(LastChange {
                at_unix_ms: _,
                old,
                new,
                reason,
                detection_ms,
                switch_us,
            }) => format!(
                "{} -> {} ({reason}), detection {} ms, switch {switch_us} µs",
                or_dash(old),
                or_dash(new),
                detection_ms.map_or("-".to_owned(), |d| format!("{d:.1}")),
            ),
        };
        let moving = match moving {
            None => String::new(),
            Some(MovingStatus {
                from,
                since_unix_ms: _,
                flows_elsewhere,
            }) => format!(
                "; moving from {from}: {} flows still elsewhere",
                or_dash(flows_elsewhere)
            ),
        };
        println!(
            "{:<18} {:<10} {:<10} {:<16} {:<8} {last}{moving}",
            prefix.to_string(),
            or_dash(owner),
            configured_owner,
            why.to_string(),
            pinned
        );
    }
    println!();
    println!(
        "{:<10} {:<15} {:<8} {:<17} {:<8} {:<22} {:<10} LAST ERROR",
        "HOST", "ADDRESS", "HEALTH", "MAC", "DRAINED", "VIPS", "DISCARDED"
    );
    let mut not_served = Vec::new();
    for h in status.hosts {
        let HostStatus {
            name,
            address,
            health,
            mac,
            drained,
            draining,
            last_error,
            last_rtt_us: _,
            probes,
            vips,
            vip_probes: _,
        } = h;
        let drained = match draining {
            Some(DrainStatus {
                since_unix_ms: _,
                deadline_unix_ms,
                remaining,
            }) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                format!(
                    "draining ({} connections left, {} s to go)",
                    or_dash(remaining),
                    deadline_unix_ms.saturating_sub(now).div_ceil(1000)
                )
            }
            None if drained => "yes".to_owned(),
            None => "no".to_owned(),
        };
        let count = |verdict: VipVerdict| vips.iter().filter(|v| v.verdict == verdict).count();
        let mut served = format!("{} serving", count(VipVerdict::Serving));
        for (verdict, what) in [
            (VipVerdict::NotServing, "not"),
            (VipVerdict::Unknown, "unknown"),
        ] {
            let n = count(verdict);
            if n > 0 {
                served.push_str(&format!(", {n} {what}"));
            }
        }
        println!(
            "{:<10} {:<15} {:<8} {:<17} {:<8} {:<22} {:<10} {}",
            name,
            address.to_string(),
            health.to_string(),
            or_dash(mac),
            drained,
            served,
            probes.discarded(),
            or_dash(last_error)
        );
        for vip in vips {
            if vip.verdict == VipVerdict::NotServing {
                not_served.push(format!(
                    "{:<10} {:<18} {}",
                    name,
                    vip.prefix.to_string(),
                    or_dash(vip.why)
                ));
            }
        }
    }
    if !not_served.is_empty() {
        println!();
        println!("{:<10} {:<18} WHY NOT SERVED", "HOST", "PREFIX");
        for line in not_served {
            println!("{line}");
        }
    }
    Ok(())
}
