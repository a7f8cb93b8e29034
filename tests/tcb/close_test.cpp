// Closing a connection: RFC 9293 §3.6 (normal close, simultaneous close), §3.10.4
// (CLOSE), §3.10.5 (ABORT), §3.10.7.4 fifth and eighth steps in FIN-WAIT-1, FIN-WAIT-2,
// CLOSE-WAIT, CLOSING, LAST-ACK and TIME-WAIT, and RST in every synchronized state
// (RFC 5961 §3.2).
//
// Numbers in the fixtures (relative to ISS and IRS): our FIN is sequence 1 (SND.NXT = 2
// once sent), the peer's FIN is its sequence 1 (RCV.NXT = 2 once received).
#include <doctest/doctest.h>

#include "support/tcb_fixtures.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::wire;
using tcb::SendReason;
using tcb::State;
using tcb::TimerKind;

TEST_SUITE_BEGIN("tcb");

// ---------------------------------------------------------------------------
// Active close

TEST_CASE("ESTABLISHED: CLOSE sends FIN,ACK at SND.NXT and enters FIN-WAIT-1") {
    Connection c = tcb_in_established();
    c.clock.advance(10ms);
    auto out = c.tcb.close(c.now());
    expect_sent(out, {sent("F.", 1, 1).why(SendReason::Fin)});
    expect_transitions(out, {State::Established, State::FinWait1});
    expect_armed(out, TimerKind::Retransmit, c.now() + 1s);
    CHECK(c.tcb.fin_sent());
    CHECK_FALSE(c.tcb.fin_acked());
    CHECK(c.tcb.snd.nxt == c.flow.iss + 2);
}

TEST_CASE("CLOSE after SEND queues the FIN behind the data") {
    Connection c = tcb_in_established();
    auto out = c.tcb.send(c.now(), ByteVec(10, 'x'));
    auto fin = c.tcb.close(c.now());
    expect_sent(fin, {sent("F.", 11, 1).why(SendReason::Fin)});
    // The ACK of the data alone does not finish FIN-WAIT-1.
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(11));
    expect_state(c.tcb, State::FinWait1);
    CHECK(c.tcb.next_deadline().has_value());
    out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(12));
    expect_state(c.tcb, State::FinWait2);
    CHECK(c.tcb.fin_acked());
}

TEST_CASE("active 4-way close: FIN-WAIT-1, ACK -> FIN-WAIT-2, FIN -> TIME-WAIT") {
    Connection c = tcb_in_fin_wait_1();
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(2));
    expect_nothing_sent(out);
    expect_transitions(out, {State::FinWait1, State::FinWait2});
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    CHECK_FALSE(c.tcb.next_deadline().has_value());

    c.clock.advance(10ms);
    out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
    expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
    expect_transitions(out, {State::FinWait2, State::TimeWait});
    expect_armed(out, TimerKind::TimeWait, c.now() + 60s);
    CHECK(c.tcb.next_deadline() == c.now() + 60s);
    CHECK(c.tcb.fin_received());
}

TEST_CASE("active 3-way close: a FIN that also ACKs our FIN goes from FIN-WAIT-1 straight to TIME-WAIT") {
    Connection c = tcb_in_fin_wait_1();
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
    expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
    expect_transitions(out, {State::FinWait1, State::TimeWait});
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    expect_armed(out, TimerKind::TimeWait, c.now() + 60s);
    CHECK(c.tcb.next_deadline() == c.now() + 60s);
}

TEST_CASE("FIN-WAIT-1: a FIN beyond missing data does not close, but the ACK of our FIN still counts") {
    Connection c = tcb_in_fin_wait_1();
    auto out = inject(c.tcb, c.now(), c.seg("F.").seq(11).ack(2));
    expect_sent(out, {sent(".", 2, 1).why(SendReason::Ack)});
    CHECK(has_note(out, "FIN beyond missing data"));
    expect_transitions(out, {State::FinWait1, State::FinWait2});
    CHECK_FALSE(c.tcb.fin_received());
}

