// Golden outputs: every command, run whole through the command line (parsing, the
// runner, the renderers, the exit status) on a simulated network with a fixed clock and
// fixed random numbers (sim_net.hpp), must print exactly the text and the JSON Lines
// checked in under tests/app/golden/. They pin what users and scripts see while the
// app layer is reshaped; a deliberate change of output is made by regenerating them
// (TCPPROBE_UPDATE_GOLDEN=1 build/tests/app_tests -tc='golden*') and reviewing the diff.
//
// Each file's first line is the command and its exit status; the rest is stdout.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "app/sim_net.hpp"
#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/edge.hpp"

using namespace tcpprobe;
using namespace tcpprobe::simnet;

namespace {

struct Case {
    std::string name;
    std::vector<std::string> args;
    std::function<void(SimNet&)> network;
};

PortSpec listening(App app = App::Hold) {
    PortSpec p;
    p.peer = Peer::Listening;
    p.app = app;
    return p;
}

/// The lab's ports, as tests/lab/README.md lays them out: 80 a server that answers a
/// request and closes first (HTTP/1.0), 81 closed, 82 filtered, 83 rejected with ICMP,
/// 8001 a server that closes 0.5 s after our FIN, 8002 one that closes at once (3-way).
void lab_ports(SimNet& n) {
    n.set_port(80, listening(App::Http));
    PortSpec closed;
    closed.peer = Peer::Closed;
    n.set_port(81, closed);
    n.set_port(82, PortSpec{});
    PortSpec icmp;
    icmp.peer = Peer::Unreachable;
    n.set_port(83, icmp);
    PortSpec late = listening(App::CloseOnFin);
    late.close_delay = 500ms;
    n.set_port(8001, late);
    n.set_port(8002, listening(App::CloseOnFin));
    n.set_port(8003, listening(App::HttpHold));
    n.set_port(8004, listening(App::Hold));
}

void time_wait_ports(SimNet& n) {
    lab_ports(n);
    PortSpec p = listening(App::Http);
    p.time_wait = sim::TwModelConfig{};
    n.set_port(80, p);
}

void listen_clients(SimNet& n) {
    ClientSpec c;
    c.at = 100ms;
    n.add_client(c);
}

const std::vector<Case>& cases() {
    static const std::vector<Case> all = {
        {"handshake_open", {"handshake", "198.18.0.2:8004", "--mss", "1200", "--wscale", "7", "--sack", "--ts"}, lab_ports},
        {"handshake_closed", {"handshake", "198.18.0.2:81"}, lab_ports},
        {"handshake_filtered", {"handshake", "198.18.0.2:82", "--timeout", "3s"}, lab_ports},
        {"handshake_unreachable", {"handshake", "198.18.0.2:83"}, lab_ports},
        {"handshake_many", {"handshake", "198.18.0.2:8004,81-83", "--count", "2", "--interval", "100ms"}, lab_ports},
        // RTT 1.2 s, above the 1 s RTO: each SYN goes twice and the SYN-ACK (no timestamps)
        // names neither copy; the ambiguous RTTs stay out of the summary's figures.
        {"handshake_ambiguous_rtt", {"handshake", "198.18.0.2:8004", "--count", "2", "--interval", "100ms"},
         [](SimNet& n) {
             lab_ports(n);
             n.set_one_way(600ms);
         }},
        {"handshake_half_open", {"handshake", "198.18.0.2:8004", "--half-open", "--ts"}, lab_ports},
        {"handshake_stale_syn", {"handshake", "198.18.0.2:8004", "--stale-syn"}, lab_ports},
        {"teardown_active", {"teardown", "198.18.0.2:8001", "--request", "hello\\n"}, lab_ports},
        {"teardown_active_3way", {"teardown", "198.18.0.2:8002", "--request", "hello\\n", "--ts"}, lab_ports},
        {"teardown_passive", {"teardown", "198.18.0.2:80", "--mode", "passive", "--request", "GET / HTTP/1.0\\r\\n\\r\\n"}, lab_ports},
        {"teardown_simultaneous", {"teardown", "198.18.0.2:80", "--mode", "simultaneous", "--request", "GET /\\r\\n"}, lab_ports},
        {"teardown_abort", {"teardown", "198.18.0.2:8004", "--mode", "abort"}, lab_ports},
        {"teardown_closed", {"teardown", "198.18.0.2:81"}, lab_ports},
        {"half_close", {"half-close", "198.18.0.2:8003", "--request", "GET / HTTP/1.0\\r\\n\\r\\n"}, lab_ports},
        {"half_close_peer_closes", {"half-close", "198.18.0.2:80", "--request", "GET /\\r\\n"}, lab_ports},
        {"retransmit_synack", {"retransmit", "198.18.0.2:8004", "--count", "1", "--max-wait", "20s"}, lab_ports},
        {"retransmit_synack_three", {"retransmit", "198.18.0.2:8004", "--max-wait", "20s"}, lab_ports},
        {"retransmit_fin", {"retransmit", "198.18.0.2:80", "--segment", "fin", "--request", "GET /\\r\\n", "--max-wait", "20s"}, lab_ports},
        {"retransmit_filtered", {"retransmit", "198.18.0.2:82", "--count", "1", "--timeout", "2s"}, lab_ports},
        {"listen", {"listen", ":8080", "--max-wait", "30s"}, listen_clients},
        {"listen_answer_synack", {"listen", ":8080", "--answer", "synack", "--max-wait", "10s"}, listen_clients},
        {"listen_no_client", {"listen", ":8080", "--max-wait", "2s"}, [](SimNet&) {}},
        {"time_wait_duration", {"time-wait", "198.18.0.2:80"}, time_wait_ports},
        {"time_wait_all", {"time-wait", "198.18.0.2:80", "--test", "all"}, time_wait_ports},
        {"time_wait_reuse_lower", {"time-wait", "198.18.0.2:80", "--test", "reuse", "--isn", "lower", "--ts", "none"}, time_wait_ports},
        {"time_wait_no_close", {"time-wait", "198.18.0.2:8003", "--test", "rst", "--max-wait", "3s"}, time_wait_ports},
        {"ping", {"ping", "198.18.0.2:8004,81-83", "--count", "2", "--interval", "50ms"}, lab_ports},
        // The simulated server's FIN-WAIT-2 (a tcb::Tcb) has no timer: no bound within 4 s.
        {"fin_wait_2_no_bound", {"fin-wait-2", "198.18.0.2:80", "--max-duration", "4s"}, lab_ports},
        {"idle_no_timeout", {"idle", "198.18.0.2:8004", "--max-idle", "4s"}, lab_ports},
        {"keepalive_none", {"keepalive", "198.18.0.2:8004", "--max-wait", "3s"}, lab_ports},
        {"keepalive_send", {"keepalive", "198.18.0.2:8004", "--send", "1s", "--count", "2"}, lab_ports},
        // Every experiment of --quick against the Linux-like server with its TIME-WAIT model.
        {"profile_quick", {"profile", "--quick", "198.18.0.2:80"}, time_wait_ports},
        // The whole profile: TIME-WAIT's duration and FIN-WAIT-2 (no bound: the simulated
        // server's FIN-WAIT-2 has no timer) too.
        {"profile_full", {"profile", "198.18.0.2:80"}, time_wait_ports},
    };
    return all;
}

struct Run {
    int status = 0;
    std::string out;
};

/// Runs the command line on a fresh simulated network and returns its stdout.
Run run_cli(const Case& c, bool json) {
    SimNet net;
    c.network(net);
    app::set_edge_provider(&net);
    app::seed_run_rng(12);

    std::vector<std::string> words = {"tcpprobe"};
    if (json) words.insert(words.end(), {"-o", "json"});
    words.insert(words.end(), c.args.begin(), c.args.end());
    std::vector<char*> argv;
    for (auto& w : words) argv.push_back(w.data());

    std::FILE* tmp = std::tmpfile();
    REQUIRE(tmp != nullptr);
    Run r;
    {
        // stdout goes to the file for the run only, whatever the run throws.
        struct Redirect {
            int saved;
            explicit Redirect(std::FILE* to) : saved((std::fflush(stdout), ::dup(STDOUT_FILENO))) {
                ::dup2(::fileno(to), STDOUT_FILENO);
            }
            ~Redirect() {
                std::fflush(stdout);
                ::dup2(saved, STDOUT_FILENO);
                ::close(saved);
                app::set_edge_provider(nullptr);
            }
        } redirect(tmp);
        app::CommandLine cli;
        r.status = cli.run(static_cast<int>(argv.size()), argv.data());
    }

    std::rewind(tmp);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, tmp)) > 0) r.out.append(buf, n);
    std::fclose(tmp);
    r.out = fmt::format("# tcpprobe {} -> exit {}\n", fmt::join(words.begin() + 1, words.end(), " "), r.status) + r.out;
    return r;
}

