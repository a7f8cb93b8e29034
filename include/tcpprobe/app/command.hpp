// A command is registered data (STYLE §5): a name and a line of help, its options, and a
// prepare step that validates them (bad input: a UsageError, nothing opened or sent) and
// returns a Job. A Job opens the edge it needs, builds its scenario into the session, and
// turns what the scenario found into a typed result, from which one function writes the
// summary's text and one its JSON. run_job() is the one runner: open the edge, build, run
// the loop, render the summary, and map the verdict to the exit status (app/verdict.hpp).
//
// How to add a command (the lifetimes work adds `fin-wait-2` this way):
//   1. The scenario, sans-IO: include/tcpprobe/probe/fin_wait_2.hpp and
//      src/probe/fin_wait_2.cpp (a probe::Flow), tested in tests/probe/ with sim::Sim.
//   2. The command: src/app/fin_wait_2_cmd.cpp with
//        struct FinWait2Options { std::string target; SynOptions syn; ConnectOptions conn; ... };
//        void options(CLI::App& cmd, FinWait2Options& o);     // add_target, add_syn_options,
//                                                             // add_connect_options (cli_options.hpp)
//        struct FinWait2Result { Verdict verdict; ...typed figures... };
//        std::string to_text(const FinWait2Result& r);         // the text summary
//        nlohmann::json to_json(const FinWait2Result& r);      // the JSON summary (schema unchanged)
//        class FinWait2Job final : public TypedJob<FinWait2Result> {
//            std::unique_ptr<Edge> open(const GlobalOptions& g) override;   // open_edge(g, {...})
//            void build(probe::Session& s, Edge& e, Renderer& r) override;  // s.add(..., flow)
//            FinWait2Result result(const Edge& e, const RunStats& st) override;
//        };
//        CommandSpec fin_wait_2_command() {
//            return make_command<FinWait2Options>("fin-wait-2", "help line", options,
//                [](const GlobalOptions& g, const FinWait2Options& o) { return std::make_unique<FinWait2Job>(g, o); });
//        }
//   3. One line in the registry (src/app/commands.cpp, commands()) and its declaration in
//      commands.hpp.
//   4. Docs: man/tcpprobe.8 (COMMANDS, SYNOPSIS), completions/, README; the golden test
//      (tests/app/golden_test.cpp) gets a case; tests/app/cli_docs_test.cpp checks the docs.
// The runner adds what every command shares: "interrupted" (text line and JSON member),
// the summary's "type" and "schema" (the JSON renderer), exit 130 after Ctrl-C.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/app/output.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/probe/scenario.hpp"

namespace CLI {
class App;
}

namespace tcpprobe::app {

/// A run's summary, rendered in the one form the run prints: the text, or the JSON object
/// (and its long list, if any, streamed item by item).
struct Summary {
    Verdict verdict = Verdict::Pending;
    std::string text;
    nlohmann::json json;
    JsonList list;
};

class Job {
public:
    virtual ~Job() = default;
    /// Opens the edge the scenario needs (open_edge or open_listen_edge).
    virtual std::unique_ptr<Edge> open(const GlobalOptions& g) = 0;
    /// Puts the scenario's flows into the session.
    virtual void build(probe::Session& session, Edge& edge, Renderer& renderer) = 0;
    /// Builds only the form the renderer prints (`json` or text).
    virtual Summary summarize(const Edge& edge, const RunStats& stats, bool json) = 0;
};

/// A job whose result is a typed struct R with `Verdict verdict` and the free functions
/// `std::string to_text(const R&)` and `nlohmann::json to_json(const R&)`. A result with
/// a list per flow or destination also has `JsonList json_list(std::shared_ptr<const R>)`:
/// the list is then written item by item after the rest, never built whole (10,000 flows
/// of nlohmann objects would cost about 2 KB each).
template <class R>
class TypedJob : public Job {
public:
    Summary summarize(const Edge& edge, const RunStats& stats, bool json) final {
        if constexpr (requires(std::shared_ptr<const R> p) { json_list(p); }) {
            // The list outlives this call, so the result is moved to the heap (only results
            // without pointers into themselves have a json_list).
            auto r = std::make_shared<const R>(result(edge, stats));
            if (!json) return {r->verdict, to_text(*r), {}, {}};
            return {r->verdict, {}, to_json(*r), json_list(r)};
        } else {
            // Built where it stays: some results point into themselves.
            R r = result(edge, stats);
            if (!json) return {r.verdict, to_text(r), {}, {}};
            return {r.verdict, {}, to_json(r), {}};
        }
    }

protected:
    virtual R result(const Edge& edge, const RunStats& stats) = 0;
};

/// Opens the edge, builds, runs, renders; returns the exit status.
int run_job(const GlobalOptions& g, Job& job);

/// A registered command: what the command line needs to offer it and to run it.
struct CommandSpec {
    std::string name;
    std::string help;
    /// Binds the command's options (kept by the spec) to its subcommand.
    std::function<void(CLI::App&)> add_options;
    /// Validates the options bound above and returns the job.
    std::function<std::unique_ptr<Job>(const GlobalOptions&)> prepare;
};

template <class Options>
CommandSpec make_command(std::string name, std::string help, void (*options)(CLI::App&, Options&),
                         std::function<std::unique_ptr<Job>(const GlobalOptions&, const Options&)> prepare) {
    auto o = std::make_shared<Options>();
    return {std::move(name), std::move(help), [o, options](CLI::App& cmd) { options(cmd, *o); },
            [o, prepare = std::move(prepare)](const GlobalOptions& g) { return prepare(g, *o); }};
}

/// The common case: a job made from the command's own options alone.
template <class Options, class J>
CommandSpec job_command(std::string name, std::string help, void (*options)(CLI::App&, Options&)) {
    return make_command<Options>(std::move(name), std::move(help), options,
                                 [](const GlobalOptions&, const Options& o) -> std::unique_ptr<Job> { return std::make_unique<J>(o); });
}

/// Every command, in the order --help lists them (the registry: src/app/commands.cpp).
std::vector<CommandSpec> commands();

CommandSpec handshake_command();
CommandSpec teardown_command();
CommandSpec half_close_command();
CommandSpec retransmit_command();
CommandSpec listen_command();
CommandSpec time_wait_command();
CommandSpec ping_command();
CommandSpec fin_wait_2_command();
CommandSpec keepalive_command();
CommandSpec idle_command();
CommandSpec profile_command();

}  // namespace tcpprobe::app
