// Tests for wire/tcp_header: the checked TCP header view on real segments, its three error
// values with crafted bytes, and flags that the decoder must report exactly as sent.
#include <doctest/doctest.h>

#include <string>

#include "fixtures/linux_capture.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "tcpprobe/wire/tcp_header.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
/// The TCP bytes of an Ethernet + IPv4 (IHL 5) frame.
Bytes tcp_of(Bytes frame) { return frame.subspan(14 + 20); }

/// The error from the view, checked to be the same through the whole-packet decoder.
WireError tcp_error(const craft::Tcp& t) {
    ByteVec seg = craft::tcp_segment(t);
    auto view = TcpHeaderView::parse(seg);
    REQUIRE_FALSE(view.ok());
    auto whole = decode_ipv4_packet(craft::ipv4_packet({}, seg));
    REQUIRE_FALSE(whole.ok());
    CHECK(whole.error() == view.error());
    return view.error();
}
}  // namespace

TEST_CASE("TCP header: every field of the captured SYN") {
    auto h = TcpHeaderView::parse(tcp_of(fx::veth_syn));
    REQUIRE(h.ok());
    CHECK(h->src_port() == 39344);
    CHECK(h->dst_port() == 50123);
    CHECK(h->seq() == Seq{3642701903u});
    CHECK(h->ack() == Seq{0});
    CHECK(h->data_offset() == 10);
    CHECK(h->header_len() == 40);
    CHECK(h->flags() == flag::syn);
    CHECK(h->window() == 65495);
    CHECK(h->checksum() == 0x6558);
    CHECK(h->urgent() == 0);
    REQUIRE(h->options().size() == 20);
    CHECK(h->options()[0] == 0x02);   // mss
    CHECK(h->options()[19] == 0x07);  // wscale 7
    CHECK(h->payload().empty());
}

TEST_CASE("TCP header: every field of the captured SYN-ACK") {
    auto h = TcpHeaderView::parse(tcp_of(fx::veth_synack));
    REQUIRE(h.ok());
    CHECK(h->src_port() == 50123);
    CHECK(h->dst_port() == 39344);
    CHECK(h->seq() == Seq{623894644u});
    CHECK(h->ack() == Seq{3642701904u});
    CHECK(h->flags() == (flag::syn | flag::ack));
    CHECK(h->window() == 65483);
    CHECK(h->checksum() == 0x4D8F);
    CHECK(h->options().size() == 20);
}

TEST_CASE("TCP header: the captured RST/ACK has no options and a zero window") {
    auto h = TcpHeaderView::parse(tcp_of(fx::veth_rst));
    REQUIRE(h.ok());
    CHECK(h->src_port() == 50124);
    CHECK(h->dst_port() == 40396);
    CHECK(h->seq() == Seq{0});
    CHECK(h->ack() == Seq{2861473606u});
    CHECK(h->data_offset() == 5);
    CHECK(h->flags() == (flag::rst | flag::ack));
    CHECK(h->window() == 0);
    CHECK(h->checksum() == 0xB239);
    CHECK(h->options().empty());
    CHECK(h->payload().empty());
}

TEST_CASE("TCP header: the captured data segment's payload follows its 12 option bytes") {
    auto h = TcpHeaderView::parse(tcp_of(fx::veth_data));
    REQUIRE(h.ok());
    CHECK(h->data_offset() == 8);
    CHECK(h->flags() == (flag::psh | flag::ack));
    CHECK(h->options().size() == 12);
    REQUIRE(h->payload().size() == 6);
    CHECK(std::string(h->payload().begin(), h->payload().end()) == "hello\n");
}

TEST_CASE("TCP header: data offset 5 with exactly 20 bytes is a complete header") {
    ByteVec seg = craft::tcp_segment({});
    REQUIRE(seg.size() == 20);
    auto h = TcpHeaderView::parse(seg);
    REQUIRE(h.ok());
    CHECK(h->options().empty());
    CHECK(h->payload().empty());
}

