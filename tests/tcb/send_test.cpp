// SEND (RFC 9293 §3.10.2) under hostile or unusual numbers: a peer MSS too small to
// carry the timestamps option (or 0), an MSS larger than the link, requests of many
// segments, and the bound on what is in flight at once. The fixture's connection: both
// sides at relative sequence 1; the peer's window 29200 unless a test changes it.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

#include "support/tcb_fixtures.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::wire;
using tcb::SendReason;
using tcb::State;

namespace {

/// Our SYN as Linux's (timestamps on), the peer's SYN-ACK with `peer_mss` (none when
/// nullopt) and timestamps; the link MTU `mtu`.
FixtureOptions peer_with(std::optional<std::uint16_t> peer_mss, bool timestamps = true, std::uint32_t mtu = 1500) {
    FixtureOptions o;
    o.config = timestamps ? linux_like_config() : default_config();
    o.config.mtu = mtu;
    o.peer_syn_options.clear();
    if (peer_mss) o.peer_syn_options.emplace_back(opt::Mss{*peer_mss});
    if (timestamps) {
        o.peer_syn_options.emplace_back(opt::SackPermitted{});
        o.peer_syn_options.emplace_back(opt::Timestamps{5000, 1000});
    }
    return o;
}

std::size_t total_payload(const std::vector<Segment>& segs) {
    return std::accumulate(segs.begin(), segs.end(), std::size_t{0},
                           [](std::size_t n, const Segment& s) { return n + s.payload.size(); });
}

/// The IPv4 packet libnet builds for `s`: 20 bytes of IP header, 20 of TCP header, the
/// option bytes padded to 4, the payload.
std::size_t ip_length(const Segment& s) {
    auto opts = encode_options(s.options);
    REQUIRE(opts.ok());
    return 40 + opts->size() + s.payload.size();
}

/// The peer acknowledges everything up to relative sequence `ack` with window `win`.
tcb::Actions peer_acks(Connection& c, std::uint32_t ack, std::uint16_t win = 29200) {
    c.clock.advance(10ms);
    return inject(c.tcb, c.now(), c.seg(".").seq(1).ack(ack).win(win).option(opt::Timestamps{5001, 0}));
}

}  // namespace

TEST_SUITE_BEGIN("tcb");

TEST_CASE("SEND: a peer MSS below 48 is raised to 48 for sending: no zero or wrapped payload size") {
    struct Row {
        const char* name;
        std::optional<std::uint16_t> peer_mss;
        bool timestamps;
        std::uint16_t payload;
    };
    const Row rows[] = {
        {"MSS 11 with timestamps: 48 - 12", 11, true, 36},
        {"MSS 12 with timestamps", 12, true, 36},
        {"MSS 0 with timestamps", 0, true, 36},
        {"MSS 0 without timestamps", 0, false, 48},
        {"MSS 1 without timestamps", 1, false, 48},
        {"MSS 47 with timestamps", 47, true, 36},
        {"MSS 48 is the floor itself", 48, true, 36},
        {"MSS 49 is kept", 49, true, 37},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = tcb_in_established(peer_with(r.peer_mss, r.timestamps));
            CHECK(c.tcb.negotiated().peer_mss == r.peer_mss);
            CHECK(c.tcb.negotiated().effective_mss == std::max<std::uint16_t>(*r.peer_mss, tcb::min_send_mss));
            CHECK(c.tcb.negotiated().payload_per_segment() == r.payload);
            auto segs = sent_segments(c.tcb.send(c.now(), ByteVec(100, 'x')));
            REQUIRE(segs.size() >= 2);
            for (std::size_t i = 0; i + 1 < segs.size(); ++i) CHECK(segs[i].payload.size() == r.payload);
            CHECK(total_payload(segs) == 100);
        }
    }
}

TEST_CASE("SEND: segments fit the link MTU whatever MSS both sides announced") {
    SUBCASE("MSS 9000 both ways on a 1500-byte link: 1460 bytes per segment, 1448 with timestamps") {
        FixtureOptions o = peer_with(9000, false);
        o.config.syn_options = {opt::Mss{9000}};
        Connection c = tcb_in_established(o);
        CHECK(c.tcb.negotiated().effective_mss == 1460);
        auto segs = sent_segments(c.tcb.send(c.now(), ByteVec(3000, 'x')));
        REQUIRE(segs.size() == 3);
        for (const auto& s : segs) CHECK(ip_length(s) <= 1500);

        Connection t = tcb_in_established(peer_with(9000, true));
        CHECK(t.tcb.negotiated().payload_per_segment() == 1448);
        for (const auto& s : sent_segments(t.tcb.send(t.now(), ByteVec(3000, 'x')))) CHECK(ip_length(s) <= 1500);
    }
    SUBCASE("IPv4's smallest MTU (68): 28 bytes, 16 with timestamps") {
        Connection c = tcb_in_established(peer_with(1460, true, 68));
        CHECK(c.tcb.negotiated().payload_per_segment() == 16);
        for (const auto& s : sent_segments(c.tcb.send(c.now(), ByteVec(50, 'x')))) CHECK(ip_length(s) <= 68);
        Connection n = tcb_in_established(peer_with(1460, false, 60));  // below 68: taken as 68
        CHECK(n.tcb.negotiated().payload_per_segment() == 28);
    }
    SUBCASE("loopback (MTU 65536) and MSS 65495: no packet over IPv4's 65535 bytes") {
        FixtureOptions o = peer_with(65495, true, 65536);
        o.config.syn_options = tcb::default_syn_options(65495, 7, true, true);
        Connection c = tcb_in_established(o);
        auto segs = sent_segments(c.tcb.send(c.now(), ByteVec(65536, 'x')));
        REQUIRE(segs.size() == 1);  // the peer's window (29200) holds one segment at a time
        auto rest = sent_segments(peer_acks(c, 1 + static_cast<std::uint32_t>(segs[0].payload.size())));
        segs.insert(segs.end(), rest.begin(), rest.end());
        REQUIRE(segs.size() == 2);
        CHECK(total_payload(segs) == 65536);
        for (const auto& s : segs) CHECK(ip_length(s) <= 65535);
    }
}

