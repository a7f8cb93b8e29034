// Shared summary pieces and run preparation (see report.hpp).
#include "tcpprobe/app/report.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/route.hpp"
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

std::string anomaly_lines(const probe::ConnectResult& r, const std::string& head) {
    std::string text;
    std::uint64_t listed = 0;
    for (std::size_t i = 0; i < r.anomalies.size(); ++i) {
        const std::uint64_t n = i < r.anomaly_counts.size() ? r.anomaly_counts[i] : 1;
        listed += n;
        text += n > 1 ? fmt::format("{}anomaly: {} ({} times)\n", head, r.anomalies[i], n)
                      : fmt::format("{}anomaly: {}\n", head, r.anomalies[i]);
    }
    if (r.anomaly_total > listed)
        text += fmt::format("{}anomaly: {} more of other kinds (only counted)\n", head, r.anomaly_total - listed);
    return text;
}

nlohmann::json connect_json(const probe::Connection& f) {
    const auto& r = f.result();
    nlohmann::json p = {{"sport", f.tuple().local.port},
                        {"verdict", probe::to_string(r.verdict)},
                        {"rtt_us", r.rtt ? nlohmann::json(to_us(*r.rtt)) : nlohmann::json(nullptr)},
                        {"rtt_ambiguous", r.rtt_ambiguous},
                        {"syns_sent", r.syns_sent},
                        {"isn", f.tcb().iss().raw()},
                        {"irs", r.irs ? nlohmann::json(r.irs->raw()) : nlohmann::json(nullptr)},
                        {"final_state", r.final_state},
                        {"interrupted", r.interrupted},
                        {"anomalies", r.anomalies},
                        {"anomaly_counts", r.anomaly_counts},
                        {"anomaly_total", r.anomaly_total}};
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

namespace {
std::string end_text(const probe::ScheduleFit& fit, const std::string& what) {
    switch (fit.end) {
        case probe::ScheduleEnd::Open: return "the end was not seen";
        case probe::ScheduleEnd::PeerRst: return "ended by the peer's RST";
        case probe::ScheduleEnd::Confirmed: return fmt::format("ended: a liveness probe found the {} state gone", what);
        case probe::ScheduleEnd::Silence: return "ended by silence (unconfirmed: no liveness probe was answered)";
    }
    return "?";
}
}  // namespace

nlohmann::json schedule_json(const probe::ScheduleEvidence& ev, const probe::ScheduleFit& fit, const std::string& sysctl) {
    auto us = [](const std::vector<Duration>& v) {
        auto a = nlohmann::json::array();
        for (auto d : v) a.push_back(to_us(d));
        return a;
    };
    auto rel = nlohmann::json::array();
    for (auto t : ev.copies) rel.push_back(to_us(t - ev.copies.front()));
    auto opt_us = [](std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); };
    auto from_first = [&](std::optional<Duration> d) {
        return d ? nlohmann::json(to_us(*d - fit.first_copy_at)) : nlohmann::json(nullptr);
    };
    auto missing = nlohmann::json::array();
    for (const auto& m : fit.missing)
        missing.push_back({{"index", m.index}, {"at_us", to_us(m.at - fit.first_copy_at)}, {"trailing", m.trailing}});
    auto probes = nlohmann::json::array();
    const Duration first = ev.copies.empty() ? Duration{} : ev.copies.front();
    for (const auto& p : ev.probes) probes.push_back({{"at_us", to_us(p.at - first)}, {"answer", probe::to_string(p.answer)}});
    return {{"transmissions", ev.copies.size()},
            {"times_us", rel},
            {"gaps_us", us(fit.gaps)},
            {"expected_gaps_us", us(fit.expected)},
            {"within_tolerance", fit.within_tolerance},
            {"initial_rto_us", opt_us(fit.initial_rto)},
            {"backoff", fit.backoff ? nlohmann::json(*fit.backoff) : nlohmann::json(nullptr)},
            {"backoff_kind", fit.fitted ? nlohmann::json(probe::to_string(fit.backoff_kind)) : nlohmann::json(nullptr)},
            {"linear_gaps", fit.linear_gaps},
            {"retransmissions", fit.retransmissions},
            {"exponential", fit.exponential},
            {"missing", missing},
            {"probes", probes},
            {"end", probe::to_string(fit.end)},
            {"held_until_us", from_first(fit.held_until)},
            {"gone_by_us", from_first(fit.gone_by)},
            {"copies_sent", fit.copies_sent ? nlohmann::json(*fit.copies_sent) : nlohmann::json(nullptr)},
            {"give_up_after_us", opt_us(fit.give_up_after)},
            {"linux_like", fit.linux_like},
            {"linux_mismatch", fit.linux_mismatch},
            {"family", fit.family.empty() ? nlohmann::json(nullptr) : nlohmann::json(fit.family)},
            {"family_matched", fit.family_matched},
            {"family_mismatched", fit.family_mismatched},
            {"notes", fit.notes},
            {"candidates", fit.retries_candidates},
            {"inferred", fit.inferred_retries ? nlohmann::json{{"sysctl", sysctl}, {"value", *fit.inferred_retries}}
                                              : nlohmann::json(nullptr)}};
}

