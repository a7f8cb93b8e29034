// TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 §3.4).
//
// Seq deliberately has no operator< : modular order is not a strict weak order (a < b < c
// < a is possible), so it must never reach std::map or std::sort. Comparisons are named
// functions that read like the RFC: before(a, b) is "a < b" in sequence space.
#pragma once

#include <cstdint>

namespace tcpprobe::wire {

class Seq {
public:
    constexpr Seq() = default;
    constexpr explicit Seq(std::uint32_t v) : v_(v) {}
    constexpr std::uint32_t raw() const { return v_; }

    friend constexpr bool operator==(Seq, Seq) = default;
    friend constexpr Seq operator+(Seq s, std::uint32_t n) { return Seq{s.v_ + n}; }
    friend constexpr Seq operator-(Seq s, std::uint32_t n) { return Seq{s.v_ - n}; }
    constexpr Seq& operator+=(std::uint32_t n) { v_ += n; return *this; }

private:
    std::uint32_t v_ = 0;
};

/// Signed distance from a to b: how far b is ahead of a (negative when b is before a).
constexpr std::int32_t distance(Seq a, Seq b) {
    return static_cast<std::int32_t>(b.raw() - a.raw());
}
constexpr bool before(Seq a, Seq b) { return distance(a, b) > 0; }
constexpr bool after(Seq a, Seq b) { return before(b, a); }
constexpr bool before_eq(Seq a, Seq b) { return !after(a, b); }
constexpr bool after_eq(Seq a, Seq b) { return !before(a, b); }
/// start <= s < start + len, modulo 2^32. An empty window contains nothing.
constexpr bool in_window(Seq s, Seq start, std::uint32_t len) {
    return (s.raw() - start.raw()) < len;
}
/// Offset of s relative to base, as printed relative sequence numbers are.
constexpr std::uint32_t relative(Seq s, Seq base) { return s.raw() - base.raw(); }

static_assert(before(Seq{0xFFFFFFF0u}, Seq{0xFFFFFFF0u} + 0x20));
static_assert((Seq{0xFFFFFFF0u} + 0x20).raw() == 0x10);
static_assert(distance(Seq{0xFFFFFFF0u}, Seq{0x10}) == 0x20);
static_assert(distance(Seq{0x10}, Seq{0xFFFFFFF0u}) == -0x20);
static_assert(after(Seq{5}, Seq{0xFFFFFFFFu}));
static_assert(in_window(Seq{2}, Seq{0xFFFFFFFEu}, 8));
static_assert(!in_window(Seq{6}, Seq{0xFFFFFFFEu}, 8));
static_assert(!in_window(Seq{7}, Seq{7}, 0));
static_assert(before_eq(Seq{7}, Seq{7}) && after_eq(Seq{7}, Seq{7}));

}  // namespace tcpprobe::wire
