// Two lifetimes measured with the lifetime engine (lifetime.hpp), one probe per
// connection, because the probe that tells whether the state is still there ends or
// restarts it:
//
//   fin-wait-2  the peer's FIN-WAIT-2. The peer closes first (after the request); we
//               ACK its FIN and never send ours, so it waits in FIN-WAIT-2 from the
//               capture of our ACK. The probe is our FIN (FIN+ACK at SND.NXT): a peer
//               still in FIN-WAIT-2 ACKs it and moves to TIME-WAIT (RFC 9293
//               §3.10.7.4, "FIN-WAIT-2 STATE ... enter the TIME-WAIT state"), a peer
//               that dropped the socket answers the segment with a RST (it carries
//               ACK: RFC 9293 §3.10.7.1), a stack that drops silently says nothing.
//               Linux bounds the wait of an orphaned socket (the application called
//               close()) by tcp_fin_timeout (60 s), never shorter than 3.5 RTOs; a
//               socket shut down with shutdown(SHUT_WR) and kept open has no bound.
//               Data after the peer's FIN breaks RFC 9293 (nothing follows a FIN) and
//               is reported as an anomaly.
//   idle        the path's idle timeout (NAT, firewall, load balancer). The connection
//               stays idle from its last segment (either direction); the probe is a
//               keepalive-style ACK at SND.NXT-1 with no data, which the peer answers
//               with an ACK (RFC 9293 §3.10.7.4: an unacceptable segment draws an ACK),
//               or with --data one new byte at SND.NXT, which the peer ACKs. A path
//               that forgot the connection drops the probe (silence) or answers it with
//               a RST of its own; who sent a RST is read from its IP TTL, IP ID and
//               timestamps compared with the peer's segments on the connection
//               (attribute_rst).
//
// Every connection is one slot of the engine: it opens when the engine wants it,
// enters the state, waits until its offset, sends its probe (again after silence, up
// to `retries` times), and reports alive / gone / silent once. LifetimeRun is the
// measurement they share.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/lifetime.hpp"

namespace tcpprobe::probe {

enum class LifetimeSubject { FinWait2, Idle };
enum class IdleProbe { Ack, Data };
std::string_view to_string(LifetimeSubject s);
std::string_view to_string(IdleProbe p);

/// What the peer's own segments on a connection looked like at the IP and TCP level.
struct PeerIpTrace {
    std::optional<std::uint8_t> ttl;
    std::optional<std::uint16_t> ip_id;   ///< the last one seen
    bool timestamps = false;              ///< the peer's segments carried timestamps
    std::optional<std::uint32_t> tsval;   ///< the last TSval seen
    void observe(const wire::Segment& seg);
};

enum class RstFrom { Peer, Middlebox, Unknown };
std::string_view to_string(RstFrom f);

struct RstOrigin {
    RstFrom from = RstFrom::Unknown;
    std::uint8_t ttl = 0;
    std::optional<std::uint8_t> peer_ttl;
    std::optional<bool> ts_match;   ///< unset: the connection had no timestamps
    bool id_match = false;          ///< the IP ID continues the peer's sequence
    std::string why;
};

/// Who sent a RST on a connection whose peer segments looked like `peer`:
///   * a TTL other than the peer's: something in between (a middlebox's own stack
///     starts from its own initial TTL, at another distance);
///   * the peer's TTL and its timestamps (TSval not older than the last) or the next
///     IP IDs of its sequence: the peer's socket itself;
///   * the peer's TTL and neither: unknown (the peer's stack answering for a socket it
///     no longer has, or a middlebox exactly as far away and with the same initial TTL).
RstOrigin attribute_rst(const wire::Segment& rst, const PeerIpTrace& peer);

struct LifetimeMember {
    Round round = Round::Coarse;
    unsigned slot = 0;
    std::uint16_t port = 0;
    Duration offset{};                 ///< since the connection entered the state
    Liveness result = Liveness::Silent;
    unsigned segments = 0;             ///< probe copies sent
    std::optional<RstOrigin> rst;      ///< gone by a RST: who sent it
};

/// One measurement: the engine and what its connections reported.
class LifetimeRun {
public:
    explicit LifetimeRun(LifetimeSubject subject, LifetimeConfig cfg = {});
    LifetimeSubject subject() const { return subject_; }
    const LifetimeEngine& engine() const { return engine_; }

