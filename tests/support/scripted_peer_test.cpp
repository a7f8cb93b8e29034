// Tests of the test harness itself: a scripted peer that passed every transcript would
// prove nothing, so each way a transcript can disagree with the TCB must fail, with a
// message that says what was expected and what was sent.
#include <doctest/doctest.h>

#include <algorithm>

#include "support/scripted_peer.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::test::script;
using tcb::SendReason;
using tcb::State;

namespace {

bool any_contains(const std::vector<std::string>& lines, std::string_view part) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(part) != std::string::npos; });
}

ScriptResult play(const std::vector<Step>& steps) {
    tcb::Tcb t{default_config()};
    FakeClock clock;
    return ScriptedPeer{t, clock}.run(steps);
}

}  // namespace

TEST_SUITE_BEGIN("support");

TEST_CASE("scripted peer: a matching transcript passes and is written in the project's notation") {
    auto r = play({
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),
        peer(10ms, seg("S.").seq(0).ack(1).win(1000).mss(1460)),
        expect(0ms, sent(".", 1, 1)),
    });
    CHECK_MESSAGE(r.ok(), r.report());
    CHECK(any_contains(r.transcript, "0.000000 OPEN (active)"));
    CHECK(any_contains(r.transcript, "0.000000 > S 0:0(0) win 65535 <mss 1460> [syn]"));
    CHECK(any_contains(r.transcript, "0.010000 < S. 0:0(0) ack 1 win 1000 <mss 1460>"));
    CHECK(any_contains(r.transcript, "0.010000 > . 1:1(0) ack 1 win 65535 [ack]"));
    CHECK(any_contains(r.transcript, "0.010000 state SYN-SENT -> ESTABLISHED"));
}

TEST_CASE("scripted peer: a segment that differs from the expected one fails, naming both") {
    auto r = play({
        user_open_active(),
        expect(0ms, sent("S.", 0, 1)),
    });
    REQUIRE_FALSE(r.ok());
    CHECK(r.errors.at(0).find("expected > S. 0:0(0) ack 1") != std::string::npos);
    CHECK(r.errors.at(0).find("flags S != S.") != std::string::npos);
}

TEST_CASE("scripted peer: each field of an expectation is checked") {
    SUBCASE("sequence number") {
        CHECK_FALSE(play({user_open_active(), expect(0ms, sent("S", 1))}).ok());
    }
    SUBCASE("reason") {
        CHECK_FALSE(play({user_open_active(), expect(0ms, sent("S", 0).why(SendReason::Retransmission))}).ok());
    }
    SUBCASE("payload length") {
        CHECK_FALSE(play({user_open_active(), expect(0ms, sent("S", 0).len(1))}).ok());
    }
    SUBCASE("window") {
        CHECK_FALSE(play({user_open_active(), expect(0ms, sent("S", 0).win(1))}).ok());
    }
    SUBCASE("acknowledgment number") {
        auto r = play({
            user_open_active(),
            expect(0ms, sent("S", 0)),
            peer(10ms, seg("S.").seq(0).ack(1)),
            expect(0ms, sent(".", 1, 2)),
        });
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("ack 1 != 2") != std::string::npos);
    }
    SUBCASE("an ACK expectation without an ack number is itself an error") {
        auto r = play({
            user_open_active(),
            expect(0ms, sent("S", 0)),
            peer(10ms, seg("S.").seq(0).ack(1)),
            expect(0ms, sent(".", 1)),
        });
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("expectation error") != std::string::npos);
    }
}

TEST_CASE("scripted peer: a segment sent at another instant than expected fails") {
    SUBCASE("expected later than sent") {
        auto r = play({user_open_active(), expect(1ms, sent("S", 0))});
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("at 0.001000, sent at 0.000000") != std::string::npos);
    }
    SUBCASE("a retransmission expected before its RTO") {
        auto r = play({user_open_active(), expect(0ms, sent("S", 0)), expect(999ms, sent("S", 0))});
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("nothing was sent") != std::string::npos);
    }
}

TEST_CASE("scripted peer: a segment the transcript does not expect fails") {
    SUBCASE("before the peer's next segment") {
        auto r = play({
            user_open_active(),
            peer(10ms, seg("S.").seq(0).ack(1)),
        });
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("unexpected segment at 0.000000 (before the peer's segment): > S 0:0(0)") !=
              std::string::npos);
    }
    SUBCASE("during a silence (a retransmission)") {
        auto r = play({user_open_active(), expect(0ms, sent("S", 0)), silence(2s)});
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("unexpected segment at 1.000000") != std::string::npos);
    }
    SUBCASE("at the end of the transcript") {
        auto r = play({user_open_active()});
        REQUIRE_FALSE(r.ok());
        CHECK(r.errors.at(0).find("the end of the transcript") != std::string::npos);
    }
}

TEST_CASE("scripted peer: state, give-up and reset checks fail when untrue, and the run stops there") {
    SUBCASE("state") {
        auto r = play({user_open_active(), expect(0ms, sent("S", 0)), now_in(State::Established), silence(100s)});
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0] == "at 0.000000: state is SYN-SENT, expected ESTABLISHED");
    }
    SUBCASE("gave up") {
        CHECK_FALSE(play({user_open_passive(), gave_up("SYN")}).ok());
    }
    SUBCASE("reset") {
        CHECK_FALSE(play({user_open_passive(), was_reset()}).ok());
    }
}