TEST_CASE("FIN-WAIT-1 and FIN-WAIT-2 still receive data") {
    SUBCASE("FIN-WAIT-1") {
        Connection c = tcb_in_fin_wait_1();
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(20));
        expect_sent(out, {sent(".", 2, 21).why(SendReason::Ack)});
        CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 20));
        expect_state(c.tcb, State::FinWait1);
    }
    SUBCASE("FIN-WAIT-2") {
        Connection c = tcb_in_fin_wait_2();
        auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(2).data(20));
        expect_sent(out, {sent(".", 2, 21).why(SendReason::Ack)});
        CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 20));
        expect_state(c.tcb, State::FinWait2);
    }
}

// ---------------------------------------------------------------------------
// Passive close

TEST_CASE("passive close: FIN -> CLOSE-WAIT (ACKed), CLOSE -> LAST-ACK, ACK -> CLOSED") {
    Connection c = tcb_in_established();
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
    expect_sent(out, {sent(".", 1, 2).why(SendReason::Ack)});
    expect_transitions(out, {State::Established, State::CloseWait});
    CHECK(c.tcb.fin_received());
    CHECK_FALSE(c.tcb.next_deadline().has_value());

    c.clock.advance(10ms);
    out = c.tcb.close(c.now());
    expect_sent(out, {sent("F.", 1, 2).why(SendReason::Fin)});
    expect_transitions(out, {State::CloseWait, State::LastAck});
    expect_armed(out, TimerKind::Retransmit, c.now() + 1s);

    c.clock.advance(10ms);
    out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(2));
    expect_nothing_sent(out);
    expect_transitions(out, {State::LastAck, State::Closed});
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
}

TEST_CASE("CLOSE-WAIT: we may still send, and the FIN follows our data") {
    Connection c = tcb_in_close_wait();
    auto out = c.tcb.send(c.now(), ByteVec(30, 'x'));
    expect_sent(out, {sent("P.", 1, 2).len(30).why(SendReason::Data)});
    out = c.tcb.close(c.now());
    expect_sent(out, {sent("F.", 31, 2).why(SendReason::Fin)});
    out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(31));
    expect_state(c.tcb, State::LastAck);
    out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(32));
    expect_state(c.tcb, State::Closed);
}

TEST_CASE("LAST-ACK: an ACK that does not cover our FIN keeps LAST-ACK") {
    Connection c = tcb_in_last_ack();
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(1));
    expect_nothing_sent(out);
    expect_state(c.tcb, State::LastAck);
    CHECK(c.tcb.next_deadline().has_value());
}

// ---------------------------------------------------------------------------
// Simultaneous close

TEST_CASE("simultaneous close: FIN-WAIT-1, FIN -> CLOSING (ACKed), ACK -> TIME-WAIT") {
    Connection c = tcb_in_fin_wait_1();
    c.clock.advance(10ms);
    auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
    expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
    expect_transitions(out, {State::FinWait1, State::Closing});
    CHECK(c.tcb.next_deadline().has_value());  // our FIN is still outstanding

    c.clock.advance(10ms);
    out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(2));
    expect_nothing_sent(out);
    expect_transitions(out, {State::Closing, State::TimeWait});
    CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    expect_armed(out, TimerKind::TimeWait, c.now() + 60s);
    CHECK(c.tcb.next_deadline() == c.now() + 60s);
}

TEST_CASE("CLOSING: an ACK that does not cover our FIN keeps CLOSING") {
    Connection c = tcb_in_closing();
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(1));
    expect_nothing_sent(out);
    expect_state(c.tcb, State::Closing);
}

// ---------------------------------------------------------------------------
// FIN with data, FIN in every state

TEST_CASE("ESTABLISHED: a FIN with data delivers the data, ACKs both, and enters CLOSE-WAIT") {
    Connection c = tcb_in_established();
    auto out = inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(1).data(20));
    expect_sent(out, {sent(".", 1, 22).why(SendReason::Ack)});
    CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 20));
    expect_transitions(out, {State::Established, State::CloseWait});
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 22);
}

TEST_CASE("FIN-WAIT-2: a FIN with data delivers the data and enters TIME-WAIT") {
    Connection c = tcb_in_fin_wait_2();
    auto out = inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(2).data(20));
    expect_sent(out, {sent(".", 2, 22).why(SendReason::Ack)});
    CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 20));
    expect_state(c.tcb, State::TimeWait);
}

