static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha"));
fn main() {
    let mut ebpf = aya::Ebpf::load(OBJ).unwrap();
    let prog: &mut aya::programs::Xdp = ebpf.program_mut("ha_steer").unwrap().try_into().unwrap();
    prog.load().unwrap();
    println!("loaded");
}