    using Action = LifetimeEngine::SlotAction;
    Action action(Round r, unsigned slot) const { return engine_.slot_action(r, slot); }
    LifetimeEngine::SlotPlan plan(Round r, unsigned slot) const { return engine_.plan(r, slot); }
    void result(const LifetimeMember& m);
    /// A connection that never entered the state (no answer, RST, the peer did not close).
    void failed(Round r, unsigned slot, std::string why);
    /// Something a connection saw that the report must carry (data after FIN, ...).
    void anomaly(std::string text);
    void interrupt() { engine_.stop(); interrupted_ = true; }

    bool done() const { return engine_.stage() == LifetimeEngine::Stage::Done; }
    bool interrupted() const { return interrupted_; }
    const std::vector<LifetimeMember>& members() const { return members_; }
    const std::vector<std::string>& failures() const { return failures_; }
    const std::vector<std::string>& anomalies() const { return anomalies_; }
    /// The member whose RST set the bracket's upper end, if it ended by a RST.
    const LifetimeMember* first_gone() const;

private:
    LifetimeSubject subject_;
    LifetimeEngine engine_;
    std::vector<LifetimeMember> members_;
    std::vector<std::string> failures_;
    std::vector<std::string> anomalies_;
    bool interrupted_ = false;
};

/// A connection waiting for its slot of a lifetime measurement acts on the engine's word
/// (LifetimeEngine::slot_action): Wait looks again after `poll` (next_at), Connect opens
/// it now (--timeout counts from our SYN), Skip ends it unmeasured unless it has ended
/// already (`ended`). Returns the action taken, nothing when a Skip found it ended.
std::optional<LifetimeEngine::SlotAction> take_slot_action(LifetimeEngine::SlotAction a, Connection& conn, Conclusion& ended,
                                                           std::optional<Instant>& next_at, Duration poll, Instant now,
                                                           Outbox& out);

struct LifetimeFlowConfig {
    ConnectConfig connect;
    wire::ByteVec request;                              ///< sent once connected (fin-wait-2: makes the peer close)
    IdleProbe idle_probe = IdleProbe::Ack;
    Duration max_wait = std::chrono::seconds{10};       ///< fin-wait-2: for the peer to close first
    unsigned retries = 2;                               ///< probe copies sent again after silence
    Duration retry_gap = std::chrono::milliseconds{600};///< between copies (Linux answers an
                                                        ///< unacceptable segment once per 500 ms)
    Duration answer_wait = std::chrono::seconds{2};     ///< after the last copy
    Duration poll = std::chrono::milliseconds{200};     ///< a waiting connection looks again
    std::shared_ptr<LifetimeRun> run;
    Round round = Round::Coarse;
    unsigned slot = 0;
};

/// One connection of a fin-wait-2 or idle measurement (see the file comment).
class LifetimeFlow final : public Flow, private ConnectionHooks {
public:
    explicit LifetimeFlow(LifetimeFlowConfig config);
    const LifetimeFlowConfig& config() const { return cfg_; }
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    std::optional<Instant> state_start() const { return state_start_; }
    std::string progress(Instant now) const override;

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant t, Outbox& out) override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;
    void on_connect_failed(Instant now, Outbox& out) override;

    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out);
    void on_connected_timer(Instant now, Outbox& out);
    std::optional<Instant> connected_deadline() const;
    enum class Step { Waiting, Setup, Holding, Probing, Done };
    LifetimeSubject subject() const { return cfg_.run->subject(); }
    void tick(Instant now, Outbox& out);
    void probe(Instant now, Outbox& out);
    wire::Segment probe_segment(Instant now);
    bool answers_probe(const wire::Segment& seg) const;
    void report(Instant now, Liveness l, Duration offset, std::optional<RstOrigin> rst, Outbox& out);
    void fail(Instant now, std::string why, Outbox& out);

    LifetimeFlowConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    tcb::Tcb& tcb_ = conn_.tcb();
    Step step_ = Step::Waiting;
    std::optional<Instant> next_at_;
    std::optional<Instant> setup_deadline_;
    std::optional<Instant> state_start_;
    std::optional<Instant> undated_since_;  ///< fin-wait-2: holding, our ACK of its FIN not captured yet
    bool fin_seen_ = false;          ///< fin-wait-2: the peer's FIN arrived
    wire::Seq peer_fin_end_;         ///< fin-wait-2: RCV.NXT after the peer's FIN
    bool data_after_fin_ = false;
    PeerIpTrace peer_;
    // the probe and its copies
    wire::Segment probe_;
    std::vector<Instant> sent_;
    Instant due_{};
    Conclusion concluded_;
};

}  // namespace tcpprobe::probe
