// Tests for wire/packet: whole-frame decoding of real Linux segments field by field, the
// errors only the packet layer produces (not-tcp, fragment), and the ways a hostile or
// truncated packet is still reported as data: malformed options, short captures, bad
// checksums (STYLE §2.4 "strict decoder": what arrived, not a normalised version of it).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fixtures/linux_capture.hpp"
#include "fixtures/pcap_file.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
constexpr Ipv4Addr client_addr{0xC6126301u};  // 198.18.99.1
constexpr Ipv4Addr server_addr{0xC6126302u};  // 198.18.99.2

DecodedPacket decoded(int link_type, Bytes frame) {
    auto p = decode_frame(link_type, frame);
    REQUIRE_MESSAGE(p.ok(), "decode_frame failed: ", std::string(to_string(p.error())));
    REQUIRE(p->segment() != nullptr);
    return std::move(p).value();
}

DecodedPacket decoded_eth(Bytes frame) { return decoded(dlt::en10mb, frame); }

/// The absolute one-line form; segments from 198.18.99.1 are ours (">").
std::string line(const Segment& s) {
    return format_segment(s, {s.src.addr == client_addr ? Direction::Out : Direction::In, {}, {}});
}

WireError packet_error(Bytes packet) {
    auto p = decode_ipv4_packet(packet);
    REQUIRE_FALSE(p.ok());
    return p.error();
}

std::string fixture_path(const char* name) { return std::string(TCPPROBE_FIXTURES) + "/" + name; }

ByteVec copy(Bytes b) { return ByteVec(b.begin(), b.end()); }
}  // namespace

TEST_CASE("Packet: the captured Linux SYN, every field") {
    // > S 3642701903:3642701903(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>
    DecodedPacket p = decoded_eth(fx::veth_syn);
    CHECK(p.src == client_addr);
    CHECK(p.dst == server_addr);
    CHECK(p.total_length == 60);
    CHECK_FALSE(p.truncated);
    CHECK(p.ip_checksum_ok);
    CHECK(p.ip_options_len == 0);
    const Segment& s = *p.segment();
    CHECK(s.src == Endpoint{client_addr, 39344});
    CHECK(s.dst == Endpoint{server_addr, 50123});
    CHECK(s.seq == Seq{3642701903u});
    CHECK(s.ack == Seq{0});
    CHECK(s.flags == flag::syn);
    CHECK(s.window == 65495);
    CHECK(s.urgent == 0);
    CHECK(s.ip.ttl == 64);
    CHECK(s.ip.tos == 0);
    CHECK(s.ip.df);
    CHECK(s.ip.id == 49468);
    REQUIRE(s.options.size() == 5);
    CHECK(s.options[0] == TcpOption{opt::Mss{65495}});
    CHECK(s.options[1] == TcpOption{opt::SackPermitted{}});
    CHECK(s.options[2] == TcpOption{opt::Timestamps{1987817756u, 0}});
    CHECK(s.options[3] == TcpOption{opt::Nop{}});
    CHECK(s.options[4] == TcpOption{opt::WindowScale{7}});
    CHECK(find_option<opt::Mss>(s.options)->value == 65495);
    CHECK(find_option<opt::WindowScale>(s.options)->shift == 7);
    CHECK(find_option<opt::Timestamps>(s.options)->tsval == 1987817756u);
    CHECK(find_option<opt::Timestamps>(s.options)->tsecr == 0);
    CHECK(find_option<opt::SackPermitted>(s.options).has_value());
    CHECK_FALSE(s.options_error.has_value());
    CHECK(to_hex(s.raw_options) == "0204ffd70402080a767bb11c0000000001030307");
    CHECK(s.payload.empty());
    CHECK(s.seg_len() == 1);
    CHECK(s.checksum_ok == true);
    CHECK(line(s) == "> S 3642701903:3642701903(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>");
}

