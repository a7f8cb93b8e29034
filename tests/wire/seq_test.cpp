// Tests for wire/seq: modular sequence arithmetic (RFC 9293 §3.4). The header pins the
// basic wrap cases in static_asserts; these tests walk the wrap point and the 2^31 edge.
#include <doctest/doctest.h>

#include <concepts>
#include <limits>
#include <type_traits>

#include "tcpprobe/wire/seq.hpp"

using namespace tcpprobe::wire;

namespace {
// Seq must not be ordered with < : modular order is not a strict weak order.
template <class T>
concept LessComparable = requires(T a, T b) { a < b; };
static_assert(!LessComparable<Seq>);
static_assert(!std::totally_ordered<Seq>);
static_assert(std::equality_comparable<Seq>);
// Construction from a raw number is explicit, so a length cannot become a Seq by accident.
static_assert(!std::is_convertible_v<std::uint32_t, Seq>);
}  // namespace

TEST_CASE("Seq: 0xFFFFFFF0 + 0x20 wraps to 0x10") {
    Seq s{0xFFFFFFF0u};
    CHECK((s + 0x20).raw() == 0x10u);
    s += 0x20;
    CHECK(s == Seq{0x10});
    CHECK((Seq{0x10} - 0x20).raw() == 0xFFFFFFF0u);
    CHECK((Seq{0xFFFFFFFFu} + 1).raw() == 0u);
}

TEST_CASE("Seq: before and after hold across the wrap") {
    const Seq high{0xFFFFFFF0u};
    const Seq low{0x10};
    CHECK(before(high, low));
    CHECK(after(low, high));
    CHECK_FALSE(before(low, high));
    CHECK_FALSE(after(high, low));
    CHECK(before(Seq{0xFFFFFFFFu}, Seq{0}));
    CHECK(after(Seq{0}, Seq{0xFFFFFFFFu}));
}

TEST_CASE("Seq: a number is neither before nor after itself, but before_eq and after_eq it") {
    const Seq s{12345};
    CHECK_FALSE(before(s, s));
    CHECK_FALSE(after(s, s));
    CHECK(before_eq(s, s));
    CHECK(after_eq(s, s));
    CHECK(before_eq(Seq{0xFFFFFFFFu}, Seq{3}));
    CHECK(after_eq(Seq{3}, Seq{0xFFFFFFFFu}));
    CHECK_FALSE(before_eq(Seq{3}, Seq{0xFFFFFFFFu}));
}

TEST_CASE("Seq: distance is signed, positive when b is ahead of a and negative when behind") {
    CHECK(distance(Seq{100}, Seq{150}) == 50);
    CHECK(distance(Seq{150}, Seq{100}) == -50);
    CHECK(distance(Seq{0xFFFFFFF0u}, Seq{0x10}) == 0x20);
    CHECK(distance(Seq{0x10}, Seq{0xFFFFFFF0u}) == -0x20);
    CHECK(distance(Seq{7}, Seq{7}) == 0);
    // The largest forward distance is 2^31 - 1; one more is read as backwards.
    CHECK(distance(Seq{0}, Seq{0x7FFFFFFFu}) == 0x7FFFFFFF);
    CHECK(distance(Seq{0}, Seq{0x80000001u}) == -0x7FFFFFFF);
}

TEST_CASE("Seq: numbers exactly 2^31 apart are neither before nor after each other") {
    // Linux's before()/after() have the same blind spot; RFC 1982 leaves it undefined.
    const Seq a{5};
    const Seq b = a + 0x80000000u;
    CHECK(distance(a, b) == std::numeric_limits<std::int32_t>::min());
    CHECK(distance(b, a) == std::numeric_limits<std::int32_t>::min());
    CHECK_FALSE(before(a, b));
    CHECK_FALSE(after(a, b));
    CHECK_FALSE(before(b, a));
    CHECK_FALSE(after(b, a));
}

TEST_CASE("Seq: in_window is start <= s < start + len, across the wrap") {
    const Seq start{0xFFFFFFFEu};  // window covers FFFFFFFE, FFFFFFFF, 0 .. 5
    CHECK(in_window(Seq{0xFFFFFFFEu}, start, 8));
    CHECK(in_window(Seq{0xFFFFFFFFu}, start, 8));
    CHECK(in_window(Seq{0}, start, 8));
    CHECK(in_window(Seq{5}, start, 8));
    CHECK_FALSE(in_window(Seq{6}, start, 8));
    CHECK_FALSE(in_window(Seq{0xFFFFFFFDu}, start, 8));
}

TEST_CASE("Seq: an empty window contains nothing, not even its start") {
    CHECK_FALSE(in_window(Seq{7}, Seq{7}, 0));
    CHECK_FALSE(in_window(Seq{0}, Seq{0xFFFFFFFFu}, 0));
}

TEST_CASE("Seq: a window of one holds exactly its start") {
    CHECK(in_window(Seq{0xFFFFFFFFu}, Seq{0xFFFFFFFFu}, 1));
    CHECK_FALSE(in_window(Seq{0}, Seq{0xFFFFFFFFu}, 1));
}

TEST_CASE("Seq: relative gives the offset from an initial sequence number modulo 2^32") {
    const Seq iss{0xFFFFFFF0u};
    CHECK(relative(iss, iss) == 0u);
    CHECK(relative(iss + 1, iss) == 1u);
    CHECK(relative(Seq{0x10}, iss) == 0x20u);
    // Before the ISN wraps to a large number, as tcpdump prints it.
    CHECK(relative(iss - 1, iss) == 0xFFFFFFFFu);
}
