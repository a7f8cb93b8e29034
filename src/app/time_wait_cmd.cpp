// `tcpprobe time-wait HOST:PORT`: make the peer close first, then ask its TIME-WAIT
// socket questions (--test duration|reuse|rst|fin|all); `all` runs every test on its
// own connection, concurrently, and prints one table. The duration test brings the
// connections of the lifetime engine along (each probed once, on a port of its own).
#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/time_wait.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

using Test = TimeWaitOptions::Test;
const Words<Test> test_words = {{std::string(probe::to_string(probe::TwTest::Duration)), Test::Duration},
                                {std::string(probe::to_string(probe::TwTest::Reuse)), Test::Reuse},
                                {std::string(probe::to_string(probe::TwTest::Rst)), Test::Rst},
                                {std::string(probe::to_string(probe::TwTest::Fin)), Test::Fin},
                                {"all", Test::All}};
const Words<probe::TwIsn> isn_words = words_of({probe::TwIsn::Higher, probe::TwIsn::Lower});
const Words<probe::TwTs> ts_words = words_of({probe::TwTs::Newer, probe::TwTs::Older, probe::TwTs::None});

void options(CLI::App& cmd, TimeWaitOptions& w) {
    add_target(cmd, w.target);
    add_syn_options(cmd, w.syn, false);
    add_connect_options(cmd, w.conn);
    choice(cmd, "--test", w.test, test_words, "duration (default), reuse, rst, fin, or all (each on its own connection)");
    choice(cmd, "--isn", w.isn, isn_words, "reuse: the new SYN's ISN higher (default) or lower than the old connection's SND.NXT");
    choice(cmd, "--ts", w.ts, ts_words,
           "timestamps on both connections; reuse: the new SYN's TSval newer (default) or older; none: no timestamps");
    cmd.add_option("--request", w.request, "what makes the peer close first (default an HTTP/1.0 GET): TEXT with escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    cmd.add_option("--max-wait", w.max_wait, "longest wait for the peer to close first (default 10s)")->type_name("DURATION");
    cmd.add_option("--probe-interval", w.probe_interval, "duration: time between the series' probes, at least 600ms (default 1s)")
        ->type_name("DURATION");
    cmd.add_option("--max-duration", w.max_duration,
                   "duration: the longest TIME-WAIT looked for; one still there then is longer-than-max (default 150s)")
        ->type_name("DURATION");
}

struct Plan {
    probe::TwTest test;
    probe::TwIsn isn = probe::TwIsn::Higher;
    probe::TwTs ts = probe::TwTs::Newer;
};

std::vector<Plan> plans(const TimeWaitOptions& o) {
    using probe::TwIsn;
    using probe::TwTest;
    using probe::TwTs;
    switch (o.test) {
        case Test::All:
            return {{TwTest::Duration},
                    {TwTest::Reuse, TwIsn::Higher, TwTs::Newer},
                    {TwTest::Reuse, TwIsn::Lower, TwTs::None},
                    {TwTest::Reuse, TwIsn::Lower, TwTs::Newer},
                    {TwTest::Reuse, TwIsn::Higher, TwTs::Older},  // PAWS
                    {TwTest::Rst},
                    {TwTest::Fin}};
        case Test::Duration: return {{TwTest::Duration}};
        case Test::Reuse: return {{TwTest::Reuse, o.isn, o.ts}};
        case Test::Rst: return {{TwTest::Rst}};
        case Test::Fin: return {{TwTest::Fin}};
    }
    return {};
}

std::string name_of(const probe::TimeWaitFlow& f) {
    const auto& c = f.config();
    if (c.test != probe::TwTest::Reuse) return std::string(probe::to_string(c.test));
    return fmt::format("reuse {}/ts {}", probe::to_string(c.isn), probe::to_string(c.ts));
}

std::string secs(Duration d) { return fmt::format("{:.2f} s", to_ms_f(d) / 1000); }

/// "9 probe segments unanswered, 6 of the 9 sent were copies sent again after silence":
/// what a verdict that loss could have produced owes the reader.
std::string loss_note(const probe::TimeWaitReport& r) {
    return fmt::format("{} of {} probe segments unanswered, {} of them copies sent again after silence", r.unanswered,
                       r.probes, r.retries);
}

/// The connections probed once that drew no answer at all, and what they were sent.
std::string silent_members(const probe::TwDuration& d) {
    unsigned n = 0, segments = 0;
    for (const auto& m : d.members())
        if (m.result == probe::Liveness::Silent) {
            ++n;
            segments += m.copies;
        }
    return fmt::format("{} connection(s) probed once answered none of {} probe segments (each probe sent again "
                       "after silence, with an ACK probe after each copy)",
                       n, segments);
}

std::string kinds_tried(const probe::TwDuration& d) {
    std::string out;
    for (probe::TwProbe p : probe::tw_probes)
        if (d.kind_info(p).answered) out += (out.empty() ? "" : ", ") + std::string(probe::to_string(p));
    return out;
}

std::string duration_detail(const probe::TimeWaitFlow& f) {
    const auto& r = f.report();
    const probe::TwDuration& d = *f.config().duration;
    const auto b = f.bracket();
    const std::string how = d.method() == probe::TwMethod::Lifetime
                                ? fmt::format("one probe per connection, {} connections", d.engine().probes())
                                : fmt::format("series of {} probes", d.kind() ? probe::to_string(*d.kind()) : "?");
    if (r.outcome == probe::TwOutcome::Observed && b)
        return fmt::format("TIME-WAIT {} +/- {}, between {} and {} ({}, end confirmed by a RST)", secs(*f.duration()),
                           secs(*f.resolution()), secs(b->first), secs(b->second), how);
    if (r.outcome == probe::TwOutcome::SilentEnd && b)
        return fmt::format("TIME-WAIT {} +/- {}, between {} and {} ({}); its end is a silence, not a RST: {}",
                           secs(*f.duration()), secs(*f.resolution()), secs(b->first), secs(b->second), how,
                           d.method() == probe::TwMethod::Lifetime ? silent_members(d) : loss_note(r));
    if (r.outcome == probe::TwOutcome::LongerThanMax)
        return fmt::format("still there after {} (--max-duration; {})",
                           secs(d.series_reached_max() ? *d.series_last_alive() : *d.engine().bracket().alive), how);
    if (r.outcome == probe::TwOutcome::Inconsistent)
        return d.check() == probe::TwCheck::Inconsistent && d.method() != probe::TwMethod::Lifetime
                   ? "the ACK probe found TIME-WAIT still there after the series' probes went unanswered"
                   : "the connections probed once disagree (one alive after another was gone)";
    if (r.outcome == probe::TwOutcome::NoTimeWait) {
        std::string_view last = "our probe";
        for (probe::TwProbe p : probe::tw_probes)
            if (d.kind_info(p).answered) last = probe::to_string(p);
        return fmt::format("{} drew a RST: the socket was already gone", last);
    }
    if (r.outcome == probe::TwOutcome::NoAnswer) return fmt::format("none of {} answered: {}", kinds_tried(d), loss_note(r));
    return "";
}

std::string detail_of(const probe::TimeWaitFlow& f) {
    const auto& r = f.report();
    const auto& c = f.config();
    if (r.outcome == probe::TwOutcome::ConnectFailed)
        return "the SYN-ACK came after our SYN retransmissions had given up: no connection to test";
    if (!r.peer_closed_first) return "the peer did not close first";
    if (r.outcome == probe::TwOutcome::Reset) return "the peer reset the connection instead of closing it";
    if (r.outcome == probe::TwOutcome::Interrupted) return "interrupted before the test ended";
    switch (c.test) {
        case probe::TwTest::Duration:
            return duration_detail(f);
        case probe::TwTest::Reuse:
            if (r.outcome == probe::TwOutcome::Accepted) return fmt::format("new ISN = old SND.NXT + {}", r.isn_distance.value_or(0));
            if (r.outcome == probe::TwOutcome::Refused) return "TIME-WAIT kept (answered with an ACK)";
            if (r.outcome == probe::TwOutcome::NoTimeWait) return "the new SYN drew a RST: no TIME-WAIT";
            break;
        case probe::TwTest::Rst:
            if (r.outcome == probe::TwOutcome::Killed) return "the probe after the RST got a RST: RFC 1337 not applied";
            if (r.outcome == probe::TwOutcome::Ignored)
                return fmt::format("the probe after each of {} rounds of RSTs got an ACK: TIME-WAIT survived (RFC 1337)", r.rounds);
            break;
        case probe::TwTest::Fin:
            if (r.outcome == probe::TwOutcome::ReAcked) return "our repeated FIN was ACKed (the timer restarts)";
            if (r.outcome == probe::TwOutcome::NoTimeWait) return "our repeated FIN drew a RST: no TIME-WAIT";
            break;
    }
    if (r.outcome == probe::TwOutcome::NoAnswer) return loss_note(r);
    return "";
}

/// The method line of the duration test (text output): how it was measured and why.
std::string method_line(const probe::TwDuration& d) {
    const std::string kind = d.kind() ? std::string(probe::to_string(*d.kind())) : "?";
    auto at = [](std::optional<Duration> x) { return x ? secs(*x) : std::string("?"); };
    switch (d.check()) {
        case probe::TwCheck::Confirmed:
            return fmt::format("duration: series of {} probes; they do not restart the timer: a connection probed once "
                               "was still there at {}, near the series' last answer at {}",
                               kind, at(d.check_offset()), at(d.series_last_alive()));
        case probe::TwCheck::Extended:
            return fmt::format("duration: one probe per connection ({} connections); {} probes restart the timer: a "
                               "connection probed once was {} at {} while the series connection answered until {}",
                               d.engine().probes(), kind, d.check_by_silence() ? "silent" : "gone", at(d.check_offset()),
                               at(d.series_last_alive()));
        case probe::TwCheck::Inconsistent:
            return fmt::format("duration: one probe per connection ({} connections); the series' end was contradicted "
                               "by its own ACK probe",
                               d.engine().probes());
        case probe::TwCheck::Unchecked:
            return d.method() == probe::TwMethod::Lifetime
                       ? fmt::format("duration: one probe per connection ({} connections); the series' end {}, "
                                     "which loss can produce: the connections probed once give the answer",
                                     d.engine().probes(),
                                     d.series_end_confirmed() ? "was not near any connection probed once"
                                                              : "was a silence, not a RST")
                       : fmt::format("duration: series of {} probes; not checked (no connection probed once could tell "
                                     "whether they restart the timer)",
                                     kind);
        case probe::TwCheck::NotRun:
            break;
    }
    return "";
}

std::string kinds_line(const probe::TwDuration& d) {
    std::string out = "probe kinds:";
    for (probe::TwProbe p : probe::tw_probes) {
        const auto& k = d.kind_info(p);
        out += fmt::format(" {} {}", probe::to_string(p),
                           !k.answered  ? std::string("not tried")
                           : *k.answered ? std::string("answered")
                                         : fmt::format("not answered ({} copies)", k.copies));
        if (k.restarts) out += *k.restarts ? " (restarts the timer)" : " (does not restart the timer)";
        out += p == probe::TwProbe::Ack ? "" : ";";
    }
    return out;
}

nlohmann::json opt_us(std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); }
template <class T>
nlohmann::json opt_json(const std::optional<T>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

/// The duration test's own members: method, check, probe kinds, the engine's probes.
void duration_json(const probe::TimeWaitFlow& f, nlohmann::json& t) {
    const probe::TwDuration& d = *f.config().duration;
    const auto b = f.bracket();
    auto kinds = nlohmann::json::array();
    for (probe::TwProbe p : probe::tw_probes)
        kinds.push_back({{"kind", probe::to_string(p)},
                         {"answered", opt_json(d.kind_info(p).answered)},
                         {"restarts", opt_json(d.kind_info(p).restarts)},
                         {"copies", d.kind_info(p).copies}});
    auto probes = nlohmann::json::array();
    for (const auto& m : d.members())
        probes.push_back({{"sport", m.port},
                          {"round", probe::to_string(m.round)},
                          {"offset_us", to_us(m.offset)},
                          {"result", probe::to_string(m.result)},
                          {"segments", m.copies}});
    t["method"] = d.method() == probe::TwMethod::None ? nlohmann::json(nullptr) : nlohmann::json(probe::to_string(d.method()));
    t["check"] = d.check() == probe::TwCheck::NotRun ? nlohmann::json(nullptr) : nlohmann::json(probe::to_string(d.check()));
    t["check_offset_us"] = opt_us(d.check_offset());
    t["series_last_alive_us"] = opt_us(d.series_last_alive());
    t["probe_kind"] = d.kind() ? nlohmann::json(probe::to_string(*d.kind())) : nlohmann::json(nullptr);
    t["probe_kinds"] = std::move(kinds);
    t["lower_us"] = opt_us(b ? std::optional<Duration>{b->first} : std::nullopt);
    t["upper_us"] = opt_us(b ? std::optional<Duration>{b->second} : std::nullopt);
    t["lifetime"] = {{"connections", d.engine().connections()}, {"probed", d.engine().probes()}, {"probes", std::move(probes)}};
}

/// One test's line of the table.
struct TestResult {
    const probe::TimeWaitFlow* flow;
    bool opened;
    Verdict outcome;
};

struct TimeWaitResult {
    Verdict verdict = Verdict::Pending;  ///< the worst test's outcome: the exit status
    Verdict word = Verdict::Pending;     ///< the summary's verdict: the one test's, or observed / no-time-wait
    RunHead head;
    std::string test_word;  ///< --test as given
    std::vector<TestResult> tests;
    std::optional<Duration> measured;
    bool observed = false;
};

std::string to_text(const TimeWaitResult& r) {
    std::string text = fmt::format("\n--- {} time-wait ({}) ---\n", r.head.target, r.test_word);
    text += fmt::format("{:<22} {:<7} {:<15} {}\n", "test", "answer", "outcome", "detail");
    std::string notes;
    for (const auto& t : r.tests) {
        const auto& f = *t.flow;
        text += fmt::format("{:<22} {:<7} {:<15} {}\n", name_of(f), t.opened ? f.report().answer.value_or("-") : "-",
                            to_string(t.outcome), t.opened ? detail_of(f) : connect_line(f.connect_result()));
        if (f.config().test == probe::TwTest::Duration && t.opened && f.config().duration && f.config().duration->kind()) {
            if (auto m = method_line(*f.config().duration); !m.empty()) notes += m + "\n";
            notes += kinds_line(*f.config().duration) + "\n";
        }
    }
    text += fmt::format("TIME-WAIT on the peer: {}{}\n", r.observed ? "observed" : "not observed",
                        r.measured ? fmt::format(", {:.2f} s", to_ms_f(*r.measured) / 1000) : std::string());
    return text + notes;
}

nlohmann::json to_json(const TestResult& t) {
    const auto& f = *t.flow;
    const auto& r = f.report();
    const bool reuse = f.config().test == probe::TwTest::Reuse;
    nlohmann::json j = {{"test", probe::to_string(f.config().test)},
                        {"isn", reuse ? nlohmann::json(probe::to_string(f.config().isn)) : nlohmann::json(nullptr)},
                        {"ts", reuse ? nlohmann::json(probe::to_string(f.config().ts)) : nlohmann::json(nullptr)},
                        {"outcome", to_string(t.outcome)},
                        {"answer", t.opened ? opt_json(r.answer) : nlohmann::json(nullptr)},
                        {"peer_closed_first", r.peer_closed_first},
                        {"duration_us", opt_us(f.duration())},
                        {"resolution_us", opt_us(f.resolution())},
                        {"probes", r.probes},
                        {"retries", r.retries},
                        {"unanswered", r.unanswered},
                        {"end_confirmed", r.end_confirmed},
                        {"new_isn", r.new_isn ? nlohmann::json(r.new_isn->raw()) : nlohmann::json(nullptr)},
                        {"isn_distance", opt_json(r.isn_distance)},
                        {"time_wait_alive_after", opt_json(r.tw_alive_after)},
                        {"rounds", f.config().test == probe::TwTest::Rst ? nlohmann::json(r.rounds) : nlohmann::json(nullptr)},
                        {"connect", connect_json(f.connection())}};
    if (f.config().test == probe::TwTest::Duration) duration_json(f, j);
    return j;
}

nlohmann::json to_json(const TimeWaitResult& r) {
    auto tests = nlohmann::json::array();
    for (const auto& t : r.tests) tests.push_back(to_json(t));
    nlohmann::json summary = to_json(r.head);
    summary.update({{"verdict", to_string(r.word)},
                    {"test", r.test_word},
                    {"tests", tests},
                    {"time_wait", {{"side", r.observed ? nlohmann::json("peer") : nlohmann::json(nullptr)},
                                   {"observed", r.observed},
                                   {"duration_us", opt_us(r.measured)}}}});
    return summary;
}

class TimeWaitJob final : public TypedJob<TimeWaitResult> {
public:
    explicit TimeWaitJob(const TimeWaitOptions& o) : o_(o), prep_(prepare(o)), todo_(plans(o)) {
        request_ = parse_request(o.request);
        max_wait_ = parse_duration(o.max_wait, "--max-wait");
        interval_ = parse_duration(o.probe_interval, "--probe-interval");
        max_duration_ = parse_duration(o.max_duration, "--max-duration");
        if (interval_ < std::chrono::milliseconds{600})
            throw io::UsageError(fmt::format("--probe-interval: '{}' is below 600ms (Linux rate-limits its answers to one per 500 ms)",
                                             o.probe_interval));
        if (max_duration_ < std::chrono::seconds{2})
            throw io::UsageError(fmt::format("--max-duration: '{}' is below 2s (the first connection probed once goes at 2 s)",
                                             o.max_duration));
        const bool with_duration =
            std::any_of(todo_.begin(), todo_.end(), [](const Plan& p) { return p.test == probe::TwTest::Duration; });
        if (todo_.size() > 1 && o.syn.sport) throw io::UsageError("--sport goes with one test (--test all uses a port per test)");
        if (with_duration && o.syn.sport)
            throw io::UsageError("--sport goes with --test reuse, rst or fin (duration uses a port per connection it probes)");
        if (o.test != Test::Reuse && o.test != Test::All && o.isn != probe::TwIsn::Higher)
            throw io::UsageError("--isn higher|lower goes with --test reuse");
        // The duration test's measurement and the connections it probes once.
        if (with_duration) {
            probe::TwDurationConfig dc;
            dc.lifetime.max = max_duration_;
            measurement_ = std::make_shared<probe::TwDuration>(dc);
            coarse_ = measurement_->engine().slots(probe::Round::Coarse);
            fine_ = probe::LifetimeEngine::fine_capacity(dc.lifetime);
        }
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, connections(), prep_.syn.sport, true});
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(connections() > 1);
        for (std::size_t i = 0; i < todo_.size(); ++i) {
            probe::TimeWaitConfig tc = base_config(edge, i);
            tc.test = todo_[i].test;
            tc.isn = todo_[i].isn;
            tc.ts = todo_[i].ts;
            if (tc.test == probe::TwTest::Duration) tc.duration = measurement_;
            auto flow = std::make_unique<probe::TimeWaitFlow>(std::move(tc));
            flows_.push_back(flow.get());
            session.add(edge.clock().now(), std::move(flow));
        }
        std::size_t next_port = todo_.size();
        for (auto [round, count] : {std::pair{probe::Round::Coarse, coarse_}, std::pair{probe::Round::Fine, fine_}}) {
            for (unsigned slot = 0; slot < count; ++slot) {
                probe::TimeWaitConfig tc = base_config(edge, next_port++);
                tc.duration = measurement_;
                tc.slot = std::pair{round, slot};
                session.add(edge.clock().now(), std::make_unique<probe::TimeWaitFlow>(std::move(tc)));
            }
        }
    }

    TimeWaitResult result(const Edge& edge, const RunStats&) override {
        TimeWaitResult r;
        r.head = run_head("time-wait", o_.target, prep_, edge);
        r.test_word = word_of(test_words, o_.test);
        for (const auto* f : flows_) {
            const auto& c = f->connect_result();
            const bool opened = c.verdict == probe::Verdict::Open;
            const Verdict outcome = opened ? verdict_of(f->report().outcome) : verdict_of(c.verdict);
            r.tests.push_back({f, opened, outcome});
            r.observed |= opened && f->time_wait_seen();
            if (f->config().test == probe::TwTest::Duration && f->duration()) r.measured = f->duration();
            // The exit status is the worst test's.
            if (r.tests.size() == 1 || exit_code(outcome) > exit_code(r.verdict)) r.verdict = outcome;
        }
        r.word = flows_.size() == 1 ? r.tests.front().outcome : r.observed ? Verdict::Observed : Verdict::NoTimeWait;
        return r;
    }

