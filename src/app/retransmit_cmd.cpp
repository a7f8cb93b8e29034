// `tcpprobe retransmit HOST:PORT`: the peer's SYN-ACK or FIN retransmission schedule,
// measured at the wire, fitted against exponential backoff, with the inferred Linux
// setting; --count repeats it on fresh source ports and summarises the spread.
#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/retransmit.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

std::string sysctl_for(const probe::RetransmitConfig& c) {
    return c.segment == probe::RetxSegment::SynAck ? "tcp_synack_retries" : "tcp_orphan_retries";
}

/// Why a peer may not retransmit at all.
std::vector<std::string> no_retransmission_causes(const probe::RetransmitConfig& c) {
    if (c.segment == probe::RetxSegment::SynAck)
        return {"SYN cookies (tcp_syncookies=2, or under SYN flood): the server keeps no state to retransmit from",
                "a SYN proxy or load balancer in front answers the SYN itself",
                "tcp_synack_retries=0"};
    return {"the peer never sent a FIN to retransmit", "tcp_orphan_retries set very low, or the peer reset instead",
            "a middlebox acknowledged the FIN on our behalf"};
}

nlohmann::json run_json(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    nlohmann::json j = schedule_json(r.times, r.fit, sysctl_for(f.config()));
    j.update({{"sport", f.tuple().local.port},
              {"end", r.end},
              {"trailing_rst", r.rst_at.has_value()},
              {"cleanup_sent", r.cleanup_sent}});
    if (!r.times.empty() && r.fit.retransmissions == 0 && r.end == "silence")
        j["no_retransmission_causes"] = no_retransmission_causes(f.config());
    return j;
}

std::string run_text(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    const std::string what = f.config().segment == probe::RetxSegment::SynAck ? "SYN-ACK" : "FIN";
    if (r.times.empty()) return fmt::format("no {} seen ({})\n", what, r.end);
    std::string t = schedule_text(r.times, r.fit, sysctl_for(f.config()), what, r.end);
    if (r.rst_at) t += fmt::format("  RST +{:.3f} ms after the first {}\n", to_ms_f(*r.rst_at - r.times.front()), what);
    if (r.fit.retransmissions == 0 && r.end == "silence") {
        t += fmt::format("no retransmission of the {} ({}). Likely causes:\n", what, r.end);
        for (const auto& c : no_retransmission_causes(f.config())) t += fmt::format("  - {}\n", c);
    }
    if (f.config().segment == probe::RetxSegment::Fin && r.fit.inferred_retries)
        t += "  (orphaned sockets stop on time, not count: (2^(N+1)-1) x 200 ms after the first retransmission)\n";
    return t;
}

}  // namespace

