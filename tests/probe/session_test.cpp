// The flow table and timer heap at scale: 100,000 flows, each with its own timers and
// 4-tuple, are started, fired and finished in deadline order, packets reach exactly
// their flow, and the work per event does not grow with the number of flows.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "tcpprobe/probe/scenario.hpp"

using namespace tcpprobe;
using namespace std::chrono_literals;

namespace {

struct Counters {
    std::uint64_t deadline_queries = 0;
    std::uint64_t timer_calls = 0;
    std::uint64_t segments = 0;
    std::vector<Instant> fired;
};

/// A flow with two timers: at start + 1 ms and start + `life`; done after the second,
/// or as soon as a segment arrives.
class TestFlow final : public probe::Flow {
public:
    TestFlow(wire::FourTuple t, Duration life, Counters& c) : tuple_(t), life_(life), c_(c) {}
    wire::FourTuple tuple() const override { return tuple_; }
    void start(Instant now, probe::Outbox&) override {
        started_ = now;
        next_ = now + 1ms;
    }
    void on_segment(Instant, const wire::Segment&, bool outgoing, probe::Outbox&) override {
        ++c_.segments;
        got_outgoing_ = outgoing;
        done_ = true;
    }
    void on_icmp(Instant, const wire::IcmpError&, probe::Outbox&) override {}
    void on_timer(Instant now, probe::Outbox&) override {
        ++c_.timer_calls;
        c_.fired.push_back(now);
        if (now >= started_ + life_) done_ = true;
        else next_ = started_ + life_;
    }
    void interrupt(Instant, probe::Outbox&) override { done_ = true; }
    std::optional<Instant> next_deadline() const override {
        ++c_.deadline_queries;
        return done_ ? std::nullopt : std::optional<Instant>(next_);
    }
    bool done() const override { return done_; }
    bool got_outgoing() const { return got_outgoing_; }

private:
    wire::FourTuple tuple_;
    Duration life_;
    Counters& c_;
    Instant started_{};
    Instant next_{};
    bool done_ = false;
    bool got_outgoing_ = false;
};

wire::FourTuple tuple_for(std::size_t i) {
    // 100,000 distinct tuples: ports over several source addresses, one target.
    return {{{0xC6120001u + static_cast<std::uint32_t>(i / 50000)}, static_cast<std::uint16_t>(10000 + i % 50000)},
            {{0xC6120002u}, 80}};
}

}  // namespace

