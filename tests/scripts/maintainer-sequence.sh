# The maintainer scripts of the staged package (target/dist/ha_<v>_amd64, from
# `cargo xtask dist`) in the order dpkg runs them, around a controller run as the unit
# runs it, on the host: run by tests/tests/package.rs inside `unshare --mount --net`
# (a fresh bpffs, tmpfs /run and /var/lib, the staged /usr/sbin over the real one),
# so nothing of this machine is touched. Prints KEY=value lines for the test.
set -u
S=$1
mount --make-rprivate / && mount -t bpf bpf /sys/fs/bpf && mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /tmp
mount -t overlay overlay -o lowerdir=$S/usr/sbin:/usr/sbin /usr/sbin
ip link set lo up
ip link add veth0 type veth peer name veth1
ip link set veth0 up; ip link set veth1 up
ip addr add 10.9.0.1/24 dev veth0
cat > /tmp/ha-seq.toml <<EOT
lan = "veth0"
xdp_mode = "skb"
[[host]]
name = "h1"
address = "10.9.0.2"
[[host]]
name = "h2"
address = "10.9.0.3"
[[prefix]]
cidr = "10.9.1.0/24"
owner = "h1"
EOT
run() { /usr/sbin/ha-user --config /tmp/ha-seq.toml run --handover > /tmp/ha-seq-$1.log 2>&1 & echo $! > /tmp/ha-seq.pid; for i in $(seq 100); do [ -S /run/ha/ha.sock ] && grep -q steering /tmp/ha-seq-$1.log && break; sleep 0.1; done; }
links() { for f in /sys/fs/bpf/ha/link_*; do bpftool -j link show pinned $f | sed 's/.*"id":\([0-9]*\).*/\1/'; done | tr '\n' ' '; }
echo "--- postinst configure (fresh):"; sh $S/DEBIAN/postinst configure
run 1; echo "LINKS_N=$(links)"; echo "ROUTES_N=$(ip route show proto 165)"
kill -TERM $(cat /tmp/ha-seq.pid); wait $(cat /tmp/ha-seq.pid); echo "TERM_EXIT=$?"; echo "LINKS_TERM=$(links)"
run 2; echo "LINKS_N1=$(links)"
echo "--- prerm remove:"; HA_STOP="kill -TERM $(cat /tmp/ha-seq.pid); while kill -0 $(cat /tmp/ha-seq.pid) 2>/dev/null; do sleep 0.1; done" sh $S/DEBIAN/prerm remove; echo "PRERM_EXIT=$?"
echo "PINS_REMOVE=$(ls /sys/fs/bpf/ha 2>/dev/null | tr '\n' ' ')"; echo "ROUTES_REMOVE=$(ip route show proto 165)"
echo "--- postrm purge:"; sh $S/DEBIAN/postrm purge; echo "POSTRM_EXIT=$?"
echo "ROUTES_PURGE=$(ip route show proto 165)"; echo "LEFT_PURGE=$(ls -d /var/lib/ha /run/ha /sys/fs/bpf/ha 2>/dev/null | tr '\n' ' ')"
