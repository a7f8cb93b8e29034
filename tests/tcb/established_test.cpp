// ESTABLISHED: RFC 9293 §3.10.7.4 first to seventh steps (acceptability, RST, SYN, ACK,
// text), §3.10.2 (SEND), RFC 5961 (blind RST, SYN and ACK injection) and RFC 7323 §5
// (PAWS). The fixture's connection: both sides at relative sequence 1, our window
// 65535, the peer's MSS 1460.
#include <doctest/doctest.h>

#include "support/tcb_fixtures.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::wire;
using tcb::SendReason;
using tcb::State;
using tcb::TimerKind;

namespace {

FixtureOptions zero_window() {
    FixtureOptions o;
    o.config.rcv_wnd = 0;
    return o;
}

FixtureOptions with_timestamps() {
    FixtureOptions o;
    o.config = linux_like_config();
    o.peer_syn_options = {opt::Mss{1460}, opt::SackPermitted{}, opt::Timestamps{5000, 1000}, opt::Nop{},
                          opt::WindowScale{7}};
    return o;
}

}  // namespace

TEST_SUITE_BEGIN("tcb");

// ---------------------------------------------------------------------------
// First: the acceptability test (RFC 9293 §3.10.7.4, the four cases)

TEST_CASE("ESTABLISHED: acceptability, SEG.LEN = 0 and RCV.WND = 0: only SEG.SEQ = RCV.NXT") {
    Connection c = tcb_in_established(zero_window());
    REQUIRE(c.tcb.rcv.wnd == 0);
    SUBCASE("SEG.SEQ = RCV.NXT is acceptable: a pure ACK, nothing sent") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1));
        expect_nothing_sent(out);
        CHECK_FALSE(has_note(out, "unacceptable"));
    }
    SUBCASE("SEG.SEQ = RCV.NXT + 1 is not: ACK sent, segment dropped") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(1));
        expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack).win(0)});
        CHECK(has_note(out, "unacceptable"));
    }
    SUBCASE("SEG.SEQ = RCV.NXT - 1 is not") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(0).ack(1));
        expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    }
}

TEST_CASE("ESTABLISHED: acceptability, SEG.LEN = 0 and RCV.WND > 0: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND") {
    Connection c = tcb_in_established();
    struct Row {
        const char* name;
        std::uint32_t seq;
        bool acceptable;
    };
    const Row rows[] = {
        {"left edge", 1, true},
        {"last sequence number in the window", 1 + 65534, true},
        {"right edge (one past the window)", 1 + 65535, false},
        {"one before the left edge", 0, false},
        {"far behind (half the sequence space)", 1 + 0x80000000u, false},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            auto out = inject(c.tcb, c.now(), c.seg(".").seq(r.seq).ack(1));
            if (r.acceptable)
                expect_nothing_sent(out);
            else
                expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
            CHECK(has_note(out, "unacceptable") == !r.acceptable);
            expect_state(c.tcb, State::Established);
        }
    }
}

TEST_CASE("ESTABLISHED: acceptability, SEG.LEN > 0 and RCV.WND = 0: never acceptable") {
    Connection c = tcb_in_established(zero_window());
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10));
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack).win(0)});
    CHECK(find_all<tcb::DataReceived>(out).empty());
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
}

TEST_CASE("ESTABLISHED: acceptability, SEG.LEN > 0 and RCV.WND > 0: the first or the last byte in the window") {
    Connection c = tcb_in_established();
    // Take 10 bytes first: RCV.NXT = 11.
    inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10));
    REQUIRE(c.tcb.rcv.nxt == c.flow.irs + 11);
    SUBCASE("starts before the window, ends in it: acceptable, the new part delivered") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(6).ack(1).data(10));
        expect_sent(out, {sent(".", 1, 16).why(SendReason::Ack)});
        CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(11, 5));
    }
    SUBCASE("starts in the window, ends beyond it: acceptable (out of order here)") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(11 + 65530).ack(1).data(10));
        CHECK_FALSE(has_note(out, "unacceptable"));
        expect_sent(out, {sent(".", 1, 11).why(SendReason::Ack)});
    }
    SUBCASE("entirely before the window: unacceptable, ACK sent") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10));
        CHECK(has_note(out, "unacceptable"));
        expect_sent(out, {sent(".", 1, 11).why(SendReason::Ack)});
        CHECK(find_all<tcb::DataReceived>(out).empty());
    }
    SUBCASE("entirely beyond the window: unacceptable, ACK sent") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(11 + 65535).ack(1).data(10));
        CHECK(has_note(out, "unacceptable"));
        expect_sent(out, {sent(".", 1, 11).why(SendReason::Ack)});
    }
}

