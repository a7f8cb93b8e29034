// Tests for wire/format: the one-line segment notation (STYLE §2.14). The captured
// conversation is the golden transcript, in absolute and in ISS/IRS-relative numbers;
// crafted segments cover flag letters, every option's text, bad options and urgent data.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fixtures/linux_capture.hpp"
#include "fixtures/pcap_file.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
constexpr Seq iss{3642701903u};  // the client's (ours) in the captures
constexpr Seq irs{623894644u};   // the server's
constexpr Ipv4Addr client_addr{0xC6126301u};

Segment decoded(Bytes frame) {
    auto p = decode_frame(dlt::en10mb, frame);
    REQUIRE(p.ok());
    REQUIRE(p->segment() != nullptr);
    return *p->segment();
}

Direction dir_of(const Segment& s) { return s.src.addr == client_addr ? Direction::Out : Direction::In; }

FormatContext relative_ctx(const Segment& s) { return {dir_of(s), iss, irs}; }
FormatContext absolute_ctx(const Segment& s) { return {dir_of(s), std::nullopt, std::nullopt}; }

/// A bare segment for formatting: only what the test sets.
Segment seg(std::uint16_t flags, std::uint32_t seq = 0, std::uint32_t ack = 0, std::uint16_t window = 0) {
    Segment s;
    s.flags = flags;
    s.seq = Seq{seq};
    s.ack = Seq{ack};
    s.window = window;
    return s;
}

std::string fixture_path(const char* name) { return std::string(TCPPROBE_FIXTURES) + "/" + name; }

/// The ten segments of the captured connection, in order (frames 0..9 of veth_session.pcap).
std::vector<Segment> conversation() {
    auto pcap = fx::read_pcap(fixture_path("veth_session.pcap"));
    REQUIRE(pcap.frames.size() >= 10);
    std::vector<Segment> out;
    for (std::size_t i = 0; i < 10; ++i) out.push_back(decoded(pcap.frames[i]));
    return out;
}
}  // namespace

TEST_CASE("format_flags: tcpdump's letters for the usual combinations") {
    CHECK(format_flags(flag::syn) == "S");
    CHECK(format_flags(flag::syn | flag::ack) == "S.");
    CHECK(format_flags(flag::fin | flag::ack) == "F.");
    CHECK(format_flags(flag::rst) == "R");
    CHECK(format_flags(flag::rst | flag::ack) == "R.");
    CHECK(format_flags(flag::psh | flag::ack) == "P.");
    CHECK(format_flags(flag::ack) == ".");
    CHECK(format_flags(flag::fin | flag::psh | flag::ack) == "FP.");
    CHECK(format_flags(flag::urg | flag::ack) == ".U");
    CHECK(format_flags(flag::syn | flag::fin) == "FS");
}

TEST_CASE("format_flags: a segment without flags prints none") {
    CHECK(format_flags(0) == "none");
}

TEST_CASE("format_flags: ECE and CWR print as E and W") {
    CHECK(format_flags(flag::syn | flag::ece | flag::cwr) == "SEW");  // ECN-setup SYN (RFC 3168)
    CHECK(format_flags(flag::syn | flag::ack | flag::ece) == "S.E");  // ECN-setup SYN-ACK
    CHECK(format_flags(flag::ack | flag::cwr) == ".W");
}

TEST_CASE("format_flags: AE prints as a") {
    CHECK(format_flags(flag::ack | flag::ae) == ".a");
    CHECK(format_flags(flag::syn | flag::ae | flag::cwr | flag::ece) == "SEWa");  // AccECN setup SYN
}

TEST_CASE("format_flags: reserved bits print as +rsv and their 3-bit value") {
    CHECK(format_flags(flag::ack | 0x200) == ".+rsv1");
    CHECK(format_flags(flag::ack | 0x400) == ".+rsv2");
    CHECK(format_flags(flag::ack | 0x800) == ".+rsv4");
    CHECK(format_flags(0x200) == "+rsv1");
    CHECK(format_flags(flag::all) == "FSRP.UEWa+rsv7");
}

