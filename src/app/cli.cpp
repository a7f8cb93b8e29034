// The command line. CLI11 parse errors (its own exit codes 105-109) become one-line
// errors with exit 64; setup failures thrown at the edge map to 69/77; anything else is
// an internal error (70).
#include "tcpprobe/app/cli.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include "tcpprobe/app/command.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/system_clock.hpp"

namespace tcpprobe::app {

struct CommandLine::State {
    GlobalOptions global;
    std::vector<CommandSpec> commands;
    std::vector<CLI::App*> subcommands;  ///< one per command, same order
};

namespace {

constexpr const char* exit_help = R"(EXIT STATUS:
  0 expected behaviour observed (e.g. port open)   1 negative answer (RST, behaviour differs)
  2 no answer (filtered, timeout)                   3 ICMP error (unreachable, prohibited)
  64 usage error   69 environment (no route, nft)   70 internal error
  77 missing privilege (CAP_NET_RAW, CAP_NET_ADMIN) 130 interrupted)";

}  // namespace

CommandLine::CommandLine()
    : state_(std::make_unique<State>()),
      app_(std::make_unique<CLI::App>("tcpprobe: talk TCP to a remote host by hand", "tcpprobe")) {
    CLI::App& app = *app_;
    GlobalOptions& g = state_->global;
    app.set_version_flag("--version", std::string("tcpprobe ") + TCPPROBE_VERSION);
    app.require_subcommand(1);
    app.footer(exit_help);
    app.add_option("-o,--output", g.output, "output format: text (default) or json (JSON Lines)")
        ->check(CLI::IsMember({"text", "json"}));
    app.add_option("-w,--write", g.write_pcap, "write every captured packet to FILE (pcap)")->type_name("FILE");
    app.add_option("--write-limit", g.write_limit, "stop writing the -w file at this size (e.g. 10M; suffixes K, M, G)")
        ->type_name("SIZE");
    app.add_flag("-v,--verbose", g.verbosity, "more log output on stderr (repeatable)");
    app.add_flag("-q,--quiet", g.quiet, "only errors on stderr");
    app.add_flag("--no-color", g.no_color, "no colors (also when NO_COLOR is set or stdout is not a TTY)");
    app.add_flag("--no-rst-guard", g.no_rst_guard, "do not install the RST guard");
    app.add_option("--rst-guard", g.rst_guard,
                   "how the local kernel is kept from answering: socket (default; a listening socket per source port that "
                   "refuses every segment) or nft (an nftables table that drops its RSTs)")
        ->check(CLI::IsMember({"socket", "nft"}))
        ->type_name("KIND");
    app.add_option("--source", g.source, "source address (default: from the routing table)")->type_name("ADDR");
    app.add_option("-i,--interface", g.interface, "interface to send and capture on (default: from the route)")->type_name("IFACE");

    state_->commands = commands();
    for (auto& c : state_->commands) {
        CLI::App* sub = app.add_subcommand(c.name, c.help);
        sub->fallthrough();
        sub->footer(exit_help);
        c.add_options(*sub);
        state_->subcommands.push_back(sub);
    }
}

CommandLine::~CommandLine() = default;

namespace {
void setup_logging(const GlobalOptions& g) {
    // Once per process (tests run the command line many times in one).
    auto logger = spdlog::get("tcpprobe");
    if (!logger) logger = spdlog::stderr_color_mt("tcpprobe");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("tcpprobe: %^%l%$: %v");
    if (g.quiet) spdlog::set_level(spdlog::level::err);
    else if (g.verbosity >= 2) spdlog::set_level(spdlog::level::trace);
    else if (g.verbosity == 1) spdlog::set_level(spdlog::level::debug);
    else spdlog::set_level(spdlog::level::warn);
}

int fail(int code, const std::string& message) {
    fmt::print(stderr, "tcpprobe: {}\n", message);
    return code;
}
}  // namespace

int CommandLine::run(int argc, char** argv) {
    // CLI11 reports an unknown command as a missing one; name it instead.
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a.empty() || a[0] == '-') {
            // skip a global option's value (given as the next word, not as --opt=value)
            const CLI::Option* opt = a.find('=') == std::string::npos ? app_->get_option_no_throw(a) : nullptr;
            if (opt && opt->get_expected_min() > 0 && i + 1 < argc) ++i;
            continue;
        }
        if (app_->get_subcommands([&](CLI::App* c) { return c->get_name() == a; }).empty()) {
            std::string names;
            for (const auto* c : app_->get_subcommands({})) names += (names.empty() ? "" : ", ") + c->get_name();
            return fail(exit_status::usage, fmt::format("unknown command '{}' (commands: {}; see tcpprobe --help)", a, names));
        }
        break;
    }
    try {
        app_->parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app_->exit(e);  // --help, --version
        std::string what = e.what();
        if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
        return fail(exit_status::usage, what + " (see tcpprobe --help)");
    }
    setup_logging(state_->global);
    io::install_stop_signals();
    try {
        for (std::size_t i = 0; i < state_->commands.size(); ++i) {
            if (!state_->subcommands[i]->parsed()) continue;
            auto job = state_->commands[i].prepare(state_->global);
            return run_job(state_->global, *job);
        }
        return fail(exit_status::usage, "no command given (see tcpprobe --help)");
    } catch (const io::UsageError& e) {
        return fail(exit_status::usage, e.what());
    } catch (const io::PrivilegeError& e) {
        return fail(exit_status::privilege, e.what());
    } catch (const io::EnvironmentError& e) {
        return fail(exit_status::environment, e.what());
    } catch (const std::exception& e) {
        return fail(exit_status::internal, fmt::format("internal error: {}", e.what()));
    }
}

}  // namespace tcpprobe::app
