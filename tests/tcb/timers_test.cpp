// The TCB's own timers: retransmission of SYN, SYN-ACK, FIN and data on an RFC 6298
// shaped schedule (initial RTO, backoff, cap, retries, then give up), and TIME-WAIT's
// 2MSL (RFC 9293 §3.10.8, RFC 1337, RFC 5961 §4 for SYN in TIME-WAIT).
//
// Time is data: each test moves a fake clock to the exact instants next_deadline()
// announces and checks what on_timer() does there, and that nothing happens a
// nanosecond before.
#include <doctest/doctest.h>

#include "support/tcb_fixtures.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::wire;
using tcb::SendReason;
using tcb::State;
using tcb::TimerKind;

namespace {

constexpr Duration ns1 = std::chrono::nanoseconds{1};

struct Firing {
    Duration at;  ///< since the schedule's start
    tcb::Actions actions;
};

/// Fires the TCB's timers one deadline at a time, up to `horizon` after now, checking
/// that nothing happens one nanosecond before each deadline.
std::vector<Firing> run_timers(Connection& c, Duration horizon) {
    const Instant start = c.now();
    std::vector<Firing> out;
    while (auto due = c.tcb.next_deadline()) {
        if (*due > start + horizon) break;
        REQUIRE(*due >= c.now());
        auto early = c.tcb.on_timer(*due - ns1);
        CHECK_MESSAGE(early.empty(), "on_timer acted before its deadline:\n", describe(early, c.flow));
        c.clock.advance_to(*due);
        out.push_back({*due - start, c.tcb.on_timer(*due)});
    }
    return out;
}

std::vector<Duration> instants(const std::vector<Firing>& f) {
    std::vector<Duration> v;
    for (const auto& x : f) v.push_back(x.at);
    return v;
}

FixtureOptions with_policy(tcb::RetransmitPolicy p) {
    FixtureOptions o;
    o.config.rto = p;
    return o;
}

FixtureOptions with_time_wait(Duration msl2, bool rfc1337 = false) {
    FixtureOptions o;
    o.config.time_wait = msl2;
    o.config.rfc1337 = rfc1337;
    return o;
}

}  // namespace

TEST_SUITE_BEGIN("tcb");

// ---------------------------------------------------------------------------
// SYN

TEST_CASE("SYN-SENT: the SYN is retransmitted at 1, 3 and 7 s, and the TCB gives up at 15 s") {
    Connection c = tcb_in_syn_sent();
    CHECK(c.tcb.next_deadline() == c.now() + 1s);
    auto f = run_timers(c, 60s);
    CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s});
    REQUIRE(f.size() == 4);
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        expect_sent(f[i].actions, {sent("S", 0).why(SendReason::Retransmission).win(65535)});
        CHECK(sent_segments(f[i].actions).at(0).options == OptionList{opt::Mss{1460}});
    }
    expect_armed(f[0].actions, TimerKind::Retransmit, c.clock.start() + 3s);
    expect_armed(f[1].actions, TimerKind::Retransmit, c.clock.start() + 7s);
    expect_armed(f[2].actions, TimerKind::Retransmit, c.clock.start() + 15s);
    // Giving up: nothing sent, GaveUp, CLOSED, no deadline left.
    expect_nothing_sent(f[3].actions);
    REQUIRE(find<tcb::GaveUp>(f[3].actions).has_value());
    CHECK(find<tcb::GaveUp>(f[3].actions)->what == "SYN");
    CHECK(find<tcb::GaveUp>(f[3].actions)->retransmissions == 3);
    expect_transitions(f[3].actions, {State::SynSent, State::Closed});
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("SYN-SENT: the retransmission schedule follows the configured policy") {
    SUBCASE("200 ms initial, backoff 1.5, capped at 500 ms, 4 retries") {
        Connection c = tcb_in_syn_sent(with_policy({200ms, 1.5, 4, 500ms}));
        auto f = run_timers(c, 60s);
        CHECK(instants(f) == std::vector<Duration>{200ms, 500ms, 950ms, 1450ms, 1950ms});
        CHECK(find_all<tcb::SendSegment>(f.back().actions).empty());
        CHECK(find<tcb::GaveUp>(f.back().actions)->retransmissions == 4);
    }
    SUBCASE("no retries: the first expiry gives up") {
        Connection c = tcb_in_syn_sent(with_policy({1s, 2.0, 0, 60s}));
        auto f = run_timers(c, 60s);
        CHECK(instants(f) == std::vector<Duration>{1s});
        expect_nothing_sent(f[0].actions);
        CHECK(find<tcb::GaveUp>(f[0].actions)->retransmissions == 0);
        expect_state(c.tcb, State::Closed);
    }
    SUBCASE("Linux's tcp_syn_retries=6 shape: 1, 3, 7, 15, 31, 63, give up at 127 s") {
        Connection c = tcb_in_syn_sent(with_policy({1s, 2.0, 6, 120s}));
        auto f = run_timers(c, 600s);
        CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s, 31s, 63s, 127s});
    }
    SUBCASE("Linux 6.7+'s linear SYN timeouts (4): five gaps of 1 s, then doubling; a FIN still doubles") {
        tcb::RetransmitPolicy p{1s, 2.0, 6, 120s};
        p.syn_linear = 4;
        Connection syn = tcb_in_syn_sent(with_policy(p));
        CHECK(instants(run_timers(syn, 600s)) == std::vector<Duration>{1s, 2s, 3s, 4s, 5s, 7s, 11s});
        Connection fin = tcb_in_fin_wait_1(with_policy(p));
        CHECK(instants(run_timers(fin, 600s)) == std::vector<Duration>{1s, 3s, 7s, 15s, 31s, 63s, 127s});
    }
    SUBCASE("the cap holds the RTO once reached") {
        Connection c = tcb_in_syn_sent(with_policy({1s, 2.0, 5, 4s}));
        auto f = run_timers(c, 600s);
        CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 11s, 15s, 19s});
    }
}

