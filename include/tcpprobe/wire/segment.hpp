// A TCP segment as a value: what the TCB consumes and produces.
//
// Received segments are decoded from checked views (packet.hpp); segments we send are
// built by the core and handed to the I/O edge, which turns them into libnet pblocks.
// The value carries the IP fields we choose per packet (TTL, TOS, DF, IP ID), because
// users pick them on the command line and captures report them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"
#include "tcpprobe/wire/ipv4.hpp"
#include "tcpprobe/wire/seq.hpp"
#include "tcpprobe/wire/tcp_header.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

namespace tcpprobe::wire {

struct Endpoint {
    Ipv4Addr addr;
    std::uint16_t port = 0;
    friend constexpr bool operator==(const Endpoint&, const Endpoint&) = default;
};
std::string to_string(const Endpoint& e);

/// A connection's identity from our side: (local, remote).
struct FourTuple {
    Endpoint local;
    Endpoint remote;
    friend constexpr bool operator==(const FourTuple&, const FourTuple&) = default;
    FourTuple reversed() const { return {remote, local}; }
};

struct FourTupleHash {
    std::size_t operator()(const FourTuple& t) const noexcept {
        std::uint64_t a = (std::uint64_t{t.local.addr.value} << 32) | t.remote.addr.value;
        std::uint64_t b = (std::uint64_t{t.local.port} << 16) | t.remote.port;
        // splitmix64-style mixing: cheap and well distributed for adjacent ports.
        std::uint64_t x = a ^ (b * 0x9E3779B97F4A7C15ull);
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 27; x *= 0x94D049BB133111EBull;
        x ^= x >> 31;
        return static_cast<std::size_t>(x);
    }
};

struct IpFields {
    std::uint8_t ttl = 64;
    std::uint8_t tos = 0;
    bool df = true;
    std::uint16_t id = 0;
    friend bool operator==(const IpFields&, const IpFields&) = default;
};

struct Segment {
    Endpoint src;
    Endpoint dst;
    Seq seq;
    Seq ack;
    std::uint16_t flags = 0;
    std::uint16_t window = 0;
    std::uint16_t urgent = 0;
    OptionList options;
    ByteVec payload;
    IpFields ip;

    // Decoding metadata; meaningless on segments we build.
    std::optional<WireError> options_error;  ///< options that failed to decode (list holds the prefix)
    ByteVec raw_options;                      ///< the option bytes as received
    std::optional<bool> checksum_ok;          ///< unset when the capture was truncated

    bool has(std::uint16_t f) const { return (flags & f) == f; }
    bool has_any(std::uint16_t f) const { return (flags & f) != 0; }
    /// SEG.LEN of RFC 9293: payload plus one for SYN and one for FIN.
    std::uint32_t seg_len() const {
        return static_cast<std::uint32_t>(payload.size()) + (has(flag::syn) ? 1u : 0u) +
               (has(flag::fin) ? 1u : 0u);
    }
    FourTuple tuple_from_sender() const { return {src, dst}; }
};

}  // namespace tcpprobe::wire
