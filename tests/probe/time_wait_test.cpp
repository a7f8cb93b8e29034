// time-wait against a simulated Linux peer: our own TCB plays an HTTP/1.0-like server
// (answers the request and closes first) until it enters TIME-WAIT; from then on a model
// of a Linux TIME-WAIT socket (tw_model.hpp) answers on the 4-tuple. First the model's
// own rules, then every TimeWaitFlow test against it: duration, reuse (ISN higher/lower
// x TSval newer/older/none), rst (RFC 1337 off/on), fin, and peers that do not close
// first or fall silent.
#include <doctest/doctest.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "sim.hpp"
#include "tcpprobe/probe/time_wait.hpp"
#include "tw_model.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using namespace tcpprobe::wire;
using probe::TwIsn;
using probe::TwTest;
using probe::TwTs;
using tcb::State;

namespace {

constexpr Duration one_way = 100us;  // Sim's default link delay

// --- the model on its own ------------------------------------------------------------

constexpr std::uint32_t model_ts_recent = 7000;

TwModel::Init model_init() {
    TwModel::Init i;
    i.tuple = {server, client};
    i.snd_nxt = Seq{5000};
    i.rcv_nxt = Seq{9000};
    i.timestamps = true;
    i.ts_recent = model_ts_recent;
    return i;
}

Segment to_model(std::uint16_t flags, Seq seq, Seq ack = Seq{0}, std::optional<std::uint32_t> tsval = std::nullopt) {
    Segment s;
    s.src = client;
    s.dst = server;
    s.flags = flags;
    s.seq = seq;
    s.ack = ack;
    s.window = 500;
    if (tsval) s.options = {opt::Nop{}, opt::Nop{}, opt::Timestamps{*tsval, 0}};
    return s;
}

// --- the flow against the model --------------------------------------------------------

probe::TimeWaitConfig config(TwTest test, TwIsn isn = TwIsn::Higher, TwTs ts = TwTs::Newer) {
    probe::TimeWaitConfig c;
    // As the app does: --ts none runs the whole connection without timestamps.
    c.connect.tcb = client_tcb(ts != TwTs::None);
    c.test = test;
    c.isn = isn;
    c.ts = ts;
    c.request = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '0', '\r', '\n', '\r', '\n'};
    c.max_wait = 5s;
    return c;
}

bool got_data(const tcb::Actions& a) {
    return std::any_of(a.begin(), a.end(), [](const tcb::Action& x) { return std::holds_alternative<tcb::DataReceived>(x); });
}

/// One TimeWaitFlow against an HTTP/1.0-like peer: our TCB until it enters TIME-WAIT,
/// the Linux TIME-WAIT model from then on. `closes_first` false: the peer answers and
/// keeps the connection open (it never holds TIME-WAIT).
struct TwRun {
    explicit TwRun(probe::TimeWaitConfig cfg, TwModelConfig m = {}, bool closes_first = true)
        : flow(std::move(cfg)), sim(flow, Sim::PeerKind::Listening) {
        sim.set_app([this, m, closes_first](Sim& s, Instant t, const tcb::Actions& a) {
            if (got_data(a) && s.peer().state() == State::Established) {
                s.peer_actions(t, s.peer().send(t, ByteVec(100, 'r')));
                if (closes_first) s.peer_actions(t, s.peer().close(t));
            }
            if (!model && s.peer().state() == State::TimeWait) model.emplace(TwModel::from(s.peer(), t, m));
        });
        sim.set_peer_hook([this](Sim&, Instant t, const Segment& seg) -> std::optional<std::vector<Segment>> {
            if (!model) return std::nullopt;
            arrivals.push_back({t, seg});
            return model->on_segment(t, seg);
        });
    }
    TwRun(const TwRun&) = delete;
    TwRun& operator=(const TwRun&) = delete;

    std::string wire() const { return fmt::format("{}", fmt::join(sim.wire_log(), " ")); }

    probe::TimeWaitFlow flow;
    Sim sim;
    std::optional<TwModel> model;
    std::vector<std::pair<Instant, Segment>> arrivals;  ///< what reached the TIME-WAIT socket, when
};