TEST_CASE("FIN-WAIT-1: a FIN with data is acknowledged once, whichever state follows") {
    SUBCASE("acknowledging our FIN too: TIME-WAIT") {
        Connection c = tcb_in_fin_wait_1();
        auto out = inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(2).data(20));
        expect_sent(out, {sent(".", 2, 22).why(SendReason::Ack)});
        CHECK(find<tcb::DataReceived>(out)->data == stream_bytes(1, 20));
        expect_transitions(out, {State::FinWait1, State::TimeWait});
    }
    SUBCASE("not acknowledging our FIN: CLOSING") {
        Connection c = tcb_in_fin_wait_1();
        auto out = inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(1).data(20));
        expect_sent(out, {sent(".", 2, 22).why(SendReason::Ack)});
        expect_transitions(out, {State::FinWait1, State::Closing});
    }
}

TEST_CASE("a FIN in each state that can receive one") {
    SUBCASE("CLOSED: answered with a RST") {
        Connection c = tcb_closed();
        expect_sent(inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1)), {sent("R", 1).why(SendReason::ResetReply)});
        expect_state(c.tcb, State::Closed);
    }
    SUBCASE("LISTEN: without ACK dropped, with ACK reset") {
        Connection c = tcb_in_listen();
        expect_nothing_sent(inject(c.tcb, c.now(), c.seg("F").seq(1)));
        expect_sent(inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1)), {sent("R", 1).why(SendReason::ResetReply)});
        expect_state(c.tcb, State::Listen);
    }
    SUBCASE("SYN-SENT: dropped (neither SYN nor RST)") {
        Connection c = tcb_in_syn_sent();
        expect_nothing_sent(inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1)));
        expect_state(c.tcb, State::SynSent);
    }
    SUBCASE("SYN-RECEIVED: with an ACK of our SYN, ESTABLISHED then CLOSE-WAIT") {
        Connection c = tcb_in_syn_received();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 1, 2).why(SendReason::Ack)});
        expect_transitions(out, {State::SynReceived, State::Established, State::CloseWait});
    }
    SUBCASE("SYN-RECEIVED: without ACK, dropped") {
        Connection c = tcb_in_syn_received();
        auto out = inject(c.tcb, c.now(), c.seg("F").seq(1));
        expect_nothing_sent(out);
        expect_state(c.tcb, State::SynReceived);
    }
    SUBCASE("ESTABLISHED: CLOSE-WAIT") {
        Connection c = tcb_in_established();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 1, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::CloseWait);
    }
    SUBCASE("FIN-WAIT-1, our FIN not acknowledged: CLOSING") {
        Connection c = tcb_in_fin_wait_1();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::Closing);
    }
    SUBCASE("FIN-WAIT-1, our FIN acknowledged: TIME-WAIT") {
        Connection c = tcb_in_fin_wait_1();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::TimeWait);
    }
    SUBCASE("FIN-WAIT-2: TIME-WAIT") {
        Connection c = tcb_in_fin_wait_2();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::TimeWait);
    }
    SUBCASE("CLOSE-WAIT: a retransmitted FIN is re-ACKed, the state kept") {
        Connection c = tcb_in_close_wait();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 1, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::CloseWait);
        CHECK(c.tcb.rcv.nxt == c.flow.irs + 2);
    }
    SUBCASE("CLOSING: a retransmitted FIN is re-ACKed, the state kept") {
        Connection c = tcb_in_closing();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::Closing);
    }
    SUBCASE("LAST-ACK: a retransmitted FIN is re-ACKed, the state kept") {
        Connection c = tcb_in_last_ack();
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(1));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_state(c.tcb, State::LastAck);
    }
    SUBCASE("TIME-WAIT: a retransmitted FIN is re-ACKed, 2MSL restarted") {
        Connection c = tcb_in_time_wait();
        c.clock.advance(5s);
        auto out = inject(c.tcb, c.now(), c.seg("F.").seq(1).ack(2));
        expect_sent(out, {sent(".", 2, 2).why(SendReason::Ack)});
        expect_armed(out, TimerKind::TimeWait, c.now() + 60s);
        expect_state(c.tcb, State::TimeWait);
    }
}

