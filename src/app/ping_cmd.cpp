// `tcpprobe ping HOST:PORTS...`: half-open SYN probes timed at the wire, to one or many
// destinations through one capture and one flow table, at a global pace.
#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/route.hpp"
#include "tcpprobe/probe/ping.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

void options(CLI::App& cmd, PingOptions& pg) {
    add_targets(cmd, pg.targets, "host:80");
    add_syn_options(cmd, pg.syn, true, false);  // ping picks a source port per lane
    number(cmd, "-c,--count", pg.count, "probes per destination (default 5)");
    cmd.add_option("--interval", pg.interval, "time between probes over the whole run (default 1s)")->type_name("DURATION");
    cmd.add_option_function<double>("--rate", [&pg](const double& v) { pg.rate = v; }, "probes per second over the whole run")
        ->type_name("PPS");
    cmd.add_flag("--flood", pg.flood, "as fast as the sender allows (bounded by --count); no per-probe lines");
    cmd.add_option("-W,--timeout", pg.timeout, "a probe unanswered this long is lost (default 1s)")->type_name("DURATION");
}

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

/// What the report shows of a set of RTTs.
struct RttSummary {
    RttStats stats;
    double p50_us = 0, p90_us = 0, p99_us = 0;
};

/// Sorts `us` and summarises it.
RttSummary summarize_rtts(std::vector<double>& us) {
    std::sort(us.begin(), us.end());
    return {rtt_stats(us), percentile(us, 50), percentile(us, 90), percentile(us, 99)};
}

/// Probe counts and the RTT summary of one destination or of the whole run. The RTTs
/// themselves are summarised once and let go (1,000,000 probes: 8 MB each copy).
struct Tally {
    std::uint64_t sent = 0, synack = 0, rst = 0, icmp = 0, silence = 0;
    std::optional<RttSummary> rtt;  ///< none: no probe was answered
    void count(const probe::PingTally::Destination& d) {
        sent += d.sent;
        synack += d.synack;
        rst += d.rst;
        icmp += d.icmp;
        silence += d.silence;
    }
    double loss_pct() const { return sent ? 100.0 * static_cast<double>(silence) / static_cast<double>(sent) : 0.0; }
    probe::Verdict verdict() const {
        if (synack) return probe::Verdict::Open;
        if (rst) return probe::Verdict::Closed;
        if (icmp) return probe::Verdict::Unreachable;
        return probe::Verdict::Filtered;
    }
};

nlohmann::json to_json(const Tally& t) {
    nlohmann::json j = {{"sent", t.sent}, {"answered", t.synack + t.rst + t.icmp}, {"syn_ack", t.synack}, {"rst", t.rst},
                        {"icmp", t.icmp}, {"silence", t.silence}, {"loss_pct", t.loss_pct()}};
    if (t.rtt) {
        const RttStats& s = t.rtt->stats;
        j["rtt"] = {{"min_us", std::llround(s.min_us)}, {"avg_us", std::llround(s.avg_us)}, {"max_us", std::llround(s.max_us)},
                    {"mdev_us", std::llround(s.mdev_us)}, {"p50_us", std::llround(t.rtt->p50_us)},
                    {"p90_us", std::llround(t.rtt->p90_us)}, {"p99_us", std::llround(t.rtt->p99_us)}};
    }
    return j;
}

std::string to_text(const Tally& t) {
    std::string s = fmt::format("{} sent, {} SYN-ACK, {} RST, {} ICMP, {} silent ({:.1f}% loss)", t.sent, t.synack, t.rst,
                                t.icmp, t.silence, t.loss_pct());
    if (t.rtt) {
        const RttStats& r = t.rtt->stats;
        s += fmt::format("\n  rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms, p50/p90/p99 = {:.3f}/{:.3f}/{:.3f} ms",
                         r.min_us / 1e3, r.avg_us / 1e3, r.max_us / 1e3, r.mdev_us / 1e3, t.rtt->p50_us / 1e3,
                         t.rtt->p90_us / 1e3, t.rtt->p99_us / 1e3);
    }
    return s;
}

struct PingResult {
    Verdict verdict = Verdict::Pending;
    std::string target;
    Ipv4Addr source;
    std::string interface;
    std::vector<Destination> dests;
    std::vector<Tally> per;  ///< per destination
    Tally all;
    std::size_t lanes = 0;
    std::uint64_t kernel_rsts = 0, late = 0, icmp_advisories = 0, resent = 0;
    bool kernel_rsts_seen = true;  ///< false: the raw-socket capture cannot see them
    RunStats stats;
    Duration elapsed{};
};

