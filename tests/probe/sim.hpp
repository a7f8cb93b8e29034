// A simulated network for scenario tests: a flow under test, a peer played by a real
// tcb::Tcb (so the peer follows RFC 9293 too), a link with a fixed one-way delay, and a
// simulated clock. Segments the flow sends are "captured" at once (outgoing) and reach
// the peer after the delay; the peer's answers are captured by the flow after the delay.
// A peer "application" reacts to the peer TCB's actions (answer a request, close late,
// reset, stay silent). No sleeps: time is data.
#pragma once

#include <deque>
#include <functional>
#include <optional>
#include <vector>

#include "tcpprobe/probe/ip_id.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/tcb/tcb.hpp"
#include "tcpprobe/wire/format.hpp"

namespace tcpprobe::sim {

using namespace std::chrono_literals;

inline const wire::Endpoint client{{0xC6120001}, 40000};  // 198.18.0.1:40000
inline const wire::Endpoint server{{0xC6120002}, 80};     // 198.18.0.2:80

/// The client's TCB configuration used by scenario tests.
tcb::TcbConfig client_tcb(bool timestamps = true);
/// A peer TCB (server side) with Linux-like options.
tcb::TcbConfig server_tcb(bool timestamps = true);

class Sim;

/// What the peer application does; called with every batch of the peer TCB's actions.
using PeerApp = std::function<void(Sim&, Instant, const tcb::Actions&)>;
/// A custom peer: sees every segment delivered to the peer (Listening / Closed kinds).
/// Returning the answers (possibly none) takes the segment away from the peer TCB;
/// returning nullopt lets the TCB handle it as usual. Answers go through the peer
/// filter and the link delay like the TCB's own segments.
using PeerHook = std::function<std::optional<std::vector<wire::Segment>>(Sim&, Instant, const wire::Segment&)>;

class Sim {
public:
    enum class PeerKind { Listening, Closed, Silent, IcmpUnreachable };

    Sim(probe::Flow& flow, PeerKind kind, Duration one_way = 100us);

    static Instant default_start() { return instant_from_ns(1'000'000'000'000); }
    Instant now() const { return now_; }
    Instant start() const { return start_; }
    tcb::Tcb& peer() { return *peer_; }
    /// The peer host's IP ID counter (peer_actions stamps every segment it sends).
    probe::IpIds& peer_ids() { return peer_ids_; }
    /// Every segment on the wire, in capture order, as "> ..." / "< ..." lines.
    const std::vector<std::string>& wire_log() const { return wire_; }
    const std::vector<wire::Segment>& sent_by_flow() const { return from_flow_; }
    const std::vector<wire::Segment>& sent_by_peer() const { return from_peer_; }
    /// Every state the peer TCB went through.
    const std::vector<tcb::State>& peer_states() const { return peer_states_; }
    std::vector<probe::Event>& events() { return events_; }

    void set_app(PeerApp app) { app_ = std::move(app); }
    void set_peer_hook(PeerHook hook) { hook_ = std::move(hook); }
    /// Drop the peer's segments for which this returns true (loss, delayed ACK model).
    void set_peer_filter(std::function<bool(const wire::Segment&)> drop) { drop_peer_ = std::move(drop); }
    /// Rewrites the peer's segments before the filter sees them (IP IDs of another stack, ...).
    void set_peer_rewrite(std::function<void(wire::Segment&)> f) { rewrite_peer_ = std::move(f); }
    /// Runs the peer TCB's user calls at `at` (used by apps to act later).
    void at(Instant when, std::function<void(Sim&, Instant)> fn) { scheduled_.push_back({when, std::move(fn)}); }
    /// Carries out a batch of the peer TCB's actions (apps call this after peer().close() etc.).
    void peer_actions(Instant t, const tcb::Actions& a);
    /// Injects a segment as if captured at `t` (hostile input, kernel RSTs).
    void capture(Instant t, const wire::Segment& seg, bool outgoing);
    /// Injects an ICMP error of `type`/`code` from `reporter` quoting `quoted`, as if
    /// captured at `t`.
    void icmp(Instant t, const wire::Segment& quoted, std::uint8_t type, std::uint8_t code, wire::Ipv4Addr reporter);

    /// Runs until the flow is done or `limit` of simulated time has passed.
    void run(Duration limit = 120s);

private:
    struct InFlight {
        Instant at;
        wire::Segment seg;
        bool to_peer;
    };
    void flush(probe::Outbox& out);
    void deliver(const InFlight& f);

    probe::Flow& flow_;
    PeerKind kind_;
    Duration delay_;
    Instant start_ = instant_from_ns(1'000'000'000'000);
    Instant now_ = start_;
    std::optional<tcb::Tcb> peer_;
    probe::IpIds peer_ids_{server_tcb().ip.id};  ///< the peer host's IP IDs (its TCBs do not count them)
    PeerApp app_;
    PeerHook hook_;
    std::function<bool(const wire::Segment&)> drop_peer_;
    std::function<void(wire::Segment&)> rewrite_peer_;
    std::deque<InFlight> in_flight_;
    std::vector<std::pair<Instant, std::function<void(Sim&, Instant)>>> scheduled_;
    std::vector<std::string> wire_;
    std::vector<wire::Segment> from_flow_, from_peer_;
    std::vector<tcb::State> peer_states_;
    std::vector<probe::Event> events_;
};

/// Flags of the segments in order, e.g. {"S", "S.", "."}.
std::vector<std::string> flags_of(const std::vector<wire::Segment>& segs);

/// A peer application for flows run without the RST guard: whenever the peer sends a
/// SYN-ACK, the local kernel's own RST (seq = its ACK, an IP ID tcpprobe never uses)
/// shows up in the capture `after` later, as if sent by us.
PeerApp kernel_resets_synacks(Duration after);

/// The flow's own trace of the wire: every segment line it reported, in packetdrill
/// notation with relative numbers ("> S 0:0(0) win 64240 <mss 1460,...>"), so tests
/// compare whole segments (flags, seq/ack, window, options), not flags only.
std::vector<std::string> segment_lines(const std::vector<probe::Event>& events);

}  // namespace tcpprobe::sim
