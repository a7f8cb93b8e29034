// `tcpprobe handshake HOST:PORT`: option validation, one flow per --count, the run and
// the summary (text and JSON).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/syn.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/handshake.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

std::string negotiated_text(const tcb::Negotiated& n) {
    auto opt_u = [](auto v) { return v ? fmt::format("{}", *v) : std::string("-"); };
    return fmt::format(
        "mss ours {} / peer {} -> effective {} ({} payload bytes per segment); "
        "wscale ours {} / peer {} ({}); sack {}; timestamps {}",
        opt_u(n.our_mss), opt_u(n.peer_mss), n.effective_mss, n.payload_per_segment(), opt_u(n.our_wscale),
        opt_u(n.peer_wscale), n.window_scaling ? "on" : "off", n.sack ? "on" : "off", n.timestamps ? "on" : "off");
}

nlohmann::json negotiated_json(const tcb::Negotiated& n) {
    auto opt = [](auto v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    return {{"mss_ours", opt(n.our_mss)},
            {"mss_peer", opt(n.peer_mss)},
            {"mss_effective", n.effective_mss},
            {"payload_per_segment", n.payload_per_segment()},
            {"wscale_ours", opt(n.our_wscale)},
            {"wscale_peer", opt(n.peer_wscale)},
            {"window_scaling", n.window_scaling},
            {"sack", n.sack},
            {"timestamps", n.timestamps}};
}

struct RttStats {
    double min_us = 0, avg_us = 0, max_us = 0, mdev_us = 0;
};

RttStats rtt_stats(const std::vector<double>& us) {
    RttStats s;
    if (us.empty()) return s;
    s.min_us = *std::min_element(us.begin(), us.end());
    s.max_us = *std::max_element(us.begin(), us.end());
    double sum = 0, sq = 0;
    for (double v : us) {
        sum += v;
        sq += v * v;
    }
    s.avg_us = sum / static_cast<double>(us.size());
    // ping(8)'s mdev: the standard deviation of the samples.
    s.mdev_us = std::sqrt(std::max(0.0, sq / static_cast<double>(us.size()) - s.avg_us * s.avg_us));
    return s;
}

}  // namespace

