// The capture filter (io::capture_filter, pure): golden text for one flow and for several
// flows and destinations; exact for any number of ports and targets (with more than 32 the
// filter once dropped its port and host restriction, so -w recorded every TCP packet to or
// from the targets); listen's filter (a local client's connection to a remote server on the
// same port once was captured). The text is compiled by libpcap (no capture needed: a dead
// handle) and run on crafted packets, so a filter that reads well but matches the wrong
// packets fails too.
#include <doctest/doctest.h>

#include <pcap/pcap.h>

#include <string>
#include <vector>

#include "tcpprobe/io/pcap_source.hpp"
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

/// Whether `filter` (compiled for raw IPv4) passes `packet`.
class Filter {
public:
    explicit Filter(const std::string& text) : p_(pcap_open_dead(DLT_RAW, 65535)) {
        REQUIRE(p_ != nullptr);
        INFO(text);
        REQUIRE_MESSAGE(pcap_compile(p_, &prog_, text.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0, pcap_geterr(p_));
    }
    ~Filter() {
        pcap_freecode(&prog_);
        pcap_close(p_);
    }
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;
    bool passes(const wire::ByteVec& packet) const {
        pcap_pkthdr h{};
        h.caplen = h.len = static_cast<bpf_u_int32>(packet.size());
        return pcap_offline_filter(&prog_, &h, packet.data()) != 0;
    }
    std::size_t instructions() const { return prog_.bf_len; }

private:
    pcap_t* p_;
    bpf_program prog_{};
};

bool matches(const std::string& filter, const wire::ByteVec& packet) { return Filter(filter).passes(packet); }

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
          "(tcp and ((src host 198.18.0.1 and dst host 198.18.0.2 and src port 40000 and dst port 80) or "
          "(dst host 198.18.0.1 and src host 198.18.0.2 and dst port 40000 and src port 80))) or " + icmp_part);
    CHECK(matches(f, tcp(us, 40000, peer, 80)));
    CHECK(matches(f, tcp(peer, 80, us, 40000)));
    CHECK(matches(f, wire::craft::icmp_port_unreachable(peer, tcp(us, 40000, peer, 80))));
    CHECK_FALSE(matches(f, tcp(us, 40001, peer, 80)));   // another local port
    CHECK_FALSE(matches(f, tcp(peer, 81, us, 40000)));   // another remote port
    CHECK_FALSE(matches(f, tcp(other, 80, us, 40000)));  // another host
    CHECK_FALSE(matches(f, tcp(us, 80, peer, 40000)));   // the ports the wrong way round
}

TEST_CASE("capture filter: raw sockets (incoming only): the same exact answer clause and ICMP, not our own direction") {
    // The raw-socket capture sees our segments through their transmit timestamps, so its
    // filter keeps only the answers, with the same exact port ranges as libpcap's.
    const std::string f = io::capture_filter(us, {40000, 40001, 40002}, {peer}, {80}, true);
    CHECK(f == "(tcp and dst host 198.18.0.1 and src host 198.18.0.2 and dst portrange 40000-40002 and src port 80) or " +
                   icmp_part);
    CHECK(matches(f, tcp(peer, 80, us, 40002)));
    CHECK(matches(f, wire::craft::icmp_port_unreachable(peer, tcp(us, 40001, peer, 80))));
    CHECK_FALSE(matches(f, tcp(us, 40000, peer, 80)));   // our own SYN
    CHECK_FALSE(matches(f, tcp(peer, 80, us, 40003)));   // a port outside the run's block
    CHECK_FALSE(matches(f, tcp(other, 80, us, 40000)));  // another host
}

TEST_CASE("capture filter: several ports and destinations: single ones listed with or, consecutive ones as ranges") {
    const wire::Ipv4Addr far{0xC6120009};  // 198.18.0.9
    const std::string f = io::capture_filter(us, {40000, 40001}, {peer, far}, {80, 443});
    CHECK(f ==
          "(tcp and ((src host 198.18.0.1 and (dst host 198.18.0.2 or dst host 198.18.0.9) and src portrange 40000-40001 and "
          "(dst port 80 or dst port 443)) or (dst host 198.18.0.1 and (src host 198.18.0.2 or src host 198.18.0.9) and "
          "dst portrange 40000-40001 and (src port 80 or src port 443)))) or " + icmp_part);
    CHECK(matches(f, tcp(far, 443, us, 40001)));
    CHECK_FALSE(matches(f, tcp(far, 22, us, 40001)));
    CHECK_FALSE(matches(f, tcp(other, 443, us, 40001)));  // between the listed hosts
    const std::string g = io::capture_filter(us, {40000}, {peer, other}, {80});
    CHECK(g.find("(ip[16:4] >= 3323068418 and ip[16:4] <= 3323068419)") != std::string::npos);
    CHECK(matches(g, tcp(us, 40000, other, 80)));
    CHECK_FALSE(matches(g, tcp(us, 40000, wire::Ipv4Addr{0xC6120004}, 80)));
}

