// `tcpprobe time-wait HOST:PORT`: make the peer close first, then ask its TIME-WAIT
// socket questions (--test duration|reuse|rst|fin|all); `all` runs every test on its
// own connection, concurrently, and prints one table. The duration test brings the
// connections of the lifetime engine along (each probed once, on a port of its own).
#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/time_wait.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

struct Plan {
    probe::TwTest test;
    probe::TwIsn isn = probe::TwIsn::Higher;
    probe::TwTs ts = probe::TwTs::Newer;
};

probe::TwIsn parse_isn(const std::string& v) {
    if (v == "higher") return probe::TwIsn::Higher;
    if (v == "lower") return probe::TwIsn::Lower;
    throw io::UsageError(fmt::format("--isn: '{}' is not higher or lower", v));
}

probe::TwTs parse_ts(const std::string& v) {
    if (v == "newer") return probe::TwTs::Newer;
    if (v == "older") return probe::TwTs::Older;
    if (v == "none") return probe::TwTs::None;
    throw io::UsageError(fmt::format("--ts: '{}' is not newer, older or none", v));
}

std::vector<Plan> plans(const TimeWaitOptions& o) {
    using probe::TwIsn;
    using probe::TwTest;
    using probe::TwTs;
    if (o.test == "all")
        return {{TwTest::Duration},
                {TwTest::Reuse, TwIsn::Higher, TwTs::Newer},
                {TwTest::Reuse, TwIsn::Lower, TwTs::None},
                {TwTest::Reuse, TwIsn::Lower, TwTs::Newer},
                {TwTest::Reuse, TwIsn::Higher, TwTs::Older},  // PAWS
                {TwTest::Rst},
                {TwTest::Fin}};
    if (o.test == "duration") return {{TwTest::Duration}};
    if (o.test == "reuse") return {{TwTest::Reuse, parse_isn(o.isn), parse_ts(o.ts)}};
    if (o.test == "rst") return {{TwTest::Rst}};
    if (o.test == "fin") return {{TwTest::Fin}};
    throw io::UsageError(fmt::format("--test: '{}' is not duration, reuse, rst, fin or all", o.test));
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
                return fmt::format("the probe after each of {} RSTs got an ACK: TIME-WAIT survived (RFC 1337)", r.rounds);
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

}  // namespace

