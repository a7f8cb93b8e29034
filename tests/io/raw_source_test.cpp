// The raw-socket capture's drop count: every answer is either handed over or counted as
// dropped, also when the queue overflowed after the last packet it holds (a flood's
// final burst). Loopback only: TCP RSTs from 127.0.0.1:39998 to 127.0.0.1:39999, which
// the local stack drops without an answer. Needs CAP_NET_RAW (CI runs as root).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <vector>

#include "tcpprobe/io/raw_source.hpp"

using namespace tcpprobe;

namespace {
/// An IPv4+TCP segment on 127.0.0.1 from `sport` to `dport` with `payload` zero bytes
/// (checksums are not needed: the raw socket sees the packet before TCP checks it).
std::vector<std::uint8_t> segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
                                  std::uint8_t flags, std::size_t payload = 0) {
    std::vector<std::uint8_t> p(40 + payload);
    p[0] = 0x45;
    p[2] = static_cast<std::uint8_t>(p.size() >> 8), p[3] = static_cast<std::uint8_t>(p.size());
    p[8] = 64;
    p[9] = IPPROTO_TCP;
    const std::uint8_t lo[4] = {127, 0, 0, 1};
    for (int i = 0; i < 4; ++i) p[12 + i] = p[16 + i] = lo[i];
    p[20] = static_cast<std::uint8_t>(sport >> 8), p[21] = static_cast<std::uint8_t>(sport);
    p[22] = static_cast<std::uint8_t>(dport >> 8), p[23] = static_cast<std::uint8_t>(dport);
    for (int i = 0; i < 4; ++i) p[24 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) p[28 + i] = static_cast<std::uint8_t>(ack >> (24 - 8 * i));
    p[32] = 5 << 4;
    p[33] = flags;
    return p;
}

std::vector<std::uint8_t> rst(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq) {
    return segment(sport, dport, seq, 0, 0x04);
}
}  // namespace

