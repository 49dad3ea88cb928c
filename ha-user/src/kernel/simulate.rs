//! "Where would this packet go?" answered by the real program: a frame is built
//! for the destination and run through `ha_steer` by the kernel (BPF_PROG_TEST_RUN)
//! against the live steering tables. The tables (prefixes, hosts, interfaces, redirect
//! ports) are the pinned ones; the counters and statistics are a private copy, so a
//! simulation never shows up in `stats`.

use std::{net::Ipv4Addr, path::Path};

use aya::{
    EbpfLoader,
    programs::{ProgramError, TestRun as _, TestRunOptions},
};
use ha_common::{Counter, MAP_HOSTS, MAP_IFACES, MAP_PREFIXES, MAP_TX_PORTS, PrefixEntry};
use serde::Serialize;

use crate::{
    kernel::{
        datapath::{DatapathError, Maps, map_pin_path, steer_program},
        netdev::Interface,
    },
    model::Mac,
};

/// Source MAC of simulated frames (locally administered).
const SIM_SRC_MAC: [u8; 6] = [0x02, 0x48, 0x41, 0x53, 0x49, 0x4d];

/// What the program did with the frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// `XDP_TX`, `XDP_REDIRECT` or `XDP_PASS`.
    pub action: String,
    /// The counter the program incremented: the verdict, or why it stepped aside.
    pub counter: String,
    /// The frame's destination MAC after the program (the host it was steered to).
    pub dst_mac: Option<String>,
    /// TTL after the program.
    pub ttl: Option<u8>,
    /// The matching prefix entry, if the destination is steered.
    pub prefix: Option<String>,
    pub host_id: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("cannot run the program on the simulated frame")]
    Run(#[source] ProgramError),
    #[error("the program returned an unknown action {0}")]
    Action(u32),
}

/// An Ethernet + IPv4 + UDP frame from `src` to `dst`, addressed to `iface`.
pub fn frame(iface_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&iface_mac.0);
    frame.extend_from_slice(&SIM_SRC_MAC);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = frame.len();
    let total_len: u16 = 20 + 8 + 18;
    frame.extend_from_slice(&[0x45, 0, 0, 0, 0x48, 0x41, 0x40, 0, ttl, 17, 0, 0]);
    frame[ip_start + 2..ip_start + 4].copy_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    let check = ipv4_checksum(&frame[ip_start..ip_start + 20]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&check.to_be_bytes());
    // UDP 40000 -> 80, length 26, checksum 0 (none), 18 bytes of payload.
    frame.extend_from_slice(&[0x9c, 0x40, 0, 80, 0, 26, 0, 0]);
    frame.extend_from_slice(b"ha-user simulate\r\n");
    frame
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Runs one frame from `src` to `dst` arriving on `iface` through the program.
pub fn simulate(
    pin_dir: &Path,
    iface: &Interface,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
) -> Result<Outcome, SimulateError> {
    let tables = Maps::open_pinned(pin_dir)?; // fails clearly when nothing is running
    let mut loader = EbpfLoader::new();
    let paths: Vec<(&str, std::path::PathBuf)> =
        [MAP_PREFIXES, MAP_HOSTS, MAP_IFACES, MAP_TX_PORTS]
            .iter()
            .map(|&m| (m, map_pin_path(pin_dir, m)))
            .collect();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(crate::EBPF_OBJECT)
        .map_err(DatapathError::Load)?;
    let program = steer_program(&mut ebpf)?;
    program.load().map_err(DatapathError::Program)?;

    let input = frame(iface.mac, src, dst, ttl);
    let mut output = vec![0u8; input.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(input.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&iface.index.to_ne_bytes());
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut output),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        })
        .map_err(SimulateError::Run)?;
    let action = match result.return_value {
        2 => "XDP_PASS",
        3 => "XDP_TX",
        4 => "XDP_REDIRECT",
        other => return Err(SimulateError::Action(other)),
    };
    let private = Maps::take_counters(&mut ebpf)?;
    let counter = private
        .iter()
        .find(|(_, n)| *n > 0)
        .map_or_else(|| "none".to_owned(), |(c, _)| c.name().to_owned());
    let steered = action != "XDP_PASS";
    let out = &output[..result.data_size_out as usize];
    let entry: Option<(ipnet::Ipv4Net, PrefixEntry)> =
        tables.prefix_entries().ok().and_then(|entries| {
            entries
                .into_iter()
                .filter(|(net, _)| net.contains(&dst))
                .max_by_key(|(net, _)| net.prefix_len())
        });
    Ok(Outcome {
        action: action.to_owned(),
        counter,
        dst_mac: (steered && out.len() >= 6)
            .then(|| Mac([out[0], out[1], out[2], out[3], out[4], out[5]]).to_string()),
        ttl: out.get(22).copied(),
        prefix: entry.map(|(net, _)| net.to_string()),
        host_id: entry.map(|(_, e)| e.host),
    })
}

impl Maps {
    /// The verdict counters of a privately loaded object, summed over CPUs.
    fn take_counters(ebpf: &mut aya::Ebpf) -> Result<Vec<(Counter, u64)>, DatapathError> {
        let map = ebpf
            .take_map(ha_common::MAP_COUNTERS)
            .ok_or(DatapathError::MissingProgram)?;
        let counters: aya::maps::PerCpuArray<aya::maps::MapData, u64> =
            map.try_into().map_err(|source| DatapathError::Map {
                name: ha_common::MAP_COUNTERS,
                source,
            })?;
        Counter::ALL
            .iter()
            .map(|&c| {
                let values = counters
                    .get(&(c as u32), 0)
                    .map_err(|source| DatapathError::Map {
                        name: ha_common::MAP_COUNTERS,
                        source,
                    })?;
                Ok((c, values.iter().sum()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_is_a_valid_ipv4_udp_datagram() {
        let frame = frame(
            Mac([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(192, 168, 1, 65),
            64,
        );
        assert_eq!(frame.len(), 14 + 46);
        assert_eq!(&frame[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(
            ipv4_checksum(&frame[14..34]),
            0,
            "the header checksum verifies"
        );
        assert_eq!(&frame[30..34], &[192, 168, 1, 65]);
        assert_eq!(frame[22], 64);
    }
}
