// The command line. CLI11 parse errors (its own exit codes 105-109) become one-line
// errors with exit 64; setup failures thrown at the edge map to 69/77; anything else is
// an internal error (70).
#include "tcpprobe/app/cli.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/system.hpp"

namespace tcpprobe::app {

struct CommandLine::State {
    GlobalOptions global;
    HandshakeOptions handshake;
    CloseOptions teardown;
    CloseOptions half_close;
    RetransmitOptions retransmit;
    ListenOptions listen;
    TimeWaitOptions time_wait;
    PingOptions ping;
    CLI::App* ping_cmd = nullptr;
    CLI::App* time_wait_cmd = nullptr;
    CLI::App* retransmit_cmd = nullptr;
    CLI::App* listen_cmd = nullptr;
    CLI::App* handshake_cmd = nullptr;
    CLI::App* teardown_cmd = nullptr;
    CLI::App* half_close_cmd = nullptr;
};

namespace {

constexpr const char* exit_help = R"(EXIT STATUS:
  0 expected behaviour observed (e.g. port open)   1 negative answer (RST, behaviour differs)
  2 no answer (filtered, timeout)                   3 ICMP error (unreachable, prohibited)
  64 usage error   69 environment (no route, nft)   70 internal error
  77 missing privilege (CAP_NET_RAW, CAP_NET_ADMIN) 130 interrupted)";

// CLI11 reads integers with base 0, so "010" would be octal 8; numbers here are
// decimal (or 0x-hex), as the man page says.
const CLI::Validator decimal(
    [](std::string& v) {
        if (v.size() > 1 && v[0] == '0' && v[1] != 'x' && v[1] != 'X') {
            v.erase(0, v.find_first_not_of('0'));
            if (v.empty()) v = "0";
        }
        return std::string();
    },
    "", "decimal");

template <class T>
void optional_number(CLI::App* cmd, const std::string& name, std::optional<T>& into, const std::string& desc) {
    cmd->add_option_function<T>(name, [&into](const T& v) { into = v; }, desc)->transform(decimal)->type_name("N");
}

template <class T>
CLI::Option* number(CLI::App* cmd, const std::string& name, T& into, const std::string& desc) {
    return cmd->add_option(name, into, desc)->transform(decimal)->type_name("N");
}

/// The SYN options; `isn_and_ts` is false for time-wait, where --isn and --ts name the
/// reuse test's choices instead.
void add_syn_options(CLI::App* cmd, SynOptions& s, bool isn_and_ts = true, bool sport = true) {
    optional_number(cmd, "--mss", s.mss, "MSS option value (default: interface MTU - 40)");
    cmd->add_flag("--no-mss", s.no_mss, "send no MSS option");
    optional_number(cmd, "--wscale", s.wscale, "window scale option, shift 0-14");
    cmd->add_flag("--sack", s.sack, "SACK-permitted option");
    if (isn_and_ts) cmd->add_flag("--ts", s.ts, "timestamps option");
    cmd->add_option("--option", s.raw_options, "raw option KIND:HEX (repeatable, kept in order; 1 = NOP, 0 = EOL)")
        ->allow_extra_args(false)
        ->type_name("KIND:HEX");
    optional_number(cmd, "--window", s.window, "window field of the SYN (default 64240)");
    number(cmd, "--ttl", s.ttl, "IP time to live (default 64)");
    number(cmd, "--tos", s.tos, "IP type of service / DSCP+ECN byte (default 0)");
    cmd->add_flag("--df,!--no-df", s.df, "set (default) or clear the IP don't-fragment bit");
    cmd->add_option_function<std::string>("--ip-id", [&s](const std::string& v) { s.ip_id = v; }, "first IP ID (default random)")->type_name("N");
    if (isn_and_ts)
        cmd->add_option_function<std::string>("--isn", [&s](const std::string& v) { s.isn = v; }, "initial sequence number (default random)")
            ->type_name("N");
    if (sport) optional_number(cmd, "--sport", s.sport, "source port (default: a free ephemeral port)");
    cmd->add_option("--flags", s.flags, "extra flags on the SYN, e.g. ece,cwr")->type_name("FLAGS");
}

void add_connect_options(CLI::App* cmd, ConnectOptions& c) {
    cmd->add_option("--timeout", c.timeout, "no answer to our SYN by then: filtered (default 5s: SYNs at 0, 1 and 3 s)")->type_name("DURATION");
    cmd->add_option("--rto", c.rto, "our initial retransmission timeout for SYN, FIN and data (default 1s)")->type_name("DURATION");
    number(cmd, "--retries", c.retries, "our retransmissions of SYN, data or FIN before giving up (default 3)");
}

void add_close_options(CLI::App* cmd, CloseOptions& o, bool with_mode) {
    cmd->add_option("target", o.target, "HOST:PORT")->required()->type_name("HOST:PORT");
    add_syn_options(cmd, o.syn);
    add_connect_options(cmd, o.conn);
    if (with_mode) {
        cmd->add_option("--mode", o.mode, "active (we FIN first, default), passive, simultaneous or abort")
            ->check(CLI::IsMember({"active", "passive", "simultaneous", "abort"}));
        cmd->add_option("--idle", o.idle, "quiet time before our FIN or RST; time we stay in CLOSE-WAIT (default 200ms)")
            ->type_name("DURATION");
    }
    cmd->add_option("--request", o.request,
                    "data to send after the handshake: TEXT with \\r \\n \\t \\0 \\\\ \\xHH escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    cmd->add_option("--max-wait", o.max_wait, "longest wait for the peer's part of the close (default 10s)")->type_name("DURATION");
    cmd->add_option("--time-wait", o.time_wait, "length of our own TIME-WAIT after an active close (default 2s)")->type_name("DURATION");
}

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
    app.add_flag("-v,--verbose", g.verbosity, "more log output on stderr (repeatable)");
    app.add_flag("-q,--quiet", g.quiet, "only errors on stderr");
    app.add_flag("--no-color", g.no_color, "no colors (also when NO_COLOR is set or stdout is not a TTY)");
    app.add_flag("--no-rst-guard", g.no_rst_guard, "do not install the nftables RST guard");
    app.add_option("--source", g.source, "source address (default: from the routing table)")->type_name("ADDR");
    app.add_option("--interface", g.interface, "interface to send and capture on (default: from the route)")->type_name("IFACE");

    HandshakeOptions& h = state_->handshake;
    CLI::App* hs = app.add_subcommand("handshake", "SYN with the chosen options, observe, complete (or reset)");
    hs->fallthrough();
    hs->footer(exit_help);
    hs->add_option("targets", h.targets, "HOST:PORTS, e.g. host:443, host:80,443, host:8000-8100 (several allowed)")
        ->required()
        ->type_name("HOST:PORTS");
    add_syn_options(hs, h.syn);
    hs->add_flag("--half-open", h.half_open, "answer the SYN-ACK with RST instead of ACK (no RST guard needed)");
    number(hs, "--count", h.count, "number of handshakes, each from its own source port (default 1)");
    hs->add_option("--interval", h.interval, "time between handshake starts with --count (default 1s)")->type_name("DURATION");
    hs->add_flag("--stale-syn", h.stale_syn, "send a stale SYN first, then the real one (RFC 9293 old duplicate SYN)");
    hs->add_option("--linger", h.linger, "after the handshake, keep receiving and ACKing this long (default 0)")->type_name("DURATION");
    add_connect_options(hs, h.conn);
    state_->handshake_cmd = hs;

    CLI::App* td = app.add_subcommand("teardown", "handshake, optional request, then a close sequence (--mode)");
    td->fallthrough();
    td->footer(exit_help);
    add_close_options(td, state_->teardown, true);
    state_->teardown_cmd = td;

    CLI::App* hc = app.add_subcommand("half-close", "handshake, request, our FIN at once; keep receiving until the peer's FIN");
    hc->fallthrough();
    hc->footer(exit_help);
    add_close_options(hc, state_->half_close, false);
    state_->half_close_cmd = hc;

    RetransmitOptions& r = state_->retransmit;
    CLI::App* rt = app.add_subcommand("retransmit", "the peer's SYN-ACK or FIN retransmission schedule, never ACKed");
    rt->fallthrough();
    rt->footer(exit_help);
    rt->add_option("target", r.target, "HOST:PORT")->required()->type_name("HOST:PORT");
    add_syn_options(rt, r.syn);
    add_connect_options(rt, r.conn);
    rt->add_option("--segment", r.segment, "synack (default): one SYN, never ACK the SYN-ACK; fin: never ACK the peer's FIN")
        ->check(CLI::IsMember({"synack", "fin"}));
    rt->add_flag("--peer-closes-first", r.peer_closes_first, "fin: the peer closes first (after --request) and sits in FIN-WAIT-1");
    rt->add_option("--request", r.request, "data to send after the handshake (fin): TEXT with escapes, or @FILE")->type_name("TEXT|@FILE");
    rt->add_option("--idle", r.idle, "fin: delay from the open connection (and request) to our FIN (default 200ms)")->type_name("DURATION");
    rt->add_option("--max-wait", r.max_wait, "longest measurement (default 75s)")->type_name("DURATION");
    rt->add_option("--tolerance", r.tolerance, "gap tolerance: absolute floor and/or percent (default 50ms,10%)")->type_name("FLOOR,PCT%");
    rt->add_flag("--no-cleanup", r.no_cleanup, "do not send the final RST that clears the peer's state");
    number(rt, "--count", r.count, "N connections measured in parallel, each on its own source port, merged so that a copy lost in one run is seen in another (default 3)");
    state_->retransmit_cmd = rt;

    ListenOptions& l = state_->listen;
    CLI::App* ls = app.add_subcommand("listen", "time a remote client's SYN retransmissions to a local port nothing answers");
    ls->fallthrough();
    ls->footer(exit_help);
    ls->add_option("endpoint", l.endpoint, "[ADDR:]PORT to watch (no ADDR: any local address)")->required()->type_name("[ADDR:]PORT");
    add_syn_options(ls, l.syn);
    ls->add_option("--rto", l.conn.rto, "our retransmission timeout when answering (default 1s)")->type_name("DURATION");
    number(ls, "--retries", l.conn.retries, "our retransmissions when answering (default 3)");
    ls->add_option("--answer", l.answer, "none (default): only time the SYNs; synack: answer the first SYN; syn: answer with a bare SYN")
        ->check(CLI::IsMember({"none", "synack", "syn"}));
    ls->add_option("--max-wait", l.max_wait, "stop after this long (default 60s)")->type_name("DURATION");
    ls->add_option("--tolerance", l.tolerance, "gap tolerance: absolute floor and/or percent (default 50ms,10%)")->type_name("FLOOR,PCT%");
    number(ls, "--count", l.count, "stop once this many clients are done (default 1)");
    state_->listen_cmd = ls;

    TimeWaitOptions& w = state_->time_wait;
    CLI::App* tw = app.add_subcommand("time-wait", "make the peer close first, then probe its TIME-WAIT on the same 4-tuple");
    tw->fallthrough();
    tw->footer(exit_help);
    tw->add_option("target", w.target, "HOST:PORT")->required()->type_name("HOST:PORT");
    add_syn_options(tw, w.syn, false);
    add_connect_options(tw, w.conn);
    tw->add_option("--test", w.test, "duration (default), reuse, rst, fin, or all (each on its own connection)")
        ->check(CLI::IsMember({"duration", "reuse", "rst", "fin", "all"}));
    tw->add_option("--isn", w.isn, "reuse: the new SYN's ISN higher (default) or lower than the old connection's SND.NXT")
        ->check(CLI::IsMember({"higher", "lower"}));
    tw->add_option("--ts", w.ts, "timestamps on both connections; reuse: the new SYN's TSval newer (default) or older; none: no timestamps")
        ->check(CLI::IsMember({"newer", "older", "none"}));
    tw->add_option("--request", w.request, "what makes the peer close first (default an HTTP/1.0 GET): TEXT with escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    tw->add_option("--max-wait", w.max_wait, "longest wait for the peer to close first (default 10s)")->type_name("DURATION");
    tw->add_option("--probe-interval", w.probe_interval, "duration: time between the series' probes, at least 600ms (default 1s)")
        ->type_name("DURATION");
    tw->add_option("--max-duration", w.max_duration,
                   "duration: the longest TIME-WAIT looked for; one still there then is longer-than-max (default 150s)")
        ->type_name("DURATION");
    state_->time_wait_cmd = tw;

    PingOptions& pg = state_->ping;
    CLI::App* pc = app.add_subcommand("ping", "half-open SYN probes timed at the wire, to one or many HOST:PORTS");
    pc->fallthrough();
    pc->footer(exit_help);
    pc->add_option("targets", pg.targets, "HOST:PORTS, e.g. host:80, host:80,443, host:8000-8100 (several allowed)")
        ->required()
        ->type_name("HOST:PORTS");
    add_syn_options(pc, pg.syn, true, false);  // ping picks a source port per lane
    number(pc, "--count", pg.count, "probes per destination (default 5)");
    pc->add_option("--interval", pg.interval, "time between probes over the whole run (default 1s)")->type_name("DURATION");
    pc->add_option_function<double>("--rate", [&pg](const double& v) { pg.rate = v; }, "probes per second over the whole run")
        ->type_name("PPS");
    pc->add_flag("--flood", pg.flood, "as fast as the sender allows (bounded by --count); no per-probe lines");
    pc->add_option("--timeout", pg.timeout, "a probe unanswered this long is lost (default 1s)")->type_name("DURATION");
    state_->ping_cmd = pc;
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
            // skip a global option's value
            if ((a == "-o" || a == "--output" || a == "-w" || a == "--write" || a == "--source" || a == "--interface") && i + 1 < argc) ++i;
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
        if (state_->handshake_cmd->parsed()) return run_handshake(state_->global, state_->handshake);
        if (state_->teardown_cmd->parsed()) return run_teardown(state_->global, state_->teardown);
        if (state_->half_close_cmd->parsed()) return run_half_close(state_->global, state_->half_close);
        if (state_->retransmit_cmd->parsed()) return run_retransmit(state_->global, state_->retransmit);
        if (state_->listen_cmd->parsed()) return run_listen(state_->global, state_->listen);
        if (state_->time_wait_cmd->parsed()) return run_time_wait(state_->global, state_->time_wait);
        if (state_->ping_cmd->parsed()) return run_ping(state_->global, state_->ping);
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