// ---------------------------------------------------------------------------
// Seventh: segment text

TEST_CASE("ESTABLISHED: in-order data is delivered and acknowledged") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(100));
    expect_sent(out, {sent(".", 1, 101).why(SendReason::Ack)});
    auto d = find<tcb::DataReceived>(out);
    REQUIRE(d.has_value());
    CHECK(d->seq == c.flow.irs + 1);
    CHECK(d->data == stream_bytes(1, 100));
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 101);
}

TEST_CASE("ESTABLISHED: data across the 2^32 wrap of the peer's sequence space is delivered") {
    Connection c = tcb_in_established();
    // IRS is 2^32 - 256: bytes 1..300 wrap after byte 255.
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(300));
    expect_sent(out, {sent(".", 1, 301).why(SendReason::Ack)});
    CHECK(c.tcb.rcv.nxt == Seq{45});  // 2^32 - 256 + 301
    out = inject(c.tcb, c.now(), c.seg("P.").seq(301).ack(1).data(7));
    expect_sent(out, {sent(".", 1, 308).why(SendReason::Ack)});
    CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(301, 7));
}

TEST_CASE("ESTABLISHED: out-of-order data is noted, not delivered, and answered with a duplicate ACK") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(101).ack(1).data(50));
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    CHECK(has_note(out, "out-of-order data: 50 bytes at seq 101 (expected 1)"));
    CHECK(find_all<tcb::DataReceived>(out).empty());
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
}

TEST_CASE("ESTABLISHED: a retransmission overlapping received data is trimmed to the new bytes") {
    Connection c = tcb_in_established();
    inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(100));
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(51).ack(1).data(100));
    expect_sent(out, {sent(".", 1, 151).why(SendReason::Ack)});
    auto d = find<tcb::DataReceived>(out);
    REQUIRE(d.has_value());
    CHECK(d->seq == c.flow.irs + 101);
    CHECK(d->data == stream_bytes(101, 50));
    CHECK(has_note(out, "overlaps 50 bytes"));
}

// ---------------------------------------------------------------------------
// SEND and the fifth step (ACK)

TEST_CASE("ESTABLISHED: SEND cuts data into MSS-sized segments, PSH on the last") {
    Connection c = tcb_in_established();
    SUBCASE("peer MSS 1460") {
        auto out = c.tcb.send(c.now(), ByteVec(3000, 'x'));
        expect_sent(out, {sent(".", 1, 1).len(1460).why(SendReason::Data),
                          sent(".", 1461, 1).len(1460).why(SendReason::Data),
                          sent("P.", 2921, 1).len(80).why(SendReason::Data)});
        // One retransmission timer for the whole flight.
        CHECK(find_all<tcb::ArmTimer>(out).size() == 1);
        expect_armed(out, TimerKind::Retransmit, c.now() + 1s);
        CHECK(c.tcb.snd.nxt == c.flow.iss + 3001);
        CHECK(c.tcb.snd.una == c.flow.iss + 1);
    }
    SUBCASE("exactly one MSS: one segment") {
        expect_sent(c.tcb.send(c.now(), ByteVec(1460, 'x')), {sent("P.", 1, 1).len(1460).why(SendReason::Data)});
    }
    SUBCASE("nothing to send: nothing sent, no timer") {
        auto out = c.tcb.send(c.now(), {});
        expect_nothing_sent(out);
        CHECK_FALSE(c.tcb.next_deadline().has_value());
    }
    SUBCASE("the payload is the caller's bytes, in order") {
        ByteVec data(1500);
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i);
        auto segs = sent_segments(c.tcb.send(c.now(), data));
        REQUIRE(segs.size() == 2);
        ByteVec joined = segs[0].payload;
        joined.insert(joined.end(), segs[1].payload.begin(), segs[1].payload.end());
        CHECK(joined == data);
    }
}

TEST_CASE("ESTABLISHED: SEND with timestamps leaves room for the 12 option bytes") {
    Connection c = tcb_in_established(with_timestamps());
    auto out = c.tcb.send(c.now(), ByteVec(1500, 'x'));
    expect_sent(out, {sent(".", 1, 1).len(1448).why(SendReason::Data), sent("P.", 1449, 1).len(52).why(SendReason::Data)});
}

TEST_CASE("ESTABLISHED: an ACK of all data stops the retransmission timer") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    c.clock.advance(20ms);
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(101).win(1000));
    expect_nothing_sent(out);
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    CHECK(find_all<tcb::ArmTimer>(out).empty());
    CHECK_FALSE(c.tcb.next_deadline().has_value());
    CHECK(c.tcb.snd.una == c.flow.iss + 101);
    CHECK(c.tcb.snd.wnd == 1000);
}