TEST_CASE("capture filter: 40 source ports to one target port: only those flows pass") {
    std::vector<std::uint16_t> sports;
    for (std::uint16_t p = 41000; p < 41080; p += 2) sports.push_back(p);  // 40 ports, not consecutive
    Filter f(io::capture_filter(us, sports, {peer}, {80}));
    for (auto p : sports) {
        CHECK(f.passes(tcp(us, p, peer, 80)));
        CHECK(f.passes(tcp(peer, 80, us, p)));
    }
    // Another local socket's connection to the same target, and another port of the target.
    CHECK_FALSE(f.passes(tcp(us, 41001, peer, 80)));
    CHECK_FALSE(f.passes(tcp(peer, 80, us, 41001)));
    CHECK_FALSE(f.passes(tcp(us, 41000, peer, 22)));
    CHECK_FALSE(f.passes(tcp(peer, 22, us, 41000)));
}

TEST_CASE("capture filter: 1000 consecutive source ports and target ports 1-65535 stay exact and short") {
    std::vector<std::uint16_t> sports, dports;
    for (std::uint16_t p = 50000; p < 51000; ++p) sports.push_back(p);
    for (std::uint32_t p = 1; p <= 65535; ++p) dports.push_back(static_cast<std::uint16_t>(p));
    Filter f(io::capture_filter(us, sports, {peer}, dports));
    CHECK(f.instructions() < 200);
    CHECK(f.passes(tcp(us, 50000, peer, 1)));
    CHECK(f.passes(tcp(peer, 65535, us, 50999)));
    CHECK_FALSE(f.passes(tcp(us, 49999, peer, 80)));
    CHECK_FALSE(f.passes(tcp(peer, 80, us, 51000)));
}

TEST_CASE("capture filter: 40 targets, some consecutive: other hosts do not pass") {
    std::vector<wire::Ipv4Addr> targets;
    for (std::uint32_t i = 0; i < 30; ++i) targets.push_back(wire::Ipv4Addr{0xC6120100u + i});  // 198.18.1.0-29
    for (std::uint32_t i = 0; i < 10; ++i) targets.push_back(wire::Ipv4Addr{0xC6120200u + 3 * i});  // spaced
    Filter f(io::capture_filter(us, {40000}, targets, {80}));
    for (auto t : targets) {
        CHECK(f.passes(tcp(us, 40000, t, 80)));
        CHECK(f.passes(tcp(t, 80, us, 40000)));
    }
    CHECK_FALSE(f.passes(tcp(us, 40000, wire::Ipv4Addr{0xC612011Eu}, 80)));  // 198.18.1.30
    CHECK_FALSE(f.passes(tcp(wire::Ipv4Addr{0xC6120201u}, 80, us, 40000)));  // between spaced ones
    CHECK_FALSE(f.passes(tcp(peer, 80, us, 40000)));
}

TEST_CASE("capture filter: listen: clients to our port pass; a local client's connection to a remote port does not") {
    Filter f(io::listen_capture_filter(8080, {us, wire::Ipv4Addr{0x7F000001u}}));
    CHECK(f.passes(tcp(peer, 51000, us, 8080)));   // a client's SYN to us
    CHECK(f.passes(tcp(us, 8080, peer, 51000)));   // our answer
    CHECK(f.passes(tcp(wire::Ipv4Addr{0x7F000001u}, 5000, wire::Ipv4Addr{0x7F000001u}, 8080)));
    // A local program talking to a remote server that also uses port 8080.
    CHECK_FALSE(f.passes(tcp(us, 45000, peer, 8080)));
    CHECK_FALSE(f.passes(tcp(peer, 8080, us, 45000)));
}
