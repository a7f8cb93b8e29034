// CompactInstant (time.hpp): an optional Instant in the space of an Instant, for the
// deadlines every flow keeps (a TCB holds four).
#include <doctest/doctest.h>

#include <optional>

#include "tcpprobe/time.hpp"

using namespace tcpprobe;

TEST_CASE("CompactInstant: half the size of std::optional<Instant>, with its meaning") {
    CHECK(sizeof(CompactInstant) == sizeof(Instant));
    CHECK(sizeof(CompactInstant) < sizeof(std::optional<Instant>));

    CompactInstant none;
    CHECK_FALSE(none);
    CHECK_FALSE(none.has_value());
    CHECK(std::optional<Instant>(none) == std::nullopt);
    const Instant t = instant_from_ns(1'000'000'123);
    CHECK(none.value_or(t) == t);

    CompactInstant at = t;
    CHECK(at);
    CHECK(*at == t);
    CHECK(at.value_or(instant_from_ns(5)) == t);
    CHECK(std::optional<Instant>(at) == t);
    // Instants before the capture clock's epoch are values too (only Instant::min() is not).
    const CompactInstant early = instant_from_ns(-5);
    CHECK(early);
    CHECK(*early == instant_from_ns(-5));

    at.reset();
    CHECK_FALSE(at);
    at = std::nullopt;
    CHECK_FALSE(at);
    at = instant_from_ns(0);
    CHECK(at);
    CHECK(*at == instant_from_ns(0));
}
