// The run's random numbers: ISNs, first IP IDs, timestamp offsets, the nft table's name.
// They come from the kernel's CSPRNG (getrandom), so a target that sees one ISN of a run
// learns nothing about the others, nor about the next run's (a generator seeded with 32
// bits, as before, could be recovered from a single ISN). Tests inject a seed instead
// (STYLE §11) and get a reproducible stream.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>

namespace tcpprobe::io {

/// A UniformRandomBitGenerator of 64-bit values.
class Random {
public:
    using result_type = std::uint64_t;
    /// Values from getrandom(2), drawn in batches. Throws EnvironmentError if the kernel
    /// has none to give.
    Random() = default;
    /// A reproducible stream: mt19937_64 seeded with `seed` (tests only).
    explicit Random(std::uint64_t seed) : seeded_(std::in_place, seed) {}
    // A copy would hand out the same buffered values twice.
    Random(const Random&) = delete;
    Random& operator=(const Random&) = delete;

    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return ~result_type{0}; }
    result_type operator()();

private:
    std::optional<std::mt19937_64> seeded_;
    std::array<std::uint64_t, 16> batch_{};
    std::size_t left_ = 0;
};

}  // namespace tcpprobe::io
