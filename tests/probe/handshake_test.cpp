// The handshake scenario against simulated peers: a listening peer (our own TCB in
// LISTEN), a closed port, a silent peer, an ICMP-rejecting peer and misbehaving peers.
#include <doctest/doctest.h>

#include "sim.hpp"
#include "tcpprobe/probe/handshake.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using probe::Verdict;

namespace {
probe::HandshakeConfig config() {
    probe::HandshakeConfig c;
    c.connect.tcb = client_tcb();
    c.connect.timeout = 3s;
    return c;
}

std::size_t count_anomalies(const std::vector<probe::Event>& evs, const std::string& needle) {
    std::size_t n = 0;
    for (const auto& e : evs)
        if (const auto* note = std::get_if<probe::NoteEvent>(&e.body))
            if (note->severity == probe::Severity::Anomaly && note->text.find(needle) != std::string::npos) ++n;
    return n;
}
}  // namespace

TEST_CASE("handshake: a flow's object stays within its share of the 1 KB per flow (x86-64)") {
    // DESIGN §6: at most 1 KB per in-flight flow, and a 10,000-flow --half-open run pays
    // this object once per flow plus the session's entries; its deadlines are 8-byte
    // CompactInstants (four std::optional<Instant> in the TCB made it 736 bytes).
    CHECK(sizeof(tcb::Tcb) <= 256);
    CHECK(sizeof(probe::HandshakeFlow) <= 704);
}

TEST_CASE("handshake: a listening peer completes the handshake and the RTT is the capture interval") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Listening, 250us);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    REQUIRE(r.rtt);
    CHECK(*r.rtt == 500us);  // SYN captured at t0, SYN-ACK captured at t0 + 2 x 250 us
    CHECK(sim.wire_log() == std::vector<std::string>{"> S", "< S.", "> ."});
    CHECK(flow.tcb().state() == tcb::State::Established);
    CHECK(sim.peer().state() == tcb::State::Established);
    REQUIRE(r.negotiated);
    CHECK(r.negotiated->peer_mss == 1400);
    CHECK(r.negotiated->effective_mss == 1400);
    CHECK(r.negotiated->window_scaling);
    CHECK(r.negotiated->peer_wscale == 9);
    CHECK(r.negotiated->sack);
    CHECK(r.negotiated->timestamps);
    CHECK(r.syns_sent == 1);
    CHECK(r.anomalies.empty());
    CHECK(flow.done());
}

TEST_CASE("handshake: a closed port answers RST/ACK and the verdict is closed") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Closed, 100us);
    sim.run();
    CHECK(flow.connect_result().verdict == Verdict::Closed);
    CHECK(sim.wire_log() == std::vector<std::string>{"> S", "< R."});
    REQUIRE(flow.connect_result().rtt);
    CHECK(*flow.connect_result().rtt == 200us);
    CHECK(flow.tcb().state() == tcb::State::Closed);
}

TEST_CASE("handshake: a silent peer is filtered after our own SYN retransmission, at the timeout") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Silent);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Filtered);
    CHECK(r.syns_sent == 2);  // the SYN and one retransmission after the 1 s RTO
    CHECK(sim.wire_log() == std::vector<std::string>{"> S", "> S"});
    CHECK(sim.now() - sim.start() == 3s);
    CHECK_FALSE(r.rtt);
}

TEST_CASE("handshake: an ICMP admin-prohibited answer gives unreachable with type and code") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::IcmpUnreachable, 100us);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Unreachable);
    REQUIRE(r.icmp);
    CHECK(r.icmp->type == 3);
    CHECK(r.icmp->code == 13);
    CHECK(flow.tcb().state() == tcb::State::Closed);
}