nlohmann::json to_json(const PingResult& r) {
    nlohmann::json summary = {{"command", "ping"},
                              {"target", r.target},
                              {"source", to_string(r.source)},
                              {"interface", r.interface},
                              {"verdict", to_string(r.verdict)},
                              {"lanes", r.lanes},
                              // null: the raw-socket capture does not see the kernel's packets
                              {"kernel_rsts", r.kernel_rsts_seen ? nlohmann::json(r.kernel_rsts) : nlohmann::json()},
                              {"late", r.late},
                              {"icmp_advisories", r.icmp_advisories},
                              {"resent", r.resent},
                              {"undecodable", r.stats.undecodable},
                              {"capture_drops", r.stats.capture_drops},
                              {"elapsed_us", static_cast<std::int64_t>(to_ms_f(r.elapsed) / 1000 * 1e6)}};
    summary.update(to_json(r.all));
    return summary;
}

/// "destinations": one object per destination, made as it is written.
JsonList json_list(std::shared_ptr<const PingResult> r) {
    const std::size_t n = r->dests.size();
    return {"destinations", n, [r = std::move(r)](std::size_t d) {
                nlohmann::json j = to_json(r->per[d]);
                j.update({{"target", fmt::format("{}:{}", r->dests[d].host, r->dests[d].port)},
                          {"address", to_string(r->dests[d].addr)},
                          {"port", r->dests[d].port},
                          {"verdict", probe::to_string(r->per[d].verdict())}});
                return j;
            }};
}

std::string to_text(const PingResult& r) {
    std::string text = "\n--- ping ---\n";
    for (std::size_t d = 0; d < r.dests.size(); ++d)
        text += fmt::format("{}:{} ({}): {}, {}\n", r.dests[d].host, r.dests[d].port, to_string(r.dests[d].addr),
                            probe::to_string(r.per[d].verdict()), to_text(r.per[d]));
    if (r.dests.size() > 1) text += fmt::format("all: {}\n", to_text(r.all));
    if (r.kernel_rsts) text += fmt::format("({} RSTs from the local kernel seen and not counted as ours)\n", r.kernel_rsts);
    if (r.late) text += fmt::format("{} late or stray answers ignored\n", r.late);
    if (r.resent)
        text += fmt::format("{} probe(s) sent again: the peer still held the lane's previous half-open connection "
                            "(a SYN-ACK, or the local kernel's RST to it, was lost) and acknowledged it instead\n",
                            r.resent);
    if (r.icmp_advisories)
        text += fmt::format("{} ICMP redirect or source-quench message(s) ignored: they say a SYN was forwarded, "
                            "not dropped\n", r.icmp_advisories);
    if (r.stats.capture_drops)
        text += fmt::format("the capture lost {} packet(s) or send times: some probes counted silent may have been answered\n",
                            r.stats.capture_drops);
    return text;
}