TEST_CASE("format_segment: the captured conversation with absolute numbers") {
    const char* expected[] = {
        "> S 3642701903:3642701903(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>",
        "< S. 623894644:623894644(0) ack 3642701904 win 65483 <mss 65495,sackOK,TS val 4061863940 ecr 1987817756,nop,wscale 7>",
        "> . 3642701904:3642701904(0) ack 623894645 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "> P. 3642701904:3642701910(6) ack 623894645 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "< . 623894645:623894645(0) ack 3642701910 win 512 <nop,nop,TS val 4061863940 ecr 1987817756>",
        "< P. 623894645:623894648(3) ack 3642701910 win 512 <nop,nop,TS val 4061863940 ecr 1987817756>",
        "> . 3642701910:3642701910(0) ack 623894648 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "> F. 3642701910:3642701910(0) ack 623894648 win 512 <nop,nop,TS val 1987817806 ecr 4061863940>",
        "< F. 623894648:623894648(0) ack 3642701911 win 512 <nop,nop,TS val 4061863990 ecr 1987817806>",
        "> . 3642701911:3642701911(0) ack 623894649 win 512 <nop,nop,TS val 1987817806 ecr 4061863990>",
    };
    auto segs = conversation();
    for (std::size_t i = 0; i < segs.size(); ++i) {
        CAPTURE(i);
        CHECK(format_segment(segs[i], absolute_ctx(segs[i])) == expected[i]);
    }
}

TEST_CASE("format_segment_line: the captured conversation relative to ISS and IRS, with capture times") {
    // Times are the pcap timestamps minus the SYN's, in microseconds.
    const std::int64_t at_us[] = {0, 32, 63, 98, 106, 260, 276, 50519, 50666, 50682};
    const char* expected[] = {
        "0.000000 > S 0:0(0) win 65495 <mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7>",
        "0.000032 < S. 0:0(0) ack 1 win 65483 <mss 65495,sackOK,TS val 4061863940 ecr 1987817756,nop,wscale 7>",
        "0.000063 > . 1:1(0) ack 1 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "0.000098 > P. 1:7(6) ack 1 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "0.000106 < . 1:1(0) ack 7 win 512 <nop,nop,TS val 4061863940 ecr 1987817756>",
        "0.000260 < P. 1:4(3) ack 7 win 512 <nop,nop,TS val 4061863940 ecr 1987817756>",
        "0.000276 > . 7:7(0) ack 4 win 512 <nop,nop,TS val 1987817756 ecr 4061863940>",
        "0.050519 > F. 7:7(0) ack 4 win 512 <nop,nop,TS val 1987817806 ecr 4061863940>",
        "0.050666 < F. 4:4(0) ack 8 win 512 <nop,nop,TS val 4061863990 ecr 1987817806>",
        "0.050682 > . 8:8(0) ack 5 win 512 <nop,nop,TS val 1987817806 ecr 4061863990>",
    };
    auto segs = conversation();
    for (std::size_t i = 0; i < segs.size(); ++i) {
        CAPTURE(i);
        CHECK(format_segment_line(std::chrono::microseconds{at_us[i]}, segs[i], relative_ctx(segs[i])) == expected[i]);
    }
}

TEST_CASE("format_segment: the captured RST/ACK, absolute and relative to the SYN it answers") {
    Segment rst = decoded(fx::veth_rst);
    CHECK(format_segment(rst, {Direction::In, {}, {}}) == "< R. 0:0(0) ack 2861473606 win 0");
    // That connection's ISS was 2861473605; the peer never chose an IRS.
    CHECK(format_segment(rst, {Direction::In, Seq{2861473605u}, {}}) == "< R. 0:0(0) ack 1 win 0");
}

TEST_CASE("format_segment: with only ISS known, the peer's sequence stays absolute") {
    Segment synack = decoded(fx::veth_synack);
    CHECK(format_segment(synack, {Direction::In, iss, std::nullopt}) ==
          "< S. 623894644:623894644(0) ack 1 win 65483 <mss 65495,sackOK,TS val 4061863940 ecr 1987817756,nop,wscale 7>");
}

TEST_CASE("format_segment: relative numbers are taken modulo 2^32") {
    Segment s = seg(flag::ack, 0x10, 5, 100);
    CHECK(format_segment(s, {Direction::Out, Seq{0xFFFFFFF0u}, Seq{0xFFFFFFFFu}}) == "> . 32:32(0) ack 6 win 100");
    // A segment before the ISN prints as a large offset, as tcpdump does.
    Segment old = seg(flag::ack, 0xFFFFFFEFu, 0);
    CHECK(format_segment(old, {Direction::Out, Seq{0xFFFFFFF0u}, std::nullopt}) == "> . 4294967295:4294967295(0) ack 0 win 0");
}

TEST_CASE("format_segment: the payload length sets the end of the range, also across the wrap") {
    Segment s = seg(flag::psh | flag::ack, 0xFFFFFFFEu, 1, 10);
    s.payload = ByteVec(4, 0x78);
    CHECK(format_segment(s, {}) == "> P. 4294967294:2(4) ack 1 win 10");
}

