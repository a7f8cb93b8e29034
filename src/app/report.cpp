// Shared summary pieces and run preparation (see report.hpp).
#include "tcpprobe/app/report.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/wire/icmp.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

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

nlohmann::json connect_json(const probe::ConnectionFlow& f) {
    const auto& r = f.connect_result();
    nlohmann::json p = {{"sport", f.tuple().local.port},
                        {"verdict", probe::to_string(r.verdict)},
                        {"rtt_us", r.rtt ? nlohmann::json(to_us(*r.rtt)) : nlohmann::json(nullptr)},
                        {"rtt_ambiguous", r.rtt_ambiguous},
                        {"syns_sent", r.syns_sent},
                        {"isn", f.tcb().iss().raw()},
                        {"irs", r.irs ? nlohmann::json(r.irs->raw()) : nlohmann::json(nullptr)},
                        {"final_state", r.final_state},
                        {"interrupted", r.interrupted},
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
    return p;
}

std::string connect_line(const probe::ConnectResult& r) {
    std::string text = fmt::format("verdict {}", probe::to_string(r.verdict));
    if (r.rtt) text += fmt::format(", rtt {:.3f} ms{}", to_ms_f(*r.rtt), r.rtt_ambiguous ? " (ambiguous: SYN retransmitted)" : "");
    if (r.icmp)
        text += fmt::format(", ICMP {} (type {} code {}) from {}", describe_icmp(r.icmp->type, r.icmp->code), r.icmp->type,
                            r.icmp->code, to_string(r.icmp->reporter));
    if (r.verdict == probe::Verdict::Filtered) text += fmt::format(", {} SYN(s) unanswered", r.syns_sent);
    return text;
}

nlohmann::json schedule_json(const std::vector<Instant>& times, const probe::ScheduleFit& fit, const std::string& sysctl) {
    auto us = [](const std::vector<Duration>& v) {
        auto a = nlohmann::json::array();
        for (auto d : v) a.push_back(to_us(d));
        return a;
    };
    auto rel = nlohmann::json::array();
    for (auto t : times) rel.push_back(to_us(t - times.front()));
    auto opt_us = [](std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); };
    return {{"transmissions", times.size()},
            {"times_us", rel},
            {"gaps_us", us(fit.gaps)},
            {"expected_gaps_us", us(fit.expected)},
            {"within_tolerance", fit.within_tolerance},
            {"initial_rto_us", opt_us(fit.initial_rto)},
            {"backoff", fit.backoff ? nlohmann::json(*fit.backoff) : nlohmann::json(nullptr)},
            {"linear_gaps", fit.linear_gaps},
            {"retransmissions", fit.retransmissions},
            {"exponential", fit.exponential},
            {"give_up_after_us", opt_us(fit.give_up_after)},
            {"inferred", fit.inferred_retries ? nlohmann::json{{"sysctl", sysctl}, {"value", *fit.inferred_retries}}
                                              : nlohmann::json(nullptr)}};
}

std::string schedule_text(const std::vector<Instant>& times, const probe::ScheduleFit& fit, const std::string& sysctl,
                          const std::string& what, const std::string& end) {
    std::string t;
    for (std::size_t i = 0; i < times.size(); ++i) {
        t += fmt::format("  {:>2}  +{:10.3f} ms", i, to_ms_f(times[i] - times.front()));
        if (i > 0)
            t += fmt::format("  gap {:9.3f} ms  (model {:9.3f} ms, {})", to_ms_f(fit.gaps[i - 1]), to_ms_f(fit.expected[i - 1]),
                             fit.within_tolerance[i - 1] ? "within tolerance" : "OUT of tolerance");
        t += '\n';
    }
    if (fit.retransmissions == 0) return t;
    t += fmt::format("initial RTO {:.3f} ms", to_ms_f(*fit.initial_rto));
    if (fit.backoff) t += fmt::format(", backoff x{:.2f}", *fit.backoff);
    t += fmt::format(", {} retransmission(s), ended by {}\n", fit.retransmissions, end);
    if (fit.linear_gaps > 1)
        t += fmt::format("the first {} gaps are linear, then doubling (Linux 6.7+ spaces early SYN retransmissions linearly)\n",
                         fit.linear_gaps);
    if (fit.inferred_retries)
        t += fmt::format("inferred: {} = {} (Linux-like doubling), the peer gives up {:.3f} s after its first {}\n", sysctl,
                         *fit.inferred_retries, to_ms_f(*fit.give_up_after) / 1000, what);
    else if (!fit.exponential)
        t += "not a doubling schedule within the tolerance: no setting inferred\n";
    else
        t += "the end was not seen (max-wait or interrupted): no setting inferred\n";
    return t;
}

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

PreparedTarget prepare_target(const std::string& target, const SynOptions& syn, const ConnectOptions& conn) {
    PreparedTarget p;
    p.target = parse_target(target);
    p.addr = io::resolve_ipv4(p.target.host);
    check_target_address(p.addr.value, target);
    if (io::is_local_broadcast(p.addr)) throw io::UsageError(fmt::format("target {}: broadcast addresses are refused", target));
    p.syn = plan_syn(syn);
    p.timeout = parse_duration(conn.timeout, "--timeout");
    p.rto = parse_duration(conn.rto, "--rto");
    p.retries = conn.retries;
    if (p.timeout <= Duration::zero()) throw io::UsageError("--timeout: must be positive");
    if (p.rto <= Duration::zero()) throw io::UsageError("--rto: must be positive");
    return p;
}

probe::ConnectConfig make_connect_config(const PreparedTarget& p, const Edge& edge, std::size_t i) {
    probe::ConnectConfig c;
    c.tcb = make_tcb_config(p.syn, {{edge.route.source, edge.sports.at(i)}, {p.addr, p.target.port}}, edge.route.interface,
                            run_rng());
    c.tcb.rto.initial_rto = p.rto;
    c.tcb.rto.max_retries = p.retries;
    c.timeout = p.timeout;
    return c;
}

nlohmann::json summary_head(const std::string& command, const std::string& target_text, const PreparedTarget& p,
                            const Edge& edge) {
    return {{"command", command},
            {"target", target_text},
            {"address", to_string(p.addr)},
            {"source", to_string(edge.route.source)},
            {"interface", edge.route.interface},
            {"rst_guard", edge.guard != nullptr}};
}

}  // namespace tcpprobe::app