TEST_CASE("ESTABLISHED: a partial ACK keeps the rest outstanding and restarts the timer") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(3000, 'x'));
    c.clock.advance(300ms);
    SUBCASE("at a segment boundary") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1461));
        expect_nothing_sent(out);
        expect_armed(out, TimerKind::Retransmit, c.now() + 1s);
        CHECK(c.tcb.snd.una == c.flow.iss + 1461);
        // The oldest unacknowledged segment is the one resent.
        out = advance(c.tcb, c.clock, 1s);
        expect_sent(out, {sent(".", 1461, 1).len(1460).why(SendReason::Retransmission)});
    }
    SUBCASE("inside a segment: only its unacknowledged tail is resent") {
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1000));
        expect_nothing_sent(out);
        CHECK(c.tcb.snd.una == c.flow.iss + 1000);
        out = advance(c.tcb, c.clock, 1s);
        expect_sent(out, {sent(".", 1000, 1).len(461).why(SendReason::Retransmission)});
    }
}

TEST_CASE("ESTABLISHED: a duplicate ACK changes nothing and is not answered") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    const auto deadline = c.tcb.next_deadline();
    auto out = inject(c.tcb, c.now() + 10ms, c.seg(".").seq(1).ack(1));
    expect_nothing_sent(out);
    CHECK(c.tcb.snd.una == c.flow.iss + 1);
    CHECK(c.tcb.next_deadline() == deadline);
}

TEST_CASE("ESTABLISHED: an ACK of data never sent is answered with an ACK and dropped (RFC 9293, RFC 5961 §5.2)") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    // ...with data on it, which must not be delivered either.
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(5000).data(10));
    expect_sent(out, {sent(".", 101, 1).why(SendReason::ChallengeAck)});
    CHECK(has_note(out, "ACK for data not yet sent (ack 5000 > SND.NXT 101)"));
    CHECK(find_all<tcb::DataReceived>(out).empty());
    CHECK(c.tcb.snd.una == c.flow.iss + 1);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
}

TEST_CASE("ESTABLISHED: a segment without ACK is dropped (RFC 9293 §3.10.7.4, fifth)") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now(), c.seg("P").seq(1).data(10));
    expect_nothing_sent(out);
    CHECK(has_note(out, "without ACK"));
    CHECK(find_all<tcb::DataReceived>(out).empty());
}

TEST_CASE("ESTABLISHED: the send window follows only newer segments (SND.UNA, SND.WL1, SND.WL2)") {
    Connection c = tcb_in_established();
    c.tcb.send(c.now(), ByteVec(100, 'x'));
    inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(50).win(3000).data(10));
    CHECK(c.tcb.snd.wnd == 3000);
    // An old ACK (SEG.ACK < SND.UNA), even on a newer sequence number, does not update it.
    inject(c.tcb, c.now(), c.seg(".").seq(11).ack(40).win(10));
    CHECK(c.tcb.snd.wnd == 3000);
    // Out-of-order data further on: SND.WL1 moves to its sequence number.
    inject(c.tcb, c.now(), c.seg("P.").seq(101).ack(50).win(500).data(10));
    CHECK(c.tcb.snd.wnd == 500);
    // In-order data before SND.WL1 is older as far as the window goes.
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(11).ack(50).win(7).data(10));
    CHECK(find<tcb::DataReceived>(out).has_value());
    CHECK(c.tcb.snd.wnd == 500);
    // SEG.SEQ = SND.WL1 and SND.WL2 =< SEG.ACK: updated.
    inject(c.tcb, c.now(), c.seg(".").seq(101).ack(101).win(20));
    CHECK(c.tcb.snd.wnd == 20);
}

TEST_CASE("ESTABLISHED: URG is noted and otherwise treated as data") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now(), c.seg("UP.").seq(1).ack(1).urg(3).data(5));
    CHECK(has_note(out, "URG set, urgent pointer 3"));
    expect_sent(out, {sent(".", 1, 6).why(SendReason::Ack)});
}

// ---------------------------------------------------------------------------
// Second and fourth: RST and SYN (RFC 5961 §3, §4)

