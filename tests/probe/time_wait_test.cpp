// time-wait against a simulated Linux peer: our own TCB plays an HTTP/1.0-like server
// (answers the request and closes first) until it enters TIME-WAIT; from then on a model
// of a Linux TIME-WAIT socket (tw_model.hpp) answers on the 4-tuple. First the model's
// own rules, then every TimeWaitFlow test against it: duration, reuse (ISN higher/lower
// x TSval newer/older/none), rst (RFC 1337 off/on), fin, and peers that do not close
// first or fall silent.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>

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

// --- duration (many connections: the series and the ones probed once) ------------------

namespace {

/// A duration measurement as the app builds it: the series connection on port 40000,
/// the coarse connections on 41000 + slot, the fine ones on 42000 + slot, one TwNet.
struct DurationRun {
    explicit DurationRun(TwModelConfig m, probe::TimeWaitConfig series = config(TwTest::Duration),
                         probe::TwDurationConfig dc = {})
        : net(m) {
        dc.lifetime.max = series.max_duration;
        d = std::make_shared<probe::TwDuration>(dc);
        series.duration = d;
        flow = &add(series, 40000);
        for (unsigned i = 0; i < d->engine().slots(probe::Round::Coarse); ++i) add_member(probe::Round::Coarse, i, 41000);
        for (unsigned i = 0; i < probe::LifetimeEngine::fine_capacity(dc.lifetime); ++i) add_member(probe::Round::Fine, i, 42000);
    }
    const probe::TimeWaitFlow& add(probe::TimeWaitConfig c, std::uint16_t port) {
        c.connect.tcb.tuple.local.port = port;
        c.connect.tcb.iss = Seq{1000u + 7919u * port};
        auto f = std::make_unique<probe::TimeWaitFlow>(std::move(c));
        const probe::TimeWaitFlow* p = f.get();
        flows.push_back(p);
        net.session().add(net.start(), std::move(f));
        return *p;
    }
    void add_member(probe::Round r, unsigned slot, std::uint16_t base) {
        auto c = config(TwTest::Duration);
        c.duration = d;
        c.slot = std::pair{r, slot};
        add(c, static_cast<std::uint16_t>(base + slot));
    }
    /// The connections probed once that sent a probe (after their close).
    unsigned members_probed() const { return static_cast<unsigned>(d->members().size()); }
    const TwModel& series_model() const {
        const TwModel* m = net.model(40000);
        REQUIRE(m);
        return *m;
    }
    std::string trace(std::uint16_t port = 40000) { return fmt::format("{}", fmt::join(net.lines(port), "\n")); }

    TwNet net;
    std::shared_ptr<probe::TwDuration> d;
    const probe::TimeWaitFlow* flow = nullptr;
    std::vector<const probe::TimeWaitFlow*> flows;
};

/// Everything the peer sends to the series connection between `from` and `to` after its
/// TIME-WAIT began is lost on the path (its RSTs too, unless `keep_rst`).
void lose_to_series(DurationRun& run, Duration from, Duration to, bool keep_rst) {
    run.net.set_drop([&run, from, to, keep_rst](const Segment& s) {
        const TwModel* tw = run.net.model(40000);
        if (s.dst.port != 40000 || !tw || (keep_rst && s.has(flag::rst))) return false;
        const Duration since = run.net.now() - tw->start();
        return since >= from && since < to;
    });
}

/// The answer of the connections probed once: a bracket of at most 2 s that holds `tw`.
void check_bracket(const DurationRun& run, Duration tw) {
    const auto b = run.flow->bracket();
    REQUIRE(b);
    CHECK(b->first < tw);
    CHECK(b->second >= tw);
    CHECK(b->second - b->first <= 2s);
}

/// The series was found to keep the state alive, and the engine measured instead.
void check_engine_answer(const DurationRun& run, Duration tw) {
    CHECK(run.d->check() == probe::TwCheck::Extended);
    CHECK(run.d->method() == probe::TwMethod::Lifetime);
    check_bracket(run, tw);
}

TwModelConfig foreign(Duration tw, std::set<TwSegKind> answers, std::set<TwSegKind> restarts,
                      TwClosedReply closed = TwClosedReply::Rst) {
    TwModelConfig m;
    m.time_wait = tw;
    m.policy = TwPolicy{std::move(answers), std::move(restarts)};
    m.closed = closed;
    return m;
}

}  // namespace

