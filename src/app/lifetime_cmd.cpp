// `tcpprobe fin-wait-2 HOST:PORT` and `tcpprobe idle HOST:PORT --max-idle DURATION`:
// one measurement of the lifetime engine, each connection on a source port of its own
// and probed once (probe/lifetime_flow.hpp); one summary with the bracket. The two
// commands share this job; only their options, defaults and words differ.
#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/keepalive.hpp"
#include "tcpprobe/probe/lifetime_flow.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;
using probe::LifetimeSubject;

namespace {

/// The options of both commands, in the order --help lists them; only the words differ.
template <LifetimeSubject S>
void lifetime_options(CLI::App& cmd, LifetimeOptions& o) {
    constexpr bool fw2 = S == LifetimeSubject::FinWait2;
    add_target(cmd, o.target);
    add_syn_options(cmd, o.syn, true, false);  // a source port per connection
    add_connect_options(cmd, o.conn);
    auto request = [&](const char* what) { cmd.add_option("--request", o.request, what)->type_name("TEXT|@FILE"); };
    if (fw2) {
        request("what makes the peer close first (default an HTTP/1.0 GET): TEXT with escapes, or @FILE");
        cmd.add_option("--max-wait", o.max_wait, "longest wait for the peer to close first (default 10s)")->type_name("DURATION");
    }
    cmd.add_option(fw2 ? "--max-duration" : "--max-idle", o.max_duration,
                   fw2 ? "the longest FIN-WAIT-2 looked for; still there then: no bound seen (default 150s)"
                       : "the longest idle time tried; still carried then: no timeout seen (default 300s)")
        ->type_name("DURATION");
    cmd.add_option("--resolution", o.resolution,
                   fw2 ? "widest bracket the fine round leaves (default 500ms)" : "widest bracket the fine round leaves (default 2s)")
        ->type_name("DURATION");
    if (!fw2) {
        cmd.add_flag("--data", o.data, "probe with one byte of new data instead of a keepalive-style ACK");
        request("data to send once connected (default none): TEXT with escapes, or @FILE");
    }
}

std::string secs(Duration d) { return fmt::format("{:.2f} s", to_ms_f(d) / 1000); }
nlohmann::json opt_us(std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); }

std::string rst_text(const probe::RstOrigin& o) {
    switch (o.from) {
        case probe::RstFrom::Peer: return fmt::format("a RST from the peer ({})", o.why);
        case probe::RstFrom::Middlebox: return fmt::format("a RST from something between us and the peer ({})", o.why);
        case probe::RstFrom::Unknown: break;
    }
    return fmt::format("a RST ({})", o.why);
}

struct LifetimeResult {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    LifetimeSubject subject = LifetimeSubject::FinWait2;
    std::shared_ptr<const probe::LifetimeRun> run;
    probe::LifetimeBracket bracket;
    Duration max{};
    std::string max_name;
    std::string probe_word;
    probe::Verdict connect = probe::Verdict::Pending;
    std::optional<unsigned> inferred;  ///< tcp_fin_timeout
};

/// The outcome of a measurement as a verdict.
Verdict judge(const probe::LifetimeRun& run, probe::Verdict connect, Duration max) {
    const auto b = run.engine().bracket();
    const bool fw2 = run.subject() == LifetimeSubject::FinWait2;
    if (run.members().empty())
        return connect == probe::Verdict::Open || connect == probe::Verdict::Pending ? Verdict::Incomplete : verdict_of(connect);
    if (!b.consistent()) return Verdict::Inconsistent;
    if (b.closed()) {
        if (fw2) return b.end_confirmed() ? Verdict::Measured : Verdict::SilentEnd;
        return Verdict::Forgotten;
    }
    // Alive at the last coarse offset (max): nothing ended it within the time given.
    if (b.alive && !b.upper() && *b.alive + std::chrono::seconds{1} >= max) return fw2 ? Verdict::NoBound : Verdict::NoTimeout;
    return Verdict::Inconclusive;
}