TEST_CASE("Packet: the captured SYN-ACK, every field") {
    // < S. 623894644:623894644(0) ack 3642701904 win 65483 <mss 65495,sackOK,TS val 4061863940 ecr 1987817756,nop,wscale 7>
    DecodedPacket p = decoded_eth(fx::veth_synack);
    CHECK(p.src == server_addr);
    CHECK(p.dst == client_addr);
    CHECK(p.total_length == 60);
    CHECK(p.ip_checksum_ok);
    const Segment& s = *p.segment();
    CHECK(s.src == Endpoint{server_addr, 50123});
    CHECK(s.dst == Endpoint{client_addr, 39344});
    CHECK(s.seq == Seq{623894644u});
    CHECK(s.ack == Seq{3642701904u});
    CHECK(s.flags == (flag::syn | flag::ack));
    CHECK(s.window == 65483);
    CHECK(s.urgent == 0);
    CHECK(s.ip.ttl == 64);
    CHECK(s.ip.tos == 0);
    CHECK(s.ip.df);
    CHECK(s.ip.id == 0);  // Linux sends SYN-ACKs (and RSTs) with IP id 0 under DF
    const OptionList expected{opt::Mss{65495}, opt::SackPermitted{}, opt::Timestamps{4061863940u, 1987817756u},
                              opt::Nop{}, opt::WindowScale{7}};
    CHECK(s.options == expected);
    CHECK_FALSE(s.options_error.has_value());
    CHECK(s.payload.empty());
    CHECK(s.seg_len() == 1);
    CHECK(s.checksum_ok == true);
    CHECK(line(s) ==
          "< S. 623894644:623894644(0) ack 3642701904 win 65483 "
          "<mss 65495,sackOK,TS val 4061863940 ecr 1987817756,nop,wscale 7>");
}

TEST_CASE("Packet: the captured data segment carries hello and a PSH") {
    // > P. 3642701904:3642701910(6) ack 623894645 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>
    DecodedPacket p = decoded_eth(fx::veth_data);
    CHECK(p.total_length == 58);
    const Segment& s = *p.segment();
    CHECK(s.src == Endpoint{client_addr, 39344});
    CHECK(s.dst == Endpoint{server_addr, 50123});
    CHECK(s.seq == Seq{3642701904u});
    CHECK(s.ack == Seq{623894645u});
    CHECK(s.flags == (flag::psh | flag::ack));
    CHECK(s.window == 512);
    CHECK(s.ip.id == 49470);
    CHECK(s.ip.df);
    CHECK(s.ip.ttl == 64);
    CHECK(s.ip.tos == 0);
    const OptionList expected{opt::Nop{}, opt::Nop{}, opt::Timestamps{1987817756u, 4061863940u}};
    CHECK(s.options == expected);
    CHECK(s.payload == ByteVec{'h', 'e', 'l', 'l', 'o', '\n'});
    CHECK(s.seg_len() == 6);
    CHECK(s.checksum_ok == true);
    CHECK(line(s) == "> P. 3642701904:3642701910(6) ack 623894645 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>");
}

TEST_CASE("Packet: the captured FIN/ACK, every field") {
    // > F. 3642701910:3642701910(0) ack 623894648 win 512 <nop,nop,TS val 1987817806 ecr 4061863940>
    DecodedPacket p = decoded_eth(fx::veth_fin);
    CHECK(p.total_length == 52);
    CHECK(p.ip_checksum_ok);
    CHECK_FALSE(p.truncated);
    const Segment& s = *p.segment();
    CHECK(s.src == Endpoint{client_addr, 39344});
    CHECK(s.dst == Endpoint{server_addr, 50123});
    CHECK(s.seq == Seq{3642701910u});
    CHECK(s.ack == Seq{623894648u});
    CHECK(s.flags == (flag::fin | flag::ack));
    CHECK(s.window == 512);
    CHECK(s.urgent == 0);
    CHECK(s.ip.ttl == 64);
    CHECK(s.ip.tos == 0);
    CHECK(s.ip.df);
    CHECK(s.ip.id == 49472);
    const OptionList expected{opt::Nop{}, opt::Nop{}, opt::Timestamps{1987817806u, 4061863940u}};
    CHECK(s.options == expected);
    CHECK(s.payload.empty());
    CHECK(s.seg_len() == 1);
    CHECK(s.checksum_ok == true);
    CHECK(line(s) == "> F. 3642701910:3642701910(0) ack 623894648 win 512 <nop,nop,TS val 1987817806 ecr 4061863940>");
}

TEST_CASE("Packet: the captured RST/ACK from a closed port, every field") {
    // < R. 0:0(0) ack 2861473606 win 0
    DecodedPacket p = decoded_eth(fx::veth_rst);
    CHECK(p.src == server_addr);
    CHECK(p.dst == client_addr);
    CHECK(p.total_length == 40);
    CHECK(p.ip_checksum_ok);
    const Segment& s = *p.segment();
    CHECK(s.src == Endpoint{server_addr, 50124});
    CHECK(s.dst == Endpoint{client_addr, 40396});
    CHECK(s.seq == Seq{0});  // RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    CHECK(s.ack == Seq{2861473606u});
    CHECK(s.flags == (flag::rst | flag::ack));
    CHECK(s.window == 0);
    CHECK(s.urgent == 0);
    CHECK(s.ip.ttl == 64);
    CHECK(s.ip.tos == 0);
    CHECK(s.ip.df);
    CHECK(s.ip.id == 0);
    CHECK(s.options.empty());
    CHECK(s.raw_options.empty());
    CHECK_FALSE(s.options_error.has_value());
    CHECK(s.payload.empty());
    CHECK(s.seg_len() == 0);
    CHECK(s.checksum_ok == true);
    CHECK(line(s) == "< R. 0:0(0) ack 2861473606 win 0");
}