class PingJob final : public TypedJob<PingResult> {
public:
    explicit PingJob(const PingOptions& o) : o_(o), syn_(plan_syn(o.syn)) {
        // Everything is validated before the network is touched.
        for (const auto& text : o.targets) {
            TargetSpec spec = parse_target_spec(text);
            Ipv4Addr addr = io::resolve_ipv4(spec.host);
            check_target_address(addr.value, text);
            if (io::is_local_broadcast(addr)) throw io::UsageError(fmt::format("target {}: broadcast addresses are refused", text));
            for (auto p : spec.ports) dests_.push_back({spec.host, addr, p});
        }
        if (dests_.empty()) throw io::UsageError("ping: no target given (HOST:PORTS)");
        if (syn_.sport) throw io::UsageError("--sport: ping picks one source port per lane");
        if (o.count < 1) throw io::UsageError("--count: must be at least 1");
        timeout_ = parse_duration(o.timeout, "--timeout");
        spacing_ = parse_duration(o.interval, "--interval");
        if (o.rate) {
            if (!(*o.rate > 0) || *o.rate > 10'000'000)
                throw io::UsageError(fmt::format("--rate: {} is not in (0, 10000000] probes per second", *o.rate));
            spacing_ = Duration{static_cast<std::int64_t>(1e9 / *o.rate)};
        }
        if (o.flood) spacing_ = Duration::zero();
        if (timeout_ <= Duration::zero()) throw io::UsageError("--timeout: must be positive");

        // Lanes per destination: enough for the pace (probes in flight = rate x timeout), no
        // more. A quarter more than the average in flight absorbs late answers; below one
        // probe in flight per destination, one lane each (any free lane takes the next
        // ticket, so the lanes together carry rate x timeout): 10,000 ports need 10,000
        // source ports, not 20,000.
        const double per_dest_rate = spacing_ > Duration::zero()
                                         ? 1e9 / static_cast<double>(spacing_.count()) / static_cast<double>(dests_.size())
                                         : 1e12;
        lanes_per_ = static_cast<std::size_t>(std::ceil(1.25 * per_dest_rate * static_cast<double>(timeout_.count()) / 1e9));
        lanes_per_ = std::clamp<std::size_t>(lanes_per_, 1, std::min<std::size_t>(o.count, o.flood ? 64 : 256));
        if (lanes_per_ * dests_.size() > 20000)
            throw io::UsageError(fmt::format("{} destinations x {} lanes need too many source ports; lower --rate or split the run",
                                             dests_.size(), lanes_per_));
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        std::vector<Ipv4Addr> addrs;
        std::vector<std::uint16_t> ports;
        for (const auto& d : dests_) {
            if (std::find(addrs.begin(), addrs.end(), d.addr) == addrs.end()) addrs.push_back(d.addr);
            if (std::find(ports.begin(), ports.end(), d.port) == ports.end()) ports.push_back(d.port);
        }
        return open_edge(g, {addrs, ports, lanes_per_ * dests_.size(), std::nullopt, false, true, false});
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(true);
        start_ = edge.clock().now();
        auto plan = std::make_shared<probe::PingPlan>(start_, spacing_, dests_.size(), o_.count);
        tally_ = std::make_shared<probe::PingTally>(dests_.size());
        // Every lane sends the same SYN but for its tuple and ISN: one segment maker for all.
        auto syn_maker = std::make_shared<tcb::Tcb>(make_tcb_config(
            syn_, {{edge.route.source, edge.sports.at(0)}, {dests_[0].addr, dests_[0].port}}, edge.route.interface, run_rng()));
        auto ip_ids = std::make_shared<probe::IpIds>(syn_maker->config().ip.id);
        std::size_t port_index = 0;
        for (std::size_t lane = 0; lane < lanes_per_; ++lane)
            for (std::size_t d = 0; d < dests_.size(); ++d) {
                probe::PingLaneConfig pc;
                pc.tuple = {{edge.route.source, edge.sports.at(port_index++)}, {dests_[d].addr, dests_[d].port}};
                pc.iss = syn_.isn.value_or(Seq{static_cast<std::uint32_t>(run_rng()())});
                pc.syn_maker = syn_maker;
                pc.ip_ids = ip_ids;
                pc.destination = d;
                pc.timeout = timeout_;
                pc.events = !o_.flood;
                auto flow = std::make_unique<probe::PingLane>(std::move(pc), plan, tally_);
                lanes_.push_back(flow.get());
                session.add(start_, std::move(flow));
            }
    }

    PingResult result(const Edge& edge, const RunStats& stats) override {
        PingResult r;
        r.target = fmt::format("{}", fmt::join(o_.targets, " "));
        r.source = edge.route.source;
        r.interface = edge.route.interface;
        r.dests = dests_;
        r.per.resize(dests_.size());
        r.lanes = lanes_.size();
        r.stats = stats;
        r.kernel_rsts_seen = !edge.raw_capture;
        for (const auto* l : lanes_) {
            r.kernel_rsts += l->kernel_rsts();
            r.late += l->late();
            r.icmp_advisories += l->icmp_advisories();
            r.resent += l->held();
        }
        probe::Verdict verdict = probe::Verdict::Pending;
        std::vector<double> all_us, us;
        for (std::size_t d = 0; d < dests_.size(); ++d) {
            auto& td = tally_->at(d);
            r.per[d].count(td);
            r.all.count(td);
            us.clear();
            for (auto ns : td.rtt_ns) us.push_back(static_cast<double>(ns) / 1e3);
            td.rtt_ns = {};  // each RTT is held once more (all_us), not three times
            all_us.insert(all_us.end(), us.begin(), us.end());
            if (!us.empty()) r.per[d].rtt = summarize_rtts(us);
            verdict = probe::combine(verdict, r.per[d].verdict());
        }
        if (!all_us.empty()) r.all.rtt = summarize_rtts(all_us);
        r.verdict = verdict_of(verdict);
        r.elapsed = edge.clock().now() - start_;
        return r;
    }

private:
    PingOptions o_;
    SynPlan syn_;
    std::vector<Destination> dests_;
    Duration timeout_{}, spacing_{};
    std::size_t lanes_per_ = 1;
    Instant start_{};
    std::vector<const probe::PingLane*> lanes_;
    std::shared_ptr<probe::PingTally> tally_;
};

}  // namespace

CommandSpec ping_command() {
    return make_command<PingOptions>("ping", "half-open SYN probes timed at the wire, to one or many HOST:PORTS", options,
                                     [](const GlobalOptions&, const PingOptions& o) { return std::make_unique<PingJob>(o); });
}

}  // namespace tcpprobe::app
