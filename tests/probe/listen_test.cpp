// The listen scenario (probe::ListenFlow) against a simulated client: its SYN schedule
// timed at the wire with our liveness probes, and our answers with --answer. Whole
// segment lines are compared (flags, relative seq/ack, window, options).
#include <doctest/doctest.h>

#include "sim.hpp"
#include "support/doctest_printers.hpp"
#include "tcpprobe/probe/listen.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;

namespace {

/// The sim's peer plays the client: RTO 1 s doubling, `retries` retransmissions.
void client_connects(Sim& sim, unsigned retries) {
    sim.peer() = tcb::Tcb([retries] {
        auto c = server_tcb();
        c.rto.initial_rto = 1s;
        c.rto.max_retries = retries;
        return c;
    }());
    sim.at(sim.start() + 10ms, [](Sim& s, Instant t) { s.peer_actions(t, s.peer().open_active(t)); });
}

probe::ListenConfig config(probe::ListenAnswer answer = probe::ListenAnswer::None) {
    probe::ListenConfig lc;
    lc.connect.tcb = client_tcb();  // our listening endpoint (the sim's 'client' address)
    lc.answer = answer;
    return lc;
}

}  // namespace

TEST_CASE("listen: the client's SYN copies and our liveness probes, line by line") {
    probe::ListenFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Closed);
    client_connects(sim, 1);
    sim.run();
    // Two SYN copies 1 s apart (TSval counts milliseconds), then, after the client's
    // give-up time, our probe: an ACK of its SYN that a SYN-SENT client would drop and a
    // closed port answers with RST.
    CHECK(segment_lines(sim.events()) == std::vector<std::string>{
              "< S 0:0(0) win 65160 <mss 1400,sackOK,TS val 90000 ecr 0,nop,wscale 9>",
              "< S 0:0(0) win 65160 <mss 1400,sackOK,TS val 91000 ecr 0,nop,wscale 9>",
              "> . 0:0(0) ack 1 win 65535",
              "< R 1:1(0) win 0",
          });
    CHECK(flow.report().syn_times.size() == 2);
    CHECK(flow.report().fit.gaps == std::vector<Duration>{1s});
    CHECK(flow.report().end == "confirmed");
}

TEST_CASE("listen --answer synack: our SYN-ACK carries our options and the client's handshake completes") {
    probe::ListenFlow flow(config(probe::ListenAnswer::SynAck));
    Sim sim(flow, Sim::PeerKind::Closed);
    client_connects(sim, 3);
    sim.run(5s);
    CHECK(segment_lines(sim.events()) == std::vector<std::string>{
              "< S 0:0(0) win 65160 <mss 1400,sackOK,TS val 90000 ecr 0,nop,wscale 9>",
              "> S. 0:0(0) ack 1 win 64240 <mss 1460,sackOK,TS val 5000 ecr 90000,nop,wscale 7>",
              "< . 1:1(0) ack 1 win 127 <nop,nop,TS val 90000 ecr 5000>",  // 65160 >> 9: window scaling is on
          });
    CHECK(sim.peer().state() == tcb::State::Established);
}

TEST_CASE("listen --answer syn: a bare SYN makes a simultaneous open") {
    probe::ListenFlow flow(config(probe::ListenAnswer::Syn));
    Sim sim(flow, Sim::PeerKind::Closed);
    client_connects(sim, 3);
    sim.run(5s);
    // RFC 9293 §3.5 figure 8: the client in SYN-SENT gets our SYN, answers SYN-ACK.
    CHECK(segment_lines(sim.events()) == std::vector<std::string>{
              "< S 0:0(0) win 65160 <mss 1400,sackOK,TS val 90000 ecr 0,nop,wscale 9>",
              "> S 0:0(0) win 64240 <mss 1460,sackOK,TS val 5000 ecr 0,nop,wscale 7>",
              "< S. 0:0(0) ack 1 win 65160 <mss 1400,sackOK,TS val 90000 ecr 5000,nop,wscale 9>",
              "> . 1:1(0) ack 1 win 64240 <nop,nop,TS val 5000 ecr 90000>",
          });
    CHECK(sim.peer().state() == tcb::State::Established);
}