int run_time_wait(const GlobalOptions& g, const TimeWaitOptions& o) {
    SynOptions syn = o.syn;
    syn.ts = o.ts != "none";  // --ts newer|older needs timestamps on the old connection
    PreparedTarget prep = prepare_target(o.target, syn, o.conn);
    const std::vector<Plan> todo = plans(o);
    const ByteVec request = parse_request(o.request);
    const Duration max_wait = parse_duration(o.max_wait, "--max-wait");
    const Duration interval = parse_duration(o.probe_interval, "--probe-interval");
    const Duration max_duration = parse_duration(o.max_duration, "--max-duration");
    if (interval < std::chrono::milliseconds{600})
        throw io::UsageError(fmt::format("--probe-interval: '{}' is below 600ms (Linux rate-limits its answers to one per 500 ms)",
                                         o.probe_interval));
    if (max_duration < std::chrono::seconds{2})
        throw io::UsageError(fmt::format("--max-duration: '{}' is below 2s (the first connection probed once goes at 2 s)",
                                         o.max_duration));
    const bool with_duration = std::any_of(todo.begin(), todo.end(), [](const Plan& p) { return p.test == probe::TwTest::Duration; });
    if (todo.size() > 1 && o.syn.sport) throw io::UsageError("--sport goes with one test (--test all uses a port per test)");
    if (with_duration && o.syn.sport)
        throw io::UsageError("--sport goes with --test reuse, rst or fin (duration uses a port per connection it probes)");
    if (o.test != "reuse" && o.test != "all" && o.isn != "higher")
        throw io::UsageError("--isn higher|lower goes with --test reuse");

    // The duration test's measurement and the connections it probes once.
    std::shared_ptr<probe::TwDuration> measurement;
    unsigned coarse = 0, fine = 0;
    if (with_duration) {
        probe::TwDurationConfig dc;
        dc.lifetime.max = max_duration;
        measurement = std::make_shared<probe::TwDuration>(dc);
        coarse = measurement->engine().slots(probe::Round::Coarse);
        fine = probe::LifetimeEngine::fine_capacity(dc.lifetime);
    }
    const std::size_t connections = todo.size() + coarse + fine;

    auto edge = open_edge(g, {{prep.addr}, {prep.target.port}, connections, prep.syn.sport, true});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(connections > 1);
    probe::Session session;
    std::vector<const probe::TimeWaitFlow*> flows;
    auto base_config = [&](std::size_t i) {
        probe::TimeWaitConfig tc;
        tc.connect = make_connect_config(prep, *edge, i);
        tc.request = request;
        tc.max_wait = max_wait;
        tc.probe_interval = interval;
        tc.max_duration = max_duration;
        return tc;
    };
    for (std::size_t i = 0; i < todo.size(); ++i) {
        probe::TimeWaitConfig tc = base_config(i);
        tc.test = todo[i].test;
        tc.isn = todo[i].isn;
        tc.ts = todo[i].ts;
        if (tc.test == probe::TwTest::Duration) tc.duration = measurement;
        auto flow = std::make_unique<probe::TimeWaitFlow>(std::move(tc));
        flows.push_back(flow.get());
        session.add(edge->clock().now(), std::move(flow));
    }
    std::size_t next_port = todo.size();
    for (auto [round, count] : {std::pair{probe::Round::Coarse, coarse}, std::pair{probe::Round::Fine, fine}}) {
        for (unsigned slot = 0; slot < count; ++slot) {
            probe::TimeWaitConfig tc = base_config(next_port++);
            tc.duration = measurement;
            tc.slot = std::pair{round, slot};
            session.add(edge->clock().now(), std::make_unique<probe::TimeWaitFlow>(std::move(tc)));
        }
    }
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    std::string text = fmt::format("\n--- {} time-wait ({}) ---\n", o.target, o.test);
    text += fmt::format("{:<22} {:<7} {:<15} {}\n", "test", "answer", "outcome", "detail");
    auto tests = nlohmann::json::array();
    int code = 0;
    std::optional<Duration> measured;
    bool observed = false;
    std::string notes;
    for (const auto* f : flows) {
        const auto& r = f->report();
        const auto& c = f->connect_result();
        const bool opened = c.verdict == probe::Verdict::Open;
        const Verdict outcome = opened ? verdict_of(r.outcome) : verdict_of(c.verdict);
        text += fmt::format("{:<22} {:<7} {:<15} {}\n", name_of(*f), opened ? r.answer.value_or("-") : "-", to_string(outcome),
                            opened ? detail_of(*f) : connect_line(c));
        code = std::max(code, exit_code(outcome));
        observed |= opened && f->time_wait_seen();
        const bool dur = f->config().test == probe::TwTest::Duration;
        if (dur && f->duration()) measured = f->duration();
        if (dur && opened && f->config().duration && f->config().duration->kind()) {
            if (auto m = method_line(*f->config().duration); !m.empty()) notes += m + "\n";
            notes += kinds_line(*f->config().duration) + "\n";
        }
        const bool reuse = f->config().test == probe::TwTest::Reuse;
        nlohmann::json t = {{"test", probe::to_string(f->config().test)},
                            {"isn", reuse ? nlohmann::json(probe::to_string(f->config().isn)) : nlohmann::json(nullptr)},
                            {"ts", reuse ? nlohmann::json(probe::to_string(f->config().ts)) : nlohmann::json(nullptr)},
                            {"outcome", to_string(outcome)},
                            {"answer", opened ? opt_json(r.answer) : nlohmann::json(nullptr)},
                            {"peer_closed_first", r.peer_closed_first},
                            {"duration_us", opt_us(f->duration())},
                            {"resolution_us", opt_us(f->resolution())},
                            {"probes", r.probes},
                            {"retries", r.retries},
                            {"unanswered", r.unanswered},
                            {"end_confirmed", r.end_confirmed},
                            {"new_isn", r.new_isn ? nlohmann::json(r.new_isn->raw()) : nlohmann::json(nullptr)},
                            {"isn_distance", opt_json(r.isn_distance)},
                            {"time_wait_alive_after", opt_json(r.tw_alive_after)},
                            {"rounds", f->config().test == probe::TwTest::Rst ? nlohmann::json(r.rounds) : nlohmann::json(nullptr)},
                            {"connect", connect_json(*f)}};
        if (dur) duration_json(*f, t);
        tests.push_back(std::move(t));
    }
    const std::string verdict = flows.size() == 1 ? tests[0]["outcome"].get<std::string>()
                                                  : std::string(to_string(observed ? Verdict::Observed : Verdict::NoTimeWait));
    text += fmt::format("TIME-WAIT on the peer: {}{}\n", observed ? "observed" : "not observed",
                        measured ? fmt::format(", {:.2f} s", to_ms_f(*measured) / 1000) : std::string());
    text += notes;
    if (stats.interrupted) text += "interrupted\n";
    nlohmann::json summary = summary_head("time-wait", o.target, prep, *edge);
    summary.update({{"verdict", verdict},
                    {"test", o.test},
                    {"interrupted", stats.interrupted},
                    {"tests", tests},
                    {"time_wait", {{"side", observed ? nlohmann::json("peer") : nlohmann::json(nullptr)},
                                   {"observed", observed},
                                   {"duration_us", opt_us(measured)}}}});
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return code;
}

}  // namespace tcpprobe::app
