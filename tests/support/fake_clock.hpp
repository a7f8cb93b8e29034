// A simulated clock for tests: an Instant that moves only when the test says so.
//
// The core never reads a clock (STYLE §9); tests do not either. Time is data: expiring
// TIME-WAIT is one call with a later instant, never a sleep (STYLE §16). The clock starts
// at a large, arbitrary epoch, as a capture timestamp would, so nothing in the core can
// get away with assuming that time starts at zero.
#pragma once

#include <stdexcept>

#include "tcpprobe/time.hpp"

namespace tcpprobe::test {

inline constexpr Instant test_epoch = instant_from_ns(1'700'000'000'123'456'789);

class FakeClock {
public:
    explicit FakeClock(Instant start = test_epoch) : start_(start), now_(start) {}

    Instant now() const { return now_; }
    Instant start() const { return start_; }
    Duration elapsed() const { return now_ - start_; }

    Instant advance(Duration d) {
        if (d < Duration::zero()) throw std::logic_error("FakeClock: time cannot go backwards");
        now_ += d;
        return now_;
    }
    Instant advance_to(Instant t) {
        if (t < now_) throw std::logic_error("FakeClock: time cannot go backwards");
        now_ = t;
        return now_;
    }

private:
    Instant start_;
    Instant now_;
};

}  // namespace tcpprobe::test