TEST_CASE("listen: a client's RST before any SYN ends the flow 'rst' with no SYN and no RST time") {
    // Regression (fuzz_session input 2e01000002591919191919ffffffceae88): conclude("rst")
    // read the first SYN's time from an empty list.
    probe::ListenFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Silent);
    wire::Segment rst;
    rst.src = server;
    rst.dst = client;
    rst.flags = wire::flag::rst;
    rst.seq = wire::Seq{1234};
    sim.at(sim.start() + 10ms, [&](Sim& s, Instant t) { s.capture(t, rst, false); });
    sim.run(5s);
    CHECK(flow.concluded());
    CHECK(flow.report().end == "rst");
    CHECK(flow.report().syn_times.empty());
    CHECK_FALSE(flow.report().evidence.peer_rst.has_value());
    CHECK(flow.report().evidence.copies.empty());
}

TEST_CASE("listen: a client that stops sending and never answers a probe: every timer moves the deadline on") {
    // Regression (fuzz_session): once the silence point had passed while a liveness probe
    // was outstanding, the flow's deadline stayed at that past silence point: the runner
    // called it again and again at the same instant until the probe's answer wait ended
    // (before the fix: thousands of calls at one instant here).
    for (int copies = 1; copies <= 4; ++copies) {
        CAPTURE(copies);
        probe::ListenFlow flow(config());
        probe::Outbox out;
        const Instant t0 = Sim::default_start();
        flow.start(t0, out);
        if (auto d = flow.next_deadline(); d && *d <= t0) flow.on_timer(t0, out);  // it begins
        wire::Segment syn;
        syn.src = server;  // the client
        syn.dst = client;  // our listening endpoint
        syn.flags = wire::flag::syn;
        syn.seq = wire::Seq{777};
        syn.window = 64240;
        std::vector<Instant> copies_at;  // 0, 1, 3, 7 s: Linux's doubling from 1 s
        for (int i = 0, at = 0; i < copies; ++i, at = 2 * at + 1) copies_at.push_back(t0 + 10ms + std::chrono::seconds{at});
        Instant now = t0;
        int repeated = 0, timers = 0;
        unsigned probes = 0;
        std::size_t next_copy = 0;
        while (!flow.done() && now < t0 + 60s && timers < 10000) {
            std::optional<Instant> d = flow.next_deadline();
            if (next_copy < copies_at.size() && (!d || copies_at[next_copy] <= *d)) {
                now = copies_at[next_copy++];
                flow.on_segment(now, syn, false, out);
                continue;
            }
            REQUIRE(d.has_value());
            if (*d <= now) ++repeated;
            now = std::max(now, *d);
            flow.on_timer(now, out);
            ++timers;
            for (const auto& s : out.send) {
                if (s.has(wire::flag::ack) && !s.has(wire::flag::syn)) ++probes;
                flow.on_segment(now, s, true, out);  // our probes reach the capture
            }
            out.send.clear();
        }
        CHECK(flow.report().syn_times.size() == static_cast<std::size_t>(copies));
        CHECK(probes > 0);
        CHECK(repeated == 0);
        CHECK(timers < 1000);  // about one a second over the minute, plus the probes' retries
    }
}

TEST_CASE("listen: a client repeating its SYN beyond 64 copies ends the flow 'flood' with 64 times kept") {
    // Security review row 3 (for listen): every copy re-fitted the whole schedule, so a
    // client sending its SYN without end cost CPU without bound.
    probe::ListenFlow flow(config());
    probe::Outbox out;
    const Instant t0 = Sim::default_start();
    flow.start(t0, out);
    if (auto d = flow.next_deadline(); d && *d <= t0) flow.on_timer(t0, out);
    wire::Segment syn;
    syn.src = server;  // the client
    syn.dst = client;
    syn.flags = wire::flag::syn;
    syn.seq = wire::Seq{777};
    syn.window = 64240;
    for (int i = 0; i < 1000; ++i) flow.on_segment(t0 + 10ms + i * 1ms, syn, false, out);
    CHECK(flow.done());
    CHECK(flow.report().end == "flood");
    CHECK(flow.report().syn_times.size() == 64);
    CHECK(flow.connect_result().anomalies.back() == "more than 64 SYNs: a flood, not a retransmission schedule");
}
