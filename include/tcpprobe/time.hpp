// Time vocabulary for the whole project.
//
// The core never reads a clock: every function that needs "now" takes an Instant
// argument. Instants on the wire come from capture timestamps; the runner turns them
// into this type. ProbeClock is a clock *type* with no now(), so an Instant cannot be
// produced by accident from the host clock inside the core.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace tcpprobe {

struct ProbeClock {
    using rep = std::int64_t;
    using period = std::nano;
    using duration = std::chrono::duration<rep, period>;
    using time_point = std::chrono::time_point<ProbeClock>;
    static constexpr bool is_steady = true;
};

using Duration = std::chrono::nanoseconds;
using Instant = ProbeClock::time_point;

/// Builds an Instant from nanoseconds since an arbitrary epoch (a capture's clock).
constexpr Instant instant_from_ns(std::int64_t ns) { return Instant{Duration{ns}}; }
constexpr std::int64_t to_ns(Instant t) { return t.time_since_epoch().count(); }
/// Whole microseconds, rounded to the nearest (JSON's *_us fields).
constexpr std::int64_t to_us(Duration d) { return std::chrono::round<std::chrono::microseconds>(d).count(); }
constexpr double to_ms_f(Duration d) { return static_cast<double>(d.count()) / 1e6; }

/// An optional Instant in 8 bytes (std::optional<Instant> takes 16): Instant::min(),
/// centuries before any capture, stands for "none". For the deadlines a flow keeps
/// (four in a TCB), where every flow of a wide run pays for them.
class CompactInstant {
public:
    constexpr CompactInstant() = default;
    constexpr CompactInstant(std::nullopt_t) {}
    constexpr CompactInstant(Instant t) : t_(t) {}
    constexpr explicit operator bool() const { return t_ != none; }
    constexpr bool has_value() const { return t_ != none; }
    constexpr const Instant& operator*() const { return t_; }
    constexpr Instant value_or(Instant otherwise) const { return has_value() ? t_ : otherwise; }
    constexpr void reset() { t_ = none; }
    constexpr operator std::optional<Instant>() const { return has_value() ? std::optional<Instant>{t_} : std::nullopt; }

private:
    static constexpr Instant none = Instant::min();
    Instant t_ = none;
};

using namespace std::chrono_literals;

}  // namespace tcpprobe
