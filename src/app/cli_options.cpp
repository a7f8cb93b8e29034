// Option groups shared by several commands (see cli_options.hpp).
#include "tcpprobe/app/cli_options.hpp"

namespace tcpprobe::app {

const CLI::Validator& decimal() {
    static const CLI::Validator v(
        [](std::string& s) {
            if (s.size() > 1 && s[0] == '0' && s[1] != 'x' && s[1] != 'X') {
                s.erase(0, s.find_first_not_of('0'));
                if (s.empty()) s = "0";
            }
            return std::string();
        },
        "", "decimal");
    return v;
}

void add_target(CLI::App& cmd, std::string& target) {
    cmd.add_option("target", target, "HOST:PORT")->required()->type_name("HOST:PORT");
}

void add_targets(CLI::App& cmd, std::vector<std::string>& targets, const std::string& example) {
    cmd.add_option("targets", targets, "HOST:PORTS, e.g. " + example + ", host:80,443, host:8000-8100 (several allowed)")
        ->required()
        ->type_name("HOST:PORTS");
}

void add_syn_options(CLI::App& cmd, SynOptions& s, bool isn_and_ts, bool sport) {
    optional_number(cmd, "--mss", s.mss, "MSS option value (default: interface MTU - 40)");
    cmd.add_flag("--no-mss", s.no_mss, "send no MSS option");
    optional_number(cmd, "--wscale", s.wscale, "window scale option, shift 0-14");
    cmd.add_flag("--sack", s.sack, "SACK-permitted option");
    if (isn_and_ts) cmd.add_flag("--ts", s.ts, "timestamps option");
    cmd.add_option("--option", s.raw_options, "raw option KIND:HEX (repeatable, kept in order; 1 = NOP, 0 = EOL)")
        ->allow_extra_args(false)
        ->type_name("KIND:HEX");
    optional_number(cmd, "--window", s.window, "window field of the SYN (default 64240)");
    number(cmd, "--ttl", s.ttl, "IP time to live (default 64)");
    number(cmd, "--tos", s.tos, "IP type of service / DSCP+ECN byte (default 0)");
    cmd.add_flag("--df,!--no-df", s.df, "set (default) or clear the IP don't-fragment bit");
    cmd.add_option_function<std::string>("--ip-id", [&s](const std::string& v) { s.ip_id = v; }, "first IP ID (default random)")->type_name("N");
    if (isn_and_ts)
        cmd.add_option_function<std::string>("--isn", [&s](const std::string& v) { s.isn = v; }, "initial sequence number (default random)")
            ->type_name("N");
    if (sport) optional_number(cmd, "--sport", s.sport, "source port (default: a free ephemeral port)");
    cmd.add_option("--flags", s.flags, "extra flags on the SYN, e.g. ece,cwr")->type_name("FLAGS");
}

void add_connect_options(CLI::App& cmd, ConnectOptions& c) {
    cmd.add_option("-W,--timeout", c.timeout, "no answer to our SYN by then: filtered (default 5s: SYNs at 0, 1, 2, 3 and 4 s)")->type_name("DURATION");
    cmd.add_option("--rto", c.rto, "our initial retransmission timeout for SYN, FIN and data (default 1s)")->type_name("DURATION");
    number(cmd, "--retries", c.retries, "our retransmissions of SYN, data or FIN before giving up (default 4)");
}

}  // namespace tcpprobe::app
