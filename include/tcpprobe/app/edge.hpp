// Opening the I/O edge for a run, in the order DESIGN §1 asks: check capabilities, pick
// the route and source ports, open the capture, the raw sender and the RST guard, then
// drop every capability. Everything is released by destructors (also on Ctrl-C).
#pragma once

#include <memory>
#include <vector>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/app/output.hpp"
#include "tcpprobe/io/random.hpp"
#include "tcpprobe/io/system.hpp"

namespace tcpprobe::app {

inline constexpr std::uint32_t packet_mark = 0x74637070;  // "tcpp"

struct EdgeRequest {
    std::vector<wire::Ipv4Addr> targets;     ///< all reached through one interface
    std::vector<std::uint16_t> target_ports;
    std::size_t flows = 1;            ///< source ports to reserve
    std::optional<std::uint16_t> sport;
    bool rst_guard = true;            ///< the command completes connections in userspace
    bool headers_only = false;        ///< no payload needed: short snaplen, large ring
};

struct Edge {
    Edge() = default;
    Edge(const Edge&) = delete;
    Edge& operator=(const Edge&) = delete;
    /// Releases the capture and the nft socket in parallel: each release waits for an RCU
    /// grace period in the kernel (packet_release, netlink), 15-25 ms apiece here.
    ~Edge();

    io::Route route;
    std::vector<std::uint16_t> sports;
    io::PortReservation ports;
    std::unique_ptr<io::PcapSource> capture;
    std::unique_ptr<io::LibnetSender> sender;
    std::unique_ptr<io::NftGuard> guard;
    io::SystemClock clock;
};

std::unique_ptr<Edge> open_edge(const GlobalOptions& g, const EdgeRequest& req);

/// The passive side's edge: capture on the interface holding `local` (or "any"), the
/// listen table (SYN drop + RST guard) for `port`, then privileges dropped.
std::unique_ptr<Edge> open_listen_edge(const GlobalOptions& g, std::optional<wire::Ipv4Addr> local, std::uint16_t port);

/// The renderer chosen by -o, --no-color, NO_COLOR and whether stdout is a TTY.
std::unique_ptr<Renderer> make_renderer(const GlobalOptions& g);

/// The run's random numbers, from getrandom(); the core only ever receives values drawn
/// from it (tests pass a seeded io::Random instead).
io::Random& run_rng();

}  // namespace tcpprobe::app
