#[path = "../build-support/bpf_linker.rs"]
mod bpf_linker;

/// Building this crate requires `bpf-linker`: rebuild when it changes, and say how
/// to get it when it is missing.
fn main() {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let linker = bpf_linker::find(std::path::Path::new(&manifest_dir));
    println!("cargo:rerun-if-changed={}", linker.display());
}
