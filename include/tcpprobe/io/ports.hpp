// The I/O edge as the rest of the program sees it: interfaces only. The core never
// includes this; the runner (app) connects a scenario to these ports. Tests replace
// them with fakes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::io {

/// Injects segments. Every outgoing packet is built by libnet in the real implementation.
class PacketSink {
public:
    virtual ~PacketSink() = default;
    virtual void send(const wire::Segment& segment) = 0;
};

struct CapturedFrame {
    Instant timestamp;  ///< capture timestamp (the one time base for every interval)
    int link_type;
    std::span<const std::uint8_t> bytes;
};

/// Yields captured frames. fd() is pollable; drain() hands over everything ready.
class PacketSource {
public:
    virtual ~PacketSource() = default;
    /// The descriptors that become ready (readable, or an error queue filled) when there
    /// is something to drain; the loop polls them while it waits.
    virtual std::span<const int> fds() const = 0;
    virtual std::size_t drain(const std::function<void(const CapturedFrame&)>& on_frame) = 0;
    /// The run's last drain: a capture that holds frames back hands over everything.
    virtual std::size_t drain_last(const std::function<void(const CapturedFrame&)>& on_frame) { return drain(on_frame); }
    /// Packets the capture lost (kernel ring full); answers may be missing when non-zero.
    virtual std::uint64_t drops() const { return 0; }
    /// Packets we sent that were not seen reaching the driver (a local queueing
    /// discipline dropped them, or their transmit stamp was lost): dated by the time they
    /// entered the device layer, if at all.
    virtual std::uint64_t unsent() const { return 0; }
    /// Writes out what is buffered for a -w file, if any.
    virtual void flush() {}
};

/// The host clock, in the same time base as capture timestamps (CLOCK_REALTIME on Linux,
/// because that is what pcap's "host" timestamps use).
class Clock {
public:
    virtual ~Clock() = default;
    virtual Instant now() const = 0;
};

/// Keeps the local kernel from resetting connections completed in userspace.
class RstSuppressor {
public:
    virtual ~RstSuppressor() = default;
};

}  // namespace tcpprobe::io