Duration abs_d(Duration d) { return d < Duration::zero() ? -d : d; }

std::string describe(TwIsn isn, TwTs ts) {
    return fmt::format("reuse isn {} ts {}", probe::to_string(isn), probe::to_string(ts));
}

}  // namespace

// --- the model's rules (so that what the flow tests rely on is pinned down) ------------

TEST_CASE("time-wait model: FINs without ACK are answered every time, never restart the timer, and it expires at 60 s") {
    TwModel m(model_init(), Instant{});
    const Instant t0{};
    for (int i = 0; i < 5; ++i) {
        auto a = m.on_segment(t0 + i * 100ms, to_model(flag::fin, Seq{8999}));
        CHECK(flags_of(a) == std::vector<std::string>{"."});  // FINs are not rate-limited
        REQUIRE(a.size() == 1);
        CHECK(a[0].seq == Seq{5000});
        CHECK(a[0].ack == Seq{9000});
        auto ts = find_option<opt::Timestamps>(a[0].options);
        REQUIRE(ts);
        CHECK(ts->tsecr == model_ts_recent);
    }
    CHECK(m.restarts().empty());
    CHECK(m.deadline() == t0 + 60s);
    CHECK(m.alive_at(t0 + 60s - 1ms));
    CHECK(m.on_segment(t0 + 60s, to_model(flag::fin, Seq{8999})).empty());  // a listener drops it
    CHECK(m.end() == TwModel::End::Expired);
    REQUIRE(m.ended_at());
    CHECK(*m.ended_at() == t0 + 60s);
}

TEST_CASE("time-wait model: an out-of-window ACK restarts the timer; its answers are rate-limited to one per 500 ms") {
    TwModel m(model_init(), Instant{});
    const Instant t0{};
    CHECK(flags_of(m.on_segment(t0 + 1s, to_model(flag::ack, Seq{20000}, Seq{5000}))) == std::vector<std::string>{"."});
    CHECK(m.on_segment(t0 + 1s + 499ms, to_model(flag::ack, Seq{20000}, Seq{5000})).empty());
    CHECK(flags_of(m.on_segment(t0 + 1s + 500ms, to_model(flag::ack, Seq{20000}, Seq{5000}))) == std::vector<std::string>{"."});
    CHECK(m.rate_limited() == 1);
    CHECK(m.restarts().size() == 3);  // every one of them restarted the timer, answered or not
    CHECK(m.deadline() == t0 + 61s + 500ms);
}

TEST_CASE("time-wait model: an in-window bare ACK restarts the timer silently; a PAWS-rejected segment restarts it too") {
    TwModel m(model_init(), Instant{});
    const Instant t0{};
    CHECK(m.on_segment(t0 + 10s, to_model(flag::ack, Seq{9000}, Seq{5000}, model_ts_recent + 1)).empty());
    CHECK(m.deadline() == t0 + 70s);
    CHECK(m.ts_recent() == model_ts_recent + 1);
    // Older TSval: PAWS rejects it (out of window now), restart + ACK.
    CHECK(flags_of(m.on_segment(t0 + 20s, to_model(flag::ack, Seq{9000}, Seq{5000}, model_ts_recent))) ==
          std::vector<std::string>{"."});
    CHECK(m.deadline() == t0 + 80s);
    // A FIN without ACK, PAWS-rejected: also restarts.
    CHECK(flags_of(m.on_segment(t0 + 30s, to_model(flag::fin, Seq{8999}, Seq{0}, 1))) == std::vector<std::string>{"."});
    CHECK(m.deadline() == t0 + 90s);
}

