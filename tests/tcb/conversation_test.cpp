// Whole conversations between the TCB and a scripted peer on a simulated clock
// (STYLE §18): packetdrill-style transcripts of the openings and closings of RFC 9293
// §3.5 and §3.6, retransmission until giving up, and TIME-WAIT's expiry and restart.
// Each step's time is relative to the step before it; every segment the TCB sends
// must be expected, at its exact instant.
#include <doctest/doctest.h>

#include "support/scripted_peer.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using namespace tcpprobe::test::script;
using tcb::SendReason;
using tcb::State;

namespace {

/// Active open to ESTABLISHED in 25 ms: the start of most conversations below.
std::vector<Step> handshake() {
    return {
        user_open_active(),                                                // 0.000 connect()
        expect(0ms, sent("S", 0).why(SendReason::Syn)),                    // 0.000 > S 0:0(0) <mss 1460>
        peer(25ms, seg("S.").seq(0).ack(1).win(29200).mss(1460)),          // 0.025 < S. 0:0(0) ack 1
        expect(0ms, sent(".", 1, 1).why(SendReason::Ack)),                 // 0.025 > . 1:1(0) ack 1
        now_in(State::Established),
    };
}

std::vector<Step> operator+(std::vector<Step> a, const std::vector<Step>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

struct Run {
    tcb::Tcb tcb{default_config()};
    FakeClock clock;
    ScriptResult play(const std::vector<Step>& steps) { return ScriptedPeer{tcb, clock}.run(steps); }
    ScriptResult play(tcb::TcbConfig cfg, const std::vector<Step>& steps) {
        tcb = tcb::Tcb{std::move(cfg)};
        return play(steps);
    }
};

std::vector<State> states_entered(const tcb::Actions& actions) {
    std::vector<State> v;
    for (const auto& c : find_all<tcb::StateChanged>(actions)) v.push_back(c.to);
    return v;
}

}  // namespace

TEST_SUITE_BEGIN("tcb");

TEST_CASE("conversation: active three-way handshake") {
    Run run;
    auto r = run.play(handshake() + std::vector<Step>{
                                        silence(120s),  // nothing outstanding: no timer fires
                                        now_in(State::Established),
                                    });
    check(r);
    CHECK(run.clock.elapsed() == 120s + 25ms);
}

TEST_CASE("conversation: passive three-way handshake") {
    Run run;
    check(run.play({
        user_open_passive(),                                       // 0.000 listen()
        silence(1s),
        peer(0ms, seg("S").seq(0).win(64240).mss(1400)),           // 1.000 < S 0:0(0) <mss 1400>
        expect(0ms, sent("S.", 0, 1).why(SendReason::SynAck)),     // 1.000 > S. 0:0(0) ack 1
        peer(30ms, seg(".").seq(1).ack(1).win(502)),               // 1.030 < . 1:1(0) ack 1
        now_in(State::Established),
        silence(60s),
    }));
    CHECK(run.tcb.negotiated().effective_mss == 1400);
}

TEST_CASE("conversation: simultaneous open (RFC 9293 Figure 8)") {
    Run run;
    auto r = run.play({
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),            // 0.000 > S 0:0(0)
        peer(5ms, seg("S").seq(0).mss(1460)),                      // 0.005 < S 0:0(0)   (crossing)
        expect(0ms, sent("S.", 0, 1).why(SendReason::SynAck)),     // 0.005 > S. 0:0(0) ack 1
        now_in(State::SynReceived),
        peer(5ms, seg("S.").seq(0).ack(1).mss(1460)),              // 0.010 < S. 0:0(0) ack 1
        now_in(State::Established),
        silence(30s),
    });
    check(r);
    CHECK(states_entered(r.actions) == std::vector<State>{State::SynSent, State::SynReceived, State::Established});
}