TEST_CASE("SYN-SENT: a retransmitted SYN refreshes its TSval and keeps everything else") {
    FixtureOptions o;
    o.config = linux_like_config();
    Connection c = tcb_in_syn_sent(o);
    auto out = advance(c.tcb, c.clock, 1s);
    expect_sent(out, {sent("S", 0).why(SendReason::Retransmission)});
    CHECK(sent_segments(out).at(0).options == OptionList{opt::Mss{1460}, opt::SackPermitted{},
                                                         opt::Timestamps{2000, 0}, opt::Nop{}, opt::WindowScale{7}});
}

TEST_CASE("on_timer before any deadline, or with none armed, does nothing") {
    SUBCASE("early") {
        Connection c = tcb_in_syn_sent();
        CHECK(c.tcb.on_timer(c.now() + 999ms).empty());
        CHECK(c.tcb.next_deadline() == c.now() + 1s);
    }
    SUBCASE("nothing armed") {
        Connection c = tcb_in_established();
        CHECK(c.tcb.on_timer(c.now() + 3600s).empty());
        expect_state(c.tcb, State::Established);
    }
}

TEST_CASE("SYN-RECEIVED (passive): the SYN-ACK is retransmitted, then the TCB gives up") {
    Connection c = tcb_in_syn_received();
    auto f = run_timers(c, 60s);
    CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s});
    for (std::size_t i = 0; i < 3; ++i)
        expect_sent(f[i].actions, {sent("S.", 0, 1).why(SendReason::Retransmission)});
    CHECK(find<tcb::GaveUp>(f[3].actions)->what == "SYN");
    expect_state(c.tcb, State::Closed);
}

TEST_CASE("SYN-RECEIVED (simultaneous open): our SYN is retransmitted as a SYN-ACK") {
    Connection c = tcb_in_syn_sent();
    inject(c.tcb, c.now(), c.seg("S").seq(0).mss(1460));
    REQUIRE(c.tcb.state() == State::SynReceived);
    auto out = advance(c.tcb, c.clock, 1s);
    expect_sent(out, {sent("S.", 0, 1).why(SendReason::Retransmission)});
}

// ---------------------------------------------------------------------------
// FIN and data