TEST_CASE("time-wait model: SYN after RCV.NXT or with a newer TSval is accepted with ISN = SND.NXT + 65537, otherwise ACKed") {
    const Instant t0{};
    {
        TwModel m(model_init(), t0);
        auto a = m.on_segment(t0 + 1s, to_model(flag::syn, Seq{9001}));
        REQUIRE(a.size() == 1);
        CHECK(format_flags(a[0].flags) == "S.");
        CHECK(a[0].seq == Seq{5000 + 65537});
        CHECK(a[0].ack == Seq{9002});
        CHECK(m.end() == TwModel::End::Reused);
    }
    {
        TwModel m(model_init(), t0);
        auto a = m.on_segment(t0 + 1s, to_model(flag::syn, Seq{8000}, Seq{0}, model_ts_recent + 1));
        REQUIRE(a.size() == 1);
        CHECK(format_flags(a[0].flags) == "S.");
    }
    {
        TwModel m(model_init(), t0);
        CHECK(flags_of(m.on_segment(t0 + 1s, to_model(flag::syn, Seq{8000}))) == std::vector<std::string>{"."});
        CHECK(m.restarts().empty());  // an ACK-less SYN below RCV.NXT may be a good new one: no restart
        // The same TSval as TS.Recent is neither newer nor PAWS-rejected.
        CHECK(flags_of(m.on_segment(t0 + 2s, to_model(flag::syn, Seq{8000}, Seq{0}, model_ts_recent))) ==
              std::vector<std::string>{"."});
        CHECK(m.alive_at(t0 + 2s));
    }
    {
        TwModel m(model_init(), t0);
        CHECK(flags_of(m.on_segment(t0 + 1s, to_model(flag::syn, Seq{10000}, Seq{0}, model_ts_recent - 1))) ==
              std::vector<std::string>{"."});  // PAWS
        CHECK(m.restarts().size() == 1);
    }
}

TEST_CASE("time-wait model: an in-window RST kills it unless rfc1337; an out-of-window RST is ignored") {
    const Instant t0{};
    {
        TwModel m(model_init(), t0);
        CHECK(m.on_segment(t0 + 1s, to_model(flag::rst, Seq{9100})).empty());
        CHECK(m.alive_at(t0 + 2s));
        CHECK(m.on_segment(t0 + 2s, to_model(flag::rst, Seq{9000})).empty());
        CHECK(m.end() == TwModel::End::Killed);
        // Closed now: an ACK gets a RST at its ACK number, a SYN a RST/ACK.
        auto a = m.on_segment(t0 + 3s, to_model(flag::ack, Seq{9000}, Seq{5000}));
        REQUIRE(a.size() == 1);
        CHECK(format_flags(a[0].flags) == "R");
        CHECK(a[0].seq == Seq{5000});
        CHECK(flags_of(m.on_segment(t0 + 4s, to_model(flag::syn, Seq{1}))) == std::vector<std::string>{"R."});
    }
    {
        TwModelConfig c;
        c.rfc1337 = true;
        TwModel m(model_init(), t0, c);
        CHECK(m.on_segment(t0 + 2s, to_model(flag::rst, Seq{9000})).empty());
        CHECK(m.alive_at(t0 + 3s));
        CHECK(m.restarts().empty());
    }
}

// --- duration ---------------------------------------------------------------------------