TEST_CASE("conversation: active four-way close through FIN-WAIT-2, TIME-WAIT for exactly 60 s") {
    Run run;
    auto r = run.play(handshake() + std::vector<Step>{
        user_send(5ms, 20),
        expect(0ms, sent("P.", 1, 1).len(20).why(SendReason::Data)),     // 0.030 > P. 1:21(20) ack 1
        peer(10ms, seg(".").seq(1).ack(21)),                             // 0.040 < . 1:1(0) ack 21
        user_close(1ms),
        expect(0ms, sent("F.", 21, 1).why(SendReason::Fin)),             // 0.041 > F. 21:21(0) ack 1
        peer(10ms, seg(".").seq(1).ack(22)),                             // 0.051 < . 1:1(0) ack 22
        now_in(State::FinWait2),
        peer(50ms, seg("F.").seq(1).ack(22)),                            // 0.101 < F. 1:1(0) ack 22
        expect(0ms, sent(".", 22, 2).why(SendReason::Ack)),              // 0.101 > . 22:22(0) ack 2
        now_in(State::TimeWait),
        silence(59999ms),
        now_in(State::TimeWait),
        silence(1ms),                                                    // 60.101: 2MSL expires
        now_in(State::Closed),
    });
    check(r);
    CHECK(states_entered(r.actions) == std::vector<State>{State::SynSent, State::Established, State::FinWait1,
                                                          State::FinWait2, State::TimeWait, State::Closed});
}

TEST_CASE("conversation: active three-way close, the peer's FIN carries the ACK of ours") {
    Run run;
    auto r = run.play(handshake() + std::vector<Step>{
        user_close(10ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),              // 0.035 > F. 1:1(0) ack 1
        peer(10ms, seg("F.").seq(1).ack(2)),                             // 0.045 < F. 1:1(0) ack 2
        expect(0ms, sent(".", 2, 2).why(SendReason::Ack)),               // 0.045 > . 2:2(0) ack 2
        now_in(State::TimeWait),
        silence(60s),
        now_in(State::Closed),
    });
    check(r);
    // FIN-WAIT-2 never appears: the report can call this a 3-way close.
    CHECK(states_entered(r.actions) ==
          std::vector<State>{State::SynSent, State::Established, State::FinWait1, State::TimeWait, State::Closed});
}

TEST_CASE("conversation: passive close through CLOSE-WAIT and LAST-ACK") {
    Run run;
    auto r = run.play(handshake() + std::vector<Step>{
        peer(10ms, seg("FP.").seq(1).ack(1).text("bye")),                // 0.035 < FP. 1:4(3) ack 1
        expect(0ms, sent(".", 1, 5).why(SendReason::Ack)),               // 0.035 > . 1:1(0) ack 5
        now_in(State::CloseWait),
        user_close(100ms),
        expect(0ms, sent("F.", 1, 5).why(SendReason::Fin)),              // 0.135 > F. 1:1(0) ack 5
        now_in(State::LastAck),
        peer(10ms, seg(".").seq(5).ack(2)),                              // 0.145 < . 5:5(0) ack 2
        now_in(State::Closed),
        silence(120s),                                                   // no TIME-WAIT on this side
    });
    check(r);
    auto d = find<tcb::DataReceived>(r.actions);
    REQUIRE(d.has_value());
    CHECK(d->data == wire::ByteVec{'b', 'y', 'e'});
}

TEST_CASE("conversation: passive close with a silent peer: LAST-ACK retransmits the FIN, then gives up") {
    Run run;
    check(run.play(handshake() + std::vector<Step>{
        peer(10ms, seg("F.").seq(1).ack(1)),
        expect(0ms, sent(".", 1, 2).why(SendReason::Ack)),
        user_close(0ms),
        expect(0ms, sent("F.", 1, 2).why(SendReason::Fin)),
        expect(1s, sent("F.", 1, 2).why(SendReason::Retransmission)),
        expect(2s, sent("F.", 1, 2).why(SendReason::Retransmission)),
        expect(4s, sent("F.", 1, 2).why(SendReason::Retransmission)),
        silence(8s),
        gave_up("FIN"),
        now_in(State::Closed),
    }));
}

namespace {

tcb::TcbConfig rto_from_rtt() {
    tcb::TcbConfig c = default_config();
    c.rto.from_rtt = true;
    return c;
}

}  // namespace

