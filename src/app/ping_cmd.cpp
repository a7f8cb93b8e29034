// `tcpprobe ping HOST:PORTS...`: half-open SYN probes timed at the wire, to one or many
// destinations through one capture and one flow table, at a global pace.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/ping.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

struct Destination {
    std::string host;
    Ipv4Addr addr;
    std::uint16_t port;
};

/// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

struct Tally {
    std::uint64_t sent = 0, synack = 0, rst = 0, icmp = 0, silence = 0;
    std::vector<double> rtt_us;
};

}  // namespace

int run_ping(const GlobalOptions& g, const PingOptions& o) {
    // Everything is validated before the network is touched.
    std::vector<Destination> dests;
    for (const auto& text : o.targets) {
        TargetSpec spec = parse_target_spec(text);
        Ipv4Addr addr = io::resolve_ipv4(spec.host);
        check_target_address(addr.value, text);
        if (io::is_local_broadcast(addr)) throw io::UsageError(fmt::format("target {}: broadcast addresses are refused", text));
        for (auto p : spec.ports) dests.push_back({spec.host, addr, p});
    }
    if (dests.empty()) throw io::UsageError("ping: no target given (HOST:PORTS)");
    const SynPlan syn = plan_syn(o.syn);
    if (syn.sport) throw io::UsageError("--sport: ping picks one source port per lane");
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    const Duration timeout = parse_duration(o.timeout, "--timeout");
    Duration spacing = parse_duration(o.interval, "--interval");
    if (o.rate) {
        if (!(*o.rate > 0) || *o.rate > 10'000'000) throw io::UsageError(fmt::format("--rate: {} is not in (0, 10000000] probes per second", *o.rate));
        spacing = Duration{static_cast<std::int64_t>(1e9 / *o.rate)};
    }
    if (o.flood) spacing = Duration::zero();
    if (timeout <= Duration::zero()) throw io::UsageError("--timeout: must be positive");

    // Lanes per destination: enough for the pace (probes in flight = rate x timeout), no more.
    const double per_dest_rate = spacing > Duration::zero() ? 1e9 / static_cast<double>(spacing.count()) / static_cast<double>(dests.size())
                                                            : 1e12;
    std::size_t lanes_per = static_cast<std::size_t>(std::ceil(per_dest_rate * static_cast<double>(timeout.count()) / 1e9)) + 1;
    lanes_per = std::clamp<std::size_t>(lanes_per, 1, std::min<std::size_t>(o.count, o.flood ? 64 : 256));
    const std::size_t total_lanes = lanes_per * dests.size();
    if (total_lanes > 20000) throw io::UsageError(fmt::format("{} destinations x {} lanes need too many source ports; lower --rate or split the run", dests.size(), lanes_per));

    std::vector<Ipv4Addr> addrs;
    std::vector<std::uint16_t> ports;
    for (const auto& d : dests) {
        if (std::find(addrs.begin(), addrs.end(), d.addr) == addrs.end()) addrs.push_back(d.addr);
        if (std::find(ports.begin(), ports.end(), d.port) == ports.end()) ports.push_back(d.port);
    }
    auto edge = open_edge(g, {addrs, ports, total_lanes, std::nullopt, false, true});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(true);

    probe::Session session;
    const Instant start = edge->clock().now();
    auto plan = std::make_shared<probe::PingPlan>(start, spacing, dests.size(), o.count);
    std::vector<const probe::PingLane*> lanes;
    std::size_t port_index = 0;
    for (std::size_t lane = 0; lane < lanes_per; ++lane)
        for (std::size_t d = 0; d < dests.size(); ++d) {
            probe::PingLaneConfig pc;
            pc.tcb = make_tcb_config(syn, {{edge->route.source, edge->sports.at(port_index++)}, {dests[d].addr, dests[d].port}},
                                     edge->route.interface, run_rng());
            pc.destination = d;
            pc.timeout = timeout;
            pc.events = !o.flood;
            auto flow = std::make_unique<probe::PingLane>(std::move(pc), plan);
            lanes.push_back(flow.get());
            session.add(start, std::move(flow));
        }
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    // Tally per destination and overall.
    std::vector<Tally> per(dests.size());
    Tally all;
    std::uint64_t kernel_rsts = 0, late = 0;
    for (const auto* l : lanes) {
        kernel_rsts += l->kernel_rsts();
        late += l->late();
        for (const auto& p : l->probes()) {
            for (Tally* t : {&per[l->destination()], &all}) {
                ++t->sent;
                switch (p.result) {
                    case probe::ProbeResult::SynAck: ++t->synack; break;
                    case probe::ProbeResult::Rst: ++t->rst; break;
                    case probe::ProbeResult::Icmp: ++t->icmp; break;
                    case probe::ProbeResult::Silence:
                    case probe::ProbeResult::Pending: ++t->silence; break;
                }
                if (p.rtt_ns >= 0) t->rtt_us.push_back(static_cast<double>(p.rtt_ns) / 1e3);
            }
        }
    }
    auto stats_json = [](Tally& t) {
        std::sort(t.rtt_us.begin(), t.rtt_us.end());
        RttStats s = rtt_stats(t.rtt_us);
        nlohmann::json j = {{"sent", t.sent}, {"answered", t.synack + t.rst + t.icmp}, {"syn_ack", t.synack}, {"rst", t.rst},
                            {"icmp", t.icmp}, {"silence", t.silence},
                            {"loss_pct", t.sent ? 100.0 * static_cast<double>(t.silence) / static_cast<double>(t.sent) : 0.0}};
        if (!t.rtt_us.empty())
            j["rtt"] = {{"min_us", std::llround(s.min_us)}, {"avg_us", std::llround(s.avg_us)}, {"max_us", std::llround(s.max_us)},
                        {"mdev_us", std::llround(s.mdev_us)}, {"p50_us", std::llround(percentile(t.rtt_us, 50))},
                        {"p90_us", std::llround(percentile(t.rtt_us, 90))}, {"p99_us", std::llround(percentile(t.rtt_us, 99))}};
        return j;
    };
    auto stats_text = [](const Tally& t) {
        std::string s = fmt::format("{} sent, {} SYN-ACK, {} RST, {} ICMP, {} silent ({:.1f}% loss)", t.sent, t.synack, t.rst,
                                    t.icmp, t.silence, t.sent ? 100.0 * static_cast<double>(t.silence) / static_cast<double>(t.sent) : 0.0);
        if (!t.rtt_us.empty()) {
            RttStats r = rtt_stats(t.rtt_us);
            s += fmt::format("\n  rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms, p50/p90/p99 = {:.3f}/{:.3f}/{:.3f} ms",
                             r.min_us / 1e3, r.avg_us / 1e3, r.max_us / 1e3, r.mdev_us / 1e3, percentile(t.rtt_us, 50) / 1e3,
                             percentile(t.rtt_us, 90) / 1e3, percentile(t.rtt_us, 99) / 1e3);
        }
        return s;
    };
    auto verdict_of = [](const Tally& t) {
        if (t.synack) return probe::Verdict::Open;
        if (t.rst) return probe::Verdict::Closed;
        if (t.icmp) return probe::Verdict::Unreachable;
        return probe::Verdict::Filtered;
    };

    std::string text = "\n--- ping ---\n";
    auto list = nlohmann::json::array();
    probe::Verdict verdict = probe::Verdict::Pending;
    for (std::size_t d = 0; d < dests.size(); ++d) {
        std::sort(per[d].rtt_us.begin(), per[d].rtt_us.end());
        probe::Verdict v = verdict_of(per[d]);
        verdict = probe::combine(verdict, v);
        text += fmt::format("{}:{} ({}): {}, {}\n", dests[d].host, dests[d].port, to_string(dests[d].addr), probe::to_string(v),
                            stats_text(per[d]));
        nlohmann::json j = stats_json(per[d]);
        j.update({{"target", fmt::format("{}:{}", dests[d].host, dests[d].port)}, {"address", to_string(dests[d].addr)},
                  {"port", dests[d].port}, {"verdict", probe::to_string(v)}});
        list.push_back(j);
    }
    std::sort(all.rtt_us.begin(), all.rtt_us.end());
    if (dests.size() > 1) text += fmt::format("all: {}\n", stats_text(all));
    if (kernel_rsts) text += fmt::format("({} RSTs from the local kernel seen and not counted as ours)\n", kernel_rsts);
    if (late) text += fmt::format("{} late or stray answers ignored\n", late);
    if (stats.capture_drops) text += fmt::format("the capture lost {} packet(s): some probes counted silent were answered\n", stats.capture_drops);
    if (stats.interrupted) text += "interrupted\n";
    const double elapsed = to_ms_f(edge->clock().now() - start) / 1000;
    nlohmann::json summary = {{"command", "ping"},
                              {"target", fmt::format("{}", fmt::join(o.targets, " "))},
                              {"source", to_string(edge->route.source)},
                              {"interface", edge->route.interface},
                              {"verdict", probe::to_string(verdict)},
                              {"interrupted", stats.interrupted},
                              {"lanes", total_lanes},
                              {"kernel_rsts", kernel_rsts},
                              {"late", late},
                              {"undecodable", stats.undecodable},
                              {"capture_drops", stats.capture_drops},
                              {"elapsed_us", static_cast<std::int64_t>(elapsed * 1e6)},
                              {"destinations", nullptr}};
    summary["destinations"] = std::move(list);
    summary.update(stats_json(all));
    renderer->summary(text, std::move(summary));
    if (stats.interrupted) return exit_status::interrupted;
    return exit_code(app::verdict_of(verdict));
}

}  // namespace tcpprobe::app