TEST_CASE("format_segment: the ack field prints when ACK is set or when it is nonzero") {
    CHECK(format_segment(seg(flag::ack, 5, 0), {}) == "> . 5:5(0) ack 0 win 0");
    // A SYN whose ack field is not zero is hostile or buggy; the line must show it.
    CHECK(format_segment(seg(flag::syn, 5, 77), {}) == "> S 5:5(0) ack 77 win 0");
    CHECK(format_segment(seg(flag::syn, 5, 0), {}) == "> S 5:5(0) win 0");
}

TEST_CASE("format_segment: a segment without flags prints none") {
    CHECK(format_segment(seg(0, 1, 0, 0), {Direction::In, {}, {}}) == "< none 1:1(0) win 0");
}

TEST_CASE("format_segment: the urgent pointer prints with URG or when nonzero") {
    Segment s = seg(flag::urg | flag::ack | flag::psh, 100, 200, 1000);
    s.urgent = 1;
    s.payload = {0x21};
    CHECK(format_segment(s, {}) == "> P.U 100:101(1) ack 200 win 1000 urg 1");
    s.flags = flag::urg | flag::ack;
    s.urgent = 0;
    s.payload.clear();
    CHECK(format_segment(s, {}) == "> .U 100:100(0) ack 200 win 1000 urg 0");
    s.flags = flag::ack;
    s.urgent = 9;
    CHECK(format_segment(s, {}) == "> . 100:100(0) ack 200 win 1000 urg 9");
}

TEST_CASE("format_options: the text of every option kind") {
    opt::Md5 md5;
    md5.digest[0] = 0xAB;
    md5.digest[15] = 0x01;
    const OptionList list{
        opt::Mss{1460},
        opt::SackPermitted{},
        opt::Timestamps{7, 9},
        opt::Nop{},
        opt::WindowScale{14},
        opt::Sack{{{Seq{1000}, Seq{2000}}, {Seq{3000}, Seq{4000}}}},
        opt::FastOpen{},
        opt::FastOpen{{0xDE, 0xAD, 0xBE, 0xEF}},
        md5,
        opt::Unknown{30, {0x00, 0x81}},
        opt::Unknown{253, {}},
        opt::Eol{},
    };
    CHECK(format_options(list) ==
          "mss 1460,sackOK,TS val 7 ecr 9,nop,wscale 14,sack 2 {1000:2000} {3000:4000},tfo cookiereq,"
          "tfo cookie deadbeef,md5 ab000000000000000000000000000001,opt-30:0081,opt-253,eol");
    CHECK(format_options({}).empty());
}

TEST_CASE("format_segment: options print in angle brackets, none when the list is empty") {
    Segment s = seg(flag::syn, 1, 0, 100);
    CHECK(format_segment(s, {}) == "> S 1:1(0) win 100");
    s.options = {opt::Mss{536}, opt::Nop{}, opt::WindowScale{0}};
    CHECK(format_segment(s, {}) == "> S 1:1(0) win 100 <mss 536,nop,wscale 0>");
}

TEST_CASE("format_segment: bad options print after the options that did decode") {
    Segment s = seg(flag::syn, 1, 0, 100);
    s.options = {opt::Mss{1460}, opt::Nop{}};
    s.options_error = WireError::OptionPastEnd;
    CHECK(format_segment(s, {}) == "> S 1:1(0) win 100 <mss 1460,nop,bad options: option-past-end>");
    s.options.clear();
    s.options_error = WireError::OptionBadLength;
    CHECK(format_segment(s, {}) == "> S 1:1(0) win 100 <bad options: option-bad-length>");
}

TEST_CASE("format_segment: a failed checksum is flagged at the end, an unknown one is not") {
    Segment s = seg(flag::ack, 1, 1, 1);
    s.checksum_ok = false;
    CHECK(format_segment(s, {}) == "> . 1:1(0) ack 1 win 1 [bad tcp cksum]");
    s.checksum_ok = std::nullopt;
    CHECK(format_segment(s, {}) == "> . 1:1(0) ack 1 win 1");
    s.checksum_ok = true;
    CHECK(format_segment(s, {}) == "> . 1:1(0) ack 1 win 1");
}

TEST_CASE("format_segment_line: seconds since the start with six decimals") {
    Segment s = seg(flag::ack, 1, 1, 1);
    CHECK(format_segment_line(Duration{0}, s, {}) == "0.000000 > . 1:1(0) ack 1 win 1");
    CHECK(format_segment_line(1500ms, s, {}) == "1.500000 > . 1:1(0) ack 1 win 1");
    CHECK(format_segment_line(3600s, s, {}) == "3600.000000 > . 1:1(0) ack 1 win 1");
    CHECK(format_segment_line(Duration{123456789}, s, {}).starts_with("0.123457 "));
}