std::string to_text(const LifetimeResult& r) {
    const auto& b = r.bracket;
    const bool fw2 = r.subject == LifetimeSubject::FinWait2;
    const auto* gone = r.run->first_gone();
    std::string text = fmt::format("\n--- {} {} ---\n", r.head.target, probe::to_string(r.subject));
    switch (r.verdict) {
        case Verdict::Measured:
        case Verdict::SilentEnd:
        case Verdict::Forgotten: {
            const std::string end = b.end_confirmed() ? (gone && gone->rst ? rst_text(*gone->rst) : std::string("a RST"))
                                                      : std::string("silence (the probe and its copies unanswered)");
            text += fmt::format("{} {} +/- {}: between {} and {} (one probe per connection, {} connections); its end: {}\n",
                                fw2 ? "FIN-WAIT-2" : "idle timeout of the path", secs(*b.estimate()), secs(*b.width() / 2),
                                secs(*b.alive), secs(*b.upper()), r.run->engine().probes(), end);
            break;
        }
        case Verdict::NoBound:
            text += fmt::format("FIN-WAIT-2: no bound seen: still there after {} ({}); the application may have used "
                                "shutdown(SHUT_WR) instead of close()\n", secs(*b.alive), r.max_name);
            break;
        case Verdict::NoTimeout:
            text += fmt::format("the path still carried a connection idle for {} ({}): no idle timeout up to there\n",
                                secs(*b.alive), r.max_name);
            break;
        case Verdict::Inconsistent:
            text += "the connections disagree (one alive after another was gone)\n";
            break;
        default:
            if (r.run->members().empty())
                text += fmt::format("no connection entered the state: {}\n",
                                    r.run->failures().empty() ? std::string(probe::to_string(r.connect)) : r.run->failures().front());
            else
                text += "no bracket: the probes could not tell\n";
            break;
    }
    if (r.inferred) text += fmt::format("inferred: tcp_fin_timeout = {} (Linux: it answers a late FIN with a RST)\n", *r.inferred);
    else if (r.verdict == Verdict::Measured && fw2)
        text += "tcp_fin_timeout not inferred: more than one whole second fits the bracket (Linux's timer slack)\n";
    for (const auto& a : r.run->anomalies()) text += "anomaly: " + a + "\n";
    return text;
}

nlohmann::json to_json(const LifetimeResult& r) {
    const auto& b = r.bracket;
    const auto* gone = r.run->first_gone();
    auto probes = nlohmann::json::array();
    for (const auto& m : r.run->members())
        probes.push_back({{"sport", m.port},
                          {"round", probe::to_string(m.round)},
                          {"offset_us", to_us(m.offset)},
                          {"result", probe::to_string(m.result)},
                          {"segments", m.segments},
                          {"rst_from", m.rst ? nlohmann::json(probe::to_string(m.rst->from)) : nlohmann::json(nullptr)}});
    nlohmann::json rst = nullptr;
    if (gone && gone->rst)
        rst = {{"from", probe::to_string(gone->rst->from)},
               {"ttl", gone->rst->ttl},
               {"peer_ttl", gone->rst->peer_ttl ? nlohmann::json(*gone->rst->peer_ttl) : nlohmann::json(nullptr)},
               {"ts_match", gone->rst->ts_match ? nlohmann::json(*gone->rst->ts_match) : nlohmann::json(nullptr)},
               {"ip_id_match", gone->rst->id_match},
               {"why", gone->rst->why}};
    const bool ok = b.consistent();
    nlohmann::json j = to_json(r.head);
    j.update({{"verdict", to_string(r.verdict)},
              {"lower_us", opt_us(b.alive)},
              {"upper_us", opt_us(ok ? b.upper() : std::nullopt)},
              {"duration_us", opt_us(ok ? b.estimate() : std::nullopt)},
              {"resolution_us", opt_us(ok && b.width() ? std::optional<Duration>{*b.width() / 2} : std::nullopt)},
              {"max_us", to_us(r.max)},
              {"end", b.closed() ? nlohmann::json(b.end_confirmed() ? "rst" : "silence") : nlohmann::json(nullptr)},
              {"rst", rst},
              {"inferred", r.inferred ? nlohmann::json{{"sysctl", "tcp_fin_timeout"}, {"value", *r.inferred}} : nlohmann::json(nullptr)},
              {"probe", r.probe_word},
              {"anomalies", r.run->anomalies()},
              {"failures", r.run->failures()},
              {"lifetime", {{"connections", r.run->engine().connections()}, {"probed", r.run->engine().probes()}, {"probes", probes}}}});
    return j;
}

