// Ping lanes against simulated peers: RTT from capture times, no RST of ours after a SYN-ACK,
// closed and silent destinations, ICMP, late answers, and the shared pace.
#include <doctest/doctest.h>

#include "sim.hpp"
#include "tcpprobe/probe/ping.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;

namespace {
probe::PingLaneConfig lane_config(Duration timeout = 1s) {
    probe::PingLaneConfig c;
    const tcb::TcbConfig t = client_tcb(false);
    c.tuple = t.tuple;
    c.iss = t.iss;
    c.syn_maker = std::make_shared<tcb::Tcb>(t);
    c.ip_ids = std::make_shared<probe::IpIds>(t.ip.id);
    c.timeout = timeout;
    return c;
}

/// A listening peer as it behaves on a real host, where the local kernel resets each
/// half-open connection: every new SYN gets its SYN-ACK. With `kernel_rst_after`, the
/// local kernel's RST to that SYN-ACK shows in the capture so long after the SYN-ACK
/// left the peer (a capture that sees the kernel's own packets).
PeerHook answer_each_syn(std::optional<Duration> kernel_rst_after = std::nullopt) {
    return [kernel_rst_after](Sim& s, Instant t, const wire::Segment& seg) -> std::optional<std::vector<wire::Segment>> {
        if (!seg.has(wire::flag::syn)) return std::vector<wire::Segment>{};
        wire::Segment sa;
        sa.src = seg.dst;
        sa.dst = seg.src;
        sa.flags = wire::flag::syn | wire::flag::ack;
        sa.seq = wire::Seq{7000};
        sa.ack = seg.seq + 1;
        sa.window = 64240;
        if (kernel_rst_after) {
            wire::Segment rst;
            rst.src = seg.src;
            rst.dst = seg.dst;
            rst.seq = sa.ack;
            rst.flags = wire::flag::rst;
            s.capture(t + *kernel_rst_after, rst, true);
        }
        return std::vector<wire::Segment>{sa};
    };
}
}  // namespace

TEST_CASE("ping: the pace hands out tickets spaced evenly over the run and a fixed count per destination") {
    const Instant t0 = instant_from_ns(5'000'000'000);
    probe::PingPlan plan(t0, 10ms, 2, 3);
    auto a = plan.take(0), b = plan.take(1), c = plan.take(0);
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(c);
    CHECK(a->at == t0);
    CHECK(b->at == t0 + 10ms);
    CHECK(c->at == t0 + 20ms);
    CHECK(a->seq_no == 0);
    CHECK(b->seq_no == 0);  // numbering is per destination
    CHECK(c->seq_no == 1);
    CHECK(plan.take(0));
    CHECK_FALSE(plan.take(0));  // destination 0 has had its 3
    CHECK(plan.take(1));
}

TEST_CASE("ping: a listening peer: each probe's RTT is the capture interval; SYN-ACKs are left to the local kernel's RST") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 100ms, 1, 3);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(), plan, tally);
    Sim sim(lane, Sim::PeerKind::Listening, 150us);
    // On a real host the local kernel resets each half-open connection, so the peer
    // answers every new SYN of the lane: here each SYN gets its SYN-ACK directly.
    sim.set_peer_hook(answer_each_syn());
    sim.run();
    const auto& t = tally->at(0);
    CHECK(t.sent == 3);
    CHECK(t.synack == 3);
    CHECK(t.rtt_ns == std::vector<std::int64_t>{300'000, 300'000, 300'000});  // 2 x 150 us each
    // Three SYNs with three different ISNs and nothing else: one packet per probe.
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "S", "S"});
    const auto& sent = sim.sent_by_flow();
    CHECK(sent[0].seq != sent[1].seq);
    CHECK(sent[1].seq != sent[2].seq);
    // The pace: the last SYN left 200 ms after the first, and its answer came 300 us later.
    CHECK(sim.now() - sim.start() == 200ms + 300us);
    CHECK(lane.done());
}

