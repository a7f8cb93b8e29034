// Opening the I/O edge (see edge.hpp).
#include "tcpprobe/app/edge.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/files.hpp"
#include "tcpprobe/io/libnet_sender.hpp"
#include "tcpprobe/io/nft_guard.hpp"
#include "tcpprobe/io/pcap_source.hpp"
#include "tcpprobe/io/port_reservation.hpp"
#include "tcpprobe/io/privileges.hpp"
#include "tcpprobe/io/raw_source.hpp"
#include "tcpprobe/io/system_clock.hpp"
#include "tcpprobe/probe/scenario.hpp"

namespace tcpprobe::app {

namespace {
std::unique_ptr<io::Random>& rng_slot() {
    static std::unique_ptr<io::Random> rng;
    return rng;
}
EdgeProvider* edge_provider = nullptr;
}  // namespace

io::Random& run_rng() {
    auto& rng = rng_slot();
    if (!rng) rng = std::make_unique<io::Random>();
    return *rng;
}

void seed_run_rng(std::uint64_t seed) { rng_slot() = std::make_unique<io::Random>(seed); }

void set_edge_provider(EdgeProvider* provider) { edge_provider = provider; }

namespace {
void check_write_options(const GlobalOptions& g) {
    if (!g.write_pcap.empty()) parse_write_path(g.write_pcap);
    if (g.write_limit.empty()) return;
    parse_write_limit(g.write_limit);
    if (g.write_pcap.empty()) throw io::UsageError("--write-limit: only with -w FILE");
}

void drop_privileges_logged() {
    const io::DropReport r = io::drop_privileges();
    spdlog::debug("privileges dropped: uid {} gid {}, no capabilities, no_new_privs, seccomp", r.uid, r.gid);
    if (!r.bounding_set_emptied)
        spdlog::info("the capability bounding set could not be emptied (CAP_SETPCAP not granted): "
                     "`setcap cap_net_raw,cap_net_admin,cap_setpcap+ep` grants it");
}

std::string new_table_name() { return io::guard_table_name(::getpid(), static_cast<std::uint32_t>(run_rng()())); }
}  // namespace

namespace {

/// The real edge: a libnet raw socket, a capture, the RST guard (the reserved ports, or
/// an nft table).
struct LiveEdge final : Edge {
    LiveEdge() = default;
    /// A packet socket and the nft socket each wait for an RCU grace period when they are
    /// released (packet_release, netlink; 15-25 ms apiece here): they are closed in
    /// threads while the rest goes. Raw sockets close at once, and RawSource reads the
    /// sender's socket: it goes first.
    ~LiveEdge() override {
        if (pcap_capture && pcap_capture->write_skipped())
            spdlog::warn("-w: the file reached --write-limit; {} later packets were not written", pcap_capture->write_skipped());
        if (raw_capture) capture.reset();
        std::thread capture_closer;
        if (capture) capture_closer = std::thread([c = std::move(capture)]() mutable { c.reset(); });
        std::thread guard_closer([g = std::move(guard)]() mutable { g.reset(); });
        sender.reset();
        if (capture_closer.joinable()) capture_closer.join();
        guard_closer.join();
    }

    io::PacketSink& sink() override { return *sender; }
    io::PacketSource& source() override { return *capture; }
    const io::Clock& clock() const override { return system_clock; }
    bool wait(Duration timeout) override { return wait_for_frames(capture->fds(), timeout); }
    void flush() override { capture->flush(); }