int run_retransmit(const GlobalOptions& g, const RetransmitOptions& o) {
    PreparedTarget prep = prepare_target(o.target, o.syn, o.conn);
    probe::RetransmitConfig base;
    if (o.segment == "synack") base.segment = probe::RetxSegment::SynAck;
    else if (o.segment == "fin") base.segment = probe::RetxSegment::Fin;
    else throw io::UsageError(fmt::format("--segment: '{}' is not synack or fin", o.segment));
    if (o.peer_closes_first && base.segment != probe::RetxSegment::Fin)
        throw io::UsageError("--peer-closes-first goes with --segment fin");
    base.peer_closes_first = o.peer_closes_first;
    base.request = o.request.empty() ? ByteVec{} : parse_request(o.request);
    if (o.peer_closes_first && base.request.empty())
        throw io::UsageError("--peer-closes-first needs --request (something that makes the peer close, e.g. 'GET / HTTP/1.0\\r\\n\\r\\n')");
    base.idle = parse_duration(o.idle, "--idle");
    base.max_wait = parse_duration(o.max_wait, "--max-wait");
    auto tol = probe::parse_tolerance(o.tolerance);
    if (!tol) throw io::UsageError(fmt::format("--tolerance: '{}' is not e.g. 50ms, 10% or 50ms,10%", o.tolerance));
    base.tolerance = *tol;
    base.cleanup = !o.no_cleanup;
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    if (o.count > 1 && o.syn.sport) throw io::UsageError("--sport cannot be combined with --count > 1");

    auto edge = open_edge(g, {{prep.addr}, {prep.target.port}, o.count, prep.syn.sport, true});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(o.count > 1);
    probe::Session session;
    session.set_sequential(true);
    std::vector<const probe::RetransmitFlow*> flows;
    for (unsigned i = 0; i < o.count; ++i) {
        probe::RetransmitConfig rc = base;
        rc.connect = make_connect_config(prep, *edge, i);
        auto flow = std::make_unique<probe::RetransmitFlow>(std::move(rc));
        flows.push_back(flow.get());
        session.add(edge->clock.now(), std::move(flow));
    }
    RunStats stats = run_session(session, *edge->sender, *edge->capture, edge->clock, *renderer);
    edge->capture->flush();

    std::string text = fmt::format("\n--- {} retransmit ({}{}) ---\n", o.target, o.segment,
                                   o.peer_closes_first ? ", peer closes first" : "");
    auto runs = nlohmann::json::array();
    probe::Verdict connect = probe::Verdict::Pending;
    bool any_inferred = false, any_retx = false;
    for (const auto* f : flows) {
        connect = probe::combine(connect, f->connect_result().verdict);
        if (o.count > 1) text += fmt::format("[{}]\n", f->tuple().local.port);
        if (f->connect_result().verdict != probe::Verdict::Open) {
            text += fmt::format("connect: {}\n", connect_line(f->connect_result()));
        } else {
            text += run_text(*f);
        }
        nlohmann::json run = run_json(*f);
        run["connect"] = connect_json(*f);
        runs.push_back(run);
        any_inferred |= f->report().fit.inferred_retries.has_value();
        any_retx |= f->report().fit.retransmissions > 0;
    }
    // The spread over runs, gap by gap.
    nlohmann::json spread = nlohmann::json::array();
    if (o.count > 1) {
        std::size_t most = 0;
        for (const auto* f : flows) most = std::max(most, f->report().fit.gaps.size());
        text += "spread over runs:\n";
        for (std::size_t i = 0; i < most; ++i) {
            std::vector<Duration> v;
            for (const auto* f : flows)
                if (i < f->report().fit.gaps.size()) v.push_back(f->report().fit.gaps[i]);
            std::sort(v.begin(), v.end());
            Duration med = v[v.size() / 2];
            text += fmt::format("  gap {}: min {:.3f} median {:.3f} max {:.3f} ms ({} runs)\n", i + 1, to_ms_f(v.front()),
                                to_ms_f(med), to_ms_f(v.back()), v.size());
            spread.push_back({{"gap", i + 1}, {"min_us", to_us(v.front())}, {"median_us", to_us(med)}, {"max_us", to_us(v.back())}, {"runs", v.size()}});
        }
    }
    std::string verdict;
    if (connect != probe::Verdict::Open) verdict = std::string(probe::to_string(connect));
    else if (any_inferred) verdict = "inferred";
    else if (any_retx) verdict = "measured";
    else verdict = "no-retransmission";
    text += fmt::format("verdict {}\n", verdict);
    if (stats.interrupted) text += "interrupted\n";

    nlohmann::json summary = summary_head("retransmit", o.target, prep, *edge);
    summary.update({{"verdict", verdict},
                    {"segment", o.segment},
                    {"peer_closes_first", o.peer_closes_first},
                    {"interrupted", stats.interrupted},
                    {"tolerance", {{"floor_us", to_us(base.tolerance.floor)}, {"percent", base.tolerance.percent}}},
                    {"runs", runs},
                    {"spread", spread}});
    // The first run's inference at the top level, as DESIGN §1 spells it.
    summary["inferred"] = runs.empty() ? nlohmann::json(nullptr) : runs[0]["inferred"];
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    if (connect != probe::Verdict::Open) return probe::exit_code(connect);
    return any_retx ? 0 : 1;
}

}  // namespace tcpprobe::app
