// The connect step every scenario shares (probe::Connection, through HandshakeFlow):
// which SYN a SYN-ACK answers (RFC 7323 TSecr, else Karn's rule), a SYN-ACK that comes
// after our own SYN retransmissions gave up, and malformed options on a captured
// segment. Each case compares the whole trace, packetdrill-style lines with relative
// sequence numbers, windows and options, not flags only.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include "sim.hpp"
#include "support/doctest_printers.hpp"
#include "tcpprobe/probe/handshake.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "wire/craft.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using probe::Verdict;

namespace {

probe::HandshakeConfig config(bool timestamps) {
    probe::HandshakeConfig c;
    c.connect.tcb = client_tcb(timestamps);
    c.connect.timeout = 10s;
    return c;
}

bool has_anomaly(const std::vector<probe::Event>& evs, const std::string& needle) {
    for (const auto& e : evs)
        if (const auto* n = std::get_if<probe::NoteEvent>(&e.body))
            if (n->severity == probe::Severity::Anomaly && n->text.find(needle) != std::string::npos) return true;
    return false;
}

/// The path loses our first SYN.
void lose_first_syn(Sim& sim) {
    sim.set_peer_hook([first = true](Sim&, Instant, const wire::Segment& seg) mutable -> std::optional<std::vector<wire::Segment>> {
        if (seg.has(wire::flag::syn) && first) {
            first = false;
            return std::vector<wire::Segment>{};
        }
        return std::nullopt;
    });
}

}  // namespace

TEST_CASE("connect: without timestamps, a SYN-ACK after a retransmitted SYN is timed from the last SYN and flagged ambiguous (Karn)") {
    probe::HandshakeFlow flow(config(false));
    Sim sim(flow, Sim::PeerKind::Listening, 100us);
    lose_first_syn(sim);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    CHECK(r.syns_sent == 2);
    REQUIRE(r.rtt);
    CHECK(*r.rtt == 200us);   // from the retransmitted SYN at 1 s
    CHECK(r.rtt_ambiguous);   // no TSecr tells which SYN was answered
    CHECK(segment_lines(sim.events()) == std::vector<std::string>{
              "> S 0:0(0) win 64240 <mss 1460,nop,nop,sackOK,nop,wscale 7>",
              "> S 0:0(0) win 64240 <mss 1460,nop,nop,sackOK,nop,wscale 7>",
              "< S. 0:0(0) ack 1 win 65160 <mss 1400,sackOK,nop,wscale 9>",
              "> . 1:1(0) ack 1 win 64240",
          });
}

TEST_CASE("connect: with timestamps, a late SYN-ACK is paired with the SYN its TSecr names, not the last one") {
    // 600 ms each way and a 1 s RTO: the answer to the first SYN arrives at 1.2 s, after
    // our retransmission at 1 s. Its TSecr echoes the first SYN's TSval.
    probe::HandshakeFlow flow(config(true));
    Sim sim(flow, Sim::PeerKind::Listening, 600ms);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    CHECK(r.syns_sent == 2);
    REQUIRE(r.rtt);
    CHECK(*r.rtt == 1200ms);
    CHECK_FALSE(r.rtt_ambiguous);
    const auto lines = segment_lines(sim.events());
    REQUIRE(lines.size() >= 4);
    CHECK(lines[0] == "> S 0:0(0) win 64240 <mss 1460,sackOK,TS val 5000 ecr 0,nop,wscale 7>");
    CHECK(lines[1] == "> S 0:0(0) win 64240 <mss 1460,sackOK,TS val 6000 ecr 0,nop,wscale 7>");
    // The peer's TSval is its clock when our first SYN reached it (0.6 s); its TSecr is
    // the first SYN's TSval: that is the SYN it answers.
    CHECK(lines[2] == "< S. 0:0(0) ack 1 win 65160 <mss 1400,sackOK,TS val 90600 ecr 5000,nop,wscale 9>");
    CHECK(lines[3] == "> . 1:1(0) ack 1 win 64240 <nop,nop,TS val 6200 ecr 90600>");
}

