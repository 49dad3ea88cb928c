#!/usr/bin/env python3
"""Writes the netlink seeds of fuzz/corpus/{rtnetlink,forwarding}: real kernel
answers from a scratch network namespace (`ha-fuzzseed`, deleted afterwards) with
routes of every kind, a VLAN, neighbours, rules, an nftables forward chain, a tc
filter and an xfrm forward policy, plus iptables table layouts built by hand.
Needs root, ip, nft and tc. Run from the repository root: fuzz/make-seeds.py"""

import os
import socket
import struct
import subprocess
import sys

NS = "ha-fuzzseed"
SEQ = 7


def sh(*commands):
    for command in commands:
        subprocess.run(["ip", "netns", "exec", NS, "sh", "-c", command], check=True)


def dump(protocol, kind, body, limit=4):
    """The datagrams the kernel answers a dump request with (at most `limit`)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    flags = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
    sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, SEQ, 0) + body)
    datagrams = []
    while len(datagrams) < limit:
        data = sock.recv(65536)
        datagrams.append(data)
        if ends(data):
            break
    sock.close()
    return datagrams


def ends(data):
    """Whether the datagram holds an NLMSG_ERROR or NLMSG_DONE (the dump's end)."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind in (2, 3) or length < 16:
            return True
        offset += (length + 3) & ~3
    return False


def write(target, name, data):
    directory = os.path.join("fuzz/corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def in_namespace():
    rtgen = struct.pack("=B3x", socket.AF_INET)
    rtmsg = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    ifinfo = struct.pack("=BxHiII", 0, 0, 0, 0, 0)
    ndmsg = struct.pack("=BxxxiHBB", socket.AF_INET, 0, 0, 0, 0)
    seeds = {
        "routes": dump(0, 26, rtmsg),  # RTM_GETROUTE
        "links": dump(0, 18, ifinfo),  # RTM_GETLINK
        "neighbours": dump(0, 30, ndmsg),  # RTM_GETNEIGH
        "rules": dump(0, 34, rtgen + bytes(8)),  # RTM_GETRULE (fib_rule_hdr)
    }
    for name, datagrams in seeds.items():
        for i, data in enumerate(datagrams):
            if struct.unpack_from("=H", data, 4)[0] in (2, 3):
                continue
            write("rtnetlink", f"{name}-{i}", data[:8192])
    # The static routes plus /etc/hosts: what `ha-user run` without a file adopts.
    write(
        "rtnetlink",
        "routes-hosts",
        seeds["routes"][0] + b"HOSTS\n192.168.1.3 host2\n192.168.1.4 host3 www3\n",
    )
    nfgen = struct.pack("=BBH", socket.AF_INET, 0, 0)
    chains = dump(12, (10 << 8) | 4, nfgen)  # NETLINK_NETFILTER, NFT_MSG_GETCHAIN
    tcmsg = struct.pack("=BxxxiIII", 0, int(open("/sys/class/net/ha-fz0/ifindex").read()), 0, 0xFFFFFFF2, 0)
    filters = dump(0, 46, tcmsg)  # RTM_GETTFILTER on the ingress qdisc
    policies = dump(6, 0x15, b"")  # NETLINK_XFRM, XFRM_MSG_GETPOLICY
    for name, datagrams in [("nft-chains", chains), ("tc-filters", filters), ("xfrm-policies", policies)]:
        for i, data in enumerate(datagrams):
            if struct.unpack_from("=H", data, 4)[0] in (2, 3):
                continue
            write("forwarding", f"{name}-{i}", data[:8192])


def xtables_seed(valid_hooks, rules_in_forward, verdict):
    """A netlink message whose body is an IPT_SO_GET_INFO answer then entries."""
    entry = bytearray(112 + 40)
    struct.pack_into("=HH", entry, 88, 112, 40)  # target_offset, next_offset
    struct.pack_into("=i", entry, 112 + 32, verdict)
    info = bytearray(84)
    info[0:6] = b"filter"
    struct.pack_into("=I", info, 32, valid_hooks)
    for hook in range(5):
        underflow = 0
        struct.pack_into("=I", info, 36 + 4 * hook, 152 if rules_in_forward and hook == 2 else 0)
        struct.pack_into("=I", info, 56 + 4 * hook, underflow)
    struct.pack_into("=I", info, 80, len(entry))
    body = bytes(info) + bytes(entry)
    return message(0x10, body)


def attr(kind, value):
    data = struct.pack("=HH", 4 + len(value), kind) + value
    return data + bytes(-len(data) % 4)


def message(kind, body):
    return struct.pack("=IHHII", 16 + len(body), kind, 0, SEQ, 0) + body


def vlan_link_seed():
    """RTM_NEWLINK of an 802.1ad VLAN sub-interface, for kernels without 8021q."""
    ifinfo = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, 5, 0x1043, 0)
    vlan = attr(1, struct.pack("=H", 20)) + attr(5, struct.pack(">H", 0x88A8))
    info = attr(1, b"vlan\0") + attr(2, vlan)
    body = (
        ifinfo
        + attr(3, b"eth1.20\0")
        + attr(1, bytes.fromhex("020000000001"))
        + attr(4, struct.pack("=I", 1500))
        + attr(5, struct.pack("=I", 2))
        + attr(18, info)
    )
    return message(16, body)


def tc_filter_seed():
    """RTM_NEWTFILTER of a bpf filter on chain 0, for kernels without classifiers."""
    tcmsg = struct.pack("=BxxxiIII", 0, 2, 1, 0xFFFFFFF2, (10 << 16) | 0x0008)
    return message(44, tcmsg + attr(1, b"bpf\0") + attr(11, struct.pack("=I", 0)))


def main():
    if os.geteuid() != 0:
        sys.exit("make-seeds.py needs root (it builds a network namespace)")
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        sh(
            "ip link set lo up",
            "ip link add ha-fz0 type veth peer name ha-fz1",
            "ip link set ha-fz0 up && ip link set ha-fz1 up",
            "ip addr add 192.168.1.1/27 dev ha-fz0",
            "ip route add 192.168.1.64/27 via 192.168.1.3 dev ha-fz0",
            "ip route add 192.168.1.96/27 via 192.168.1.4 dev ha-fz0 mtu 1400",
            "ip route add blackhole 10.9.0.0/16",
            "ip route add unreachable 10.8.0.0/16",
            "ip route add prohibit 10.7.0.0/16 table 100",
            "ip route add throw 10.6.0.0/16 table 1000",
            "ip route add local 10.5.0.0/24 dev lo",
            "ip neigh add 192.168.1.3 lladdr 02:00:00:00:00:03 dev ha-fz0 nud permanent",
            "ip neigh add 192.168.1.4 dev ha-fz0 nud failed",
            "ip rule add from 10.1.0.0/16 iif ha-fz0 lookup 100 pref 100",
            "ip rule add fwmark 0x10 lookup 1000 pref 200",
            "nft add table ip t",
            "nft add chain ip t fwdchain '{ type filter hook forward priority 0; policy drop; }'",
            "nft add table netdev n",
            "nft add chain netdev n ingchain '{ type filter hook ingress device ha-fz0 priority 0; }'",
            "tc qdisc add dev ha-fz0 clsact",
            "ip xfrm policy add dir fwd src 10.1.0.0/16 dst 10.2.0.0/16 action block",
        )
        # A kernel without 8021q has no VLANs, one without these classifiers no filter:
        # then no such seed.
        for optional in [
            "tc filter add dev ha-fz0 ingress protocol ip pref 10 matchall action pass",
            "tc filter add dev ha-fz0 ingress protocol ip pref 20 u32 match u32 0 0 action pass",
            "tc filter add dev ha-fz0 ingress protocol ip pref 30 basic action pass",
            "ip link add link ha-fz0 name ha-fz0.10 type vlan id 10",
            "ip link add link ha-fz0 name ha-fz0.20 type vlan proto 802.1ad id 20",
        ]:
            subprocess.run(["ip", "netns", "exec", NS, "sh", "-c", optional], stderr=subprocess.DEVNULL)
        subprocess.run(
            ["ip", "netns", "exec", NS, sys.executable, __file__, "--inside"], check=True
        )
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=True)
    write("rtnetlink", "link-vlan", vlan_link_seed())
    write("forwarding", "tc-filter", tc_filter_seed())
    write("forwarding", "xtables-policies", xtables_seed(0b01110, False, -1))
    write("forwarding", "xtables-rules", xtables_seed(0b01110, True, -2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--inside"]:
        in_namespace()
    else:
        main()
