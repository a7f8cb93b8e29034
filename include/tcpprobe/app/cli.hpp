// The command line (CLI11): global options, one subcommand per scenario, exit codes
// (DESIGN §1): 0 expected behaviour, 1 negative answer, 2 no answer, 3 ICMP error,
// 64 usage, 69 environment, 70 internal, 77 privilege, 130 interrupted.
#pragma once

#include <memory>

namespace CLI {
class App;
}

namespace tcpprobe::app {

namespace exit_status {
inline constexpr int usage = 64;
inline constexpr int environment = 69;
inline constexpr int internal = 70;
inline constexpr int privilege = 77;
inline constexpr int interrupted = 130;
}  // namespace exit_status

class CommandLine {
public:
    CommandLine();
    ~CommandLine();
    /// The whole CLI11 app; the man page/completion test walks it.
    CLI::App& app() { return *app_; }
    /// Parses and runs; returns the process exit status.
    int run(int argc, char** argv);

    struct State;

private:
    std::unique_ptr<State> state_;
    std::unique_ptr<CLI::App> app_;
};

}  // namespace tcpprobe::app
