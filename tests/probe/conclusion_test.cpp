// The two helpers every scenario shares: an end recorded once, the earliest deadline.
#include <doctest/doctest.h>

#include "tcpprobe/probe/conclusion.hpp"

using namespace tcpprobe;
using namespace tcpprobe::probe;
using namespace std::chrono_literals;

TEST_CASE("a conclusion is taken once; later ones are refused") {
    Conclusion c;
    CHECK_FALSE(c.reached());
    CHECK_FALSE(static_cast<bool>(c));
    CHECK(c.conclude());
    CHECK(c.reached());
    CHECK(static_cast<bool>(c));
    CHECK_FALSE(c.conclude());
    CHECK_FALSE(c.conclude());
    CHECK(c.reached());
}

TEST_CASE("the earliest deadline skips unset ones and keeps the first of equal ones") {
    const Instant t0{};
    CHECK_FALSE(earliest({}).has_value());
    CHECK_FALSE(earliest({std::nullopt, std::nullopt}).has_value());
    CHECK(earliest({std::nullopt, t0 + 5s, t0 + 2s, std::nullopt, t0 + 9s}) == t0 + 2s);
    CHECK(earliest({t0 + 3s}) == t0 + 3s);
    CHECK(earliest({t0 + 3s, t0 + 3s}) == t0 + 3s);

    Deadlines d;
    CHECK_FALSE(d.earliest().has_value());
    d.consider(std::nullopt).consider(t0 + 7s);
    CHECK(d.earliest() == t0 + 7s);
    d.consider(t0 + 8s);
    CHECK(d.earliest() == t0 + 7s);
    d.consider(t0 - 1s);
    CHECK(d.earliest() == t0 - 1s);
}