TEST_CASE("FIN-WAIT-1: the FIN is retransmitted at 1, 3 and 7 s, and the TCB gives up at 15 s") {
    Connection c = tcb_in_fin_wait_1();
    auto f = run_timers(c, 60s);
    CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s});
    for (std::size_t i = 0; i < 3; ++i)
        expect_sent(f[i].actions, {sent("F.", 1, 1).why(SendReason::Retransmission)});
    CHECK(find<tcb::GaveUp>(f[3].actions)->what == "FIN");
    CHECK(find<tcb::GaveUp>(f[3].actions)->retransmissions == 3);
    expect_transitions(f[3].actions, {State::FinWait1, State::Closed});
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("LAST-ACK: the FIN is retransmitted with the current RCV.NXT") {
    Connection c = tcb_in_last_ack();
    auto f = run_timers(c, 2s);
    REQUIRE(f.size() == 1);
    CHECK(f[0].at == 1s);
    expect_sent(f[0].actions, {sent("F.", 1, 2).why(SendReason::Retransmission)});
}

TEST_CASE("CLOSING: our FIN keeps its schedule from when it was sent") {
    Connection c = tcb_in_closing();  // FIN sent 10 ms before the peer's FIN arrived
    CHECK(c.tcb.next_deadline() == c.now() + 990ms);
    auto out = advance(c.tcb, c.clock, 990ms);
    expect_sent(out, {sent("F.", 1, 2).why(SendReason::Retransmission)});
    // An ACK of the FIN then ends CLOSING.
    out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(2));
    expect_state(c.tcb, State::TimeWait);
}

TEST_CASE("ESTABLISHED: data is retransmitted at 1, 3 and 7 s, and the TCB gives up at 15 s") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    auto f = run_timers(c, 60s);
    CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s});
    for (std::size_t i = 0; i < 3; ++i)
        expect_sent(f[i].actions, {sent("P.", 1, 1).len(100).why(SendReason::Retransmission)});
    CHECK(sent_segments(f[0].actions).at(0).payload == ByteVec(100, 'x'));
    CHECK(find<tcb::GaveUp>(f[3].actions)->what == "data");
    expect_state(c.tcb, State::Closed);
}

TEST_CASE("a retransmission carries the current RCV.NXT, not the one of the original") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(10, 'x'));
    inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(5));  // acks none of ours
    auto out = advance(c.tcb, c.clock, 1s);
    expect_sent(out, {sent("P.", 1, 6).len(10).why(SendReason::Retransmission)});
}

TEST_CASE("an ACK of new data restarts the timer with a fresh RTO and a fresh retry count") {
    Connection c = tcb_in_established();
    const Instant t0 = c.now();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    auto out = advance(c.tcb, c.clock, 1s);  // first retransmission; the RTO is now 2 s
    expect_sent(out, {sent("P.", 1, 1).len(100).why(SendReason::Retransmission)});
    CHECK(c.tcb.next_deadline() == t0 + 3s);

    c.clock.advance(500ms);
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(51));
    expect_nothing_sent(out);
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    expect_armed(out, TimerKind::Retransmit, t0 + 2500ms);  // 1 s again, not 2 s
    CHECK(c.tcb.next_deadline() == t0 + 2500ms);

    auto f = run_timers(c, 60s);
    CHECK(instants(f) == std::vector<Duration>{1s, 3s, 7s, 15s});  // after the ACK, at +1.5 s
    expect_sent(f[0].actions, {sent("P.", 51, 1).len(50).why(SendReason::Retransmission)});
    CHECK(find<tcb::GaveUp>(f[3].actions)->retransmissions == 3);
}

TEST_CASE("a duplicate ACK does not restart the timer") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    const auto deadline = c.tcb.next_deadline();
    c.clock.advance(900ms);
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1));
    CHECK(find_all<tcb::ArmTimer>(out).empty());
    CHECK(c.tcb.next_deadline() == deadline);
}

// ---------------------------------------------------------------------------
// TIME-WAIT

