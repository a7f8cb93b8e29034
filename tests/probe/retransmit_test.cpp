// retransmit and listen against simulated peers: our own TCB retransmitting its SYN-ACK,
// FIN or SYN with a known schedule, a peer that ends with a RST, one that never
// retransmits.
#include <doctest/doctest.h>

#include "sim.hpp"
#include "tcpprobe/probe/listen.hpp"
#include "tcpprobe/probe/retransmit.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using tcb::State;

namespace {
probe::RetransmitConfig config(probe::RetxSegment seg) {
    probe::RetransmitConfig c;
    c.connect.tcb = client_tcb();
    c.segment = seg;
    c.max_wait = 60s;
    return c;
}

std::vector<Duration> gaps(const probe::RetransmitReport& r) { return r.fit.gaps; }
}  // namespace

TEST_CASE("retransmit synack: the peer's SYN-ACK schedule (200 ms doubling, 5 retries) is measured and inferred") {
    probe::RetransmitFlow flow(config(probe::RetxSegment::SynAck));
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.run();
    const auto& r = flow.report();
    CHECK(r.end == "silence");
    CHECK(gaps(r) == std::vector<Duration>{200ms, 400ms, 800ms, 1600ms, 3200ms});
    CHECK(r.fit.exponential);
    REQUIRE(r.fit.inferred_retries);
    CHECK(*r.fit.inferred_retries == 5);
    CHECK(r.cleanup_sent);
    // We never ACKed and never retransmitted our SYN.
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "R"});
    CHECK(sim.sent_by_flow().back().seq == wire::Seq{1001});
}

TEST_CASE("retransmit synack: a peer that ends with a RST is reported with the trailing RST") {
    probe::RetransmitFlow flow(config(probe::RetxSegment::SynAck));
    Sim sim(flow, Sim::PeerKind::Listening);
    int synacks = 0;
    sim.set_app([&](Sim& s, Instant t, const tcb::Actions& a) {
        for (const auto& x : a)
            if (const auto* send = std::get_if<tcb::SendSegment>(&x); send && send->segment.has(wire::flag::syn))
                if (++synacks == 3) s.at(t + 100ms, [](Sim& later, Instant now) { later.peer_actions(now, later.peer().abort(now)); });
    });
    sim.run();
    const auto& r = flow.report();
    CHECK(r.end == "rst");
    REQUIRE(r.rst_at);
    CHECK(r.times.size() == 3);
    CHECK_FALSE(r.cleanup_sent);  // the peer already dropped it
}

TEST_CASE("retransmit synack: a peer that never retransmits (SYN cookies) ends after the quiet wait") {
    auto c = config(probe::RetxSegment::SynAck);
    c.quiet_first = 3s;
    probe::RetransmitFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening);
    int synacks = 0;
    sim.set_peer_filter([&](const wire::Segment& s) { return s.has(wire::flag::syn) && ++synacks > 1; });
    sim.run();
    const auto& r = flow.report();
    CHECK(r.times.size() == 1);
    CHECK(r.fit.retransmissions == 0);
    CHECK(r.end == "silence");
    // Concluded 3 s after the only SYN-ACK (plus the cleanup RST's one-way trip in the sim).
    CHECK(sim.now() - r.times.front() >= 3s);
    CHECK(sim.now() - r.times.front() <= 3s + 1ms);
}

TEST_CASE("retransmit fin: we close first, the peer's FIN in LAST-ACK is never ACKed and retransmitted") {
    probe::RetransmitFlow flow(config(probe::RetxSegment::Fin));
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.set_app([](Sim& s, Instant t, const tcb::Actions& a) {
        for (const auto& x : a)
            if (const auto* c = std::get_if<tcb::StateChanged>(&x); c && c->to == State::CloseWait)
                s.peer_actions(t, s.peer().close(t));
    });
    sim.run();
    const auto& r = flow.report();
    CHECK(gaps(r) == std::vector<Duration>{200ms, 400ms, 800ms, 1600ms, 3200ms});
    CHECK(r.end == "silence");
    REQUIRE(r.fit.inferred_retries);
    CHECK(*r.fit.inferred_retries == 4);  // time-based reading of 5 retransmissions on a 200 ms RTO
    // We acknowledged nothing of the FIN: every ACK we sent stops before it.
    for (const auto& s : sim.sent_by_flow())
        if (s.has(wire::flag::ack) && !s.has(wire::flag::syn)) CHECK(s.ack == wire::Seq{0xFFFFFF01u});
}

TEST_CASE("retransmit fin --peer-closes-first: the peer closes after the request and its FIN is never ACKed") {
    auto c = config(probe::RetxSegment::Fin);
    c.peer_closes_first = true;
    c.request = {'G', 'E', 'T', '\n'};
    probe::RetransmitFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.set_app([](Sim& s, Instant t, const tcb::Actions& a) {
        for (const auto& x : a)
            if (std::holds_alternative<tcb::DataReceived>(x) && s.peer().state() == State::Established) {
                s.peer_actions(t, s.peer().send(t, wire::ByteVec(10, 'r')));
                s.peer_actions(t, s.peer().close(t));
            }
    });
    sim.run();
    const auto& r = flow.report();
    CHECK(r.times.size() == 6);
    CHECK(r.fit.exponential);
    CHECK(flow.tcb().rcv.nxt == wire::Seq{0xFFFFFF01u + 10});  // the data was ACKed, the FIN not
}

TEST_CASE("listen: a client's SYNs at 1 s doubling with 2 retries: tcp_syn_retries = 2 inferred") {
    probe::ListenConfig lc;
    lc.connect.tcb = client_tcb();  // our listening endpoint (the sim's 'client' address)
    probe::ListenFlow flow(lc);
    Sim sim(flow, Sim::PeerKind::Closed);
    sim.peer() = tcb::Tcb([] {
        auto c = server_tcb();
        c.rto.initial_rto = 1s;
        c.rto.max_retries = 2;
        return c;
    }());
    sim.at(sim.start() + 10ms, [](Sim& s, Instant t) { s.peer_actions(t, s.peer().open_active(t)); });
    sim.run();
    const auto& r = flow.report();
    CHECK(r.syn_times.size() == 3);
    CHECK(r.fit.gaps == std::vector<Duration>{1s, 2s});
    CHECK(r.end == "silence");
    REQUIRE(r.fit.inferred_retries);
    CHECK(*r.fit.inferred_retries == 2);
    CHECK(sim.sent_by_flow().empty());  // without --answer we only watch
}

TEST_CASE("listen --answer synack: the client's connection completes against our TCB") {
    probe::ListenConfig lc;
    lc.connect.tcb = client_tcb();
    lc.answer = probe::ListenAnswer::SynAck;
    probe::ListenFlow flow(lc);
    Sim sim(flow, Sim::PeerKind::Closed);
    sim.at(sim.start() + 10ms, [](Sim& s, Instant t) { s.peer_actions(t, s.peer().open_active(t)); });
    sim.at(sim.start() + 50ms, [](Sim& s, Instant t) { s.peer_actions(t, s.peer().close(t)); });
    sim.run(5s);
    CHECK(flags_of(sim.sent_by_flow()).front() == "S.");
    CHECK(flow.report().end == "closed");
    CHECK(flow.report().syn_times.size() == 1);
}