TEST_CASE("Packet: the fixture arrays are byte-identical to their frames in the pcaps") {
    auto eth = fx::read_pcap(fixture_path("veth_session.pcap"));
    auto sll = fx::read_pcap(fixture_path("veth_session_sll.pcap"));
    auto sll2 = fx::read_pcap(fixture_path("veth_session_sll2.pcap"));
    auto lo = fx::read_pcap(fixture_path("lo_session.pcap"));
    REQUIRE(eth.frames.size() == 14);
    REQUIRE(lo.frames.size() == 14);
    auto same = [](const ByteVec& frame, Bytes array) { return to_hex(frame) == to_hex(array); };
    CHECK(same(eth.frames[0], fx::veth_syn));
    CHECK(same(eth.frames[1], fx::veth_synack));
    CHECK(same(eth.frames[3], fx::veth_data));
    CHECK(same(eth.frames[7], fx::veth_fin));
    CHECK(same(eth.frames[11], fx::veth_rst));
    CHECK(same(eth.frames[13], fx::veth_icmp_port_unreachable));
    CHECK(same(sll.frames[0], fx::sll_syn));
    CHECK(same(sll2.frames[1], fx::sll2_synack));
    CHECK(same(lo.frames[0], fx::lo_syn_partial_checksum));
}

TEST_CASE("Packet: every frame of the veth capture decodes with good checksums") {
    auto eth = fx::read_pcap(fixture_path("veth_session.pcap"));
    for (std::size_t i = 0; i < eth.frames.size(); ++i) {
        CAPTURE(i);
        auto p = decode_frame(static_cast<int>(eth.link_type), eth.frames[i]);
        REQUIRE(p.ok());
        CHECK(p->ip_checksum_ok);
        CHECK_FALSE(p->truncated);
        if (const Segment* s = p->segment()) {
            CHECK(s->checksum_ok == true);
            CHECK_FALSE(s->options_error.has_value());
        } else {
            CHECK(i == 13);  // the ICMP error
        }
    }
}

TEST_CASE("Packet: lo leaves the kernel's TCP checksums partial, and the decoder says so") {
    // Real lo capture: the checksum field holds the pseudo-header sum only (see fixtures/README.md).
    DecodedPacket p = decoded_eth(fx::lo_syn_partial_checksum);
    CHECK(p.ip_checksum_ok);
    const Segment& s = *p.segment();
    CHECK(s.checksum_ok == false);
    CHECK(s.src == Endpoint{Ipv4Addr{0x7F000001u}, 41408});
    CHECK(s.dst == Endpoint{Ipv4Addr{0x7F000001u}, 50123});
    CHECK(s.flags == flag::syn);
    CHECK(format_options(s.options) == "mss 65495,sackOK,TS val 404987348 ecr 0,nop,wscale 7");
    CHECK(line(s) == "< S 703005842:703005842(0) win 65495 <mss 65495,sackOK,TS val 404987348 ecr 0,nop,wscale 7> [bad tcp cksum]");
    // The same capture's kernel-built RST/ACK and ICMP error do carry full checksums.
    auto lo = fx::read_pcap(fixture_path("lo_session.pcap"));
    DecodedPacket rst = decoded_eth(lo.frames[11]);
    CHECK(rst.segment()->flags == (flag::rst | flag::ack));
    CHECK(rst.segment()->checksum_ok == true);
}

TEST_CASE("Packet: a bad TCP checksum is detected") {
    ByteVec frame = copy(fx::veth_data);
    frame.back() ^= 0x20;  // "hello\n" -> "hello*"
    DecodedPacket p = decoded_eth(frame);
    const Segment& s = *p.segment();
    CHECK(s.checksum_ok == false);
    CHECK(p.ip_checksum_ok);
    CHECK(line(s) ==
          "> P. 3642701904:3642701910(6) ack 623894645 win 512 <nop,nop,TS val 1987817756 ecr 4061863940> [bad tcp cksum]");
}

