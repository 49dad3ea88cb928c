//! How big a run is. The default sizes keep `cargo xtask test` short; the long mode
//! (`HA_LONG=1`, set by `cargo xtask test --long`) runs the full sizes the issues ask
//! for.

/// Environment variable that selects the long mode.
pub const LONG_ENV: &str = "HA_LONG";

/// Whether `HA_LONG=1`. Any other value than `0`, `1` or unset is refused, so a typo
/// cannot silently run the short mode.
pub fn long() -> bool {
    match std::env::var(LONG_ENV).as_deref() {
        Err(_) | Ok("0") | Ok("") => false,
        Ok("1") => true,
        Ok(other) => panic!("{LONG_ENV}={other:?}: expected 1 (long run) or 0"),
    }
}

/// `long` in the long mode, else `default`.
pub fn size(default: u64, long: u64) -> u64 {
    if self::long() { long } else { default }
}
