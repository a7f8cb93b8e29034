// The handshake scenario: one SYN with the options the user chose, every answer
// observed, the connection completed with an ACK (or reset with --half-open), the RTT
// taken from capture timestamps of the SYN and the SYN-ACK.
//
// --stale-syn plays RFC 9293 Figure 8 ("recovery from old duplicate SYN"): a SYN with an
// old ISN goes first; once the peer answers it, the real SYN follows. A peer that keeps
// the first half-open connection answers the second SYN with an ACK carrying the old
// acknowledgment number; our TCB (in SYN-SENT) answers that ACK with a RST, the peer
// drops the stale half-open connection, and our retransmitted SYN completes.
#pragma once

#include <memory>

#include "tcpprobe/probe/connection.hpp"

namespace tcpprobe::probe {

/// What the handshake decides itself; the flow keeps this, its Connection the rest.
struct HandshakeChoices {
    bool half_open = false;
    bool stale_syn = false;
    wire::Seq stale_isn;                   ///< ISN of the stale SYN
    Duration linger = Duration::zero();    ///< after the handshake, keep ACKing what arrives
};

struct HandshakeConfig : HandshakeChoices {
    ConnectConfig connect;
};

struct StaleSynReport {
    bool first_answered = false;                ///< the stale SYN got a SYN-ACK
    std::optional<std::string> second_answer;   ///< flags of the peer's answer to the real SYN
    bool second_answer_acks_old = false;        ///< ...acknowledging the stale ISN (RFC behaviour)
    bool reset_sent = false;                    ///< we reset the stale half-open connection
};

/// A Flow that holds its Connection: the connection reports and times; this decides
/// the stale-SYN prelude, the half-open reset and how long to linger.
class HandshakeFlow final : public Flow, private ConnectionHooks {
public:
    explicit HandshakeFlow(HandshakeConfig config);
    /// With --stale-syn only; null otherwise.
    const StaleSynReport* stale() const { return stale_.get(); }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    const Connection& connection() const { return conn_; }

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override { conn_.interrupt(now, out); }
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant t, Outbox& out) override;
    bool intercept_connecting(Instant t, const wire::Segment& seg, Outbox& out) override;
    void observe(Instant t, const tcb::Action& a, Outbox& out) override;
    std::optional<wire::FormatContext> format_context(wire::Direction d, const wire::Segment& seg) const override;

    /// The peer's answer to our stale SYN, before the real one.
    void on_stale_answer(Instant t, const wire::Segment& seg, Outbox& out);
    bool about_stale(wire::Seq our_seq) const;

    HandshakeChoices cfg_;
    Connection conn_;
    std::unique_ptr<StaleSynReport> stale_;  ///< made by --stale-syn only: 56 bytes a flow otherwise
    std::optional<wire::Seq> stale_irs_;
    CompactInstant linger_until_;
};

}  // namespace tcpprobe::probe