TEST_CASE("tcp-truncated: 19 bytes cannot hold a TCP header") {
    ByteVec seg = craft::tcp_segment({});
    auto h = TcpHeaderView::parse(Bytes{seg}.first(19));
    REQUIRE_FALSE(h.ok());
    CHECK(h.error() == WireError::TcpTruncated);
    // Through the packet decoder: an IPv4 packet whose total length leaves 19 TCP bytes.
    auto p = decode_ipv4_packet(craft::ipv4_packet({}, Bytes{seg}.first(19)));
    REQUIRE_FALSE(p.ok());
    CHECK(p.error() == WireError::TcpTruncated);
    CHECK(to_string(WireError::TcpTruncated) == "tcp-truncated");
}

TEST_CASE("tcp-truncated: the IP total length, not the capture, bounds the TCP bytes") {
    // 40 bytes captured, but total length 39: the segment is 19 bytes long.
    craft::Ip ip;
    ip.total_length = 39;
    auto p = decode_ipv4_packet(craft::tcp_packet({}, ip));
    REQUIRE_FALSE(p.ok());
    CHECK(p.error() == WireError::TcpTruncated);
}

TEST_CASE("tcp-bad-data-offset: data offset below 5") {
    for (std::uint8_t offset = 0; offset < 5; ++offset) {
        CAPTURE(offset);
        craft::Tcp t;
        t.data_offset = offset;
        CHECK(tcp_error(t) == WireError::TcpBadDataOffset);
    }
    CHECK(to_string(WireError::TcpBadDataOffset) == "tcp-bad-data-offset");
}

TEST_CASE("tcp-data-offset-past-end: data offset 15 (60 bytes) in a 20-byte segment") {
    craft::Tcp t;
    t.data_offset = 15;
    CHECK(tcp_error(t) == WireError::TcpDataOffsetPastEnd);
    CHECK(to_string(WireError::TcpDataOffsetPastEnd) == "tcp-data-offset-past-end");
}

TEST_CASE("tcp-data-offset-past-end: data offset 6 with two bytes of options") {
    craft::Tcp t;
    t.options = {0x01, 0x01};
    t.data_offset = 6;
    CHECK(tcp_error(t) == WireError::TcpDataOffsetPastEnd);
}

TEST_CASE("TCP header: a data offset that swallows the payload is believed, not second-guessed") {
    // 8 payload bytes, but the offset says the header is 28 bytes: they are "options".
    craft::Tcp t;
    t.payload = {0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01};
    t.data_offset = 7;
    ByteVec seg = craft::tcp_segment(t);
    auto h = TcpHeaderView::parse(seg);
    REQUIRE(h.ok());
    CHECK(h->options().size() == 8);
    CHECK(h->payload().empty());
}

TEST_CASE("TCP header: reserved and AE bits are reported, not normalised") {
    craft::Tcp t;
    t.flags = flag::all;  // every one of the 12 bits
    ByteVec seg = craft::tcp_segment(t);
    auto h = TcpHeaderView::parse(seg);
    REQUIRE(h.ok());
    CHECK(h->flags() == 0xFFF);
    CHECK(h->data_offset() == 5);

    auto p = decode_ipv4_packet(craft::ipv4_packet({}, seg));
    REQUIRE(p.ok());
    REQUIRE(p->segment() != nullptr);
    const Segment& s = *p->segment();
    CHECK(s.flags == 0xFFF);
    CHECK(s.has(flag::reserved));
    CHECK(s.has(flag::ae));
    CHECK(s.has(flag::syn | flag::fin | flag::rst));
    CHECK(s.checksum_ok == true);
}

TEST_CASE("TCP header: one reserved bit alone is kept as that bit") {
    for (std::uint16_t bit : {std::uint16_t{0x200}, std::uint16_t{0x400}, std::uint16_t{0x800}}) {
        CAPTURE(bit);
        craft::Tcp t;
        t.flags = static_cast<std::uint16_t>(flag::ack | bit);
        ByteVec seg = craft::tcp_segment(t);
        auto h = TcpHeaderView::parse(seg);
        REQUIRE(h.ok());
        CHECK(h->flags() == (flag::ack | bit));
    }
}

TEST_CASE("TCP header: SYN and FIN together are decoded as sent") {
    craft::Tcp t;
    t.flags = flag::syn | flag::fin;
    auto p = decode_ipv4_packet(craft::tcp_packet(t));
    REQUIRE(p.ok());
    REQUIRE(p->segment() != nullptr);
    CHECK(p->segment()->flags == (flag::syn | flag::fin));
    CHECK(p->segment()->seg_len() == 2);
}