TEST_CASE("ping: a closed port answers each probe with RST/ACK") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 10ms, 1, 2);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(), plan, tally);
    Sim sim(lane, Sim::PeerKind::Closed, 100us);
    sim.run();
    CHECK(tally->at(0).sent == 2);
    CHECK(tally->at(0).rst == 2);
    CHECK(tally->at(0).rtt_ns == std::vector<std::int64_t>{200'000, 200'000});
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "S"});  // no RST of ours to a RST
}

TEST_CASE("ping: a silent destination loses every probe after the timeout, and the lane moves on") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 3);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(500ms), plan, tally);
    Sim sim(lane, Sim::PeerKind::Silent);
    sim.run();
    CHECK(tally->at(0).sent == 3);
    CHECK(tally->at(0).silence == 3);
    CHECK(tally->at(0).rtt_ns.empty());
    CHECK(sim.now() - sim.start() == 1500ms);  // one probe at a time on a lane: 3 x 500 ms
}

TEST_CASE("ping: an ICMP error quoting the probe is its answer") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 1);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(), plan, tally);
    Sim sim(lane, Sim::PeerKind::IcmpUnreachable, 100us);
    sim.run();
    CHECK(tally->at(0).icmp == 1);
    CHECK(tally->at(0).rtt_ns == std::vector<std::int64_t>{200'000});
}

TEST_CASE("ping: an ICMP redirect or source quench quoting the probe is no answer: the SYN-ACK after it is") {
    for (const std::uint8_t type : {std::uint8_t{5}, std::uint8_t{4}}) {
        CAPTURE(int{type});
        auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 1);
        auto tally = std::make_shared<probe::PingTally>(1);
        probe::PingLane lane(lane_config(), plan, tally);
        Sim sim(lane, Sim::PeerKind::Listening, 100us);
        // A router on the way forwards the SYN and tells us of a better next hop first.
        sim.set_peer_hook([type](Sim& s, Instant t, const wire::Segment& seg) -> std::optional<std::vector<wire::Segment>> {
            if (seg.has(wire::flag::syn)) s.icmp(t - 50us, seg, type, 1, wire::Ipv4Addr{0xC6120001});
            return answer_each_syn()(s, t, seg);
        });
        sim.run();
        CHECK(tally->at(0).sent == 1);
        CHECK(tally->at(0).synack == 1);
        CHECK(tally->at(0).icmp == 0);
        CHECK(tally->at(0).rtt_ns == std::vector<std::int64_t>{200'000});
        CHECK(lane.icmp_advisories() == 1);
        CHECK(lane.late() == 0);
    }
}

TEST_CASE("ping: a peer still holding the lane's previous half-open connection acknowledges the next SYN: reset it, send the SYN again") {
    // A Linux-like peer keeps a half-open connection until a RST in its window: a new SYN
    // on the same 4-tuple with another ISN draws an ACK for the held one (tcp_check_req).
    // A SYN-ACK that reaches us is reset by the local kernel (modelled as clearing it at
    // once); the first one is lost, so the first probe is silent and the connection held.
    struct Held {
        std::optional<wire::Seq> isn;
        int drop = 1;
    };
    auto held = std::make_shared<Held>();
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 3);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(200ms), plan, tally);
    Sim sim(lane, Sim::PeerKind::Listening, 100us);
    sim.set_peer_hook([held](Sim& s, Instant t, const wire::Segment& seg) -> std::optional<std::vector<wire::Segment>> {
        if (seg.has(wire::flag::rst)) {
            if (held->isn && seg.seq == *held->isn + 1) held->isn.reset();
            return std::vector<wire::Segment>{};
        }
        if (!seg.has(wire::flag::syn)) return std::vector<wire::Segment>{};
        if (held->isn && seg.seq != *held->isn) {
            wire::Segment ack;
            ack.src = seg.dst;
            ack.dst = seg.src;
            ack.flags = wire::flag::ack;
            ack.seq = wire::Seq{7001};
            ack.ack = *held->isn + 1;
            return std::vector<wire::Segment>{ack};
        }
        auto answer = answer_each_syn()(s, t, seg);
        if (held->drop > 0) {
            --held->drop;
            held->isn = seg.seq;  // its SYN-ACK is lost: nothing resets it
            return std::vector<wire::Segment>{};
        }
        return answer;
    });
    sim.run();
    CHECK(tally->at(0).sent == 3);
    CHECK(tally->at(0).silence == 1);  // the probe whose SYN-ACK was lost
    CHECK(tally->at(0).synack == 2);   // the second one, sent again, and the third
    CHECK(tally->at(0).rtt_ns == std::vector<std::int64_t>{200'000, 200'000});
    CHECK(lane.held() == 1);
    CHECK(lane.late() == 0);
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "S", "R", "S", "S"});
    CHECK(lane.kernel_rsts() == 0);  // our RST is not taken for the kernel's
}

