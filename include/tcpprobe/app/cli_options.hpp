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

/// The words of an enum option, in the order the help lists them.
template <class E>
using Words = std::vector<std::pair<std::string, E>>;

/// The words of `values`: each one's to_string (found by argument-dependent lookup).
template <class E>
Words<E> words_of(std::initializer_list<E> values) {
    Words<E> words;
    for (E v : values) words.emplace_back(std::string(to_string(v)), v);
    return words;
}

/// The word of `value` in `words` (the text and JSON show what the user typed).
template <class E>
const std::string& word_of(const Words<E>& words, E value) {
    for (const auto& [w, v] : words)
        if (v == value) return w;
    return words.front().first;  // unreachable when `words` covers the enum's choices
}

/// An option that takes exactly one of `words` and stores its enum value: CLI11 checks
/// the word (help and completions show "TEXT:{a,b,c}"), and the word becomes the value
/// here, once, instead of a string each command parses again.
template <class E>
CLI::Option* choice(CLI::App& cmd, const std::string& name, E& into, const Words<E>& words, const std::string& desc) {
    std::vector<std::string> keys;
    for (const auto& w : words) keys.push_back(w.first);
    return cmd
        .add_option_function<std::string>(
            name,
            [&into, words](const std::string& w) {
                for (const auto& [k, v] : words)
                    if (k == w) into = v;
            },
            desc)
        ->check(CLI::IsMember(keys))
        ->type_name("TEXT");
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