std::string golden_path(const std::string& name, bool json) {
    return fmt::format("{}/tests/app/golden/{}.{}", TCPPROBE_SOURCE_DIR, name, json ? "jsonl" : "txt");
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

/// The first line where two outputs differ, for a readable failure.
std::string first_difference(const std::string& want, const std::string& got) {
    std::istringstream a(want), b(got);
    std::string la, lb;
    for (int line = 1;; ++line) {
        bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
        if (!ha && !hb) return "identical";
        if (!ha || !hb || la != lb)
            return fmt::format("line {}:\n  golden: {}\n  now:    {}", line, ha ? la : "<end>", hb ? lb : "<end>");
    }
}

void check(const Case& c, bool json) {
    Run r = run_cli(c, json);
    const std::string path = golden_path(c.name, json);
    if (const char* u = std::getenv("TCPPROBE_UPDATE_GOLDEN"); u && *u == '1') {
        std::ofstream(path, std::ios::binary) << r.out;
        MESSAGE("rewrote " << path);
        return;
    }
    const std::string want = read_file(path);
    INFO(path);
    INFO(first_difference(want, r.out));
    CHECK(want == r.out);
}

}  // namespace

TEST_CASE("golden: every command's text output on the simulated lab is unchanged") {
    for (const auto& c : cases()) {
        CAPTURE(c.name);
        check(c, false);
    }
}

TEST_CASE("golden: every command's JSON Lines on the simulated lab are unchanged") {
    for (const auto& c : cases()) {
        CAPTURE(c.name);
        check(c, true);
    }
}
