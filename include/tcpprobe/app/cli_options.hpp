// Option groups several commands share, bound with CLI11: the target, the SYN's options,
// our connect schedule, and numbers read as decimal (or 0x-hex) rather than CLI11's
// base-0 reading, where "010" would be octal.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tcpprobe/app/commands.hpp"

namespace tcpprobe::app {

/// "010" is ten, not octal eight.
const CLI::Validator& decimal();

template <class T>
CLI::Option* number(CLI::App& cmd, const std::string& name, T& into, const std::string& desc) {
    return cmd.add_option(name, into, desc)->transform(decimal())->type_name("N");
}

template <class T>
CLI::Option* optional_number(CLI::App& cmd, const std::string& name, std::optional<T>& into, const std::string& desc) {
    return cmd.add_option_function<T>(name, [&into](const T& v) { into = v; }, desc)->transform(decimal())->type_name("N");
}

/// The positional HOST:PORT.
void add_target(CLI::App& cmd, std::string& target);
/// The positional HOST:PORTS..., several allowed; `example` is the first one the help shows.
void add_targets(CLI::App& cmd, std::vector<std::string>& targets, const std::string& example);
/// The SYN options; `isn_and_ts` is false for time-wait, where --isn and --ts name the
/// reuse test's choices instead; `sport` is false for ping (a source port per lane).
void add_syn_options(CLI::App& cmd, SynOptions& s, bool isn_and_ts = true, bool sport = true);
void add_connect_options(CLI::App& cmd, ConnectOptions& c);

}  // namespace tcpprobe::app