TEST_CASE("handshake: an ICMP redirect about the SYN is a note, not an answer: the port is open") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Listening, 100us);
    sim.set_peer_hook([](Sim& s, Instant t, const wire::Segment& seg) -> std::optional<std::vector<wire::Segment>> {
        if (seg.has(wire::flag::syn) && !seg.has(wire::flag::ack)) s.icmp(t - 50us, seg, 5, 1, wire::Ipv4Addr{0xC6120001});
        return std::nullopt;  // the peer answers as it would
    });
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    CHECK_FALSE(r.icmp);
    REQUIRE(r.rtt);
    CHECK(*r.rtt == 200us);
    bool noted = false;
    for (const auto& e : sim.events())
        if (const auto* n = std::get_if<probe::NoteEvent>(&e.body)) noted = noted || n->text.find("ICMP redirect") != std::string::npos;
    CHECK(noted);
}

TEST_CASE("handshake: a RST or ICMP error after a retransmitted SYN may answer either copy: its RTT is ambiguous (Karn)") {
    // RTT 1.2 s, above the 1 s initial RTO: the SYN goes again at 1 s, and the answer to
    // the first arrives at 1.2 s, 200 ms after the second.
    SUBCASE("RST") {
        probe::HandshakeFlow flow(config());
        Sim sim(flow, Sim::PeerKind::Closed, 600ms);
        sim.run();
        const auto& r = flow.connect_result();
        CHECK(r.verdict == Verdict::Closed);
        CHECK(r.syns_sent == 2);
        REQUIRE(r.rtt);
        CHECK(*r.rtt == 200ms);
        CHECK(r.rtt_ambiguous);
    }
    SUBCASE("ICMP") {
        probe::HandshakeFlow flow(config());
        Sim sim(flow, Sim::PeerKind::Silent, 600ms);
        // A router's admin-prohibited about the first SYN, 1.2 s after it.
        sim.at(sim.start() + 1200ms, [](Sim& s, Instant t) { s.icmp(t, s.sent_by_flow().front(), 3, 13, wire::Ipv4Addr{0xC6120001}); });
        sim.run();
        const auto& r = flow.connect_result();
        CHECK(r.verdict == Verdict::Unreachable);
        CHECK(r.rtt_ambiguous);
    }
    SUBCASE("one SYN: not ambiguous") {
        probe::HandshakeFlow flow(config());
        Sim sim(flow, Sim::PeerKind::Closed, 400ms);
        sim.run();
        CHECK(flow.connect_result().syns_sent == 1);
        CHECK_FALSE(flow.connect_result().rtt_ambiguous);
    }
}

TEST_CASE("handshake: --half-open resets instead of ACKing, and the peer returns to LISTEN") {
    auto c = config();
    c.half_open = true;
    probe::HandshakeFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.run();
    CHECK(flow.connect_result().verdict == Verdict::Open);
    CHECK(sim.wire_log() == std::vector<std::string>{"> S", "< S.", "> R"});
    REQUIRE(sim.sent_by_flow().size() == 2);
    CHECK(sim.sent_by_flow()[1].seq == wire::Seq{1001});  // RST at the ACK number of the SYN-ACK
    CHECK(sim.peer().state() == tcb::State::Listen);
    REQUIRE(flow.connect_result().negotiated);  // what would have been negotiated is still reported
    CHECK(flow.connect_result().negotiated->timestamps);
}

TEST_CASE("handshake: --stale-syn plays the old duplicate SYN recovery of RFC 9293 against a peer TCB") {
    auto c = config();
    c.stale_syn = true;
    c.stale_isn = wire::Seq{1000 + 0x40000000u};
    probe::HandshakeFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.run();
    REQUIRE(flow.stale());
    const auto& st = *flow.stale();
    CHECK(st.first_answered);
    REQUIRE(st.second_answer);
    CHECK(*st.second_answer == ".");       // the peer answered the new SYN with an ACK...
    CHECK(st.second_answer_acks_old);      // ...carrying the old acknowledgment number
    CHECK(st.reset_sent);                  // we reset the stale half-open connection
    CHECK(flow.connect_result().verdict == Verdict::Open);  // and our SYN, sent again behind the RST, completed
    CHECK(sim.wire_log() == std::vector<std::string>{"> S", "< S.", "> S", "< .", "> R", "> S", "< S.", "> ."});
    CHECK(sim.peer().state() == tcb::State::Established);
}

