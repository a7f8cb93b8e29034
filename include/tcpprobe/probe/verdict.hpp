// Verdicts are lower-case words in every output (DESIGN §1); app/verdict.hpp turns them into exit codes.
#pragma once

#include <string_view>

namespace tcpprobe::probe {

enum class Verdict { Pending, Open, Closed, Filtered, Unreachable };

constexpr std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::Pending: return "pending";
        case Verdict::Open: return "open";
        case Verdict::Closed: return "closed";
        case Verdict::Filtered: return "filtered";
        case Verdict::Unreachable: return "unreachable";
    }
    return "?";
}

/// Combining the verdicts of several flows: the most informative answer wins.
constexpr Verdict combine(Verdict a, Verdict b) {
    auto rank = [](Verdict v) {
        switch (v) {
            case Verdict::Open: return 4;
            case Verdict::Closed: return 3;
            case Verdict::Unreachable: return 2;
            case Verdict::Filtered: return 1;
            case Verdict::Pending: return 0;
        }
        return 0;
    };
    return rank(a) >= rank(b) ? a : b;
}

}  // namespace tcpprobe::probe
