// Bounded under hostile input (security review row 5): a peer that sends 200,000
// malformed segments on an open connection grows neither the report (the anomaly list
// keeps 16 distinct texts with counts, the trace shows each a few times) nor the
// session's timer heap (one live entry per flow, stale ones compacted).
#include <doctest/doctest.h>

#include <algorithm>

#include "sim.hpp"
#include "tcpprobe/probe/close.hpp"
#include "tcpprobe/probe/scenario.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;

namespace {
constexpr std::size_t flood = 200000;

std::size_t anomaly_notes(const std::vector<probe::Event>& events) {
    return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), [](const probe::Event& e) {
        const auto* n = std::get_if<probe::NoteEvent>(&e.body);
        return n && n->severity == probe::Severity::Anomaly;
    }));
}
}  // namespace

TEST_CASE("hostile peer: 200,000 segments with malformed options: 16 texts at most, every one counted, the trace bounded") {
    probe::CloseConfig c;
    c.connect.tcb = client_tcb();
    c.mode = probe::CloseMode::Passive;  // wait for the peer to close first: it never does
    c.max_wait = 600s;
    probe::CloseFlow flow(c);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.at(sim.start() + 1s, [](Sim&, Instant) {});  // run() stops here, after the handshake
    sim.run(1s);
    REQUIRE(flow.tcb().state() == tcb::State::Established);
    REQUIRE_FALSE(flow.done());

    // In-window pure ACKs (nothing to answer), each with broken options; the error cycles
    // through 20 kinds of text so the list of distinct texts must stop at 16.
    const wire::Seq rcv = flow.tcb().rcv.nxt, ack = flow.tcb().snd.nxt;
    std::size_t notes = 0;
    Instant t = sim.now();
    for (std::size_t i = 0; i < flood; ++i) {
        wire::Segment s;
        s.src = server;
        s.dst = client;
        s.seq = rcv;
        s.ack = ack;
        s.flags = wire::flag::ack;
        s.window = 1000;
        s.options_error = static_cast<wire::WireError>(i % 20);
        t += 1us;
        sim.capture(t, s, false);
        if (sim.events().size() > 10000) {
            notes += anomaly_notes(sim.events());
            sim.events().clear();
        }
    }
    notes += anomaly_notes(sim.events());
    const auto& r = flow.connect_result();
    CHECK(r.anomaly_total == flood);
    CHECK(r.anomalies.size() == probe::max_anomaly_texts);
    REQUIRE(r.anomaly_counts.size() == r.anomalies.size());
    std::uint64_t listed = 0;
    for (auto n : r.anomaly_counts) listed += n;
    CHECK(listed == flood / 20 * 16);  // the 16 kinds first seen, 10,000 each
    // Each listed kind: 3 shown, 1 "repeated" note; one note that further kinds are only counted.
    CHECK(notes == probe::max_anomaly_texts * (probe::max_anomaly_repeats_shown + 1) + 1);
    CHECK_FALSE(flow.done());
}

namespace {
/// A flow whose deadline moves with every segment (an idle timer counted from the last
/// segment), as a flood makes it move.
class IdleFlow final : public probe::Flow {
public:
    explicit IdleFlow(wire::FourTuple t) : tuple_(t) {}
    wire::FourTuple tuple() const override { return tuple_; }
    void start(Instant now, probe::Outbox&) override { deadline_ = now + 10s; }
    void on_segment(Instant t, const wire::Segment&, bool, probe::Outbox&) override {
        ++segments;
        deadline_ = t + 10s;
    }
    void on_icmp(Instant, const wire::IcmpError&, probe::Outbox&) override {}
    void on_timer(Instant now, probe::Outbox&) override {
        ++timers;
        if (now >= deadline_) done_ = true;
    }
    void interrupt(Instant, probe::Outbox&) override { done_ = true; }
    std::optional<Instant> next_deadline() const override { return done_ ? std::nullopt : std::optional<Instant>(deadline_); }
    bool done() const override { return done_; }
    std::uint64_t segments = 0, timers = 0;

private:
    wire::FourTuple tuple_;
    Instant deadline_{};
    bool done_ = false;
};
}  // namespace

TEST_CASE("hostile peer: 200,000 segments that each move a flow's deadline leave a bounded timer heap") {
    probe::Session session;
    auto owned = std::make_unique<IdleFlow>(wire::FourTuple{client, server});
    IdleFlow* flow = owned.get();
    const Instant t0 = Sim::default_start();
    session.add(t0, std::move(owned));
    probe::Outbox out;
    session.on_timer(t0, out);
    wire::DecodedPacket p;
    p.src = server.addr;
    p.dst = client.addr;
    wire::Segment s;
    s.src = server;
    s.dst = client;
    s.flags = wire::flag::ack;
    p.body = s;
    std::size_t most = 0;
    Instant t = t0;
    for (std::size_t i = 0; i < flood; ++i) {
        t += 1us;
        session.on_packet(t, p, out);
        most = std::max(most, session.timer_entries());
    }
    CHECK(flow->segments == flood);
    CHECK(most <= 2 * session.size() + 64 + 1);
    // The one live deadline is still right: 10 s after the last segment, and it fires once.
    REQUIRE(session.next_deadline());
    CHECK(*session.next_deadline() == t + 10s);
    session.on_timer(t + 10s, out);
    CHECK(flow->timers == 1);
    CHECK(session.done());
}
