//! The flow table at its full size (root): the controller's sweep reads all 262,144
//! entries of `HA_FLOWS` with `BPF_MAP_LOOKUP_BATCH` — every entry exactly once —
//! and removes a list of keys with `BPF_MAP_DELETE_BATCH`, skipping keys already
//! gone. Prints the time of a full read both ways (batched, and one entry at a time
//! as aya reads a hash map): the sweep's cost per pass.
//!
//! The maps are pinned under a directory of this suite's own and removed at the end.

use std::{collections::HashSet, path::Path, time::Instant};

use aya::maps::{HashMap, Map, MapData};
use ha_common::{FlowEntry, FlowKey, MAP_FLOWS, MAX_FLOWS};
use ha_tests::root::require_root;
use ha_user::kernel::{
    datapath::{self, Loaded},
    flows::FlowTable,
};

const PIN_DIR: &str = "/sys/fs/bpf/ha-aff-flowtable";

/// Removes the pins whatever happens to the test.
struct Pins;

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(err) = datapath::detach_all(Path::new(PIN_DIR)) {
            eprintln!("removing {PIN_DIR}: {err:#}");
        }
    }
}

fn key(n: u32) -> FlowKey {
    let [a, b, c, d] = n.to_be_bytes();
    FlowKey {
        client: [10, a, b, c],
        vip: [192, 168, 1, 33],
        client_port: [d, 1],
        vip_port: [0, 80],
        proto: 6,
        _pad: [0; 3],
    }
}

#[test]
fn a_full_flow_table_is_read_in_batches_and_pruned() {
    if !require_root("a_full_flow_table_is_read_in_batches_and_pruned") {
        return;
    }
    let _ = datapath::detach_all(Path::new(PIN_DIR));
    let _pins = Pins;
    let loaded = Loaded::load(Path::new(PIN_DIR), false).expect("loading the data path");
    drop(loaded);

    let data = MapData::from_pin(Path::new(PIN_DIR).join(MAP_FLOWS)).expect("HA_FLOWS");
    let mut flows: HashMap<MapData, FlowKey, FlowEntry> =
        HashMap::try_from(Map::from_map_data(data).expect("map")).expect("a hash map");
    let started = Instant::now();
    for n in 0..MAX_FLOWS {
        let entry = FlowEntry {
            host: n % 4,
            prefix_id: 0,
            seen_ns: u64::from(n),
            ..FlowEntry::default()
        };
        flows.insert(key(n), entry, 0).expect("inserting a flow");
    }
    eprintln!("{MAX_FLOWS} flows written in {:?}", started.elapsed());
    // The kernel's own account of the table's memory.
    match std::process::Command::new("bpftool")
        .args(["map", "show", "pinned"])
        .arg(Path::new(PIN_DIR).join(MAP_FLOWS))
        .output()
    {
        Ok(out) => eprintln!("bpftool: {}", String::from_utf8_lossy(&out.stdout).trim()),
        Err(err) => eprintln!("bpftool not run: {err}"),
    }

    let table = FlowTable::open(Path::new(PIN_DIR)).expect("opening the flow table");
    let mut entries = Vec::new();
    let mut batch = Vec::new();
    let mut each = Vec::new();
    for round in 0..3 {
        let started = Instant::now();
        table.read_all(&mut entries).expect("batch read");
        batch.push(started.elapsed());
        assert_eq!(entries.len(), MAX_FLOWS as usize, "round {round}");
        let started = Instant::now();
        table.read_each(&mut entries).expect("entry-by-entry read");
        each.push(started.elapsed());
        assert_eq!(entries.len(), MAX_FLOWS as usize, "round {round}");
    }
    batch.sort();
    each.sort();
    eprintln!(
        "full read of {MAX_FLOWS} entries: BPF_MAP_LOOKUP_BATCH min {:?} median {:?} max {:?}; \
         one entry at a time (GET_NEXT_KEY + LOOKUP_ELEM) min {:?} median {:?} max {:?}",
        batch[0], batch[1], batch[2], each[0], each[1], each[2]
    );

    table.read_all(&mut entries).expect("batch read");
    let keys: HashSet<FlowKey> = entries.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys.len(), MAX_FLOWS as usize, "every entry exactly once");
    for (key, entry) in &entries {
        let n = u32::try_from(entry.seen_ns).expect("written from a u32");
        assert_eq!(*key, self::key(n), "an entry with another's key");
    }

    // Half the table goes, with some keys gone already: they are skipped.
    let doomed: Vec<FlowKey> = (0..MAX_FLOWS).step_by(2).map(key).collect();
    for gone in doomed.iter().step_by(1000) {
        flows.remove(gone).expect("removing a flow");
    }
    let already = doomed.iter().step_by(1000).count();
    let started = Instant::now();
    let removed = table.remove(&doomed).expect("batch removal");
    eprintln!(
        "{removed} of {} keys removed in {:?} ({already} were gone)",
        doomed.len(),
        started.elapsed()
    );
    assert_eq!(removed, doomed.len() - already);
    table.read_all(&mut entries).expect("batch read");
    assert_eq!(entries.len(), MAX_FLOWS as usize / 2);
    assert!(
        entries.iter().all(|(_, e)| e.seen_ns % 2 == 1),
        "only the odd flows are left"
    );
}