TEST_CASE("raw capture: answers that overflowed the queue after its last packet are still counted as drops") {
    if (::geteuid() != 0) {
        MESSAGE("skipped: needs CAP_NET_RAW (run as root)");
        return;
    }
    // The capture reads transmit stamps from `tx`; the burst goes out on another socket.
    const int tx = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    const int out = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    REQUIRE(tx >= 0);
    REQUIRE(out >= 0);
    {
        // The smallest queue the kernel allows holds a few packets; the rest of the burst
        // overflows it, and no packet is queued after the drops to report them.
        io::RawSource source("lo", "tcp and src port 39998 and dst port 39999", tx, [] { return std::uint64_t{0}; }, 256, 1);
        constexpr int burst = 100;
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (int i = 0; i < burst; ++i) {
            const auto p = rst(39998, 39999, 1000u + static_cast<std::uint32_t>(i));
            REQUIRE(::sendto(out, p.data(), p.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 40);
        }
        std::size_t frames = 0;
        for (int round = 0; round < 3; ++round) frames += source.drain([](const io::CapturedFrame&) {});
        CHECK(frames >= 1);
        CHECK(source.drops() >= 1);
        CHECK(frames + source.drops() == burst);
    }
    ::close(tx);
    ::close(out);
}

TEST_CASE("raw capture: a sent packet's time is the midpoint of its stamps, unless it waited in a queue before the tap") {
    // veth with tshark capturing: 6.5 us of work before the tap (our SCHED stamp's copy)
    // and 6.7 us after it (the tap's copy): the midpoint is within 0.1 us of tshark.
    CHECK(io::RawSource::wire_time(0, 13'200) == 6'600);
    CHECK(io::RawSource::wire_time(0, 20'000) == 10'000);
    // 1 ms in a busy uplink's queueing discipline, between SCHED and the tap: the tap
    // stamps it just before SND, not 0.5 ms early.
    CHECK(io::RawSource::wire_time(0, 1'000'000) == 1'000'000 - io::RawSource::max_tap_offset_ns / 2);
    CHECK(io::RawSource::wire_time(0, 20'001) == 20'001 - io::RawSource::max_tap_offset_ns / 2);
    CHECK(io::RawSource::wire_time(5'000'000'000, 5'000'000'000) == 5'000'000'000);
}

TEST_CASE("raw capture: a packet's flow, seen from our side, for what we send, a TCP answer and an ICMP error's quote") {
    const auto ours = rst(40000, 80, 7);  // 127.0.0.1:40000 -> 127.0.0.1:80
    const io::RawSource::Flow flow{0x7F000001, 40000, 0x7F000001, 80};
    CHECK(io::RawSource::flow_of(ours.data(), ours.size(), true) == flow);
    const auto answer = rst(80, 40000, 8);
    CHECK(io::RawSource::flow_of(answer.data(), answer.size(), false) == flow);
    // An ICMP error from 127.0.0.2 quoting our packet's IPv4 header and first 8 TCP bytes.
    std::vector<std::uint8_t> icmp(20 + 8 + 28);
    icmp[0] = 0x45;
    icmp[9] = IPPROTO_ICMP;
    icmp[12] = 127, icmp[15] = 2, icmp[16] = 127, icmp[19] = 1;
    icmp[20] = 3, icmp[21] = 3;
    std::copy(ours.begin(), ours.begin() + 28, icmp.begin() + 28);
    CHECK(io::RawSource::flow_of(icmp.data(), icmp.size(), false) == flow);
    CHECK_FALSE(io::RawSource::flow_of(icmp.data(), 40, false));  // the quote cut short
    CHECK_FALSE(io::RawSource::flow_of(ours.data(), 10, true));
}

TEST_CASE("raw capture: an answer is paired with the segment it acknowledges or an ICMP error quotes, not with its flow's others") {
    using io::RawSource;
    auto key = [](const std::vector<std::uint8_t>& b, bool sent) {
        auto k = RawSource::key_of(b.data(), b.size(), sent);
        REQUIRE(k);
        return *k;
    };
    const auto syn = key(segment(40000, 80, 1000, 0, 0x02), true);
    CHECK(syn.span == 1);
    CHECK(RawSource::answers(key(segment(80, 40000, 7000, 1001, 0x12), false), syn));        // its SYN-ACK
    CHECK(RawSource::answers(key(segment(80, 40000, 0, 1001, 0x14), false), syn));           // RST/ACK
    CHECK_FALSE(RawSource::answers(key(segment(80, 40000, 7000, 1000, 0x12), false), syn));  // ack = seq: not it
    CHECK_FALSE(RawSource::answers(key(segment(80, 40001, 7000, 1001, 0x12), false), syn));  // another flow
    // The next probe on the same ports (another ISN): the old probe's late SYN-ACK is no answer to it.
    const auto next = key(segment(40000, 80, 0x01000193u + 1000, 0, 0x02), true);
    CHECK_FALSE(RawSource::answers(key(segment(80, 40000, 7000, 1001, 0x12), false), next));
    // Data: 100 bytes from seq 5000 are acknowledged up to 5100, and a pure ACK by nothing.
    const auto data = key(segment(40000, 80, 5000, 1, 0x18, 100), true);
    CHECK(data.span == 100);
    CHECK(RawSource::answers(key(segment(80, 40000, 1, 5100, 0x10), false), data));
    CHECK_FALSE(RawSource::answers(key(segment(80, 40000, 1, 5101, 0x10), false), data));
    const auto pure_ack = key(segment(40000, 80, 5100, 1, 0x10), true);
    CHECK_FALSE(RawSource::answers(key(segment(80, 40000, 1, 5100, 0x10), false), pure_ack));
    // An ICMP error quoting the SYN's first 8 TCP bytes.
    const auto ours = segment(40000, 80, 1000, 0, 0x02);
    std::vector<std::uint8_t> icmp(20 + 8 + 28);
    icmp[0] = 0x45;
    icmp[9] = IPPROTO_ICMP;
    icmp[20] = 3, icmp[21] = 3;
    std::copy(ours.begin(), ours.begin() + 28, icmp.begin() + 28);
    CHECK(RawSource::answers(key(icmp, false), syn));
    CHECK_FALSE(RawSource::answers(key(icmp, false), next));
}