TEST_CASE("connect: a SYN-ACK after our SYN retransmissions gave up, within --timeout, is open, reported and reset") {
    // RTO 1 s, one retransmission: our TCB gives up at 3 s. The path takes 1.75 s each
    // way, so the answer to the first SYN arrives at 3.5 s, before the 10 s timeout.
    auto c = config(false);
    probe::HandshakeFlow flow(std::move(c));
    Sim sim(flow, Sim::PeerKind::Listening, 1750ms);
    sim.run();
    const auto& r = flow.connect_result();
    CHECK(r.verdict == Verdict::Open);
    REQUIRE(r.rtt);
    CHECK(*r.rtt == 2500ms);  // from the last SYN before it (1 s)
    CHECK(has_anomaly(sim.events(), "SYN-ACK after our SYN retransmissions had given up"));
    const auto lines = segment_lines(sim.events());
    REQUIRE(lines.size() >= 4);
    CHECK(lines[0] == "> S 0:0(0) win 64240 <mss 1460,nop,nop,sackOK,nop,wscale 7>");
    CHECK(lines[1] == "> S 0:0(0) win 64240 <mss 1460,nop,nop,sackOK,nop,wscale 7>");
    CHECK(lines[2] == "< S. 0:0(0) ack 1 win 65160 <mss 1400,sackOK,nop,wscale 9>");
    CHECK(lines[3] == "> R 1:1(0) win 0");  // the closed TCB resets the peer's half-open connection
}

TEST_CASE("connect: a captured segment whose options do not decode is an anomaly that names the error") {
    probe::HandshakeFlow flow(config(false));
    Sim sim(flow, Sim::PeerKind::Listening, 100us);
    sim.set_app([](Sim& s, Instant t, const tcb::Actions& a) {
        for (const auto& x : a)
            if (const auto* send = std::get_if<tcb::SendSegment>(&x); send && send->segment.has(wire::flag::syn)) {
                // An MSS option whose length byte says 4 but only 3 bytes remain.
                wire::craft::Tcp bad;
                bad.sport = server.port;
                bad.dport = client.port;
                bad.seq = send->segment.seq.raw() + 1;
                bad.ack = send->segment.ack.raw();
                bad.flags = wire::flag::ack;
                bad.options = {1, 2, 4, 5};
                auto seg = wire::decode_tcp(server.addr, client.addr, wire::craft::tcp_segment(bad, server.addr, client.addr), false);
                REQUIRE(seg);
                REQUIRE(seg->options_error);
                s.capture(t + 300us, *seg, false);
            }
    });
    sim.run();
    CHECK(has_anomaly(sim.events(), "malformed TCP options"));
}

TEST_CASE("connect: the flow numbers the IP IDs of everything it sends, the TCB's segments and its own, from the first one") {
    // The IP ID is the sender's (RFC 6864 §4), not RFC 9293 state: the TCB leaves it alone
    // and the flow counts it across our SYN, its retransmission and the scenario's RST.
    probe::HandshakeConfig c = config(true);
    c.connect.tcb.ip.id = 65534;  // wraps after the second
    c.half_open = true;
    probe::HandshakeFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening, 100us);
    lose_first_syn(sim);
    sim.run();
    std::vector<std::string> ours;
    std::vector<std::uint16_t> peer_ids;
    for (const auto& e : sim.events())
        if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body)) {
            if (s->dir == wire::Direction::Out) ours.push_back(fmt::format("{} id {}", wire::format_flags(s->segment.flags), s->segment.ip.id));
            else peer_ids.push_back(s->segment.ip.id);
        }
    CHECK(ours == std::vector<std::string>{"S id 65534", "S id 65535", "R id 0"});
    // The simulated peer counts its own, from its first one.
    CHECK(peer_ids == std::vector<std::uint16_t>{server_tcb().ip.id});
}