TEST_CASE("conversation: from the RTT: a FIN after a 25 ms handshake is retried at Linux's 200 ms floor, doubling") {
    // RFC 6298 §2.2: SRTT = 25 ms, RTTVAR = 12.5 ms, RTO = 75 ms, raised to min_rto.
    Run run;
    check(run.play(rto_from_rtt(), handshake() + std::vector<Step>{
        user_close(10ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),
        expect(200ms, sent("F.", 1, 1).why(SendReason::Retransmission)),
        expect(400ms, sent("F.", 1, 1).why(SendReason::Retransmission)),
        expect(800ms, sent("F.", 1, 1).why(SendReason::Retransmission)),
        silence(1599ms),
        now_in(State::FinWait1),
        silence(1ms),
        gave_up("FIN"),
        now_in(State::Closed),
    }));
}

TEST_CASE("conversation: from the RTT: a long path's RTO is SRTT + 4 RTTVAR, and each sample moves it (RFC 6298 §2.3)") {
    Run run;
    check(run.play(rto_from_rtt(), std::vector<Step>{
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),
        peer(300ms, seg("S.").seq(0).ack(1).win(29200).mss(1460)),   // SRTT 300, RTTVAR 150: RTO 900 ms
        expect(0ms, sent(".", 1, 1).why(SendReason::Ack)),
        user_send(0ms, 10),
        expect(0ms, sent("P.", 1, 1).len(10).why(SendReason::Data)),
        expect(900ms, sent("P.", 1, 1).len(10).why(SendReason::Retransmission)),
        peer(100ms, seg(".").seq(1).ack(11)),                        // retransmitted: no sample (Karn)
        user_send(0ms, 10),
        expect(0ms, sent("P.", 11, 1).len(10).why(SendReason::Data)),
        peer(100ms, seg(".").seq(1).ack(21)),                        // 100 ms: RTTVAR 162.5, SRTT 275
        user_close(0ms),
        expect(0ms, sent("F.", 21, 1).why(SendReason::Fin)),
        expect(925ms, sent("F.", 21, 1).why(SendReason::Retransmission)),
        peer(10ms, seg(".").seq(1).ack(22)),
        now_in(State::FinWait2),
        silence(60s),
    }));
}

TEST_CASE("conversation: from the RTT: a handshake whose SYN was retransmitted gives no sample, the FIN keeps the initial RTO") {
    Run run;
    check(run.play(rto_from_rtt(), std::vector<Step>{
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),
        expect(1s, sent("S", 0).why(SendReason::Retransmission)),
        peer(25ms, seg("S.").seq(0).ack(1).win(29200).mss(1460)),
        expect(0ms, sent(".", 1, 1).why(SendReason::Ack)),
        user_close(0ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),
        expect(1s, sent("F.", 1, 1).why(SendReason::Retransmission)),
        peer(10ms, seg(".").seq(1).ack(2)),
        now_in(State::FinWait2),
        silence(60s),
    }));
}

TEST_CASE("conversation: simultaneous close through CLOSING") {
    Run run;
    auto r = run.play(handshake() + std::vector<Step>{
        user_close(10ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),              // 0.035 > F. 1:1(0) ack 1
        peer(5ms, seg("F.").seq(1).ack(1)),                              // 0.040 < F. 1:1(0) ack 1  (crossing)
        expect(0ms, sent(".", 2, 2).why(SendReason::Ack)),               // 0.040 > . 2:2(0) ack 2
        now_in(State::Closing),
        peer(5ms, seg(".").seq(2).ack(2)),                               // 0.045 < . 2:2(0) ack 2
        now_in(State::TimeWait),
        silence(60s),
        now_in(State::Closed),
    });
    check(r);
    CHECK(states_entered(r.actions) == std::vector<State>{State::SynSent, State::Established, State::FinWait1,
                                                          State::Closing, State::TimeWait, State::Closed});
}

TEST_CASE("conversation: a silent peer gets SYN retransmissions at 1, 3, 7 s, then the TCB gives up at 15 s") {
    Run run;
    check(run.play({
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),                  //  0.000 > S 0:0(0)
        expect(1s, sent("S", 0).why(SendReason::Retransmission)),        //  1.000 > S 0:0(0)
        expect(2s, sent("S", 0).why(SendReason::Retransmission)),        //  3.000 > S 0:0(0)
        expect(4s, sent("S", 0).why(SendReason::Retransmission)),        //  7.000 > S 0:0(0)
        silence(7999ms),
        now_in(State::SynSent),
        silence(1ms),                                                    // 15.000: gave up
        gave_up("SYN"),
        now_in(State::Closed),
    }));
}