TEST_CASE("CLOSE-WAIT: a retransmitted FIN carrying its data again is re-ACKed, nothing delivered twice") {
    Connection c = tcb_in_established();
    inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(1).data(20));
    REQUIRE(c.tcb.state() == State::CloseWait);
    auto out = inject(c.tcb, c.now(), c.seg("FP.").seq(1).ack(1).data(20));
    expect_sent(out, {sent(".", 1, 22).why(SendReason::Ack)});
    CHECK(find_all<tcb::DataReceived>(out).empty());
    CHECK(c.tcb.rcv.nxt == c.flow.irs + 22);
}

TEST_CASE("data after the peer's FIN is ignored with a note") {
    // The peer's FIN was sequence 1; new data would start at 2.
    struct Row {
        const char* name;
        Connection (*make)(const FixtureOptions&);
        std::uint32_t ack;
    };
    const Row rows[] = {
        {"CLOSE-WAIT", tcb_in_close_wait, 1},
        {"CLOSING", tcb_in_closing, 1},
        {"LAST-ACK", tcb_in_last_ack, 1},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = r.make({});
            const State before = c.tcb.state();
            auto out = inject(c.tcb, c.now(), c.seg("P.").seq(2).ack(r.ack).data(10));
            CHECK(has_note(out, "10 bytes of data after the peer's FIN ignored"));
            CHECK(find_all<tcb::DataReceived>(out).empty());
            expect_nothing_sent(out);
            CHECK(c.tcb.rcv.nxt == c.flow.irs + 2);
            CHECK(c.tcb.state() == before);
        }
    }
}

TEST_CASE("CLOSE in a closing state is refused with a note and sends nothing") {
    struct Row {
        const char* name;
        Connection (*make)(const FixtureOptions&);
    };
    const Row rows[] = {
        {"FIN-WAIT-1", tcb_in_fin_wait_1}, {"FIN-WAIT-2", tcb_in_fin_wait_2}, {"CLOSING", tcb_in_closing},
        {"LAST-ACK", tcb_in_last_ack},     {"TIME-WAIT", tcb_in_time_wait},   {"CLOSED", tcb_closed},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = r.make({});
            const State before = c.tcb.state();
            auto out = c.tcb.close(c.now());
            expect_nothing_sent(out);
            CHECK(has_note(out, "close: connection closing"));
            CHECK(c.tcb.state() == before);
        }
    }
}

TEST_CASE("SYN-RECEIVED: CLOSE sends a FIN and enters FIN-WAIT-1") {
    Connection c = tcb_in_syn_received();
    auto out = c.tcb.close(c.now());
    expect_sent(out, {sent("F.", 1, 1).why(SendReason::Fin)});
    expect_transitions(out, {State::SynReceived, State::FinWait1});
}

// ---------------------------------------------------------------------------
// RST in every synchronized state (RFC 9293 §3.10.7.4 second, RFC 5961 §3.2)