TEST_CASE("SEND: a request of many segments goes out ten at a time, the rest as ACKs make room") {
    // The review's case: 4789 bytes to a peer announcing MSS 11, timestamps on: 36-byte
    // segments (134 of them), never all at once.
    Connection c = tcb_in_established(peer_with(11, true));
    const std::size_t size = 4789;
    ByteVec data(size);
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>(i * 7);
    auto out = c.tcb.send(c.now(), data);
    auto segs = sent_segments(out);
    REQUIRE(segs.size() == tcb::max_segments_in_flight);
    CHECK(c.tcb.snd.nxt == c.flow.iss + 1 + 360);
    std::vector<Segment> all = segs;
    // Each ACK of two segments releases two more, until everything is out.
    std::uint32_t acked = 1;
    for (int round = 0; round < 200 && total_payload(all) < size; ++round) {
        acked += 72;
        auto more = sent_segments(peer_acks(c, std::min<std::uint32_t>(acked, c.tcb.snd.nxt.raw() - c.flow.iss.raw())));
        CHECK(more.size() <= 2);
        for (const auto& s : more) CHECK(s.has(flag::ack));
        all.insert(all.end(), more.begin(), more.end());
        CHECK(relative(c.tcb.snd.nxt, c.tcb.snd.una) <= tcb::max_segments_in_flight * 36);
    }
    REQUIRE(total_payload(all) == size);
    ByteVec joined;
    for (const auto& s : all) joined.insert(joined.end(), s.payload.begin(), s.payload.end());
    CHECK(joined == data);
    CHECK(all.size() == (size + 35) / 36);
    CHECK(all.back().has(flag::psh));
    CHECK(std::none_of(all.begin(), all.end() - 1, [](const Segment& s) { return s.has(flag::psh); }));
}

TEST_CASE("SEND: the peer's window bounds the bytes in flight; with nothing in flight one segment still goes") {
    Connection c = tcb_in_established();
    // The peer shrinks its window to 2000 bytes.
    inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1).win(2000));
    REQUIRE(c.tcb.snd.wnd == 2000);
    auto out = c.tcb.send(c.now(), ByteVec(5000, 'x'));
    expect_sent(out, {sent(".", 1, 1).len(1460).why(SendReason::Data)});
    c.clock.advance(10ms);
    // 1460 acknowledged, window 3000: two more segments fit.
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1461).win(3000));
    expect_sent(out, {sent(".", 1461, 1).len(1460).why(SendReason::Data), sent(".", 2921, 1).len(1460).why(SendReason::Data)});
    c.clock.advance(10ms);
    // A zero window with nothing in flight: the last segment still goes (it is the
    // window probe of RFC 9293 §3.8.6.1), and its timer retransmits it.
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(4381).win(0));
    expect_sent(out, {sent("P.", 4381, 1).len(620).why(SendReason::Data)});
    out = advance(c.tcb, c.clock, 1s);
    expect_sent(out, {sent("P.", 4381, 1).len(620).why(SendReason::Retransmission)});
}

TEST_CASE("SEND then CLOSE: the FIN waits behind the data not yet sent, FIN-WAIT-1 at once (RFC 9293 §3.10.4)") {
    Connection c = tcb_in_established(peer_with(11, false));  // 48-byte segments
    c.tcb.send(c.now(), ByteVec(48 * 12, 'x'));                 // 12 segments: 10 go now
    auto out = c.tcb.close(c.now());
    expect_nothing_sent(out);
    expect_transitions(out, {State::Established, State::FinWait1});
    CHECK_FALSE(c.tcb.fin_sent());
    c.clock.advance(10ms);
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1 + 48 * 2));
    // The last two data segments, then the FIN right behind them.
    expect_sent(out, {sent(".", 1 + 48 * 10, 1).len(48).why(SendReason::Data), sent("P.", 1 + 48 * 11, 1).len(48).why(SendReason::Data),
                      sent("F.", 1 + 48 * 12, 1).why(SendReason::Fin)});
    CHECK(c.tcb.fin_sent());
    c.clock.advance(10ms);
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(2 + 48 * 12));
    expect_transitions(out, {State::FinWait1, State::FinWait2});
}

TEST_CASE("SEND: data not yet sent is dropped by ABORT and by a RST") {
    Connection c = tcb_in_established(peer_with(11, false));
    c.tcb.send(c.now(), ByteVec(48 * 20, 'x'));
    SUBCASE("ABORT") {
        auto out = c.tcb.abort(c.now());
        expect_sent(out, {sent("R", 1 + 48 * 10)});
    }
    SUBCASE("the peer's RST") {
        inject(c.tcb, c.now(), c.seg("R").seq(1));
    }
    expect_state(c.tcb, State::Closed);
    // A later ACK finds nothing to send (the closed TCB answers with a RST only).
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1 + 48 * 10));
    for (const auto& s : sent_segments(out)) CHECK(s.payload.empty());
}

TEST_SUITE_END();
