// `tcpprobe handshake HOST:PORT`: one flow per --count, the run and the summary.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/handshake.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

int run_handshake(const GlobalOptions& g, const HandshakeOptions& o) {
    // Validate everything before touching the network (bad input: nothing is sent).
    // Every HOST:PORTS expands to destinations; each gets --count flows of its own.
    std::vector<PreparedTarget> dests;
    std::vector<std::string> names;
    for (const auto& text : o.targets) {
        TargetSpec spec = parse_target_spec(text);
        for (auto port : spec.ports) {
            std::string one = fmt::format("{}:{}", spec.host, port);
            dests.push_back(prepare_target(one, o.syn, o.conn));
            names.push_back(one);
        }
    }
    if (dests.empty()) throw io::UsageError("handshake: no target given (HOST:PORTS)");
    const PreparedTarget& prep = dests.front();
    const std::string target_text = fmt::format("{}", fmt::join(o.targets, " "));
    const Duration interval = parse_duration(o.interval, "--interval");
    const Duration linger = parse_duration(o.linger, "--linger");
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    const std::size_t total = dests.size() * o.count;
    if (total > 1 && o.syn.sport) throw io::UsageError("--sport goes with one handshake only (each flow needs its own port)");
    if (o.half_open && o.stale_syn) throw io::UsageError("--half-open and --stale-syn cannot be combined");

    std::vector<Ipv4Addr> addrs;
    std::vector<std::uint16_t> ports;
    for (const auto& d : dests) {
        if (std::find(addrs.begin(), addrs.end(), d.addr) == addrs.end()) addrs.push_back(d.addr);
        if (std::find(ports.begin(), ports.end(), d.target.port) == ports.end()) ports.push_back(d.target.port);
    }
    auto edge = open_edge(g, {addrs, ports, total, prep.syn.sport, !o.half_open});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(total > 1);

    probe::Session session;
    std::vector<const probe::HandshakeFlow*> flows;
    std::vector<std::size_t> dest_of;
    const Instant start = edge->clock().now();
    for (std::size_t i = 0; i < total; ++i) {
        // Round k of --count reaches every destination together (within the global pace).
        const std::size_t d = i % dests.size(), round = i / dests.size();
        probe::HandshakeConfig hc;
        hc.connect = make_connect_config(dests[d], *edge, i);
        hc.half_open = o.half_open;
        hc.connect.kernel_rst_expected = o.half_open && !edge->rst_guard;
        hc.stale_syn = o.stale_syn;
        hc.stale_isn = hc.connect.tcb.iss + 0x40000000u;  // far from the real ISN, either way round
        hc.linger = linger;
        auto flow = std::make_unique<probe::HandshakeFlow>(std::move(hc));
        flows.push_back(flow.get());
        dest_of.push_back(d);
        session.add(start + interval * static_cast<std::int64_t>(round), std::move(flow));
    }

    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    probe::Verdict verdict = probe::Verdict::Pending;
    std::vector<double> rtts;
    unsigned answered = 0;
    std::size_t anomalies = 0;
    auto probes = nlohmann::json::array();
    std::string text = fmt::format("\n--- {} handshake ---\n", target_text);
    for (std::size_t i = 0; i < flows.size(); ++i) {
        const auto* f = flows[i];
        const auto& r = f->connect_result();
        verdict = probe::combine(verdict, r.verdict);
        anomalies += r.anomalies.size();
        if (r.verdict == probe::Verdict::Open || r.verdict == probe::Verdict::Closed || r.verdict == probe::Verdict::Unreachable) ++answered;
        if (r.rtt && r.verdict == probe::Verdict::Open) rtts.push_back(static_cast<double>(to_us(*r.rtt)));
        nlohmann::json p = connect_json(*f);
        p["target"] = names[dest_of[i]];
        if (const auto& st = f->stale())
            p["stale_syn"] = {{"first_answered", st->first_answered},
                              {"second_answer", st->second_answer ? nlohmann::json(*st->second_answer) : nlohmann::json(nullptr)},
                              {"second_answer_acks_old", st->second_answer_acks_old},
                              {"reset_sent", st->reset_sent}};
        probes.push_back(p);

        std::string head = total > 1 ? fmt::format("[{}] {} ", f->tuple().local.port, names[dest_of[i]]) : "";
        text += head + connect_line(r) + '\n';
        if (total == 1 && r.answer && r.verdict == probe::Verdict::Open)
            text += fmt::format("peer options: <{}>\n", format_options(r.peer_options));
        if (total == 1 && r.negotiated) text += fmt::format("negotiated: {}\n", negotiated_text(*r.negotiated));
        if (const auto& st = f->stale())
            text += fmt::format("stale SYN: first answered {}, peer answered the real SYN with {}{}, stale connection reset {}\n",
                                st->first_answered ? "yes" : "no", st->second_answer.value_or("nothing"),
                                st->second_answer_acks_old ? " acknowledging the stale ISN" : "",
                                st->reset_sent ? "yes" : "no");
        for (const auto& a : r.anomalies) text += fmt::format("{}anomaly: {}\n", head, a);
    }
    nlohmann::json summary = summary_head("handshake", target_text, prep, *edge);
    summary.update({{"verdict", probe::to_string(verdict)},
                    {"interrupted", stats.interrupted},
                    {"sent", total},
                    {"answered", answered},
                    {"loss_pct", 100.0 * static_cast<double>(total - answered) / static_cast<double>(total)},
                    {"anomaly_count", anomalies},
                    {"capture_drops", stats.capture_drops}});
    summary["probes"] = std::move(probes);
    if (total > 1) {
        text += fmt::format("{} handshakes, {} answered, {:.1f}% loss\n", total, answered,
                            100.0 * static_cast<double>(total - answered) / static_cast<double>(total));
        if (!rtts.empty()) {
            RttStats s = rtt_stats(rtts);
            text += fmt::format("rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms\n", s.min_us / 1e3, s.avg_us / 1e3,
                                s.max_us / 1e3, s.mdev_us / 1e3);
            summary["rtt"] = {{"min_us", std::llround(s.min_us)}, {"avg_us", std::llround(s.avg_us)},
                              {"max_us", std::llround(s.max_us)}, {"mdev_us", std::llround(s.mdev_us)}};
        }
    }
    if (stats.undecodable) text += fmt::format("{} captured packet(s) could not be decoded\n", stats.undecodable);
    if (stats.capture_drops) text += fmt::format("the capture lost {} packet(s): some verdicts may be wrong\n", stats.capture_drops);
    if (stats.interrupted) text += "interrupted\n";
    renderer->summary(text, std::move(summary));
    if (stats.interrupted) return exit_status::interrupted;
    return exit_code(verdict_of(verdict));
}

}  // namespace tcpprobe::app