TEST_CASE("RST in each synchronized state: exact resets, in-window challenges, outside is dropped") {
    struct Row {
        const char* name;
        Connection (*make)(const FixtureOptions&);
        std::uint32_t rcv_nxt;  ///< relative; the exact RST sequence number
        std::uint32_t snd_nxt;  ///< relative; our challenge ACK's sequence number
        State after_exact;
    };
    const Row rows[] = {
        {"SYN-RECEIVED (passive: back to LISTEN)", tcb_in_syn_received, 1, 1, State::Listen},
        {"ESTABLISHED", tcb_in_established, 1, 1, State::Closed},
        {"FIN-WAIT-1", tcb_in_fin_wait_1, 1, 2, State::Closed},
        {"FIN-WAIT-2", tcb_in_fin_wait_2, 1, 2, State::Closed},
        {"CLOSE-WAIT", tcb_in_close_wait, 2, 1, State::Closed},
        {"CLOSING", tcb_in_closing, 2, 2, State::Closed},
        {"LAST-ACK", tcb_in_last_ack, 2, 2, State::Closed},
        {"TIME-WAIT", tcb_in_time_wait, 2, 2, State::Closed},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = r.make({});
            const State before = c.tcb.state();
            SUBCASE("SEG.SEQ = RCV.NXT: reset") {
                auto out = inject(c.tcb, c.now(), c.seg("R").seq(r.rcv_nxt));
                expect_nothing_sent(out);
                expect_transitions(out, {before, r.after_exact});
                CHECK(c.tcb.state() == r.after_exact);
                if (r.after_exact == State::Closed) {
                    REQUIRE(find<tcb::ConnectionReset>(out).has_value());
                    CHECK(find<tcb::ConnectionReset>(out)->in_state == before);
                    CHECK_FALSE(c.tcb.next_deadline().has_value());
                }
            }
            SUBCASE("in the window, not exact: challenge ACK") {
                auto out = inject(c.tcb, c.now(), c.seg("R").seq(r.rcv_nxt + 100));
                expect_sent(out, {sent(".", r.snd_nxt, r.rcv_nxt).why(SendReason::ChallengeAck)});
                CHECK(c.tcb.state() == before);
            }
            SUBCASE("outside the window: dropped silently") {
                for (std::uint32_t seq : {r.rcv_nxt - 1, r.rcv_nxt + 65535, r.rcv_nxt + 0x80000000u}) {
                    CAPTURE(seq);
                    auto out = inject(c.tcb, c.now(), c.seg("R").seq(seq));
                    expect_nothing_sent(out);
                    CHECK(c.tcb.state() == before);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// ABORT

TEST_CASE("ABORT sends <SEQ=SND.NXT><CTL=RST> where the peer may hold state, and closes") {
    struct Row {
        const char* name;
        Connection (*make)(const FixtureOptions&);
        std::optional<std::uint32_t> rst_seq;
    };
    const Row rows[] = {
        {"LISTEN", tcb_in_listen, std::nullopt},
        {"SYN-SENT", tcb_in_syn_sent, std::nullopt},
        {"SYN-RECEIVED", tcb_in_syn_received, 1},
        {"ESTABLISHED", tcb_in_established, 1},
        {"FIN-WAIT-1", tcb_in_fin_wait_1, 2},
        {"FIN-WAIT-2", tcb_in_fin_wait_2, 2},
        {"CLOSE-WAIT", tcb_in_close_wait, 1},
        {"CLOSING (RFC 9293: no RST)", tcb_in_closing, std::nullopt},
        {"LAST-ACK (RFC 9293: no RST)", tcb_in_last_ack, std::nullopt},
        {"TIME-WAIT (RFC 9293: no RST)", tcb_in_time_wait, std::nullopt},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = r.make({});
            const State before = c.tcb.state();
            auto out = c.tcb.abort(c.now());
            if (r.rst_seq) {
                expect_sent(out, {sent("R", *r.rst_seq).why(SendReason::Rst).win(0)});
                CHECK(sent_segments(out).at(0).options.empty());
            } else {
                expect_nothing_sent(out);
            }
            expect_transitions(out, {before, State::Closed});
            CHECK_FALSE(c.tcb.next_deadline().has_value());
            CHECK(find_all<tcb::ConnectionReset>(out).empty());  // we reset it, the peer did not
        }
    }
}

TEST_CASE("ABORT cancels every running timer") {
    SUBCASE("retransmission") {
        Connection c = tcb_in_fin_wait_1();
        auto out = c.tcb.abort(c.now());
        CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::Retransmit);
    }
    SUBCASE("2MSL") {
        Connection c = tcb_in_time_wait();
        auto out = c.tcb.abort(c.now());
        CHECK(find<tcb::CancelTimer>(out)->kind == TimerKind::TimeWait);
        // Nothing fires later.
        expect_nothing_sent(advance(c.tcb, c.clock, 120s));
    }
}

TEST_CASE("after ABORT the TCB answers like a closed port") {
    Connection c = tcb_in_established();
    c.tcb.abort(c.now());
    auto out = inject(c.tcb, c.now(), c.seg("P.").seq(1).ack(1).data(5));
    expect_sent(out, {sent("R", 1).why(SendReason::ResetReply)});
}

TEST_SUITE_END();
