// `tcpprobe profile HOST:PORT`: every experiment that applies, together on separate
// source ports under one pace (probe/profile.hpp), read into one table; `--compare FILE`
// lists what differs from a profile saved earlier.
#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/profile_report.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/profile.hpp"

namespace tcpprobe::app {

namespace {

void options(CLI::App& cmd, ProfileOptions& o) {
    add_target(cmd, o.target);
    add_connect_options(cmd, o.conn);
    cmd.add_flag("--quick", o.quick, "only what ends in about 10 s (no TIME-WAIT duration, no FIN-WAIT-2 lifetime), plus --keepalive/--idle when given");
    cmd.add_flag("--keepalive", o.keepalive, "also record the peer's keepalive probes (Linux waits 2 h before the first)");
    cmd.add_option("--idle", o.idle, "also measure the path's idle timeout, up to MAX")->type_name("MAX");
    cmd.add_option("--request", o.request,
                   "data that makes the peer close first (default an HTTP/1.0 GET): TEXT with escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    cmd.add_option("--compare", o.compare, "list only what differs from a profile saved with -o json (exit 0 same, 1 different)")
        ->type_name("FILE");
    cmd.add_flag("--trace", o.trace, "text output: print every segment before the table");
}

struct ProfileSummary {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    probe::ProfileResult result;
    ProfileMeta meta;
    std::optional<std::vector<ProfileDifference>> differences;
    std::string compare_file;
    nlohmann::json profile;  ///< profile_json, built once for the summary and the comparison
};

std::string to_text(const ProfileSummary& s) {
    std::string t = profile_text(s.result, s.meta);
    if (s.differences) t += differences_text(*s.differences, s.compare_file);
    t += fmt::format("verdict {}\n", to_string(s.verdict));
    return t;
}

nlohmann::json to_json(const ProfileSummary& s) {
    nlohmann::json j = to_json(s.head);
    j["verdict"] = to_string(s.verdict);
    j["profile"] = s.profile;
    j["compare"] = s.differences ? nlohmann::json{{"file", s.compare_file},
                                                  {"same", s.differences->empty()},
                                                  {"differences", differences_json(*s.differences)}}
                                 : nlohmann::json(nullptr);
    // Every inferred setting at the top level too, as DESIGN §1 spells them.
    j["inferred"] = s.profile["linux_settings"];
    return j;
}

class ProfileJob final : public TypedJob<ProfileSummary> {
public:
    explicit ProfileJob(const ProfileOptions& o) : o_(o), prep_(prepare(o)), profile_(config(o)) {
        // A bad saved profile is bad input: refused before anything is sent.
        if (!o.compare.empty()) saved_ = load_saved_profile(o.compare);
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, profile_.connections(), std::nullopt, true});
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(true);
        // Text shows the table (the trace with --trace); JSON always carries the trace the
        // rows' evidence points into.
        renderer.set_show_events(renderer.json() || o_.trace);
        renderer_ = &renderer;
        start_ = edge.clock().now();
        profile_.build(session, start_, [&](std::size_t i) { return make_connect_config(prep_, edge, i); });
        session.set_progress([this](Instant now) { return profile_.progress(now); });
        clock_ = &edge.clock();
    }

    ProfileSummary result(const Edge& edge, const RunStats&) override {
        ProfileSummary s;
        s.head = run_head("profile", o_.target, prep_, edge);
        s.result = profile_.result();
        s.meta.target = o_.target;
        s.meta.quick = o_.quick;
        s.meta.connections = profile_.connections();
        s.meta.elapsed = clock_->now() - start_;
        if (auto origin = renderer_->origin()) s.meta.mark_offset = start_ - *origin;
        s.profile = profile_json(s.result, s.meta);
        const auto* full = s.result.row("handshake.mss");
        const bool answered = full && !std::holds_alternative<std::monostate>(full->value);
        if (saved_) {
            s.compare_file = o_.compare;
            s.differences = compare_profiles(s.profile, *saved_);
            s.verdict = s.differences->empty() ? Verdict::Same : Verdict::Differs;
        } else {
            s.verdict = answered ? Verdict::Profiled : verdict_of(profile_.connect_verdict());
        }
        return s;
    }

private:
    static PreparedTarget prepare(const ProfileOptions& o) {
        // Our SYNs carry the full option set (Linux's): what the peer offers back is then
        // its own choice, and TIME-WAIT reuse can be asked with timestamps.
        SynOptions syn;
        syn.sack = true;
        syn.ts = true;
        syn.wscale = 7;
        return prepare_target(o.target, syn, o.conn);
    }
    static probe::ProfileConfig config(const ProfileOptions& o) {
        probe::ProfileConfig c;
        c.quick = o.quick;
        c.keepalive = o.keepalive;
        if (!o.idle.empty()) c.idle_max = parse_duration(o.idle, "--idle");
        if (c.idle_max && *c.idle_max < std::chrono::seconds{2})
            throw io::UsageError(fmt::format("--idle: '{}' is below 2s (the first connection is probed at 2 s)", o.idle));
        c.request = parse_request(o.request);
        if (c.request.empty()) throw io::UsageError("--request: empty (the peer must be made to close first)");
        return c;
    }

    ProfileOptions o_;
    PreparedTarget prep_;
    probe::Profile profile_;
    std::optional<nlohmann::json> saved_;
    Renderer* renderer_ = nullptr;
    const io::Clock* clock_ = nullptr;
    Instant start_{};
};

}  // namespace

CommandSpec profile_command() {
    return make_command<ProfileOptions>("profile", "every experiment at once, paced: the host's connection-management profile",
                                        options, [](const GlobalOptions&, const ProfileOptions& o) {
                                            return std::make_unique<ProfileJob>(o);
                                        });
}

}  // namespace tcpprobe::app