TEST_CASE("scripted peer: times are relative to the previous step and timers fire on the way") {
    tcb::Tcb t{default_config()};
    FakeClock clock;
    auto r = ScriptedPeer{t, clock}.run({
        user_open_active(1s),                                       // at 1.000
        expect(0ms, sent("S", 0)),
        expect(1s, sent("S", 0).why(SendReason::Retransmission)),   // at 2.000
        expect(2s, sent("S", 0).why(SendReason::Retransmission)),   // at 4.000
    });
    CHECK_MESSAGE(r.ok(), r.report());
    CHECK(clock.elapsed() == 4s);
    CHECK(any_contains(r.transcript, "4.000000 > S 0:0(0) win 65535 <mss 1460> [retransmission]"));
}

TEST_CASE("scripted peer: the peer's flow must match the TCB's ISS") {
    tcb::Tcb t{default_config()};
    FakeClock clock;
    Flow other = default_flow();
    other.iss = wire::Seq{1};
    CHECK_THROWS_AS(ScriptedPeer(t, clock, other), std::invalid_argument);
}

TEST_SUITE_END();

// ---------------------------------------------------------------------------
// The builders and the assertion helpers

TEST_SUITE_BEGIN("support");

TEST_CASE("segment builder: numbers are relative to IRS (seq) and ISS (ack), flags are tcpdump letters") {
    const Flow f = default_flow();
    wire::Segment s = seg("P.").seq(10).ack(20).win(300).data(4);
    CHECK(s.seq == f.irs + 10);
    CHECK(s.ack == f.iss + 20);
    CHECK(s.flags == (wire::flag::psh | wire::flag::ack));
    CHECK(s.window == 300);
    CHECK(s.src == f.ours.remote);
    CHECK(s.dst == f.ours.local);
    CHECK(s.payload == wire::ByteVec{'j', 'k', 'l', 'm'});  // stream bytes 10..13
    CHECK(stream_bytes(1, 3) == wire::ByteVec{'a', 'b', 'c'});
    CHECK(stream_bytes(27, 1) == wire::ByteVec{'a'});
    // A SYN's data starts one after the SYN.
    wire::Segment syn = seg("S").seq(0).data(2);
    CHECK(syn.payload == stream_bytes(1, 2));
    // Absolute overrides, options in order.
    wire::Segment a = seg("R.").seq_abs(wire::Seq{0}).ack_abs(wire::Seq{7}).mss(1).nop().wscale(2).sack_ok().ts(3, 4);
    CHECK(a.seq == wire::Seq{0});
    CHECK(a.ack == wire::Seq{7});
    CHECK(a.options == wire::OptionList{wire::opt::Mss{1}, wire::opt::Nop{}, wire::opt::WindowScale{2},
                                        wire::opt::SackPermitted{}, wire::opt::Timestamps{3, 4}});
}

TEST_CASE("segment builder: flag letters parse both ways") {
    for (std::string f : {"S", "S.", "F.", "FP.", "R", "R.", ".", "SEW", "P.U", "none"}) {
        CAPTURE(f);
        CHECK(wire::format_flags(parse_flags(f)) == f);
    }
    CHECK(parse_flags("UP.") == parse_flags("P.U"));  // any order
    CHECK_THROWS_AS(parse_flags("SX"), std::invalid_argument);
}

TEST_CASE("fake clock: moves only forward, and only when told") {
    FakeClock c;
    CHECK(c.now() == test_epoch);
    c.advance(1500ms);
    CHECK(c.elapsed() == 1500ms);
    c.advance_to(test_epoch + 2s);
    CHECK(c.now() == test_epoch + 2s);
    CHECK_THROWS_AS(c.advance_to(test_epoch), std::logic_error);
    CHECK_THROWS_AS(c.advance(-1ms), std::logic_error);
}

TEST_CASE("sent_mismatch reports every difference and lists what was sent") {
    Connection c = tcb_in_syn_sent();
    CHECK(sent_mismatch(c.history, {sent("S", 0).why(SendReason::Syn).win(65535)}).empty());
    const std::string m = sent_mismatch(c.history, {sent("S.", 1, 1).len(3).why(SendReason::Ack).win(9)});
    for (const char* part : {"flags S != S.", "seq 0 != 1", "ack 256 != 1", "len 0 != 3", "reason syn != ack",
                             "win 65535 != 9", "> S. 1:4(3) ack 1 win 9 [ack]", "> S 0:0(0) win 65535 <mss 1460> [syn]"}) {
        CAPTURE(part);
        CHECK(m.find(part) != std::string::npos);
    }
    CHECK(sent_mismatch(c.history, {}).find("sent 1 segment(s), expected 0") != std::string::npos);
    CHECK(sent_mismatch(c.history, {sent("S", 0), sent("S", 0)}).find("sent 1 segment(s), expected 2") !=
          std::string::npos);
    // An absolute sequence number is compared as such.
    CHECK(sent_mismatch(c.history, {sent("S", c.flow.iss.raw()).absolute().why(SendReason::Syn)}).empty());
}

TEST_CASE("advance fires due timers in order at their own instants") {
    Connection c = tcb_in_syn_sent();
    auto out = advance(c.tcb, c.clock, 3s);
    auto segs = find_all<tcb::SendSegment>(out);
    CHECK(segs.size() == 2);  // at +1 s and +3 s
    CHECK(c.clock.elapsed() == 3s);
    CHECK(c.tcb.next_deadline() == c.clock.start() + 7s);
}

TEST_SUITE_END();
