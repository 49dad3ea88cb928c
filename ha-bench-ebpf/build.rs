use which::which;

/// Building this crate requires `bpf-linker`: rebuild when it changes, and say how
/// to get it when it is missing.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => panic!("bpf-linker not found on PATH ({err}); run `cargo xtask setup`"),
    }
}