class LifetimeJob final : public TypedJob<LifetimeResult> {
public:
    LifetimeJob(const LifetimeOptions& o, LifetimeSubject subject)
        : o_(o), subject_(subject), prep_(prepare_target(o.target, o.syn, o.conn)) {
        const bool fw2 = subject == LifetimeSubject::FinWait2;
        max_name_ = fw2 ? "--max-duration" : "--max-idle";
        if (fw2 && o.data) throw io::UsageError("--data goes with idle");
        request_ = parse_request(fw2 && o.request.empty() ? std::string("GET / HTTP/1.0\\r\\n\\r\\n") : o.request);
        lc_.max = parse_duration(o.max_duration.empty() ? (fw2 ? "150s" : "300s") : o.max_duration, max_name_);
        lc_.resolution = parse_duration(o.resolution.empty() ? (fw2 ? "500ms" : "2s") : o.resolution, "--resolution");
        if (lc_.max < lc_.first)
            throw io::UsageError(fmt::format("{}: '{}' is below 2s (the first connection is probed at 2 s)", max_name_, o.max_duration));
        if (lc_.resolution < std::chrono::milliseconds{100})
            throw io::UsageError(fmt::format("--resolution: '{}' is below 100ms", o.resolution));
        max_wait_ = parse_duration(o.max_wait, "--max-wait");
        run_ = std::make_shared<probe::LifetimeRun>(subject, lc_);
        coarse_ = run_->engine().slots(probe::Round::Coarse);
        fine_ = probe::LifetimeEngine::fine_capacity(lc_);
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, coarse_ + fine_, std::nullopt, true});
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(true);
        std::size_t i = 0;
        for (auto [round, count] : {std::pair{probe::Round::Coarse, coarse_}, std::pair{probe::Round::Fine, fine_}})
            for (unsigned slot = 0; slot < count; ++slot) {
                probe::LifetimeFlowConfig fc;
                fc.connect = make_connect_config(prep_, edge, i++);
                fc.request = request_;
                fc.idle_probe = o_.data ? probe::IdleProbe::Data : probe::IdleProbe::Ack;
                fc.max_wait = max_wait_;
                fc.run = run_;
                fc.round = round;
                fc.slot = slot;
                // FINs are answered at once, never rate-limited.
                if (subject_ == LifetimeSubject::FinWait2) fc.retry_gap = std::chrono::milliseconds{300};
                auto f = std::make_unique<probe::LifetimeFlow>(std::move(fc));
                flows_.push_back(f.get());
                session.add(edge.clock().now(), std::move(f));
            }
    }

    LifetimeResult result(const Edge& edge, const RunStats& stats) override {
        LifetimeResult r;
        r.subject = subject_;
        r.head = run_head(std::string(probe::to_string(subject_)), o_.target, prep_, edge);
        r.run = run_;
        r.bracket = run_->engine().bracket();
        r.max = lc_.max;
        r.max_name = max_name_;
        r.probe_word = subject_ == LifetimeSubject::FinWait2 ? "fin" : std::string(probe::to_string(o_.data ? probe::IdleProbe::Data : probe::IdleProbe::Ack));
        std::optional<Duration> rtt;
        for (const auto* f : flows_) {
            r.connect = probe::combine(r.connect, f->connect_result().verdict);
            if (!rtt && f->connect_result().rtt) rtt = f->connect_result().rtt;
        }
        r.verdict = stats.interrupted ? Verdict::Interrupted : judge(*run_, r.connect, lc_.max);
        // tcp_fin_timeout from a FIN-WAIT-2 that ended in a RST (Linux's way), within two
        // round trips and 10 ms of where the bracket says.
        const auto& b = r.bracket;
        if (r.verdict == Verdict::Measured)
            r.inferred = probe::infer_linux_seconds_in(*b.alive, *b.upper(), 2 * rtt.value_or(Duration::zero()) + 10ms);
        return r;
    }

private:
    LifetimeOptions o_;
    LifetimeSubject subject_;
    PreparedTarget prep_;
    std::string max_name_;
    ByteVec request_;
    probe::LifetimeConfig lc_;
    Duration max_wait_{};
    std::shared_ptr<probe::LifetimeRun> run_;
    unsigned coarse_ = 0, fine_ = 0;
    std::vector<const probe::LifetimeFlow*> flows_;
};

}  // namespace

CommandSpec fin_wait_2_command() {
    return make_command<LifetimeOptions>(
        "fin-wait-2", "the peer closes first; how long does its FIN-WAIT-2 last (one FIN per connection)?", lifetime_options<LifetimeSubject::FinWait2>,
        [](const GlobalOptions&, const LifetimeOptions& o) { return std::make_unique<LifetimeJob>(o, LifetimeSubject::FinWait2); });
}

CommandSpec idle_command() {
    return make_command<LifetimeOptions>(
        "idle", "how long may a connection stay idle before the path (NAT, firewall) forgets it?", lifetime_options<LifetimeSubject::Idle>,
        [](const GlobalOptions&, const LifetimeOptions& o) { return std::make_unique<LifetimeJob>(o, LifetimeSubject::Idle); });
}

}  // namespace tcpprobe::app
