//! What the pinned maps must look like for this build, checked before a controller
//! (or `simulate`) uses pins it did not create, so that pins of another version are
//! refused with the remedy instead of misread:
//!
//! - `HA_META` holds the [`LAYOUT_VERSION`] of the controller that created the pins;
//!   pins without it, or with another, are refused ([`check_pinned`]);
//! - every pinned map must have the kind, key size, value size and capacity this build
//!   declares ([`expected_shape`]): a second line of defence, for a layout bumped by
//!   mistake or not at all.

use std::path::Path;

use aya::maps::{Array, Map, MapData, MapInfo, MapType};
use ha_common::{
    Counter, FlowCounter, FlowEntry, FlowKey, HostEntry, IfaceEntry, LAYOUT_VERSION, MAP_COUNTERS,
    MAP_FLOW_COUNTERS, MAP_FLOWS, MAP_HOST_STATS, MAP_HOSTS, MAP_IFACES, MAP_META, MAP_PFX_STATS,
    MAP_PREFIXES, MAP_SETTINGS, MAP_TX_PORTS, Meta, PINNED_MAPS, PrefixEntry, Settings, Traffic,
};

use super::{DatapathError, map_pin_path};

/// Type, key size, value size, capacity.
type Shape = (MapType, u32, u32, u32);

/// The shape every pinned map must have for this program. A map pinned by another
/// version is refused, not misread.
fn expected_shape(name: &str) -> Option<Shape> {
    use std::mem::size_of;
    let u32_size = size_of::<u32>() as u32;
    Some(match name {
        MAP_PREFIXES => (
            MapType::LpmTrie,
            8,
            size_of::<PrefixEntry>() as u32,
            ha_common::MAX_PREFIXES,
        ),
        MAP_HOSTS => (
            MapType::Array,
            u32_size,
            size_of::<HostEntry>() as u32,
            ha_common::MAX_HOSTS,
        ),
        MAP_IFACES => (
            MapType::Array,
            u32_size,
            size_of::<IfaceEntry>() as u32,
            ha_common::MAX_IFINDEX,
        ),
        MAP_TX_PORTS => (MapType::DevMapHash, u32_size, 8, ha_common::MAX_IFACES),
        MAP_COUNTERS => (MapType::PerCpuArray, u32_size, 8, Counter::COUNT),
        MAP_HOST_STATS => (
            MapType::PerCpuArray,
            u32_size,
            size_of::<Traffic>() as u32,
            ha_common::MAX_HOSTS,
        ),
        MAP_PFX_STATS => (
            MapType::PerCpuArray,
            u32_size,
            size_of::<Traffic>() as u32,
            ha_common::MAX_PREFIXES,
        ),
        MAP_FLOWS => (
            MapType::LruHash,
            size_of::<FlowKey>() as u32,
            size_of::<FlowEntry>() as u32,
            ha_common::MAX_FLOWS,
        ),
        MAP_SETTINGS => (MapType::Array, u32_size, size_of::<Settings>() as u32, 1),
        MAP_FLOW_COUNTERS => (MapType::PerCpuArray, u32_size, 8, FlowCounter::COUNT),
        MAP_META => (MapType::Array, u32_size, size_of::<Meta>() as u32, 1),
        _ => return None,
    })
}

/// Refuses the maps pinned under `pin_dir` unless they are of this build's layout:
/// `HA_META` first (its shape, then its version), then every map's shape. Nothing
/// pinned is fine (a first start).
pub fn check_pinned(pin_dir: &Path) -> Result<(), DatapathError> {
    let pinned: Vec<&'static str> = PINNED_MAPS
        .iter()
        .copied()
        .filter(|name| map_pin_path(pin_dir, name).exists())
        .collect();
    if pinned.is_empty() {
        return Ok(());
    }
    if !pinned.contains(&MAP_META) {
        return Err(DatapathError::NoLayout {
            pin_dir: pin_dir.to_owned(),
            expected: LAYOUT_VERSION,
        });
    }
    check_shape(pin_dir, MAP_META)?;
    let found = pinned_layout(pin_dir)?;
    if found != LAYOUT_VERSION {
        return Err(DatapathError::OtherLayout {
            pin_dir: pin_dir.to_owned(),
            found,
            expected: LAYOUT_VERSION,
        });
    }
    for name in pinned {
        check_shape(pin_dir, name)?;
    }
    Ok(())
}

/// The layout version in the pinned `HA_META`.
fn pinned_layout(pin_dir: &Path) -> Result<u32, DatapathError> {
    let map_err = |source| DatapathError::Map {
        name: MAP_META,
        source,
    };
    let data = MapData::from_pin(map_pin_path(pin_dir, MAP_META)).map_err(map_err)?;
    let meta: Array<MapData, Meta> = Map::from_map_data(data)
        .and_then(Array::try_from)
        .map_err(map_err)?;
    Ok(meta.get(&0, 0).map_err(map_err)?.layout)
}

/// Refuses the pinned map `name` unless it has the shape this build declares.
fn check_shape(pin_dir: &Path, name: &'static str) -> Result<(), DatapathError> {
    let path = map_pin_path(pin_dir, name);
    let info = MapInfo::from_pin(&path).map_err(|source| DatapathError::Map { name, source })?;
    let found = (
        info.map_type()
            .map_err(|source| DatapathError::Map { name, source })?,
        info.key_size(),
        info.value_size(),
        info.max_entries(),
    );
    if let Some(expected) = expected_shape(name)
        && found != expected
    {
        let show = |(t, k, v, m): Shape| format!("{t:?}, key {k} B, value {v} B, {m} entries");
        return Err(DatapathError::IncompatiblePin {
            path,
            found: show(found),
            expected: show(expected),
        });
    }
    Ok(())
}

/// Marks the maps of a freshly loaded object (pinned or adopted) with this build's
/// layout.
pub fn write_layout(meta: &mut Array<&mut MapData, Meta>) -> Result<(), DatapathError> {
    let value = Meta {
        layout: LAYOUT_VERSION,
        _pad: 0,
    };
    meta.set(0, value, 0).map_err(|source| DatapathError::Map {
        name: MAP_META,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn refusals_name_both_layouts_and_the_remedy() {
        let other = DatapathError::OtherLayout {
            pin_dir: PathBuf::from("/sys/fs/bpf/ha"),
            found: 7,
            expected: LAYOUT_VERSION,
        }
        .to_string();
        assert!(
            other.contains("layout 7")
                && other.contains(&format!("layout {LAYOUT_VERSION}"))
                && other.contains("ha-user run --reset"),
            "{other}"
        );
        let none = DatapathError::NoLayout {
            pin_dir: PathBuf::from("/sys/fs/bpf/ha"),
            expected: LAYOUT_VERSION,
        }
        .to_string();
        assert!(
            none.contains("no layout version") && none.contains("ha-user run --reset"),
            "{none}"
        );
    }

    #[test]
    fn every_pinned_map_has_a_shape() {
        for name in PINNED_MAPS {
            assert!(expected_shape(name).is_some(), "{name}");
        }
    }
}
