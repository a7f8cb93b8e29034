// Opening the I/O edge for a run, in the order DESIGN §1 asks: check capabilities, pick
// the route and source ports, open the capture, the raw sender and the RST guard, then
// drop every capability. Everything is released by destructors (also on Ctrl-C).
#pragma once

#include <memory>
#include <vector>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/app/output.hpp"
#include "tcpprobe/io/ports.hpp"
#include "tcpprobe/io/random.hpp"
#include "tcpprobe/io/route.hpp"

namespace tcpprobe::app {

inline constexpr std::uint32_t packet_mark = 0x74637070;  // "tcpp"

struct EdgeRequest {
    std::vector<wire::Ipv4Addr> targets;     ///< all reached through one interface
    std::vector<std::uint16_t> target_ports;
    std::size_t flows = 1;            ///< source ports to reserve
    std::optional<std::uint16_t> sport;
    bool rst_guard = true;            ///< the command completes connections in userspace
    bool headers_only = false;        ///< no payload needed: short snaplen, large ring
    /// Without the RST guard the local kernel's RSTs are part of the report (a note, a
    /// count), so the capture must see outgoing packets we did not send: libpcap.
    /// False when they do not matter (ping).
    bool kernel_rsts_matter = true;
};

/// What a run talks to: the packet sink, the capture, the clock, and a wait on the
/// capture. The live edge (open_edge) holds the raw socket, the pcap handle and the RST
/// guard; tests put a simulated network behind the same interface (set_edge_provider).
class Edge {
public:
    Edge() = default;
    Edge(const Edge&) = delete;
    Edge& operator=(const Edge&) = delete;
    virtual ~Edge() = default;

    io::Route route;
    std::vector<std::uint16_t> sports;
    bool rst_guard = false;  ///< the RST guard (refusing sockets or the nft table) keeps our kernel quiet
    std::string rst_guard_kind;  ///< with the guard: "socket" or "nft" (--rst-guard)
    /// The capture does not see the local kernel's own packets (io::RawSource).
    bool raw_capture = false;

    virtual io::PacketSink& sink() = 0;
    virtual io::PacketSource& source() = 0;
    virtual const io::Clock& clock() const = 0;
    /// Blocks until captured frames are ready, a stop signal arrives or `timeout` has
    /// passed; true when frames are ready.
    virtual bool wait(Duration timeout) = 0;
    /// Writes out what the -w file still buffers.
    virtual void flush() {}
};

/// Where edges come from: the live one, or (tests) a simulated network.
class EdgeProvider {
public:
    virtual ~EdgeProvider() = default;
    virtual std::unique_ptr<Edge> open(const GlobalOptions& g, const EdgeRequest& req) = 0;
    virtual std::unique_ptr<Edge> open_listen(const GlobalOptions& g, std::optional<wire::Ipv4Addr> local,
                                              std::uint16_t port) = 0;
};
/// Replaces the live edge for the rest of the process (nullptr: the live one again).
void set_edge_provider(EdgeProvider* provider);

std::unique_ptr<Edge> open_edge(const GlobalOptions& g, const EdgeRequest& req);

/// The passive side's edge: capture on the interface holding `local` (or "any"), the
/// listen table (SYN drop + RST guard) for `port`, then privileges dropped.
std::unique_ptr<Edge> open_listen_edge(const GlobalOptions& g, std::optional<wire::Ipv4Addr> local, std::uint16_t port);

/// The renderer chosen by -o, --no-color, NO_COLOR and whether stdout is a TTY.
std::unique_ptr<Renderer> make_renderer(const GlobalOptions& g);

/// The run's random numbers, from getrandom(); the core only ever receives values drawn
/// from it (tests pass a seeded io::Random instead).
io::Random& run_rng();
/// Makes run_rng() a reproducible stream (tests only: golden outputs need fixed ISNs).
void seed_run_rng(std::uint64_t seed);

}  // namespace tcpprobe::app
