//! What the pinned maps must look like for this build, checked before a controller
//! (or `simulate`) uses pins it did not create, so that pins of another version are
//! refused with the remedy instead of misread:
//!
//! - `HA_META` holds the [`LAYOUT_VERSION`] of the controller that created the pins;
//!   pins without it, or with another, are refused ([`check_pinned`]);
//! - every pinned map must have the kind, key size, value size and capacity of its
//!   spec in ha-common's map table ([`ha_common::MAPS`], [`expected_shape`]): a
//!   second line of defence, for a layout bumped by mistake or not at all.

use std::path::Path;

use aya::maps::{Array, Map, MapData, MapInfo, MapType};
use ha_common::{LAYOUT_VERSION, MAP_META, MapSpec, Meta, PINNED_MAPS};

use super::{DatapathError, map_pin_path};

/// Type, key size, value size, capacity.
type Shape = (MapType, u32, u32, u32);

/// The shape a pinned map of this build has: its spec's in the map table. A map
/// pinned by another version is refused, not misread.
fn expected_shape(name: &str) -> Option<Shape> {
    let MapSpec {
        name: _,
        kind,
        key_size,
        value_size,
        max_entries,
        holds: _,
        written_by: _,
    } = *ha_common::maps::spec(name)?;
    Some((kind.map_type(), key_size, value_size, max_entries))
}

/// Refuses `found`, the shape of the map pinned at `path`, unless it is the one this
/// build declares for `name`.
fn refuse_other_shape(name: &str, path: &Path, found: Shape) -> Result<(), DatapathError> {
    let Some(expected) = expected_shape(name) else {
        return Ok(());
    };
    if found == expected {
        return Ok(());
    }
    let show = |(t, k, v, m): Shape| format!("{t:?}, key {k} B, value {v} B, {m} entries");
    Err(DatapathError::IncompatiblePin {
        path: path.to_owned(),
        found: show(found),
        expected: show(expected),
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
    refuse_other_shape(name, &path, found)
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
    fn the_expected_shapes_are_the_tables() {
        for spec in &ha_common::MAPS {
            let shape = expected_shape(spec.name).expect("every map of the table has a shape");
            assert_eq!(
                (shape.0 as u32, shape.1, shape.2, shape.3),
                (
                    spec.kind.bpf_map_type(),
                    spec.key_size,
                    spec.value_size,
                    spec.max_entries
                ),
                "{}",
                spec.name
            );
        }
        for name in PINNED_MAPS {
            assert!(expected_shape(name).is_some(), "{name}");
        }
    }

    /// A pin passes exactly when every field of its shape is its spec's; a refusal
    /// names the pin and both shapes.
    #[test]
    fn pins_pass_only_with_the_tables_shape() {
        let path = PathBuf::from("/sys/fs/bpf/ha/HA_X");
        for spec in &ha_common::MAPS {
            let shape = (
                spec.kind.map_type(),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
            );
            refuse_other_shape(spec.name, &path, shape)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            let other_kind = if spec.kind.map_type() == MapType::Hash {
                MapType::Array
            } else {
                MapType::Hash
            };
            for wrong in [
                (other_kind, shape.1, shape.2, shape.3),
                (shape.0, shape.1 + 4, shape.2, shape.3),
                (shape.0, shape.1, shape.2 + 8, shape.3),
                (shape.0, shape.1, shape.2, shape.3 * 2),
            ] {
                let err = refuse_other_shape(spec.name, &path, wrong)
                    .expect_err("another shape is refused")
                    .to_string();
                assert!(
                    err.contains("/sys/fs/bpf/ha/HA_X")
                        && err.contains(&format!("{} entries", wrong.3))
                        && err.contains(&format!("needs {:?}", shape.0))
                        && err.contains(&format!("{} entries", spec.max_entries)),
                    "{err}"
                );
            }
        }
    }
}