TEST_CASE("time-wait duration: a 60 s TIME-WAIT is measured within the probe resolution; its end is confirmed by a RST") {
    TwRun run(config(TwTest::Duration));
    run.sim.run(150s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(run.flow.done());
    CHECK(r.outcome == "observed");
    CHECK(r.peer_closed_first);
    REQUIRE(r.tw_start);
    CHECK(*r.tw_start == run.model->start() + one_way);  // the capture of the peer's ACK of our FIN
    CHECK(r.old_our_nxt == run.model->rcv_nxt());
    CHECK(r.old_peer_nxt == run.model->snd_nxt());

    // The model's TIME-WAIT was never restarted: it lasted exactly 60 s.
    CHECK(run.model->restarts().empty());
    CHECK(run.model->end() == TwModel::End::Expired);
    const Duration length = run.model->deadline() - run.model->start();
    CHECK(length == 60s);
    REQUIRE(run.flow.duration());
    REQUIRE(run.flow.resolution());
    CHECK(*run.flow.resolution() == 500ms);  // half the 1 s probe interval
    CHECK(abs_d(*run.flow.duration() - length) <= *run.flow.resolution() + 2 * one_way);
    REQUIRE(r.last_alive);
    REQUIRE(r.first_dead);
    CHECK(run.model->alive_at(*r.last_alive + one_way));
    CHECK_FALSE(run.model->alive_at(*r.first_dead + one_way));

    // The probes: FINs without ACK at our old FIN's sequence number, >= 600 ms apart
    // (1 s here), then one ACK probe, answered with a RST.
    REQUIRE(run.arrivals.size() >= 3);
    const auto& last = run.arrivals.back();
    CHECK(format_flags(last.second.flags) == ".");
    CHECK(last.second.seq == run.model->rcv_nxt());
    for (std::size_t i = 0; i + 1 < run.arrivals.size(); ++i) {
        const auto& [t, seg] = run.arrivals[i];
        CHECK(seg.flags == flag::fin);
        CHECK(seg.seq == run.model->rcv_nxt() - 1);
        CHECK(seg.options.empty());
        if (i > 0) CHECK(t - run.arrivals[i - 1].first >= 600ms);
    }
    CHECK(r.probes == run.arrivals.size() - 1);
    CHECK(r.probes >= 59);
    CHECK(r.unanswered == 1);  // the first FIN after the end: a listener drops it
    CHECK(r.end_confirmed);
    CHECK(flags_of(run.sim.sent_by_peer()).back() == "R");
    CHECK(run.model->acks_sent() == r.probes - 1);
}

TEST_CASE("time-wait duration: probes every 600 ms measure a 20 s TIME-WAIT within 300 ms, never rate-limited") {
    auto c = config(TwTest::Duration);
    c.probe_interval = 600ms;
    TwModelConfig m;
    m.time_wait = 20s;
    TwRun run(c, m);
    run.sim.run(60s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == "observed");
    REQUIRE(run.flow.duration());
    CHECK(*run.flow.resolution() == 300ms);
    CHECK(abs_d(*run.flow.duration() - 20s) <= 300ms + 2 * one_way);
    CHECK(run.model->rate_limited() == 0);
    CHECK(run.model->restarts().empty());
    // The FIN probes 600 ms apart; the confirming ACK probe follows the unanswered FIN
    // once its answer wait is over (500 ms here), still outside tcp_invalid_ratelimit.
    REQUIRE(run.arrivals.size() >= 3);
    for (std::size_t i = 1; i + 1 < run.arrivals.size(); ++i) CHECK(run.arrivals[i].first - run.arrivals[i - 1].first == 600ms);
    CHECK(run.arrivals.back().first - run.arrivals[run.arrivals.size() - 2].first >= 500ms);
}

TEST_CASE("time-wait duration: a TIME-WAIT longer than --max-duration ends the run with longer-than-max") {
    auto c = config(TwTest::Duration);
    c.max_duration = 10s;
    TwRun run(c);
    run.sim.run(150s);
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(run.flow.done());
    CHECK(r.outcome == "longer-than-max");
    CHECK_FALSE(run.flow.duration());
    CHECK(run.sim.now() - run.model->start() < 12s);
    CHECK(run.model->alive_at(run.sim.now()));
    CHECK(run.model->restarts().empty());
}

TEST_CASE("time-wait duration: a peer that keeps no TIME-WAIT (tcp_max_tw_buckets 0) is not reported as observed") {
    TwModelConfig m;
    m.time_wait = 0s;
    TwRun run(config(TwTest::Duration), m);
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    CHECK(run.flow.done());
    CHECK(r.peer_closed_first);
    CHECK_FALSE(r.last_alive);  // not one probe was answered by a TIME-WAIT socket
    CHECK_FALSE(run.flow.duration());
    CHECK(r.outcome == "no-time-wait");
}

// --- reuse ------------------------------------------------------------------------------

TEST_CASE("time-wait reuse: a higher ISN or a newer TSval is accepted with ISN = old SND.NXT + 65537; otherwise refused") {
    struct Case {
        TwIsn isn;
        TwTs ts;
        bool accepted;
        bool restarts;  // PAWS-rejected: the timer restarts
    };
    const Case cases[] = {
        {TwIsn::Higher, TwTs::Newer, true, false},  {TwIsn::Higher, TwTs::None, true, false},
        {TwIsn::Higher, TwTs::Older, false, true},  {TwIsn::Lower, TwTs::Newer, true, false},
        {TwIsn::Lower, TwTs::None, false, false},   {TwIsn::Lower, TwTs::Older, false, true},
    };
    for (const auto& k : cases) {
        CAPTURE(describe(k.isn, k.ts));
        TwRun run(config(TwTest::Reuse, k.isn, k.ts));
        run.sim.run(30s);
        INFO(run.wire());
        const auto& r = run.flow.report();
        REQUIRE(run.model);
        CHECK(run.flow.done());
        // The new SYN: ISN above / below RCV.NXT of the TIME-WAIT socket, TSval as asked.
        REQUIRE_FALSE(run.arrivals.empty());
        const Segment& syn = run.arrivals.front().second;
        CHECK(syn.flags == flag::syn);
        CHECK(after(syn.seq, run.model->rcv_nxt()) == (k.isn == TwIsn::Higher));
        auto ts = find_option<opt::Timestamps>(syn.options);
        CHECK(ts.has_value() == (k.ts != TwTs::None));
        if (ts && k.ts == TwTs::Newer) CHECK(static_cast<std::int32_t>(ts->tsval - run.model->ts_recent()) > 0);
        if (ts && k.ts == TwTs::Older) CHECK(static_cast<std::int32_t>(ts->tsval - run.model->ts_recent()) < 0);
        if (k.accepted) {
            CHECK(r.outcome == "accepted");
            CHECK(r.answer == std::optional<std::string>{"S."});
            REQUIRE(r.new_isn);
            CHECK(*r.new_isn == run.model->snd_nxt() + 65537u);
            CHECK(r.isn_distance == std::optional<std::int64_t>{65537});
            CHECK(run.model->end() == TwModel::End::Reused);
            // We reset the half-open new connection.
            CHECK(flags_of(run.sim.sent_by_flow()).back() == "R");
            CHECK(run.sim.sent_by_flow().back().seq == syn.seq + 1);
        } else {
            CHECK(r.outcome == "refused");
            CHECK(r.answer == std::optional<std::string>{"."});
            CHECK_FALSE(r.new_isn);
            CHECK(r.tw_alive_after == std::optional<bool>{true});
            CHECK(run.model->alive_at(run.sim.now()));
            CHECK(run.model->restarts().size() == (k.restarts ? 1u : 0u));
            CHECK(run.sim.sent_by_peer().back().ack == run.model->rcv_nxt());
        }
    }
}

TEST_CASE("time-wait reuse: a lower ISN without a timestamp on a connection that had them (as in --test all) is refused") {
    auto c = config(TwTest::Reuse, TwIsn::Lower, TwTs::None);
    c.connect.tcb = client_tcb(true);
    TwRun run(c);
    run.sim.run(30s);
    REQUIRE(run.model);
    CHECK(run.flow.report().outcome == "refused");
    REQUIRE_FALSE(run.arrivals.empty());
    CHECK_FALSE(find_option<opt::Timestamps>(run.arrivals.front().second.options));
    CHECK(run.model->alive_at(run.sim.now()));
}

// --- rst ----------------------------------------------------------------------------------

TEST_CASE("time-wait rst: with tcp_rfc1337 0 the in-window RST kills TIME-WAIT; the probe after it gets a RST") {
    TwRun run(config(TwTest::Rst));
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == "killed");
    CHECK(r.answer == std::optional<std::string>{"R"});
    CHECK(r.tw_alive_after == std::optional<bool>{false});
    CHECK(run.model->end() == TwModel::End::Killed);
    REQUIRE(run.arrivals.size() == 2);
    CHECK(run.arrivals[0].second.flags == flag::rst);
    CHECK(run.arrivals[0].second.seq == run.model->rcv_nxt());  // in window: exactly RCV.NXT
    CHECK(format_flags(run.arrivals[1].second.flags) == ".");
    CHECK(run.arrivals[1].first - run.arrivals[0].first == 600ms);  // --settle
}