    io::PortReservation ports;
    /// io::RawSource, or io::PcapSource for -w FILE, loopback and runs that must see the
    /// local kernel's own packets.
    std::unique_ptr<io::PacketSource> capture;
    io::PcapSource* pcap_capture = nullptr;  ///< the capture when it is libpcap's (-w, its limit)
    std::unique_ptr<io::LibnetSender> sender;
    std::unique_ptr<io::NftGuard> guard;
    io::SystemClock system_clock;
};

/// -w FILE, opened before any privilege is dropped but with the invoking user's rights
/// (io::create_user_file); -1 without -w.
struct PcapFile {
    int fd = -1;
    std::string path;
    std::uint64_t limit = 0;
    explicit PcapFile(const GlobalOptions& g) {
        if (g.write_pcap.empty()) return;
        path = parse_write_path(g.write_pcap);
        if (!g.write_limit.empty()) limit = parse_write_limit(g.write_limit);
        fd = io::create_user_file(path, fmt::format("-w {}", path));
    }
    ~PcapFile() {
        if (fd >= 0) ::close(fd);
    }
    PcapFile(const PcapFile&) = delete;
    PcapFile& operator=(const PcapFile&) = delete;
    bool given() const { return fd >= 0; }
    /// Hands the file to the capture, which closes it.
    void attach(io::PcapSource& capture) {
        if (fd < 0) return;
        capture.dump_to(std::exchange(fd, -1), path, limit);
    }
};
}  // namespace

std::unique_ptr<Edge> open_edge(const GlobalOptions& g, const EdgeRequest& req) {
    if (edge_provider) return edge_provider->open(g, req);
    const bool guard = req.rst_guard && !g.no_rst_guard;
    check_write_options(g);  // a usage error before anything else
    io::require_capabilities(true);  // CAP_NET_ADMIN for SO_MARK even without the guard
    PcapFile pcap_file(g);

    auto edge = std::make_unique<LiveEdge>();
    std::optional<wire::Ipv4Addr> source;
    if (!g.source.empty()) source = io::resolve_ipv4(g.source);
    std::optional<std::string> iface;
    if (!g.interface.empty()) iface = g.interface;
    edge->route = io::select_route(req.targets.at(0), source, iface);
    for (auto t : req.targets) {
        // One capture and one sender: every target must be reached the same way.
        io::Route r = io::select_route(t, source, iface);
        if (r.interface != edge->route.interface || !(r.source == edge->route.source))
            throw io::UsageError(fmt::format("targets {} and {} are reached through different interfaces or sources; "
                                             "probe them in separate runs", wire::to_string(req.targets[0]), wire::to_string(t)));
    }
    spdlog::debug("route to {}: source {} interface {}", wire::to_string(req.targets[0]),
                  wire::to_string(edge->route.source), edge->route.interface);

    // Descriptors besides the reserved ports: stdio, the capture, the raw socket, the nft
    // socket, the -w file, the loop's wake-up pipe, the libraries' own; with room to spare.
    constexpr std::size_t base_fds = 64;
    io::ensure_fd_limit(req.flows + base_fds, fmt::format("{} flows (one reserved source port each)", req.flows));
    // Many flows: a block of consecutive ports, so the capture filter stays short and exact.
    if (req.flows > 1 && !req.sport)
        edge->sports = edge->ports.reserve_block(edge->route.source, req.flows, static_cast<std::uint32_t>(run_rng()()));
    else
        for (std::size_t i = 0; i < req.flows; ++i)
            edge->sports.push_back(edge->ports.reserve(edge->route.source, req.sport.value_or(0)));

    // Many flows: a buffer that holds their answers while we are still sending: 2 KiB
    // frames (a whole 1500-byte packet), or 256 bytes when only headers matter (every
    // header with options fits; ping reads no payload). One connection: full frames in
    // a small ring (start-up is faster). Room for about four frames per flow (SYN,
    // answer, our reply, the kernel's), between 1 and 32 MiB:
    //  * the raw sockets' receive queues are kernel memory: room for every flow;
    //  * libpcap's ring is mapped whole into our memory (at 10,000 flows it was 42 MB of
    //    our RSS), and the session starts or serves at most Session::flows_per_call flows
    //    before the loop reads the capture again: room for the flows of two such calls.
    const bool wide = req.headers_only || req.flows > 16;
    const int snaplen = req.headers_only ? 256 : wide ? 2048 : 65535;
    const auto buffer_for = [snaplen](std::size_t flows) {
        return static_cast<int>(std::clamp<std::size_t>(flows * 4 * (static_cast<std::size_t>(snaplen) + 96),
                                                        std::size_t{1} << 20, std::size_t{32} << 20));
    };
    const int ring = buffer_for(req.flows);
    const int pcap_ring = buffer_for(std::min(req.flows, 2 * probe::Session::flows_per_call));
    edge->sender = std::make_unique<io::LibnetSender>(edge->route.interface, packet_mark);
    // Raw IP sockets unless the run writes a pcap file, must see the local kernel's own
    // packets (no RST guard), or stays on loopback (where a raw socket would receive our
    // own segments a second time). See io/raw_source.hpp for why.
    const bool raw = !pcap_file.given() && !(req.kernel_rsts_matter && !guard) && edge->route.interface != "lo";
    if (raw) {
        try {
            edge->capture = std::make_unique<io::RawSource>(
                edge->route.interface,
                io::capture_filter(edge->route.source, edge->sports, req.targets, req.target_ports, true),
                edge->sender->fd(), [s = edge->sender.get()] { return s->sent(); }, snaplen, wide ? ring : 1 << 20);
            edge->raw_capture = true;
        } catch (const io::EnvironmentError& e) {
            spdlog::debug("raw-socket capture unavailable ({}), capturing with libpcap", e.what());
        }
    }
    if (!edge->capture) {
        auto pcap = std::make_unique<io::PcapSource>(
            edge->route.interface, io::capture_filter(edge->route.source, edge->sports, req.targets, req.target_ports),
            snaplen, wide ? pcap_ring : 1 << 20);
        pcap_file.attach(*pcap);
        edge->pcap_capture = pcap.get();
        edge->capture = std::move(pcap);
    }
    if (guard && g.rst_guard == "nft") {
        std::string table = new_table_name();
        edge->guard = std::make_unique<io::NftGuard>(
            table, io::rst_guard_ruleset(table, edge->route.source, edge->sports, req.targets, packet_mark));
        spdlog::debug("RST guard: nft table ip {}", table);
    } else if (guard) {
        edge->ports.refuse_segments();
        spdlog::debug("RST guard: {} listening socket(s) that refuse every segment", edge->sports.size());
    }
    edge->rst_guard = guard;
    if (guard) edge->rst_guard_kind = g.rst_guard;
    drop_privileges_logged();
    return edge;
}

std::unique_ptr<Edge> open_listen_edge(const GlobalOptions& g, std::optional<wire::Ipv4Addr> local, std::uint16_t port) {
    if (edge_provider) return edge_provider->open_listen(g, local, port);
    check_write_options(g);
    io::require_capabilities(true);
    auto edge = std::make_unique<LiveEdge>();
    // The port is held for the run: refused if a local socket uses it (its traffic is not
    // ours to capture, and its clients' SYNs not ours to drop), and nothing local can
    // take it while we watch. Who may listen on a privileged port is who may bind it.
    edge->ports.hold_for_listen(local, port);
    PcapFile pcap_file(g);
    if (!g.interface.empty()) edge->route.interface = g.interface;
    else if (local) edge->route = io::select_route(*local, local, std::nullopt);
    else edge->route.interface = "any";
    if (local) edge->route.source = *local;
    const std::string filter = io::listen_capture_filter(port, local ? std::vector<wire::Ipv4Addr>{*local} : io::local_ipv4_addresses());
    auto capture = std::make_unique<io::PcapSource>(edge->route.interface, filter);
    pcap_file.attach(*capture);
    edge->pcap_capture = capture.get();
    edge->capture = std::move(capture);
    edge->sender = std::make_unique<io::LibnetSender>(edge->route.interface == "any" ? "" : edge->route.interface, packet_mark);
    if (g.rst_guard == "nft") {
        std::string table = new_table_name();
        edge->guard = std::make_unique<io::NftGuard>(table, io::listen_ruleset(table, local, port, packet_mark));
    } else {
        // The held port refuses every segment: our clients' SYNs reach the capture and
        // never the local stack, and nothing of theirs draws an answer from it.
        edge->ports.refuse_segments();
    }
    edge->rst_guard = true;
    edge->rst_guard_kind = g.rst_guard;
    drop_privileges_logged();
    return edge;
}

std::unique_ptr<Renderer> make_renderer(const GlobalOptions& g) {
    if (g.output == "json") return make_json_renderer(stdout);
    const char* no_color = std::getenv("NO_COLOR");
    TextStyle style;
    style.color = !g.no_color && !(no_color && *no_color) && ::isatty(STDOUT_FILENO);
    return make_text_renderer(stdout, style);
}

}  // namespace tcpprobe::app
