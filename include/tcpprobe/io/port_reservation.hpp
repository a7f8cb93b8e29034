// Source ports held for the run, so the local stack hands them to nobody else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "tcpprobe/wire/ipv4.hpp"

namespace tcpprobe::io {

/// Holds a bound TCP socket per port so the local stack does not hand the same port to
/// another connection during the run (never listening, unless refuse_segments()).
class PortReservation {
public:
    PortReservation() = default;
    PortReservation(const PortReservation&) = delete;
    PortReservation& operator=(const PortReservation&) = delete;
    ~PortReservation();
    /// A random free ephemeral port on `source` (port 0 = any), or the given one.
    std::uint16_t reserve(wire::Ipv4Addr source, std::uint16_t port = 0);
    /// `count` free ports of the ephemeral range, consecutive from `start_hint` (taken
    /// modulo the range) where free, so that the capture filter names a few ranges.
    std::vector<std::uint16_t> reserve_block(wire::Ipv4Addr source, std::size_t count, std::uint32_t start_hint);
    /// Holds `port` on `local` (nullopt: every address) for `listen`, so no local socket
    /// uses it during the run. Throws UsageError when a local socket already uses it
    /// (listening, connected or in TIME-WAIT), PrivilegeError when the port is below
    /// net.ipv4.ip_unprivileged_port_start and the process may not bind it.
    void hold_for_listen(std::optional<wire::Ipv4Addr> local, std::uint16_t port);

    /// The RST guard without nftables: every port held becomes a listening socket behind a
    /// socket filter that refuses every segment. The local stack then finds that listener
    /// for any segment sent to the port, and once the filter has refused it, drops it
    /// without an answer (tcp_v4_rcv: tcp_filter, then discard): no RST, no ACK. Our
    /// captures (raw sockets, packet sockets) get their copy before the TCP layer. It
    /// lasts exactly as long as the descriptors: the kernel closes them with the process
    /// however it ends, and closing a socket waits for no RCU grace period (an nftables
    /// table's release does: 8-16 ms at exit).
    /// Throws EnvironmentError when a socket refuses the filter or the listen.
    void refuse_segments();

private:
    static void refuse(int fd);
    std::vector<int> fds_;
};

}  // namespace tcpprobe::io