int run_handshake(const GlobalOptions& g, const HandshakeOptions& o) {
    // Validate everything before touching the network (bad input: nothing is sent).
    Target target = parse_target(o.target);
    Ipv4Addr addr = io::resolve_ipv4(target.host);
    check_target_address(addr.value, o.target);
    SynPlan syn = plan_syn(o.syn);
    const Duration interval = parse_duration(o.interval, "--interval");
    const Duration timeout = parse_duration(o.timeout, "--timeout");
    const Duration linger = parse_duration(o.linger, "--linger");
    const Duration rto = parse_duration(o.rto, "--rto");
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    if (o.count > 1 && o.syn.sport) throw io::UsageError("--sport cannot be combined with --count > 1 (each probe needs its own port)");
    if (timeout <= Duration::zero()) throw io::UsageError("--timeout: must be positive");
    if (o.half_open && o.stale_syn) throw io::UsageError("--half-open and --stale-syn cannot be combined");

    EdgeRequest req{addr, {target.port}, o.count, syn.sport, !o.half_open};
    auto edge = open_edge(g, req);
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(o.count > 1);

    probe::Session session;
    std::vector<const probe::HandshakeFlow*> flows;
    const Instant start = edge->clock.now();
    for (unsigned i = 0; i < o.count; ++i) {
        probe::HandshakeConfig hc;
        hc.connect.tcb = make_tcb_config(syn, {{edge->route.source, edge->sports[i]}, {addr, target.port}},
                                         edge->route.interface, run_rng());
        hc.connect.tcb.rto.initial_rto = rto;
        hc.connect.tcb.rto.max_retries = o.retries;
        hc.connect.rst_guard = edge->guard != nullptr;
        hc.connect.timeout = timeout;
        hc.half_open = o.half_open;
        hc.stale_syn = o.stale_syn;
        hc.stale_isn = hc.connect.tcb.iss + 0x40000000u;  // far from the real ISN, either way round
        hc.linger = linger;
        auto flow = std::make_unique<probe::HandshakeFlow>(std::move(hc));
        flows.push_back(flow.get());
        session.add(start + interval * i, std::move(flow));
    }

    RunStats stats = run_session(session, *edge->sender, *edge->capture, edge->clock, *renderer);
    edge->capture->flush();

    // Summary.
    probe::Verdict verdict = probe::Verdict::Pending;
    std::vector<double> rtts;
    unsigned answered = 0;
    std::size_t anomalies = 0;
    auto probes = nlohmann::json::array();
    std::string text = fmt::format("\n--- {} handshake ---\n", o.target);
    for (const auto* f : flows) {
        const auto& r = f->connect_result();
        verdict = probe::combine(verdict, r.verdict);
        anomalies += r.anomalies.size();
        if (r.verdict == probe::Verdict::Open || r.verdict == probe::Verdict::Closed || r.verdict == probe::Verdict::Unreachable) ++answered;
        if (r.rtt && r.verdict == probe::Verdict::Open) rtts.push_back(static_cast<double>(r.rtt->count()) / 1e3);
        nlohmann::json p = {{"sport", f->tuple().local.port},
                            {"verdict", probe::to_string(r.verdict)},
                            {"rtt_us", r.rtt ? nlohmann::json(to_us(*r.rtt)) : nlohmann::json(nullptr)},
                            {"rtt_ambiguous", r.rtt_ambiguous},
                            {"syns_sent", r.syns_sent},
                            {"isn", f->tcb().iss().raw()},
                            {"irs", r.irs ? nlohmann::json(r.irs->raw()) : nlohmann::json(nullptr)},
                            {"final_state", r.final_state},
                            {"anomalies", r.anomalies}};
        if (r.answer) {
            p["answer"] = {{"flags", format_flags(r.answer->flags)}, {"window", r.answer->window}, {"ttl", r.answer->ip.ttl}};
            p["peer_options"] = options_json(r.peer_options);
            p["peer_options_text"] = format_options(r.peer_options);
        }
        if (r.negotiated) p["negotiated"] = negotiated_json(*r.negotiated);
        if (r.icmp)
            p["icmp"] = {{"type", r.icmp->type}, {"code", r.icmp->code}, {"name", describe_icmp(r.icmp->type, r.icmp->code)},
                         {"from", to_string(r.icmp->reporter)}};
        if (const auto& st = f->stale())
            p["stale_syn"] = {{"first_answered", st->first_answered},
                              {"second_answer", st->second_answer ? nlohmann::json(*st->second_answer) : nlohmann::json(nullptr)},
                              {"second_answer_acks_old", st->second_answer_acks_old},
                              {"reset_sent", st->reset_sent}};
        probes.push_back(p);

        std::string head = o.count > 1 ? fmt::format("[{}] ", f->tuple().local.port) : "";
        text += fmt::format("{}verdict {}", head, probe::to_string(r.verdict));
        if (r.rtt) text += fmt::format(", rtt {:.3f} ms{}", to_ms_f(*r.rtt), r.rtt_ambiguous ? " (ambiguous: SYN retransmitted)" : "");
        if (r.icmp) text += fmt::format(", ICMP {} (type {} code {}) from {}", describe_icmp(r.icmp->type, r.icmp->code),
                                        r.icmp->type, r.icmp->code, to_string(r.icmp->reporter));
        if (r.verdict == probe::Verdict::Filtered) text += fmt::format(", {} SYN(s) unanswered", r.syns_sent);
        text += '\n';
        if (o.count == 1 && r.answer && r.verdict == probe::Verdict::Open)
            text += fmt::format("peer options: <{}>\n", format_options(r.peer_options));
        if (o.count == 1 && r.negotiated) text += fmt::format("negotiated: {}\n", negotiated_text(*r.negotiated));
        if (const auto& st = f->stale())
            text += fmt::format("stale SYN: first answered {}, peer answered the real SYN with {}{}, stale connection reset {}\n",
                                st->first_answered ? "yes" : "no", st->second_answer.value_or("nothing"),
                                st->second_answer_acks_old ? " acknowledging the stale ISN" : "",
                                st->reset_sent ? "yes" : "no");
        for (const auto& a : r.anomalies) text += fmt::format("{}anomaly: {}\n", head, a);
    }
    nlohmann::json summary = {{"command", "handshake"},
                              {"target", o.target},
                              {"address", to_string(addr)},
                              {"source", to_string(edge->route.source)},
                              {"interface", edge->route.interface},
                              {"verdict", probe::to_string(verdict)},
                              {"interrupted", stats.interrupted},
                              {"sent", o.count},
                              {"answered", answered},
                              {"loss_pct", 100.0 * (o.count - answered) / o.count},
                              {"anomalies", anomalies},
                              {"rst_guard", edge->guard != nullptr},
                              {"probes", probes}};
    if (o.count > 1) {
        text += fmt::format("{} probes, {} answered, {:.1f}% loss\n", o.count, answered, 100.0 * (o.count - answered) / o.count);
        if (!rtts.empty()) {
            RttStats s = rtt_stats(rtts);
            text += fmt::format("rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms\n", s.min_us / 1e3, s.avg_us / 1e3,
                                s.max_us / 1e3, s.mdev_us / 1e3);
            summary["rtt"] = {{"min_us", std::llround(s.min_us)}, {"avg_us", std::llround(s.avg_us)},
                              {"max_us", std::llround(s.max_us)}, {"mdev_us", std::llround(s.mdev_us)}};
        }
    }
    if (stats.undecodable) text += fmt::format("{} captured packet(s) could not be decoded\n", stats.undecodable);
    if (stats.interrupted) text += "interrupted\n";
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return probe::exit_code(verdict);
}

}  // namespace tcpprobe::app