TEST_CASE("ping: an answer to an earlier, timed-out probe is late and not counted") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 2);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(200ms), plan, tally);
    Sim sim(lane, Sim::PeerKind::Listening, 150ms);  // RTT 300 ms > timeout 200 ms
    sim.run(10s);
    CHECK(tally->at(0).sent == 2);
    CHECK(tally->at(0).silence >= 1);
    CHECK(lane.late() >= 1);
}

TEST_CASE("ping: the local kernel's RST after each SYN-ACK is counted apart, and we send none of our own") {
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 100ms, 1, 2);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(), plan, tally);
    Sim sim(lane, Sim::PeerKind::Listening, 150us);
    // Without the RST guard the kernel answers each SYN-ACK (a capture that sees the
    // kernel's packets shows it as an outgoing RST), 20 us after the SYN-ACK arrives.
    sim.set_peer_hook(answer_each_syn(170us));
    sim.run();
    CHECK(tally->at(0).sent == 2);
    CHECK(tally->at(0).synack == 2);
    CHECK(lane.kernel_rsts() == 2);
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "S"});  // one packet per probe
}

TEST_CASE("ping: an answer captured after the timeout is late even when it is read before the give-up timer") {
    // A loop that falls behind a flood reads answers late; --timeout is judged on the
    // capture's times, not on when the loop got to them.
    auto plan = std::make_shared<probe::PingPlan>(Sim::default_start(), 0ms, 1, 1);
    auto tally = std::make_shared<probe::PingTally>(1);
    probe::PingLane lane(lane_config(50ms), plan, tally);
    probe::Outbox out;
    const Instant t0 = Sim::default_start();
    lane.start(t0, out);
    REQUIRE(out.send.size() == 1);
    const wire::Segment syn = out.send.front();
    lane.on_segment(t0 + 10us, syn, true, out);  // its capture time
    wire::Segment rst;
    rst.src = syn.dst;
    rst.dst = syn.src;
    rst.flags = wire::flag::rst | wire::flag::ack;
    rst.ack = syn.seq + 1;
    lane.on_segment(t0 + 10us + 50ms + 1us, rst, false, out);  // captured 1 us past the timeout
    CHECK(tally->at(0).silence == 1);
    CHECK(tally->at(0).rst == 0);
    CHECK(tally->at(0).rtt_ns.empty());
    CHECK(lane.late() == 1);
    CHECK(lane.done());
    SUBCASE("on the timeout itself it still counts") {
        auto plan2 = std::make_shared<probe::PingPlan>(t0, 0ms, 1, 1);
        auto tally2 = std::make_shared<probe::PingTally>(1);
        probe::PingLane lane2(lane_config(50ms), plan2, tally2);
        probe::Outbox out2;
        lane2.start(t0, out2);
        lane2.on_segment(t0 + 10us, out2.send.front(), true, out2);
        rst.ack = out2.send.front().seq + 1;
        lane2.on_segment(t0 + 10us + 50ms, rst, false, out2);
        CHECK(tally2->at(0).rst == 1);
        CHECK(tally2->at(0).rtt_ns == std::vector<std::int64_t>{50'000'000});
        CHECK(lane2.late() == 0);
    }
}