TEST_CASE("time-wait duration, Linux: FINs without ACK every second, confirmed by a connection probed once; 60 s within 0.5 s") {
    DurationRun run({});
    run.net.run(200s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    const auto& m = run.series_model();
    CHECK(run.flow->done());
    CHECK(r.outcome == probe::TwOutcome::Observed);
    CHECK(r.answer == std::optional<std::string>{"R"});
    CHECK(r.peer_closed_first);
    REQUIRE(r.tw_start);
    CHECK(*r.tw_start == m.start() + one_way);  // the capture of the peer's ACK of our FIN
    CHECK(run.d->method() == probe::TwMethod::Series);
    CHECK(run.d->check() == probe::TwCheck::Confirmed);
    CHECK(run.d->kind() == std::optional<probe::TwProbe>{probe::TwProbe::FinNoAck});
    CHECK(run.d->kind_info(probe::TwProbe::FinNoAck).answered == std::optional<bool>{true});
    CHECK(run.d->kind_info(probe::TwProbe::FinNoAck).restarts == std::optional<bool>{false});
    CHECK_FALSE(run.d->kind_info(probe::TwProbe::RetxFin).answered);  // never needed, never sent

    // The model's TIME-WAIT was never restarted: it lasted exactly 60 s.
    CHECK(m.restarts().empty());
    CHECK(m.end() == TwModel::End::Expired);
    REQUIRE(run.flow->duration());
    // Half of: the 1 s probe interval, plus the first unanswered probe's two copies and
    // the wait after them (100 ms each) before the ACK probe whose RST dates the end.
    CHECK(*run.flow->resolution() == 650ms);
    CHECK(abs_d(*run.flow->duration() - 60s) <= 650ms + 2 * one_way);

    // The wire, as the trace prints it: the close, then FINs without ACK at our old ISS
    // (relative 0), 1 s apart, answered by an ACK of RCV.NXT; the first one after the
    // end and its two copies (100 ms apart) unanswered; then the out-of-window ACK
    // probe, answered by a RST at its ACK number.
    const auto lines = run.net.lines(40000);
    const auto first_probe = std::find(lines.begin(), lines.end(), "> F 0:0(0) win 64240");
    REQUIRE(first_probe != lines.end());
    CHECK(*(first_probe - 2) == "> F. 19:19(0) ack 102 win 64240 <nop,nop,TS val 5000 ecr 90000>");
    CHECK(*(first_probe - 1) == "< . 102:102(0) ack 20 win 127 <nop,nop,TS val 90000 ecr 5000>");  // TIME-WAIT begins
    CHECK(*(first_probe + 1) == "< . 102:102(0) ack 20 win 502 <nop,nop,TS val 190600 ecr 5000>");
    CHECK(lines[lines.size() - 5] == "> F 0:0(0) win 64240");
    CHECK(lines[lines.size() - 4] == "> F 0:0(0) win 64240");
    CHECK(lines[lines.size() - 3] == "> F 0:0(0) win 64240");
    CHECK(lines[lines.size() - 2] == "> . 100020:100020(0) ack 102 win 64240");
    CHECK(lines.back() == "< R 102:102(0) win 0");
    const auto& arrivals = run.net.arrivals(40000);
    REQUIRE(arrivals.size() >= 60);
    for (std::size_t i = 1; i + 4 < arrivals.size(); ++i) CHECK(arrivals[i].first - arrivals[i - 1].first == 1s);
    CHECK(arrivals[arrivals.size() - 3].first - arrivals[arrivals.size() - 4].first == 100ms);
    CHECK(r.unanswered == 3);
    CHECK(r.retries == 2 + 0);  // the two copies of the last FIN; the ACK probe was answered at once
    CHECK(r.probes == arrivals.size());
    CHECK(r.end_confirmed);

    // The connections probed once: each opened once TIME-WAIT answered, probed at its
    // own offset with the same kind, never again; those due after the series' end
    // were never probed.
    CHECK(run.members_probed() >= 12);
    CHECK(run.members_probed() <= 16);
    for (const auto& mr : run.d->members()) {
        CHECK(mr.round == probe::Round::Coarse);
        CHECK(mr.result == (mr.offset < 60s ? probe::Liveness::Alive : probe::Liveness::Gone));
        CHECK(run.net.arrivals(mr.port).size() == 1);
        CHECK(run.net.model(mr.port)->restarts().empty());
    }
    REQUIRE(run.d->check_offset());
    CHECK(*run.d->check_offset() >= 48s);  // "alive shortly before the series' end"
    for (unsigned i = 0; i < 11; ++i) CHECK(run.net.sent(static_cast<std::uint16_t>(42000 + i)).empty());  // no fine round
    CHECK(run.net.now() - run.net.start() < 65s);
}

TEST_CASE("time-wait duration, Linux: probes every 600 ms measure a 20 s TIME-WAIT within 450 ms, never rate-limited") {
    auto c = config(TwTest::Duration);
    c.probe_interval = 600ms;
    TwModelConfig m;
    m.time_wait = 20s;
    DurationRun run(m, c);
    run.net.run(60s);
    INFO(run.trace());
    CHECK(run.flow->report().outcome == probe::TwOutcome::Observed);
    CHECK(run.d->method() == probe::TwMethod::Series);
    REQUIRE(run.flow->duration());
    CHECK(*run.flow->resolution() == 450ms);  // (600 ms + 3 x 100 ms before the ACK probe) / 2
    CHECK(abs_d(*run.flow->duration() - 20s) <= 450ms + 2 * one_way);
    CHECK(run.series_model().rate_limited() == 0);
    CHECK(run.series_model().restarts().empty());
}

TEST_CASE("time-wait duration: a stack whose TIME-WAIT answers only a retransmitted FIN (and restarts on it): one probe per connection") {
    // RFC 9293 §3.10.7.4 to the letter: 20 s, a retransmitted FIN is ACKed and restarts
    // the timer, a FIN without ACK is ignored; a closed port answers RST.
    DurationRun run(foreign(20s, {TwSegKind::RetxFin}, {TwSegKind::RetxFin}));
    run.net.run(120s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(run.flow->done());
    CHECK(r.outcome == probe::TwOutcome::Observed);
    CHECK(r.answer == std::optional<std::string>{"R"});
    CHECK(run.d->kind_info(probe::TwProbe::FinNoAck).answered == std::optional<bool>{false});
    CHECK(run.d->kind_info(probe::TwProbe::RetxFin).answered == std::optional<bool>{true});
    CHECK(run.d->kind_info(probe::TwProbe::RetxFin).restarts == std::optional<bool>{true});
    check_engine_answer(run, 20s);
    // The series connection: three FINs without ACK (unanswered), then our FIN again,
    // every second, each one restarting the timer, until the check stopped it.
    const auto& a = run.net.arrivals(40000);
    REQUIRE(a.size() >= 6);
    for (int i = 0; i < 3; ++i) CHECK(a[static_cast<std::size_t>(i)].second.flags == flag::fin);
    CHECK(a[3].second.flags == (flag::fin | flag::ack));
    CHECK(run.series_model().restarts().size() == a.size() - 3);
    CHECK(run.series_model().alive_at(run.net.now()));  // the series kept it alive itself
    // Every connection probed once saw exactly one probe kind and answered once.
    for (const auto& mr : run.d->members()) CHECK(run.net.model(mr.port)->restarts().size() <= 1);
    CHECK(run.net.now() - run.net.start() <= 50s + 5s);  // 2.5 x 20 s, plus the learning
}

TEST_CASE("time-wait duration: a stack that restarts TIME-WAIT on every FIN: the series is found out and the engine measures") {
    DurationRun run(foreign(20s, {TwSegKind::FinNoAck, TwSegKind::RetxFin},
                            {TwSegKind::FinNoAck, TwSegKind::RetxFin, TwSegKind::FinAck}));
    run.net.run(120s);
    INFO(run.trace());
    CHECK(run.flow->report().outcome == probe::TwOutcome::Observed);
    CHECK(run.d->kind() == std::optional<probe::TwProbe>{probe::TwProbe::FinNoAck});
    CHECK(run.d->kind_info(probe::TwProbe::FinNoAck).restarts == std::optional<bool>{true});
    check_engine_answer(run, 20s);
    REQUIRE(run.d->check_offset());
    CHECK(*run.d->check_offset() >= 20s);
    CHECK(*run.d->series_last_alive() > *run.d->check_offset() + 6s);
    CHECK(run.net.now() - run.net.start() <= 55s);
}

TEST_CASE("time-wait duration: a stack whose retransmitted FIN does not restart TIME-WAIT keeps the series") {
    DurationRun run(foreign(20s, {TwSegKind::RetxFin}, {}));
    run.net.run(120s);
    INFO(run.trace());
    CHECK(run.flow->report().outcome == probe::TwOutcome::Observed);
    CHECK(run.d->method() == probe::TwMethod::Series);
    CHECK(run.d->check() == probe::TwCheck::Confirmed);
    CHECK(run.d->kind_info(probe::TwProbe::RetxFin).restarts == std::optional<bool>{false});
    REQUIRE(run.flow->duration());
    CHECK(abs_d(*run.flow->duration() - 20s) <= 500ms + 2 * one_way);
    // The series' probes are retransmissions of our FIN, with the relative numbers of
    // our FIN (19) and the peer's (101).
    const auto lines = run.net.lines(40000);
    CHECK(std::count(lines.begin(), lines.end(), "> F. 19:19(0) ack 102 win 64240") >= 18);
}

TEST_CASE("time-wait duration: a stack that drops everything once TIME-WAIT is over: the end is a silence, not a RST") {
    DurationRun run(foreign(20s, {TwSegKind::RetxFin}, {TwSegKind::RetxFin}, TwClosedReply::Silent));
    run.net.run(150s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(run.flow->done());
    CHECK(r.outcome == probe::TwOutcome::SilentEnd);
    CHECK_FALSE(r.answer);
    CHECK(run.d->method() == probe::TwMethod::Lifetime);
    CHECK(run.d->check() == probe::TwCheck::Extended);  // connections probed once fell silent long before
    const auto br = run.d->engine().bracket();
    CHECK_FALSE(br.end_confirmed());
    check_bracket(run, 20s);
    for (const auto& mr : run.d->members())
        if (mr.result == probe::Liveness::Silent) CHECK(run.net.arrivals(mr.port).size() == 6);  // 3 x (FIN, ACK probe)
}

TEST_CASE("time-wait duration: a closed port that only resets segments with ACK: the engine's ACK probe finds the end") {
    // Linux-like answers but no RST to a FIN without ACK: each connection probed once
    // gets the FIN, then the out-of-window ACK 100 ms later, which draws the RST.
    DurationRun run(foreign(20s, {TwSegKind::FinNoAck, TwSegKind::RetxFin}, {TwSegKind::FinNoAck, TwSegKind::RetxFin},
                            TwClosedReply::RstAckOnly));
    run.net.run(120s);
    INFO(run.trace());
    CHECK(run.flow->report().outcome == probe::TwOutcome::Observed);
    CHECK(run.d->method() == probe::TwMethod::Lifetime);
    for (const auto& mr : run.d->members()) {
        if (mr.result != probe::Liveness::Gone) continue;
        const auto& a = run.net.arrivals(mr.port);
        REQUIRE(a.size() == 2);
        CHECK(a[0].second.flags == flag::fin);
        CHECK(format_flags(a[1].second.flags) == ".");
        CHECK(a[1].first - a[0].first == 100ms);
        CHECK(mr.offset - (a[1].first - run.net.model(mr.port)->start()) <= 2 * one_way);  // gone at the ACK probe
    }
    const auto b = run.flow->bracket();
    REQUIRE(b);
    CHECK(b->second - b->first <= 2s);
}

TEST_CASE("time-wait duration: a lost answer is retried, not taken for the end") {
    // The answers to the series' probe at about 30 s and to its first copy are lost.
    TwModelConfig m;
    m.time_wait = 40s;
    DurationRun run(m);
    unsigned dropped = 0;
    Instant t0{};
    run.net.set_drop([&](const Segment& s) {
        if (s.dst.port != 40000 || !run.net.model(40000)) return false;
        if (t0 == Instant{}) t0 = run.net.model(40000)->start();
        if (run.net.now() - t0 > 30s && dropped < 2 && format_flags(s.flags) == ".") {
            ++dropped;
            return true;
        }
        return false;
    });
    run.net.run(120s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(dropped == 2);
    CHECK(r.outcome == probe::TwOutcome::Observed);
    CHECK(run.d->method() == probe::TwMethod::Series);
    CHECK(r.retries == 2 + 2);  // two for the lost answers, two for the real end
    REQUIRE(run.flow->duration());
    CHECK(abs_d(*run.flow->duration() - 40s) <= 650ms + 2 * one_way);
}

TEST_CASE("time-wait duration: answers lost just before the end: the end lies before the ACK probe's RST, not at the first silent copy") {
    // Linux, 39.65 s; the peer's answers to the series connection are lost from 39.2 s on:
    // the probe at 39.6 s is answered but the answer lost, its copies 100 ms apart meet
    // the end, and the ACK probe after them draws the RST. The first silent copy came
    // before the end; the bracket must hold the true 39.65 s.
    TwModelConfig m;
    m.time_wait = 39650ms;
    DurationRun run(m);
    lose_to_series(run, 39200ms, 40s, /*keep_rst=*/true);
    run.net.run(120s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    REQUIRE(r.outcome == probe::TwOutcome::Observed);
    REQUIRE(r.first_dead);
    const auto b = run.flow->bracket();
    REQUIRE(b);
    // The end is dated by the ACK probe (the last segment to reach the peer), not by the
    // first of the three FIN copies before it.
    const auto& a = run.net.arrivals(40000);
    REQUIRE(a.size() >= 4);
    CHECK(format_flags(a.back().second.flags) == ".");
    CHECK(format_flags(a[a.size() - 2].second.flags) == "F");
    CHECK(*r.first_dead == a.back().first - one_way);
    CHECK(b->first < 39650ms);
    CHECK(b->second >= 39650ms);
    CHECK(b->second - b->first <= 2s);
    CHECK(r.end_confirmed);
}

TEST_CASE("time-wait duration: a series whose last answers and every copy were lost ends in silence; the connections probed once answer") {
    // Linux, 20 s; everything the server sends to the series connection from 10 s to
    // 16 s is lost: the series' probe, its copies and the ACK probe all go unanswered.
    TwModelConfig m;
    m.time_wait = 20s;
    DurationRun run(m);
    lose_to_series(run, 10s, 16s, /*keep_rst=*/false);
    run.net.run(120s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(r.outcome == probe::TwOutcome::Observed);  // the engine's end, confirmed by a RST
    CHECK(run.d->series_reached_max() == false);
    CHECK_FALSE(run.d->series_end_confirmed());
    CHECK(run.d->check() == probe::TwCheck::Unchecked);
    CHECK(run.d->method() == probe::TwMethod::Lifetime);
    CHECK_FALSE(run.d->kind_info(probe::TwProbe::FinNoAck).restarts);  // nothing shows either way
    check_bracket(run, 20s);
    CHECK(r.unanswered >= 6);
}

TEST_CASE("time-wait duration: a TIME-WAIT longer than --max-duration is longer-than-max, checked by the connection probed at max") {
    auto c = config(TwTest::Duration);
    c.max_duration = 20s;
    DurationRun run({}, c);
    run.net.run(150s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(run.flow->done());
    CHECK(r.outcome == probe::TwOutcome::LongerThanMax);
    CHECK(r.answer == std::optional<std::string>{"."});
    CHECK(run.d->method() == probe::TwMethod::Series);
    CHECK(run.d->check() == probe::TwCheck::Confirmed);
    CHECK_FALSE(run.flow->duration());
    CHECK(run.series_model().alive_at(run.net.now()));
    CHECK(run.series_model().restarts().empty());
    CHECK(run.net.now() - run.net.start() < 25s);
}

TEST_CASE("time-wait duration: a peer that keeps no TIME-WAIT (tcp_max_tw_buckets 0) is not reported as observed") {
    TwModelConfig m;
    m.time_wait = 0s;
    DurationRun run(m);
    run.net.run(30s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(run.flow->done());
    CHECK(r.peer_closed_first);
    CHECK_FALSE(run.flow->duration());
    CHECK(r.outcome == probe::TwOutcome::NoTimeWait);
    CHECK(r.answer == std::optional<std::string>{"R"});  // our FIN again drew a RST
    CHECK_FALSE(run.flow->time_wait_seen());
    CHECK(run.members_probed() == 0);
    for (unsigned i = 0; i < 20; ++i) CHECK(run.net.sent(static_cast<std::uint16_t>(41000 + i)).empty());
}

TEST_CASE("time-wait duration: a TIME-WAIT that answers nothing is no-answer after every kind and its copies") {
    DurationRun run(foreign(20s, {}, {}));
    run.net.run(60s);
    INFO(run.trace());
    const auto& r = run.flow->report();
    CHECK(r.outcome == probe::TwOutcome::NoAnswer);
    CHECK_FALSE(r.answer);
    CHECK_FALSE(run.flow->time_wait_seen());
    CHECK(r.probes == 9);  // three kinds, three copies each
    CHECK(r.retries == 6);
    CHECK(r.unanswered == 9);
    CHECK(run.members_probed() == 0);
    CHECK(run.net.now() - run.net.start() < 10s);
}

TEST_CASE("time-wait duration on one connection (no connection probed once): the series' result, unchecked") {
    TwRun run(config(TwTest::Duration));
    run.sim.run(150s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    CHECK(r.outcome == probe::TwOutcome::Observed);
    REQUIRE(run.flow.config().duration);
    CHECK(run.flow.config().duration->check() == probe::TwCheck::Unchecked);
    CHECK(run.flow.config().duration->method() == probe::TwMethod::Series);
    CHECK_FALSE(run.flow.config().duration->kind_info(probe::TwProbe::FinNoAck).restarts);
    REQUIRE(run.flow.duration());
    CHECK(abs_d(*run.flow.duration() - 60s) <= 650ms + 2 * one_way);
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
            CHECK(r.outcome == probe::TwOutcome::Accepted);
            CHECK(r.answer == std::optional<std::string>{"S."});
            REQUIRE(r.new_isn);
            CHECK(*r.new_isn == run.model->snd_nxt() + 65537u);
            CHECK(r.isn_distance == std::optional<std::int64_t>{65537});
            CHECK(run.model->end() == TwModel::End::Reused);
            // We reset the half-open new connection.
            CHECK(flags_of(run.sim.sent_by_flow()).back() == "R");
            CHECK(run.sim.sent_by_flow().back().seq == syn.seq + 1);
        } else {
            CHECK(r.outcome == probe::TwOutcome::Refused);
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
    CHECK(run.flow.report().outcome == probe::TwOutcome::Refused);
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
    CHECK(r.outcome == probe::TwOutcome::Killed);
    CHECK(r.answer == std::optional<std::string>{"R"});
    CHECK(r.tw_alive_after == std::optional<bool>{false});
    CHECK(run.model->end() == TwModel::End::Killed);
    // Three copies of the RST (a lost RST would look like an ignored one), then the probe.
    REQUIRE(run.arrivals.size() == 4);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(run.arrivals[i].second.flags == flag::rst);
        CHECK(run.arrivals[i].second.seq == run.model->rcv_nxt());  // in window: exactly RCV.NXT
        CHECK(run.arrivals[i].first == run.arrivals[0].first);
    }
    CHECK(format_flags(run.arrivals[3].second.flags) == ".");
    CHECK(run.arrivals[3].first - run.arrivals[0].first == 600ms);  // --settle
}

TEST_CASE("time-wait rst: with tcp_rfc1337 1 the RST is ignored; the probe after it gets an ACK") {
    TwModelConfig m;
    m.rfc1337 = true;
    TwRun run(config(TwTest::Rst), m);
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == probe::TwOutcome::Ignored);
    CHECK(r.answer == std::optional<std::string>{"."});
    CHECK(r.tw_alive_after == std::optional<bool>{true});
    CHECK(run.model->alive_at(run.sim.now()));
    // The RST (three rounds of three copies, in case they were lost) never restarted the
    // timer; each follow-up ACK did.
    CHECK(r.rounds == 3);
    REQUIRE(run.arrivals.size() == 12);
    REQUIRE(run.model->restarts().size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t k = 0; k < 3; ++k) CHECK(run.arrivals[4 * i + k].second.flags == flag::rst);
        CHECK(run.model->restarts()[i] == run.arrivals[4 * i + 3].first);
    }
}

// --- fin ----------------------------------------------------------------------------------

TEST_CASE("time-wait fin: our FIN again is re-ACKed by the TIME-WAIT socket, whose timer restarts") {
    TwRun run(config(TwTest::Fin));
    run.sim.run(30s);
    INFO(run.wire());
    const auto& r = run.flow.report();
    REQUIRE(run.model);
    CHECK(r.outcome == probe::TwOutcome::ReAcked);
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

TEST_CASE("time-wait: a peer that answers but does not close first: incomplete at --max-wait (no TIME-WAIT set up), our RST cleans up") {
    for (TwTest test : {TwTest::Duration, TwTest::Reuse, TwTest::Rst, TwTest::Fin}) {
        CAPTURE(probe::to_string(test));
        auto c = config(test);
        c.max_wait = 2s;
        TwRun run(c, {}, false);
        run.sim.run(30s);
        INFO(run.wire());
        const auto& r = run.flow.report();
        CHECK(run.flow.done());
        CHECK(r.outcome == probe::TwOutcome::Incomplete);
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
        CHECK(r.outcome == probe::TwOutcome::NoAnswer);
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

TEST_CASE("time-wait: a SYN-ACK after our SYN retransmissions gave up (within --timeout) ends the test: connect-failed, not a hang") {
    // RTO 1 s, one retransmission: our TCB gives up at 3 s. 1.75 s each way: the answer
    // to the first SYN arrives at 3.5 s, before the 10 s timeout. The port is open, but
    // there is no connection to test; the flow must end instead of waiting for one.
    auto c = config(TwTest::Duration);
    c.connect.timeout = 10s;
    probe::TimeWaitFlow flow(std::move(c));
    Sim sim(flow, Sim::PeerKind::Listening, 1750ms);
    sim.run(60s);
    CHECK(flow.done());
    CHECK(flow.connect_result().verdict == probe::Verdict::Open);
    CHECK(flow.report().outcome == probe::TwOutcome::ConnectFailed);
    CHECK_FALSE(flow.report().tw_start);
    CHECK(sim.now() - sim.start() < 15s);
    const auto lines = segment_lines(sim.events());
    REQUIRE(lines.size() >= 4);
    CHECK(lines[2].rfind("< S.", 0) == 0);
    CHECK(lines[3] == "> R 1:1(0) win 0");
}