TEST_CASE("time-wait rst: with tcp_rfc1337 1 the RST is ignored; the probe after it gets an ACK") {
    TwModelConfig m;
    m.rfc1337 = true;
    TwRun run(config(TwTest::Rst), m);
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == "ignored");
    CHECK(r.answer == std::optional<std::string>{"."});
    CHECK(r.tw_alive_after == std::optional<bool>{true});
    CHECK(run.model->alive_at(run.sim.now()));
    REQUIRE(run.arrivals.size() == 2);
    // Only the follow-up ACK restarted the timer, not the RST.
    REQUIRE(run.model->restarts().size() == 1);
    CHECK(run.model->restarts()[0] == run.arrivals[1].first);
}

// --- fin ----------------------------------------------------------------------------------

TEST_CASE("time-wait fin: our FIN again is re-ACKed by the TIME-WAIT socket, whose timer restarts") {
    TwRun run(config(TwTest::Fin));
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == "re-acked");
    CHECK(r.answer == std::optional<std::string>{"."});
    REQUIRE(run.arrivals.size() == 1);
    const Segment& fin = run.arrivals[0].second;
    CHECK(fin.flags == (flag::fin | flag::ack));
    CHECK(fin.seq + 1 == run.model->rcv_nxt());
    CHECK(fin.ack == run.model->snd_nxt());
    CHECK(run.sim.sent_by_peer().back().ack == run.model->rcv_nxt());
    CHECK(run.model->restarts().size() == 1);
}