TEST_CASE("Packet: a wrong pseudo-header address also fails the TCP checksum") {
    // Same TCP bytes, but the IP destination rewritten (and the IP checksum fixed).
    craft::Ip ip;
    ByteVec packet = craft::ipv4_packet(ip, craft::tcp_segment({}, craft::client, Ipv4Addr{0x0A000001u}));
    auto p = decode_ipv4_packet(packet);
    REQUIRE(p.ok());
    CHECK(p->ip_checksum_ok);
    CHECK(p->segment()->checksum_ok == false);
}

TEST_CASE("Packet: a bad IPv4 header checksum is reported and decoding goes on") {
    ByteVec frame = copy(fx::veth_syn);
    frame[14 + 8] = 63;  // ttl 64 -> 63 without fixing the checksum
    DecodedPacket p = decoded_eth(frame);
    CHECK_FALSE(p.ip_checksum_ok);
    CHECK(p.segment()->ip.ttl == 63);
    CHECK(p.segment()->checksum_ok == true);  // TTL is not in the pseudo-header
}

TEST_CASE("Packet: a capture shorter than the IP total length is truncated, checksum unknown") {
    Bytes whole{fx::veth_data};
    DecodedPacket p = decoded_eth(whole.first(whole.size() - 3));
    CHECK(p.truncated);
    CHECK(p.total_length == 58);
    const Segment& s = *p.segment();
    CHECK_FALSE(s.checksum_ok.has_value());
    CHECK(s.payload == ByteVec{'h', 'e', 'l'});
    CHECK(s.seq == Seq{3642701904u});
    CHECK(s.flags == (flag::psh | flag::ack));
    CHECK(line(s).find("[bad tcp cksum]") == std::string::npos);
}

TEST_CASE("Packet: a capture cut inside the TCP options is tcp-data-offset-past-end") {
    Bytes whole{fx::veth_syn};
    auto p = decode_frame(dlt::en10mb, whole.first(14 + 20 + 30));
    REQUIRE_FALSE(p.ok());
    CHECK(p.error() == WireError::TcpDataOffsetPastEnd);
}

TEST_CASE("Packet: Ethernet padding after a short segment is not payload") {
    ByteVec frame = copy(fx::veth_rst);
    frame.insert(frame.end(), 6, 0x00);  // 54 -> 60 bytes, the Ethernet minimum
    DecodedPacket p = decoded_eth(frame);
    CHECK_FALSE(p.truncated);
    CHECK(p.segment()->payload.empty());
    CHECK(p.segment()->checksum_ok == true);
}

TEST_CASE("Packet: IPv4 options are counted and skipped") {
    craft::Ip ip;
    ip.options = {0x94, 0x04, 0x00, 0x00};  // Router Alert (RFC 2113)
    craft::Tcp t;
    t.flags = flag::ack;
    t.payload = {0x41};
    auto p = decode_ipv4_packet(craft::tcp_packet(t, ip));
    REQUIRE(p.ok());
    CHECK(p->ip_options_len == 4);
    CHECK(p->ip_checksum_ok);
    REQUIRE(p->segment() != nullptr);
    CHECK(p->segment()->payload == ByteVec{0x41});
    CHECK(p->segment()->checksum_ok == true);
}

TEST_CASE("Packet: a segment whose options are malformed still decodes, prefix kept") {
    // mss 1460, nop, nop, then a window scale of length 4: option-bad-length.
    craft::Tcp t;
    t.flags = flag::syn;
    t.options = {0x02, 0x04, 0x05, 0xB4, 0x01, 0x01, 0x03, 0x04, 0x07, 0x00, 0x01, 0x01};
    t.payload = {0x58};
    auto p = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(p.ok());
    const Segment& s = *p->segment();
    REQUIRE(s.options_error.has_value());
    CHECK(*s.options_error == WireError::OptionBadLength);
    const OptionList prefix{opt::Mss{1460}, opt::Nop{}, opt::Nop{}};
    CHECK(s.options == prefix);
    CHECK(s.raw_options == t.options);
    CHECK(s.payload == ByteVec{0x58});
    CHECK(s.checksum_ok == true);
    CHECK(format_segment(s, {}) == "> S 1000:1001(1) win 65535 <mss 1460,nop,nop,bad options: option-bad-length>");
}

TEST_CASE("Packet: an option length of 0 stops option decoding, not the segment") {
    craft::Tcp t;
    t.options = {0x08, 0x00, 0x00, 0x00};
    auto p = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(p.ok());
    const Segment& s = *p->segment();
    CHECK(s.options_error == WireError::OptionLengthTooSmall);
    CHECK(s.options.empty());
    CHECK(format_segment(s, {}) == "> S 1000:1000(0) win 65535 <bad options: option-length-too-small>");
}

