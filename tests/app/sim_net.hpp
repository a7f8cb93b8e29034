// A simulated network behind app::Edge, so whole commands (CLI parsing, the runner, the
// renderers, the exit status) run without privilege, without a network and without
// sleeping: the golden tests of every command's text and JSON output use it.
//
// The edge's clock is simulated and only moves inside wait(): the runner asks to wait
// until the session's next deadline, and the network delivers whatever arrives before
// then (our segments reach the peer after the one-way delay, the peer's answers reach
// the capture after it). Our own segments are "captured" the instant they are sent, as
// on a real interface. Every frame is encoded to IPv4 bytes and decoded again by the
// runner, so the whole receive path runs.
//
// Peers, per remote port of 198.18.0.2: a listening server (a real tcb::Tcb per
// connection, with a small application: hold the connection, answer a request and close
// first like HTTP/1.0, or close when our FIN arrives), a closed port (the TCB's RST
// rules), a silent port, or an ICMP-unreachable one. A server socket that enters
// TIME-WAIT can be handed to the Linux TIME-WAIT model of the probe tests (tw_model.hpp).
// For `listen`, clients (198.18.0.3) connect to our port at chosen times. A run without
// the RST guard also has our host's kernel, which resets every peer segment it sees
// (it holds no socket for our flows), as a real host does.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "probe/tw_model.hpp"
#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/probe/ip_id.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::simnet {

using namespace std::chrono_literals;

inline constexpr wire::Ipv4Addr local_addr{0xC6120001u};   // 198.18.0.1 (us)
inline constexpr wire::Ipv4Addr server_addr{0xC6120002u};  // 198.18.0.2
inline constexpr wire::Ipv4Addr client_addr{0xC6120003u};  // 198.18.0.3 (listen's clients)
inline constexpr std::uint16_t first_sport = 40000;         // flow i gets 40000 + i

enum class Peer { Listening, Closed, Silent, Unreachable };

/// The server application on a listening port.
enum class App {
    Hold,        ///< accepts, never sends, never closes
    Http,        ///< answers the first request with 100 bytes, then closes first
    HttpHold,    ///< answers the first request, never closes
    CloseOnFin,  ///< closes when our FIN arrives (after close_delay)
};

struct PortSpec {
    Peer peer = Peer::Silent;
    App app = App::Hold;
    Duration close_delay{};        ///< CloseOnFin: how long after our FIN
    Duration rto = 1s;             ///< the server TCB's initial RTO (SYN-ACK, FIN, data)
    unsigned retries = 2;          ///< its retransmissions before it gives up
    std::optional<sim::TwModelConfig> time_wait;  ///< TIME-WAIT modelled after Linux
};

/// A client that connects to our listening port (tcpprobe listen).
struct ClientSpec {
    Duration at{};                 ///< after the run's start
    std::uint16_t port = 50000;    ///< its source port
    Duration rto = 1s;
    unsigned retries = 3;
};

class SimNet final : public app::EdgeProvider {
public:
    explicit SimNet(Duration one_way = 100us);
    /// The one-way delay of every packet from now on.
    void set_one_way(Duration one_way) { delay_ = one_way; }
    ~SimNet() override;

    static Instant start_time() { return instant_from_ns(1'000'000'000'000); }
    void set_port(std::uint16_t port, PortSpec spec) { ports_[port] = spec; }
    void add_client(ClientSpec c) { clients_.push_back(c); }
    /// Interface name the edge reports.
    static constexpr const char* interface = "sim0";

    std::unique_ptr<app::Edge> open(const app::GlobalOptions& g, const app::EdgeRequest& req) override;
    std::unique_ptr<app::Edge> open_listen(const app::GlobalOptions& g, std::optional<wire::Ipv4Addr> local,
                                           std::uint16_t port) override;

    // The engine, driven by the edge.
    Instant now() const { return now_; }
    void send(const wire::Segment& seg);
    bool wait(Duration timeout);
    std::size_t drain(const std::function<void(const io::CapturedFrame&)>& on_frame);

private:
    struct Conn {
        std::optional<tcb::Tcb> tcb;
        std::optional<probe::IpIds> ip_ids;  ///< the peer's IP IDs of this connection
        std::optional<sim::TwModel> tw;
        PortSpec spec;
        bool answered = false;
        bool client = false;
    };
    /// (our port, remote address, remote port)
    using Key = std::tuple<std::uint16_t, std::uint32_t, std::uint16_t>;
    struct InFlight {
        Instant at;
        std::uint64_t order;
        wire::Segment seg;
        bool to_peer;
    };
    struct Frame {
        Instant at;
        wire::ByteVec bytes;
    };

    std::optional<Instant> next_event() const;
    void step(Instant t);
    void deliver_to_peer(Instant t, const wire::Segment& seg);
    void peer_actions(const Key& k, Instant t, const tcb::Actions& actions);
    void from_peer(Instant t, const wire::Segment& seg);
    /// Our host's kernel answering a peer's segment (runs without the RST guard).
    void local_kernel(Instant t, const wire::Segment& seg);
    void capture(Instant t, const wire::Segment& seg);
    void capture_icmp(Instant t, const wire::Segment& quoted);

    Duration delay_;
    Instant now_ = start_time();
    std::uint64_t order_ = 0;
    std::map<std::uint16_t, PortSpec> ports_;
    std::vector<ClientSpec> clients_;
    std::vector<bool> client_started_;
    std::optional<std::uint16_t> listen_port_;
    bool kernel_resets_ = false;  ///< no RST guard: the local kernel resets the peers' segments
    bool kernel_seen_ = false;    ///< and the capture sees those RSTs (libpcap, not raw sockets)
    std::map<Key, Conn> conns_;
    std::vector<std::pair<Instant, Key>> closes_;  ///< CloseOnFin with a delay
    std::deque<InFlight> in_flight_;
    std::deque<Frame> ready_;
    wire::ByteVec current_;  ///< the frame being handed over (drain)
};

}  // namespace tcpprobe::simnet