// --- peers that do not play along -----------------------------------------------------------

TEST_CASE("time-wait: a peer that answers but does not close first gives no-time-wait at --max-wait, and our RST cleans up") {
    for (TwTest test : {TwTest::Duration, TwTest::Reuse, TwTest::Rst, TwTest::Fin}) {
        CAPTURE(probe::to_string(test));
        auto c = config(test);
        c.max_wait = 2s;
        TwRun run(c, {}, false);
        run.sim.run(30s);
        INFO(run.wire());
        const auto& r = run.flow.report();
        CHECK(run.flow.done());
        CHECK(r.outcome == "no-time-wait");
        CHECK_FALSE(r.peer_closed_first);
        CHECK_FALSE(r.tw_start);
        CHECK_FALSE(run.model);
        CHECK(flags_of(run.sim.sent_by_flow()).back() == "R");
        CHECK(run.sim.peer().state() == State::Closed);
        CHECK(run.sim.now() - run.sim.start() < 3s);
    }
}

TEST_CASE("time-wait: a peer that falls silent after the close gives no-answer") {
    for (TwTest test : {TwTest::Duration, TwTest::Reuse, TwTest::Rst, TwTest::Fin}) {
        CAPTURE(probe::to_string(test));
        TwRun run(config(test));
        // Everything the TIME-WAIT socket would answer is lost.
        run.sim.set_peer_filter([&run](const Segment&) { return run.model.has_value(); });
        run.sim.run(30s);
        INFO(run.wire());
        const auto& r = run.flow.report();
        REQUIRE(run.model);
        CHECK(run.flow.done());
        CHECK(r.peer_closed_first);
        CHECK(r.outcome == "no-answer");
        CHECK_FALSE(r.answer);
        CHECK_FALSE(run.flow.duration());
    }
}

TEST_CASE("time-wait: a peer that never answers our SYN is filtered; no TIME-WAIT test runs") {
    probe::TimeWaitFlow flow(config(TwTest::Duration));
    Sim sim(flow, Sim::PeerKind::Silent);
    sim.run(30s);
    CHECK(flow.done());
    CHECK(flow.connect_result().verdict == probe::Verdict::Filtered);
    CHECK_FALSE(flow.report().peer_closed_first);
    CHECK_FALSE(flow.report().tw_start);
    CHECK(flow.report().probes == 0);
    for (const auto& s : sim.sent_by_flow()) CHECK(s.has(flag::syn));
}
