// Two small pieces every scenario needs: an end that is recorded once, and the earliest
// of the deadlines a scenario is waiting for. Both used to be written out in each flow.
#pragma once

#include <initializer_list>
#include <optional>

#include "tcpprobe/time.hpp"

namespace tcpprobe::probe {

/// A scenario's end, recorded once. Several causes can end a run at the same instant (a
/// RST and a timer, an interrupt after the last answer); the first conclusion wins and
/// every later one is refused, so nothing is reported twice.
class Conclusion {
public:
    /// True for the call that concludes; false (and nothing changes) once concluded.
    [[nodiscard]] bool conclude() {
        if (reached_) return false;
        reached_ = true;
        return true;
    }
    bool reached() const { return reached_; }
    explicit operator bool() const { return reached_; }

private:
    bool reached_ = false;
};

/// The earliest of several deadlines, any of which may be unset.
class Deadlines {
public:
    Deadlines() = default;
    Deadlines(std::initializer_list<std::optional<Instant>> ds) {
        for (const auto& d : ds) consider(d);
    }
    Deadlines& consider(std::optional<Instant> d) {
        if (d && (!earliest_ || *d < *earliest_)) earliest_ = d;
        return *this;
    }
    std::optional<Instant> earliest() const { return earliest_; }

private:
    std::optional<Instant> earliest_;
};

/// The earliest set deadline of `ds`, or none when none is set.
inline std::optional<Instant> earliest(std::initializer_list<std::optional<Instant>> ds) { return Deadlines(ds).earliest(); }

}  // namespace tcpprobe::probe
