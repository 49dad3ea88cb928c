//! The embedded object (`ha_user::EBPF_OBJECT`) and the pins against the ABI:
//!
//! - the object holds the production programs and nothing else (the benchmark
//!   programs are `ha-bench-ebpf`'s);
//! - its BTF map definitions are the map table's (`ha_common::MAPS`), map by map:
//!   kind, key size, value size, capacity (no root needed);
//! - the controller's start-up refuses pins whose capacity is not the table's
//!   (root: it pins maps under `/sys/fs/bpf/ha-mt-<pid>`, removed at the end).
//!
//! Not root: the pin test fails, unless `HA_SKIP_ROOT_TESTS=1`, which prints
//! `SKIPPED: <test> needs root` instead.

#[path = "common/root.rs"]
mod root;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{EbpfLoader, maps::Array};
use aya_obj::{EbpfSectionKind, Object};
use ha_common::{
    MAP_FLOWS, MAP_META, MAPS, MAX_FLOWS, PINNED_MAPS, PROG_LEARN, PROG_PASS, PROG_STEER,
};
use ha_user::kernel::datapath::{self, DatapathError, Loaded, layout, map_pin_path};

/// Kind (`bpf_map_type`), key size, value size, capacity.
type Shape = (u32, u32, u32, u32);

fn table() -> BTreeMap<&'static str, Shape> {
    MAPS.iter()
        .map(|spec| {
            let shape = (
                spec.kind.bpf_map_type(),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
            );
            (spec.name, shape)
        })
        .collect()
}

fn object() -> Object {
    Object::parse(ha_user::EBPF_OBJECT).expect("parsing the embedded object")
}

#[test]
fn the_object_holds_the_production_programs_only() {
    let object = object();
    let mut programs: Vec<&str> = object.programs.keys().map(String::as_str).collect();
    programs.sort_unstable();
    let mut production = vec![PROG_STEER, PROG_LEARN, PROG_PASS];
    production.sort_unstable();
    assert_eq!(programs, production);
}

#[test]
fn the_objects_btf_maps_are_the_table() {
    let object = object();
    let built: BTreeMap<&str, Shape> = object
        .maps
        .iter()
        .filter(|(_, map)| map.section_kind() == EbpfSectionKind::BtfMaps)
        .map(|(name, map)| {
            let shape = (
                map.map_type(),
                map.key_size(),
                map.value_size(),
                map.max_entries(),
            );
            (name.as_str(), shape)
        })
        .collect();
    let table = table();
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        table.keys().collect::<Vec<_>>(),
        "the object's BTF maps are not the table's"
    );
    let differ: Vec<String> = table
        .iter()
        .filter(|(name, shape)| built.get(*name) != Some(shape))
        .map(|(name, shape)| {
            format!(
                "{name}: the object declares (kind, key B, value B, entries) {:?}, the table {shape:?}",
                built.get(name)
            )
        })
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    // The only other map is aya-log's ring buffer (a legacy `maps` definition),
    // which nothing pins.
    let legacy: Vec<&str> = object
        .maps
        .iter()
        .filter(|(_, map)| map.section_kind() == EbpfSectionKind::Maps)
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(legacy, ["AYA_LOGS"]);
}

/// A pin directory of this test, emptied and removed on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new(tag: &str) -> Self {
        let dir = PathBuf::from(format!("/sys/fs/bpf/ha-mt-{tag}-{}", std::process::id()));
        datapath::detach_all(&dir).expect("removing the leftovers of an earlier run");
        std::fs::create_dir_all(&dir).expect("creating the pin directory");
        PinDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(err) = datapath::detach_all(&self.0) {
            eprintln!("removing {}: {err}", self.0.display());
        }
    }
}

/// Pins every map of the object under `dir`, as a controller of this layout would,
/// but with `name` holding `entries`.
fn pin_with_capacity(dir: &Path, name: &'static str, entries: u32) {
    let paths: Vec<(&str, PathBuf)> = PINNED_MAPS
        .iter()
        .map(|&map| (map, map_pin_path(dir, map)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (map, path) in &paths {
        loader.map_pin_path(map, path.as_path());
    }
    loader.map_max_entries(name, entries);
    let mut ebpf = loader
        .load(ha_user::EBPF_OBJECT)
        .expect("loading the object");
    let meta = ebpf.map_mut(MAP_META).expect("HA_META in the object");
    let mut meta = Array::try_from(meta).expect("HA_META is an array");
    layout::write_layout(&mut meta).expect("writing the layout version");
}

/// Pins of this layout version whose flow table is smaller than the table's are
/// refused at start-up, naming the pin and both capacities; the table's own pass.
#[test]
fn start_up_refuses_pins_whose_capacity_is_not_the_tables() {
    if !root::require_root(
        "start_up_refuses_pins_whose_capacity_is_not_the_tables",
        "it creates and pins maps",
    ) {
        return;
    }
    let dir = PinDir::new("cap");
    pin_with_capacity(dir.path(), MAP_FLOWS, 1024);
    let err = match Loaded::load(dir.path(), false) {
        Ok(_) => panic!("pins with a flow table of 1024 entries were adopted"),
        Err(err) => err,
    };
    let DatapathError::IncompatiblePin {
        ref path,
        ref found,
        ref expected,
    } = err
    else {
        panic!("expected a refused pin, got: {err}");
    };
    assert_eq!(path, &map_pin_path(dir.path(), MAP_FLOWS), "{err}");
    assert!(found.contains("1024 entries"), "{err}");
    assert!(expected.contains(&format!("{MAX_FLOWS} entries")), "{err}");

    // The same pins with the table's capacity are this build's: adopted.
    datapath::detach_all(dir.path()).expect("removing the pins");
    std::fs::create_dir_all(dir.path()).expect("creating the pin directory");
    pin_with_capacity(dir.path(), MAP_FLOWS, MAX_FLOWS);
    layout::check_pinned(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    Loaded::load(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
}