TEST_CASE("Packet: an option running past the data offset is reported, payload untouched") {
    craft::Tcp t;
    t.options = {0x01, 0x01, 0x02, 0x04};  // mss whose value would be the first payload bytes
    t.payload = {0x05, 0xB4};
    auto p = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(p.ok());
    const Segment& s = *p->segment();
    CHECK(s.options_error == WireError::OptionPastEnd);
    CHECK(s.options == OptionList{opt::Nop{}, opt::Nop{}});
    CHECK(s.payload == ByteVec{0x05, 0xB4});
}

TEST_CASE("not-tcp: UDP and other protocols over IPv4") {
    for (std::uint8_t proto : std::initializer_list<std::uint8_t>{17, 47, 50, 58, 132, 0}) {
        CAPTURE(static_cast<int>(proto));
        craft::Ip ip;
        ip.protocol = proto;
        CHECK(packet_error(craft::tcp_packet({}, ip)) == WireError::NotTcp);
    }
    CHECK(to_string(WireError::NotTcp) == "not-tcp");
}

TEST_CASE("fragment: a non-first fragment cannot be decoded") {
    craft::Ip ip;
    ip.df = false;
    ip.frag_offset = 185;  // 1480 bytes in
    CHECK(packet_error(craft::tcp_packet({}, ip)) == WireError::Fragment);
    ip.mf = true;
    CHECK(packet_error(craft::tcp_packet({}, ip)) == WireError::Fragment);
    CHECK(to_string(WireError::Fragment) == "fragment");
}

TEST_CASE("fragment: a first fragment too short to hold the TCP header") {
    craft::Ip ip;
    ip.df = false;
    ip.mf = true;
    ByteVec tcp = craft::tcp_segment({});
    CHECK(packet_error(craft::ipv4_packet(ip, Bytes{tcp}.first(8))) == WireError::Fragment);
}

TEST_CASE("Packet: a first fragment holding the whole TCP header decodes, flagged truncated") {
    craft::Ip ip;
    ip.df = false;
    ip.mf = true;
    craft::Tcp t;
    t.flags = flag::psh | flag::ack;
    t.payload = ByteVec(16, 0x61);
    auto p = decode_ipv4_packet(craft::tcp_packet(t, ip));
    REQUIRE(p.ok());
    CHECK(p->truncated);
    REQUIRE(p->segment() != nullptr);
    CHECK_FALSE(p->segment()->checksum_ok.has_value());  // the rest of the data is elsewhere
    CHECK(p->segment()->payload.size() == 16);
}

TEST_CASE("Packet: the urgent pointer is decoded with or without URG") {
    craft::Tcp t;
    t.flags = flag::urg | flag::ack | flag::psh;
    t.urgent = 3;
    t.payload = {0x01, 0x02, 0x03};
    auto p = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(p.ok());
    CHECK(p->segment()->urgent == 3);
    CHECK(p->segment()->has(flag::urg));
    t.flags = flag::ack;
    auto q = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(q.ok());
    CHECK(q->segment()->urgent == 3);
}

TEST_CASE("Packet: decode_tcp checks the checksum unless told the bytes are truncated") {
    Bytes tcp = Bytes{fx::veth_synack}.subspan(14 + 20);
    auto whole = decode_tcp(server_addr, client_addr, tcp, false);
    REQUIRE(whole.ok());
    CHECK(whole->checksum_ok == true);
    CHECK(whole->src == Endpoint{server_addr, 50123});
    auto swapped = decode_tcp(client_addr, server_addr, tcp, false);
    REQUIRE(swapped.ok());
    CHECK(swapped->checksum_ok == true);  // the pseudo-header sum does not depend on the order
    auto partial = decode_tcp(server_addr, client_addr, tcp, true);
    REQUIRE(partial.ok());
    CHECK_FALSE(partial->checksum_ok.has_value());
}

TEST_CASE("Packet: every WireError value has its own name") {
    std::vector<std::string> names;
    for (int i = 0; i <= static_cast<int>(WireError::IcmpQuoteNotTcp); ++i) {
        std::string name(to_string(static_cast<WireError>(i)));
        CAPTURE(i);
        CHECK(name != "unknown-wire-error");
        CHECK(std::find(names.begin(), names.end(), name) == names.end());
        CHECK(fmt::format("{}", static_cast<WireError>(i)) == name);
        names.push_back(name);
    }
    CHECK(names.size() == 21);
}
