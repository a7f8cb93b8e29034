// `tcpprobe time-wait HOST:PORT`: make the peer close first, then ask its TIME-WAIT
// socket questions (--test duration|reuse|rst|fin|all); `all` runs every test on its
// own connection, concurrently, and prints one table.
#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
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

std::string detail_of(const probe::TimeWaitFlow& f) {
    const auto& r = f.report();
    const auto& c = f.config();
    if (!r.peer_closed_first) return "the peer did not close first";
    switch (c.test) {
        case probe::TwTest::Duration:
            if (auto d = f.duration())
                return fmt::format("TIME-WAIT {:.2f} s +/- {:.2f} s ({} probes{})", to_ms_f(*d) / 1000,
                                   to_ms_f(*f.resolution()) / 1000, r.probes, r.end_confirmed ? ", end confirmed by an ACK probe" : "");
            return fmt::format("{} probes, {} unanswered", r.probes, r.unanswered);
        case probe::TwTest::Reuse:
            if (r.isn_distance) return fmt::format("new ISN = old SND.NXT + {}", *r.isn_distance);
            return r.outcome == "refused" ? "TIME-WAIT kept (answered with an ACK)" : "";
        case probe::TwTest::Rst:
            return r.outcome == "killed" ? "the probe after the RST got a RST: RFC 1337 not applied"
                                         : "the probe after the RST got an ACK: TIME-WAIT survived (RFC 1337)";
        case probe::TwTest::Fin:
            return r.outcome == "re-acked" ? "our repeated FIN was ACKed (the timer restarts)" : "";
    }
    return "";
}

int exit_for(const std::string& outcome) {
    if (outcome == "observed" || outcome == "accepted" || outcome == "refused" || outcome == "killed" ||
        outcome == "ignored" || outcome == "re-acked")
        return 0;
    if (outcome == "no-time-wait" || outcome == "reset") return 1;
    return 2;
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
    if (todo.size() > 1 && o.syn.sport) throw io::UsageError("--sport goes with one test (--test all uses a port per test)");
    if (o.test != "reuse" && o.test != "all" && o.isn != "higher")
        throw io::UsageError("--isn higher|lower goes with --test reuse");

    auto edge = open_edge(g, {{prep.addr}, {prep.target.port}, todo.size(), prep.syn.sport, true});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(todo.size() > 1);
    probe::Session session;
    std::vector<const probe::TimeWaitFlow*> flows;
    for (std::size_t i = 0; i < todo.size(); ++i) {
        probe::TimeWaitConfig tc;
        tc.connect = make_connect_config(prep, *edge, i);
        tc.test = todo[i].test;
        tc.isn = todo[i].isn;
        tc.ts = todo[i].ts;
        tc.request = request;
        tc.max_wait = max_wait;
        tc.probe_interval = interval;
        tc.max_duration = max_duration;
        auto flow = std::make_unique<probe::TimeWaitFlow>(std::move(tc));
        flows.push_back(flow.get());
        session.add(edge->clock.now(), std::move(flow));
    }
    RunStats stats = run_session(session, *edge->sender, *edge->capture, edge->clock, *renderer);
    edge->capture->flush();

    std::string text = fmt::format("\n--- {} time-wait ({}) ---\n", o.target, o.test);
    text += fmt::format("{:<22} {:<7} {:<14} {}\n", "test", "answer", "outcome", "detail");
    auto tests = nlohmann::json::array();
    int code = 0;
    std::optional<Duration> measured;
    bool observed = false;
    for (const auto* f : flows) {
        const auto& r = f->report();
        const auto& c = f->connect_result();
        std::string outcome = c.verdict == probe::Verdict::Open ? r.outcome : std::string(probe::to_string(c.verdict));
        text += fmt::format("{:<22} {:<7} {:<14} {}\n", name_of(*f), r.answer.value_or(r.end_confirmed ? "R" : "-"), outcome,
                            c.verdict == probe::Verdict::Open ? detail_of(*f) : connect_line(c));
        code = std::max(code, c.verdict == probe::Verdict::Open ? exit_for(outcome) : probe::exit_code(c.verdict));
        observed |= r.tw_start.has_value() && r.outcome != "no-time-wait";
        if (f->config().test == probe::TwTest::Duration && f->duration()) measured = f->duration();
        auto opt_us = [](std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); };
        tests.push_back({{"test", probe::to_string(f->config().test)},
                         {"isn", f->config().test == probe::TwTest::Reuse ? nlohmann::json(probe::to_string(f->config().isn)) : nlohmann::json(nullptr)},
                         {"ts", f->config().test == probe::TwTest::Reuse ? nlohmann::json(probe::to_string(f->config().ts)) : nlohmann::json(nullptr)},
                         {"outcome", outcome},
                         {"answer", r.answer ? nlohmann::json(*r.answer) : nlohmann::json(nullptr)},
                         {"peer_closed_first", r.peer_closed_first},
                         {"duration_us", opt_us(f->duration())},
                         {"resolution_us", opt_us(f->resolution())},
                         {"probes", r.probes},
                         {"unanswered", r.unanswered},
                         {"end_confirmed", r.end_confirmed},
                         {"new_isn", r.new_isn ? nlohmann::json(r.new_isn->raw()) : nlohmann::json(nullptr)},
                         {"isn_distance", r.isn_distance ? nlohmann::json(*r.isn_distance) : nlohmann::json(nullptr)},
                         {"time_wait_alive_after", r.tw_alive_after ? nlohmann::json(*r.tw_alive_after) : nlohmann::json(nullptr)},
                         {"connect", connect_json(*f)}});
    }
    const std::string verdict = flows.size() == 1 ? tests[0]["outcome"].get<std::string>() : (observed ? "observed" : "no-time-wait");
    text += fmt::format("TIME-WAIT on the peer: {}{}\n", observed ? "observed" : "not observed",
                        measured ? fmt::format(", {:.2f} s", to_ms_f(*measured) / 1000) : std::string());
    if (stats.interrupted) text += "interrupted\n";
    nlohmann::json summary = summary_head("time-wait", o.target, prep, *edge);
    summary.update({{"verdict", verdict},
                    {"test", o.test},
                    {"interrupted", stats.interrupted},
                    {"tests", tests},
                    {"time_wait", {{"side", observed ? nlohmann::json("peer") : nlohmann::json(nullptr)},
                                   {"observed", observed},
                                   {"duration_us", measured ? nlohmann::json(to_us(*measured)) : nlohmann::json(nullptr)}}}});
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return code;
}

}  // namespace tcpprobe::app