TEST_CASE("TIME-WAIT: expires after exactly the configured 2MSL, not a nanosecond before") {
    struct Row {
        const char* name;
        Duration msl2;
    };
    const Row rows[] = {{"default 60 s", 60s}, {"2 s", 2s}, {"240 s (RFC 9293's 2 x 2 min)", 240s}};
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = tcb_in_time_wait(with_time_wait(r.msl2));
            expect_armed(c.history, TimerKind::TimeWait, c.now() + r.msl2);
            CHECK(c.tcb.next_deadline() == c.now() + r.msl2);
            auto early = c.tcb.on_timer(c.now() + r.msl2 - ns1);
            CHECK(early.empty());
            expect_state(c.tcb, State::TimeWait);
            auto out = c.tcb.on_timer(c.now() + r.msl2);
            expect_nothing_sent(out);
            expect_transitions(out, {State::TimeWait, State::Closed});
            CHECK_FALSE(c.tcb.next_deadline().has_value());
        }
    }
}

TEST_CASE("TIME-WAIT: a retransmitted FIN is re-ACKed and restarts 2MSL from its arrival") {
    Connection c = tcb_in_time_wait();
    const Instant entered = c.now();
    c.clock.advance(30s);
    auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
    expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
    expect_armed(out, TimerKind::TimeWait, entered + 90s);
    CHECK(has_note(out, "2MSL restarted"));
    CHECK(c.tcb.next_deadline() == entered + 90s);
    // The old deadline passes without effect; the new one closes.
    CHECK(c.tcb.on_timer(entered + 60s).empty());
    expect_state(c.tcb, State::TimeWait);
    out = c.tcb.on_timer(entered + 90s);
    expect_transitions(out, {State::TimeWait, State::Closed});
}

TEST_CASE("TIME-WAIT: other segments do not restart 2MSL") {
    Connection c = tcb_in_time_wait();
    const auto deadline = c.tcb.next_deadline();
    c.clock.advance(10s);
    SUBCASE("an in-window ACK: nothing sent") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(2));
        expect_nothing_sent(out);
    }
    SUBCASE("an out-of-window segment: ACKed") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(100000).ack(2));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
    }
    SUBCASE("data: ACKed, not delivered") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(2).ack(2).data(10));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        CHECK(find_all<tcb::DataReceived>(out).empty());
    }
    CHECK(c.tcb.next_deadline() == deadline);
    expect_state(c.tcb, State::TimeWait);
}

TEST_CASE("TIME-WAIT: an exact RST closes it when rfc1337 is off, and is ignored when on") {
    SUBCASE("rfc1337 = false: TIME-WAIT assassinated, CLOSED") {
        Connection c = tcb_in_time_wait(with_time_wait(60s, false));
        auto out = inject(c.tcb, c.now() + 1s, c.seg("R").seq(2));
        expect_nothing_sent(out);
        expect_transitions(out, {State::TimeWait, State::Closed});
        CHECK(find<tcb::ConnectionReset>(out)->in_state == State::TimeWait);
        CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::TimeWait);
        CHECK_FALSE(c.tcb.next_deadline().has_value());
    }
    SUBCASE("rfc1337 = true: ignored, 2MSL unchanged") {
        Connection c = tcb_in_time_wait(with_time_wait(60s, true));
        const auto deadline = c.tcb.next_deadline();
        for (std::uint32_t seq : {2u, 50u}) {  // exact and in-window alike
            CAPTURE(seq);
            auto out = inject(c.tcb, c.now() + 1s, c.seg("R").seq(seq));
            expect_nothing_sent(out);
            CHECK(has_note(out, "RFC 1337"));
            expect_state(c.tcb, State::TimeWait);
            CHECK(c.tcb.next_deadline() == deadline);
        }
    }
    SUBCASE("outside the window: ignored either way") {
        Connection c = tcb_in_time_wait(with_time_wait(60s, false));
        auto out = inject(c.tcb, c.now(), c.seg("R").seq(1));
        expect_nothing_sent(out);
        expect_state(c.tcb, State::TimeWait);
    }
}

TEST_CASE("TIME-WAIT: a SYN is answered with a challenge ACK, TIME-WAIT kept") {
    Connection c = tcb_in_time_wait();
    const auto deadline = c.tcb.next_deadline();
    for (std::uint32_t seq : {100000u, 2u, 0u}) {  // higher, exact, lower
        CAPTURE(seq);
        auto out = inject(c.tcb, c.now() + 5s, c.seg("S").seq(seq).mss(1460));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::ChallengeAck)});
        expect_state(c.tcb, State::TimeWait);
        CHECK(c.tcb.next_deadline() == deadline);
    }
}

TEST_SUITE_END();