TEST_CASE("handshake: a SYN-ACK with a wrong ack number is an anomaly and the SYN is retried") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Silent);
    // A hostile peer: SYN-ACK acknowledging something we never sent.
    sim.at(sim.start() + 1ms, [](Sim& s, Instant t) {
        wire::Segment bad;
        bad.src = server;
        bad.dst = client;
        bad.seq = wire::Seq{77};
        bad.ack = wire::Seq{5};
        bad.flags = wire::flag::syn | wire::flag::ack;
        bad.window = 100;
        s.capture(t, bad, false);
    });
    sim.run();
    CHECK(count_anomalies(sim.events(), "SYN-ACK acknowledges") == 1);
    CHECK(flow.connect_result().verdict == Verdict::Filtered);
    // Our TCB answered the bogus SYN-ACK with a RST at its ack number (RFC 9293 §3.10.7.3).
    auto flags = flags_of(sim.sent_by_flow());
    CHECK(std::count(flags.begin(), flags.end(), "R") == 1);
}

TEST_CASE("handshake: a SYN-ACK carrying data and unexpected flags is reported") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Silent);
    sim.at(sim.start() + 1ms, [](Sim& s, Instant t) {
        wire::Segment synack;
        synack.src = server;
        synack.dst = client;
        synack.seq = wire::Seq{500};
        synack.ack = wire::Seq{1001};
        synack.flags = wire::flag::syn | wire::flag::ack | wire::flag::psh | wire::flag::urg;
        synack.window = 1000;
        synack.payload = {'h', 'i'};
        s.capture(t, synack, false);
    });
    sim.run();
    CHECK(count_anomalies(sim.events(), "SYN-ACK carries 2 bytes") == 1);
    CHECK(count_anomalies(sim.events(), "unexpected flags") == 1);
    CHECK(flow.connect_result().verdict == Verdict::Open);
    CHECK(flow.tcb().rcv.nxt == wire::Seq{503});  // the data was accepted and ACKed
}

TEST_CASE("handshake: an outgoing RST we did not send is the local kernel's") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.set_app(kernel_resets_synacks(150us));  // the kernel answers the SYN-ACK
    sim.run();
    CHECK(count_anomalies(sim.events(), "local kernel sent a RST") == 1);
}

TEST_CASE("handshake: a SYN-ACK with window scale 15 and MSS 11 is answered, and both values are anomalies") {
    probe::HandshakeFlow flow(config());
    Sim sim(flow, Sim::PeerKind::Listening, 100us);
    sim.peer() = tcb::Tcb([] {
        auto c = server_tcb();
        c.syn_options = tcb::default_syn_options(11, 15, true, true);
        return c;
    }());
    sim.peer_actions(sim.now(), sim.peer().open_passive(sim.now()));
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    CHECK(count_anomalies(sim.events(), "window scale 15 is above 14: RFC 7323 §2.3 uses 14 instead") == 1);
    CHECK(count_anomalies(sim.events(), "MSS 11 is below 88") == 1);
    SUBCASE("MSS 0 names itself") {
        probe::HandshakeFlow zero(config());
        Sim sim0(zero, Sim::PeerKind::Listening, 100us);
        sim0.peer() = tcb::Tcb([] {
            auto c = server_tcb();
            c.syn_options = tcb::default_syn_options(0, 7, true, true);
            return c;
        }());
        sim0.peer_actions(sim0.now(), sim0.peer().open_passive(sim0.now()));
        sim0.run();
        CHECK(count_anomalies(sim0.events(), "MSS 0: no segment could carry data") == 1);
    }
}