private:
    static PreparedTarget prepare(const TimeWaitOptions& o) {
        SynOptions syn = o.syn;
        syn.ts = o.ts != probe::TwTs::None;  // --ts newer|older needs timestamps on the old connection
        return prepare_target(o.target, syn, o.conn);
    }
    std::size_t connections() const { return todo_.size() + coarse_ + fine_; }
    probe::TimeWaitConfig base_config(const Edge& edge, std::size_t i) const {
        probe::TimeWaitConfig tc;
        tc.connect = make_connect_config(prep_, edge, i);
        tc.request = request_;
        tc.max_wait = max_wait_;
        tc.retries = prep_.retries;
        tc.probe_interval = interval_;
        tc.max_duration = max_duration_;
        return tc;
    }

    TimeWaitOptions o_;
    PreparedTarget prep_;
    std::vector<Plan> todo_;
    ByteVec request_;
    Duration max_wait_{}, interval_{}, max_duration_{};
    std::shared_ptr<probe::TwDuration> measurement_;
    unsigned coarse_ = 0, fine_ = 0;
    std::vector<const probe::TimeWaitFlow*> flows_;
};

}  // namespace

CommandSpec time_wait_command() {
    return job_command<TimeWaitOptions, TimeWaitJob>("time-wait", "make the peer close first, then probe its TIME-WAIT on the same 4-tuple",
                                                     options);
}

}  // namespace tcpprobe::app