TEST_CASE("ESTABLISHED: RST handling follows RFC 5961 §3.2") {
    Connection c = tcb_in_established();
    auto cases = [&c](const char* flags) {
        SUBCASE("SEG.SEQ = RCV.NXT exactly: the connection is reset") {
            auto out = inject(c.tcb, c.now(), c.seg(flags).seq(1).ack(1));
            expect_nothing_sent(out);
            expect_transitions(out, {State::Established, State::Closed});
            REQUIRE(find<tcb::ConnectionReset>(out).has_value());
            CHECK(find<tcb::ConnectionReset>(out)->in_state == State::Established);
        }
        SUBCASE("in the window but not exact: challenge ACK, connection kept") {
            auto out = inject(c.tcb, c.now(), c.seg(flags).seq(1000).ack(1));
            expect_sent(out, {sent(".", 1, 1).why(SendReason::ChallengeAck)});
            expect_state(c.tcb, State::Established);
            CHECK(find_all<tcb::ConnectionReset>(out).empty());
        }
        SUBCASE("outside the window: dropped silently") {
            for (std::uint32_t seq : {0u, 1u + 65535u, 0x80000000u}) {
                CAPTURE(seq);
                auto out = inject(c.tcb, c.now(), c.seg(flags).seq(seq).ack(1));
                expect_nothing_sent(out);
                CHECK(has_note(out, "RST outside the window ignored"));
                expect_state(c.tcb, State::Established);
            }
        }
    };
    SUBCASE("RST") { cases("R"); }
    SUBCASE("RST,ACK") { cases("R."); }
}

TEST_CASE("ESTABLISHED: a SYN is answered with a challenge ACK and dropped (RFC 5961 §4.2)") {
    Connection c = tcb_in_established();
    SUBCASE("SYN in the window") {
        auto out = inject(c.tcb, c.now(), c.seg("S").seq(1000));
        expect_sent(out, {sent(".", 1, 1).why(SendReason::ChallengeAck)});
        CHECK(has_note(out, "challenge ACK"));
    }
    SUBCASE("SYN-ACK at RCV.NXT") {
        auto out = inject(c.tcb, c.now(), c.seg("S.").seq(1).ack(1));
        expect_sent(out, {sent(".", 1, 1).why(SendReason::ChallengeAck)});
    }
    SUBCASE("SYN outside the window: the same ACK, from the acceptability test") {
        auto out = inject(c.tcb, c.now(), c.seg("S").seq(0x40000000));
        expect_sent(out, {sent(".", 1, 1)});
    }
    expect_state(c.tcb, State::Established);
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 1);
}

// ---------------------------------------------------------------------------
// PAWS (RFC 7323 §5)

TEST_CASE("ESTABLISHED: PAWS drops a segment whose TSval is older than TS.Recent, and ACKs") {
    Connection c = tcb_in_established(with_timestamps());
    REQUIRE(c.tcb.ts_recent() == 5000);
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10).nop().nop().ts(4999, 1010));
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    CHECK(sent_segments(out).at(0).options.back() == TcpOption{opt::Timestamps{1010, 5000}});
    CHECK(has_note(out, "PAWS"));
    CHECK(find_all<tcb::DataReceived>(out).empty());
    CHECK(c.tcb.ts_recent() == 5000);
}

TEST_CASE("ESTABLISHED: PAWS counts TSval modulo 2^32 and spares RSTs") {
    FixtureOptions o = with_timestamps();
    o.peer_syn_options = {opt::Mss{1460}, opt::Timestamps{0xFFFFFFF0u, 1000}};
    Connection c = tcb_in_established(o);
    SUBCASE("a TSval that wrapped past zero is newer: accepted, TS.Recent follows") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10).ts(5, 1010));
        expect_sent(out, {sent(".", 1, 11).why(SendReason::Ack)});
        CHECK(c.tcb.ts_recent() == 5);
    }
    SUBCASE("an equal TSval is not old") {
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(10).ts(0xFFFFFFF0u, 1010));
        CHECK(find<tcb::DataReceived>(out).has_value());
    }
    SUBCASE("a RST with an old TSval still resets when exact") {
        auto out = inject(c.tcb, c.now(), c.seg("R").seq(1).ts(0xFFFFFF00u, 0));
        CHECK(find<tcb::ConnectionReset>(out).has_value());
        expect_state(c.tcb, State::Closed);
    }
}

TEST_CASE("ESTABLISHED: TS.Recent is not taken from an out-of-order segment (RFC 7323 §4.3)") {
    Connection c = tcb_in_established(with_timestamps());
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(101).ack(1).data(10).ts(6000, 1010));
    expect_sent(out, {sent(".", 1, 1).why(SendReason::Ack)});
    CHECK(c.tcb.ts_recent() == 5000);
    CHECK(sent_segments(out).at(0).options.back() == TcpOption{opt::Timestamps{1010, 5000}});
}

TEST_SUITE_END();