TEST_CASE("session: 100,000 flows are started, fired in deadline order and finished, O(1) work per event") {
    constexpr std::size_t n = 100000;
    Counters c;
    probe::Session session;
    std::mt19937 rng(7);
    const Instant t0 = instant_from_ns(1'000'000'000);
    std::vector<TestFlow*> flows;
    for (std::size_t i = 0; i < n; ++i) {
        auto f = std::make_unique<TestFlow>(tuple_for(i), Duration{std::chrono::milliseconds{10 + rng() % 1000}}, c);
        flows.push_back(f.get());
        session.add(t0 + std::chrono::microseconds{rng() % 100000}, std::move(f));
    }
    probe::Outbox out;
    std::size_t wakeups = 0;
    while (!session.done() && wakeups < 10 * n) {
        auto d = session.next_deadline();
        if (!d) break;
        session.on_timer(*d, out);
        ++wakeups;
    }
    CHECK(session.done());
    CHECK(session.finished() == n);
    CHECK(c.timer_calls == 2 * n);  // each flow fired exactly twice
    CHECK(std::is_sorted(c.fired.begin(), c.fired.end()));
    // Each event queries only the flow it concerns (start + 2 timers = 3 per flow), never all flows.
    CHECK(c.deadline_queries <= 3 * n);
}

TEST_CASE("session: packets reach their own flow among 100,000, in both directions; strangers are counted") {
    constexpr std::size_t n = 100000;
    Counters c;
    probe::Session session;
    const Instant t0 = instant_from_ns(1'000'000'000);
    std::vector<TestFlow*> flows;
    for (std::size_t i = 0; i < n; ++i) {
        auto f = std::make_unique<TestFlow>(tuple_for(i), 10s, c);
        flows.push_back(f.get());
        session.add(t0, std::move(f));
    }
    probe::Outbox out;
    // Starts them all (a call starts at most flows_per_call; the rest stay due).
    for (auto d = session.next_deadline(); d && *d <= t0; d = session.next_deadline()) session.on_timer(t0, out);
    auto packet = [](wire::Endpoint src, wire::Endpoint dst) {
        wire::DecodedPacket p;
        wire::Segment s;
        s.src = src;
        s.dst = dst;
        s.flags = wire::flag::syn | wire::flag::ack;
        p.body = s;
        return p;
    };
    // An answer to flow 77777 and our own segment of flow 123.
    session.on_packet(t0 + 1ms, packet(tuple_for(77777).remote, tuple_for(77777).local), out);
    session.on_packet(t0 + 1ms, packet(tuple_for(123).local, tuple_for(123).remote), out);
    session.on_packet(t0 + 1ms, packet({{0x01020304}, 1}, {{0x05060708}, 2}), out);
    CHECK(c.segments == 2);
    CHECK(flows[77777]->done());
    CHECK_FALSE(flows[77777]->got_outgoing());
    CHECK(flows[123]->done());
    CHECK(flows[123]->got_outgoing());
    CHECK_FALSE(flows[124]->done());
    CHECK(session.unmatched() == 1);
    CHECK(session.finished() == 2);
}

TEST_CASE("session: a later flow takes over the 4-tuple of a finished one") {
    Counters c;
    probe::Session session;
    const Instant t0 = instant_from_ns(1'000'000'000);
    auto* first = new TestFlow(tuple_for(1), 5ms, c);
    auto* second = new TestFlow(tuple_for(1), 5ms, c);
    session.add(t0, std::unique_ptr<probe::Flow>(first));
    session.add(t0 + 100ms, std::unique_ptr<probe::Flow>(second));
    probe::Outbox out;
    session.on_timer(t0, out);
    session.on_timer(t0 + 5ms, out);  // the first finishes
    CHECK(first->done());
    session.on_timer(t0 + 100ms, out);  // the second starts on the same tuple
    wire::DecodedPacket p;
    wire::Segment s;
    s.src = tuple_for(1).remote;
    s.dst = tuple_for(1).local;
    p.body = s;
    session.on_packet(t0 + 101ms, p, out);
    CHECK(second->done());
    CHECK(c.segments == 1);
}

TEST_CASE("session: sequential flows start one after the other") {
    Counters c;
    probe::Session session;
    session.set_sequential(true);
    const Instant t0 = instant_from_ns(1'000'000'000);
    for (std::size_t i = 0; i < 3; ++i) session.add(t0, std::make_unique<TestFlow>(tuple_for(i), 50ms, c));
    probe::Outbox out;
    std::vector<Instant> wakes;
    while (!session.done()) {
        auto d = session.next_deadline();
        REQUIRE(d);
        wakes.push_back(*d);
        session.on_timer(*d, out);
        REQUIRE(wakes.size() < 100);
    }
    // Each flow lives 50 ms; they ran back to back: the last timer fired at 150 ms.
    CHECK(c.fired.back() - t0 == 150ms);
}

namespace {

/// Sends a SYN when it starts and, if `again`, a second one (a retransmission) 1 ms
/// later; done after `life`.
class SynFlow final : public probe::Flow {
public:
    SynFlow(wire::FourTuple t, bool again) : tuple_(t), again_(again) {}
    wire::FourTuple tuple() const override { return tuple_; }
    void start(Instant now, probe::Outbox& out) override {
        started_ = now;
        out.send.push_back(syn());
        next_ = again_ ? now + 1ms : now + 1s;
    }
    void on_segment(Instant, const wire::Segment&, bool, probe::Outbox&) override {}
    void on_icmp(Instant, const wire::IcmpError&, probe::Outbox&) override {}
    void on_timer(Instant now, probe::Outbox& out) override {
        if (again_ && now < started_ + 1s) {
            again_ = false;
            out.send.push_back(syn());
            next_ = started_ + 1s;
            return;
        }
        done_ = true;
    }
    void interrupt(Instant, probe::Outbox&) override { done_ = true; }
    std::optional<Instant> next_deadline() const override { return done_ ? std::nullopt : std::optional<Instant>(next_); }
    bool done() const override { return done_; }

private:
    wire::Segment syn() const {
        wire::Segment s;
        s.src = tuple_.local;
        s.dst = tuple_.remote;
        s.flags = wire::flag::syn;
        return s;
    }
    wire::FourTuple tuple_;
    bool again_;
    Instant started_{};
    Instant next_{};
    bool done_ = false;
};

}  // namespace

TEST_CASE("session: a pace of 4 SYNs per 50 ms holds SYNs in order and defers starts; never 5 SYNs within 50 ms") {
    probe::Session session;
    session.set_pace(4, 50ms);
    const Instant t0 = instant_from_ns(1'000'000'000);
    // Ten flows due together, half of them retransmitting their SYN 1 ms later, and
    // one due later than the window keeps its own time.
    for (std::size_t i = 0; i < 10; ++i) session.add(t0, std::make_unique<SynFlow>(tuple_for(i), i % 2 == 0));
    session.add(t0 + 900ms, std::make_unique<SynFlow>(tuple_for(10), false));
    probe::Outbox out;
    std::vector<std::pair<Instant, std::uint16_t>> sent;
    for (std::size_t guard = 0; guard < 10000 && !session.done(); ++guard) {
        auto d = session.next_deadline();
        REQUIRE(d);
        session.on_timer(*d, out);
        for (const auto& s : out.send) sent.emplace_back(*d, s.src.port);
        out.send.clear();
    }
    CHECK(session.done());
    REQUIRE(sent.size() == 16);  // 11 SYNs and 5 retransmissions, none lost
    CHECK(sent.front().first == t0);
    for (std::size_t i = 4; i < sent.size(); ++i) {
        INFO(i);
        CHECK(sent[i].first - sent[i - 4].first >= 50ms);
    }
    // 15 SYNs due in the first milliseconds at 4 per 50 ms: all out within 200 ms; the
    // late one at its own 900 ms.
    CHECK(sent[14].first - t0 <= 200ms);
    CHECK(sent[15].first - t0 == 900ms);
    CHECK(sent[15].second == tuple_for(10).local.port);
}

TEST_CASE("session: flows due together are started and timed out in calls of at most flows_per_call, the rest due at once") {
    // 1,000 flows start at t0 with one SYN each and time out together at t0 + 1 s: the
    // runner sends, reports and reads the capture after each call, so no call may queue
    // the segments of them all.
    constexpr std::size_t n = 1000;
    constexpr std::size_t per = probe::Session::flows_per_call;
    probe::Session session;
    const Instant t0 = instant_from_ns(1'000'000'000);
    for (std::size_t i = 0; i < n; ++i) session.add(t0, std::make_unique<SynFlow>(tuple_for(i), false));
    probe::Outbox out;
    std::vector<std::size_t> syns_per_call;
    for (auto d = session.next_deadline(); d && *d == t0; d = session.next_deadline()) {
        session.on_timer(t0, out);
        syns_per_call.push_back(out.send.size());
        out.send.clear();
    }
    CHECK(syns_per_call.size() == (n + per - 1) / per);
    CHECK(*std::max_element(syns_per_call.begin(), syns_per_call.end()) == per);
    CHECK(std::accumulate(syns_per_call.begin(), syns_per_call.end(), std::size_t{0}) == n);
    // The timeouts: the same slices, all at t0 + 1 s.
    std::size_t calls = 0;
    for (auto d = session.next_deadline(); d && !session.done(); d = session.next_deadline(), ++calls) {
        CHECK(*d == t0 + 1s);
        const std::size_t before = session.finished();
        session.on_timer(*d, out);
        CHECK(session.finished() - before <= per);
    }
    CHECK(session.done());
    CHECK(calls == (n + per - 1) / per);
}