std::string schedule_text(const probe::ScheduleEvidence& ev, const probe::ScheduleFit& fit, const std::string& sysctl,
                          const std::string& what) {
    std::string t;
    if (ev.copies.empty()) return t;
    const Duration first = ev.copies.front();
    // Observed copies and lost ones, in time order.
    std::size_t mi = 0;
    auto lost_line = [&](const probe::MissingCopy& m) {
        return fmt::format("   -  +{:10.3f} ms  copy #{} missing{}\n", to_ms_f(m.at - fit.first_copy_at), m.index,
                           m.trailing ? " (the peer still held the state after it: lost on the path)" : " (lost on the path)");
    };
    for (std::size_t i = 0; i < ev.copies.size(); ++i) {
        while (mi < fit.missing.size() && fit.copy_index.size() == ev.copies.size() && fit.missing[mi].index < fit.copy_index[i])
            t += lost_line(fit.missing[mi++]);
        t += fmt::format("  {:>2}  +{:10.3f} ms", i, to_ms_f(ev.copies[i] - first));
        if (i > 0 && i - 1 < fit.expected.size())
            t += fmt::format("  gap {:9.3f} ms  (model {:9.3f} ms, {})", to_ms_f(fit.gaps[i - 1]), to_ms_f(fit.expected[i - 1]),
                             fit.within_tolerance[i - 1] ? "within tolerance" : "OUT of tolerance");
        else if (i > 0)
            t += fmt::format("  gap {:9.3f} ms", to_ms_f(fit.gaps[i - 1]));
        t += '\n';
    }
    while (mi < fit.missing.size()) t += lost_line(fit.missing[mi++]);
    if (!ev.probes.empty()) {
        t += "liveness probes:";
        for (const auto& p : ev.probes) t += fmt::format(" {} at +{:.3f} s;", probe::to_string(p.answer), to_ms_f(p.at - first) / 1000);
        t.back() = '\n';
    }
    if (fit.fitted) {
        t += fmt::format("initial RTO {:.3f} ms, backoff {}", to_ms_f(*fit.initial_rto), probe::to_string(fit.backoff_kind));
        if (fit.backoff) t += fmt::format(" (x{:.2f})", *fit.backoff);
        t += fmt::format(", {} retransmission(s) seen", fit.retransmissions);
        if (!fit.missing.empty()) t += fmt::format(", {} lost on the path", fit.missing.size());
        t += '\n';
    } else if (fit.retransmissions > 0) {
        t += fmt::format("{} retransmission(s) seen; no backoff model fits the gaps\n", fit.retransmissions);
    }
    if (fit.linear_gaps > 1)
        t += fmt::format("the first {} gaps are linear, then doubling (Linux 6.7+ spaces early SYN retransmissions linearly)\n",
                         fit.linear_gaps);
    t += end_text(fit, what) + '\n';
    if (fit.inferred_retries) {
        t += fmt::format("inferred: {} = {} (Linux signature: initial RTO, doubling, silent give-up at the next expiry), "
                         "the peer gives up {:.3f} s after its first {}\n",
                         sysctl, *fit.inferred_retries, to_ms_f(*fit.give_up_after) / 1000, what);
        return t;
    }
    if (fit.copies_sent) t += fmt::format("the peer sent {} retransmission(s) in all (lost ones included)\n", *fit.copies_sent);
    if (fit.linux_like && fit.retries_candidates.size() > 1) {
        t += fmt::format("no {} inferred: Linux's signature, but its give-up fits {} = {} alike (at this RTO these "
                         "settings give up at the same expiry; runs at another RTO can tell them apart: follow-up runs, --ack-delay)\n",
                         sysctl, sysctl, fmt::join(fit.retries_candidates, " or "));
        return t;
    }
    t += fmt::format("no {} inferred: Linux's signature not shown", sysctl);
    for (std::size_t i = 0; i < fit.linux_mismatch.size(); ++i) t += (i ? "; " : " (") + fit.linux_mismatch[i];
    t += fit.linux_mismatch.empty() ? "\n" : ")\n";
    if (!fit.family.empty()) {
        t += fmt::format("family: {} (matched:", fit.family);
        for (const auto& m : fit.family_matched) t += " " + m + ";";
        t.back() = ')';
        for (const auto& m : fit.family_mismatched) t += "; not checked: " + m;
        t += '\n';
    } else if (fit.fitted) {
        t += "family: no known family";
        for (const auto& m : fit.family_mismatched) t += " (" + m + ")";
        t += '\n';
    }
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

RunHead run_head(const std::string& command, const std::string& target_text, const PreparedTarget& p, const Edge& edge) {
    return {command, target_text, p.addr, edge.route.source, edge.route.interface, edge.rst_guard,
            edge.rst_guard_kind};
}

nlohmann::json to_json(const RunHead& h) {
    return {{"command", h.command},
            {"target", h.target},
            {"address", to_string(h.address)},
            {"source", to_string(h.source)},
            {"interface", h.interface},
            {"rst_guard", h.rst_guard},
            {"rst_guard_kind", h.rst_guard_kind.empty() ? nlohmann::json(nullptr) : nlohmann::json(h.rst_guard_kind)}};
}

}  // namespace tcpprobe::app