TEST_CASE("conversation: a late SYN-ACK after two retransmissions completes the handshake") {
    Run run;
    check(run.play({
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),
        expect(1s, sent("S", 0).why(SendReason::Retransmission)),
        expect(2s, sent("S", 0).why(SendReason::Retransmission)),
        peer(500ms, seg("S.").seq(0).ack(1).mss(1460)),                  //  3.500 < S. 0:0(0) ack 1
        expect(0ms, sent(".", 1, 1).why(SendReason::Ack)),
        now_in(State::Established),
        silence(60s),
    }));
}

TEST_CASE("conversation: data is retransmitted until acknowledged, then the timer stops") {
    Run run;
    check(run.play(handshake() + std::vector<Step>{
        user_send(0ms, 100),
        expect(0ms, sent("P.", 1, 1).len(100).why(SendReason::Data)),
        expect(1s, sent("P.", 1, 1).len(100).why(SendReason::Retransmission)),
        peer(500ms, seg(".").seq(1).ack(101)),
        silence(60s),
        now_in(State::Established),
    }));
}

TEST_CASE("conversation: the peer's RST during the handshake refuses the connection") {
    Run run;
    auto r = run.play({
        user_open_active(),
        expect(0ms, sent("S", 0).why(SendReason::Syn)),
        peer(1ms, seg("R.").seq(0).ack(1).win(0)),                       // 0.001 < R. 0:0(0) ack 1
        was_reset(),
        now_in(State::Closed),
        silence(60s),                                                    // no SYN retransmission
    });
    check(r);
}

TEST_CASE("conversation: TIME-WAIT re-ACKs a retransmitted FIN, restarts 2MSL, then closes") {
    Run run;
    check(run.play(handshake() + std::vector<Step>{
        user_close(5ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),              //  0.030 > F. 1:1(0) ack 1
        peer(10ms, seg("F.").seq(1).ack(2)),                             //  0.040 < F. 1:1(0) ack 2
        expect(0ms, sent(".", 2, 2).why(SendReason::Ack)),               //  0.040 > . 2:2(0) ack 2   (lost)
        now_in(State::TimeWait),
        peer(30s, seg("F.").seq(1).ack(2)),                              // 30.040 < F. 1:1(0) ack 2  (again)
        expect(0ms, sent(".", 2, 2).why(SendReason::Ack)),               // 30.040 > . 2:2(0) ack 2
        silence(30s),                                                    // 60.040: the first 2MSL would end
        now_in(State::TimeWait),
        silence(29999ms),
        now_in(State::TimeWait),
        silence(1ms),                                                    // 90.040: 2MSL from the re-ACK
        now_in(State::Closed),
        peer(1s, seg(".").seq(2).ack(2)),                                // 91.040 < . 2:2(0) ack 2
        expect(0ms, sent("R", 2).why(SendReason::ResetReply)),           // 91.040 > R 2:2(0)  (closed)
    }));
}

TEST_CASE("conversation: TIME-WAIT under RFC 1337 survives an in-window RST and still expires on time") {
    tcb::TcbConfig cfg = default_config();
    cfg.rfc1337 = true;
    cfg.time_wait = 2s;
    Run run;
    check(run.play(cfg, handshake() + std::vector<Step>{
        user_close(0ms),
        expect(0ms, sent("F.", 1, 1).why(SendReason::Fin)),
        peer(10ms, seg("F.").seq(1).ack(2)),
        expect(0ms, sent(".", 2, 2).why(SendReason::Ack)),
        peer(1s, seg("R").seq(2)),                                       // assassination attempt
        now_in(State::TimeWait),
        silence(999ms),
        now_in(State::TimeWait),
        silence(1ms),
        now_in(State::Closed),
    }));
}

TEST_SUITE_END();
