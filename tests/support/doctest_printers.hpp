// How doctest prints the core's types in failure messages.
//
// doctest 2.4.9 prints every enum as its underlying integer and ignores StringMaker for
// enums, but it finds a non-template toString() by argument-dependent lookup, which
// beats its own template. So the enums get a toString in their own namespace (test
// code only) and the class types a StringMaker: "SYN-RECEIVED" instead of "3".
#pragma once

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/tcb/action.hpp"
#include "tcpprobe/tcb/state.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/seq.hpp"

namespace tcpprobe::tcb {
inline doctest::String toString(State s) { return std::string(to_string(s)).c_str(); }
inline doctest::String toString(SendReason r) { return std::string(to_string(r)).c_str(); }
inline doctest::String toString(TimerKind k) { return std::string(to_string(k)).c_str(); }
}  // namespace tcpprobe::tcb

template <>
struct doctest::StringMaker<tcpprobe::wire::Seq> {
    static doctest::String convert(tcpprobe::wire::Seq s) { return std::to_string(s.raw()).c_str(); }
};

template <>
struct doctest::StringMaker<tcpprobe::Instant> {
    static doctest::String convert(tcpprobe::Instant t) {
        return (std::to_string(tcpprobe::to_ns(t)) + " ns").c_str();
    }
};

template <>
struct doctest::StringMaker<tcpprobe::Duration> {
    static doctest::String convert(tcpprobe::Duration d) { return (std::to_string(d.count()) + " ns").c_str(); }
};

template <>
struct doctest::StringMaker<std::optional<tcpprobe::Instant>> {
    static doctest::String convert(const std::optional<tcpprobe::Instant>& t) {
        return t ? doctest::StringMaker<tcpprobe::Instant>::convert(*t) : doctest::String("nullopt");
    }
};

template <>
struct doctest::StringMaker<std::vector<tcpprobe::Duration>> {
    static doctest::String convert(const std::vector<tcpprobe::Duration>& v) {
        std::string out = "[";
        for (std::size_t i = 0; i < v.size(); ++i)
            out += (i ? ", " : "") + std::to_string(tcpprobe::to_ms_f(v[i])) + " ms";
        return (out + "]").c_str();
    }
};

/// Segment lines and flag lists, one per line, so a failed trace comparison shows both traces.
template <>
struct doctest::StringMaker<std::vector<std::string>> {
    static doctest::String convert(const std::vector<std::string>& v) {
        std::string out = "{";
        for (const auto& s : v) out += "\n    \"" + s + "\"";
        return (out + (v.empty() ? "}" : "\n}")).c_str();
    }
};
