// The capture filter (io::capture_filter, pure): golden text for one flow, for many
// flows and destinations, and for lists too long to spell out; and the text compiled
// by libpcap (no capture needed: a dead handle) and run on crafted packets, so a filter
// that reads well but matches the wrong packets fails too.
#include <doctest/doctest.h>

#include <pcap/pcap.h>

#include <string>
#include <vector>

#include "tcpprobe/io/system.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;

TEST_SUITE_BEGIN("io");

namespace {

const wire::Ipv4Addr us{0xC6120001};     // 198.18.0.1
const wire::Ipv4Addr peer{0xC6120002};   // 198.18.0.2
const wire::Ipv4Addr other{0xC6120003};  // 198.18.0.3
const std::string icmp_part =
    "(icmp and dst host 198.18.0.1 and (icmp[0] == 3 or icmp[0] == 4 or icmp[0] == 5 or icmp[0] == 11 or icmp[0] == 12)"
    " and icmp[17] == 6)";

/// Whether the filter, compiled for raw IPv4 frames, accepts the packet.
bool matches(const std::string& filter, const wire::ByteVec& packet) {
    pcap_t* p = pcap_open_dead(DLT_RAW, 65535);
    REQUIRE(p != nullptr);
    bpf_program prog{};
    const int rc = pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN);
    INFO(pcap_geterr(p));
    REQUIRE(rc == 0);
    pcap_pkthdr h{};
    h.caplen = h.len = static_cast<bpf_u_int32>(packet.size());
    const bool ok = pcap_offline_filter(&prog, &h, packet.data()) != 0;
    pcap_freecode(&prog);
    pcap_close(p);
    return ok;
}

wire::ByteVec tcp(wire::Ipv4Addr src, std::uint16_t sport, wire::Ipv4Addr dst, std::uint16_t dport) {
    wire::craft::Tcp t;
    t.sport = sport;
    t.dport = dport;
    wire::craft::Ip ip;
    ip.src = src;
    ip.dst = dst;
    return wire::craft::tcp_packet(t, ip);
}

}  // namespace

TEST_CASE("capture filter: one flow: both directions of its 4-tuple, and ICMP errors quoting TCP") {
    const std::string f = io::capture_filter(us, {40000}, {peer}, {80});
    CHECK(f ==
          "(tcp and ((src host 198.18.0.1 and dst host (198.18.0.2) and src port (40000) and dst port (80)) or "
          "(dst host 198.18.0.1 and src host (198.18.0.2) and dst port (40000) and src port (80)))) or " + icmp_part);
    CHECK(matches(f, tcp(us, 40000, peer, 80)));
    CHECK(matches(f, tcp(peer, 80, us, 40000)));
    CHECK(matches(f, wire::craft::icmp_port_unreachable(peer, tcp(us, 40000, peer, 80))));
    CHECK_FALSE(matches(f, tcp(us, 40001, peer, 80)));   // another local port
    CHECK_FALSE(matches(f, tcp(peer, 81, us, 40000)));   // another remote port
    CHECK_FALSE(matches(f, tcp(other, 80, us, 40000)));  // another host
    CHECK_FALSE(matches(f, tcp(us, 80, peer, 40000)));   // the ports the wrong way round
}

TEST_CASE("capture filter: several ports and destinations are listed with or") {
    const std::string f = io::capture_filter(us, {40000, 40001}, {peer, other}, {80, 443});
    CHECK(f ==
          "(tcp and ((src host 198.18.0.1 and dst host (198.18.0.2 or 198.18.0.3) and src port (40000 or 40001) and dst port "
          "(80 or 443)) or (dst host 198.18.0.1 and src host (198.18.0.2 or 198.18.0.3) and dst port (40000 or 40001) and "
          "src port (80 or 443)))) or " + icmp_part);
    CHECK(matches(f, tcp(other, 443, us, 40001)));
    CHECK_FALSE(matches(f, tcp(other, 22, us, 40001)));
}

TEST_CASE("capture filter: beyond 32 entries a list is left out (the flow table sorts the rest)") {
    std::vector<std::uint16_t> ports;
    for (std::uint16_t p = 40000; p < 40033; ++p) ports.push_back(p);
    std::vector<wire::Ipv4Addr> hosts;
    for (std::uint32_t i = 0; i < 33; ++i) hosts.push_back(wire::Ipv4Addr{0xC6120100u + i});
    const std::string f = io::capture_filter(us, ports, hosts, {80});
    CHECK(f == "(tcp and ((src host 198.18.0.1 and dst port (80)) or (dst host 198.18.0.1 and src port (80)))) or " + icmp_part);
    CHECK(matches(f, tcp(us, 50000, other, 80)));
}
