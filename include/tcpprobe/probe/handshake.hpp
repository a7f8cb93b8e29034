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

#include "tcpprobe/probe/connection.hpp"

namespace tcpprobe::probe {

struct HandshakeConfig {
    ConnectConfig connect;
    bool half_open = false;
    bool stale_syn = false;
    wire::Seq stale_isn;                   ///< ISN of the stale SYN
    Duration linger = Duration::zero();    ///< after the handshake, keep ACKing what arrives
};

struct StaleSynReport {
    bool first_answered = false;                ///< the stale SYN got a SYN-ACK
    std::optional<std::string> second_answer;   ///< flags of the peer's answer to the real SYN
    bool second_answer_acks_old = false;        ///< ...acknowledging the stale ISN (RFC behaviour)
    bool reset_sent = false;                    ///< we reset the stale half-open connection
};

class HandshakeFlow final : public ConnectionFlow {
public:
    explicit HandshakeFlow(HandshakeConfig config);
    const std::optional<StaleSynReport>& stale() const { return stale_; }

protected:
    void begin(Instant now, Outbox& out) override;
    void on_preconnect_segment(Instant t, const wire::Segment& seg, Outbox& out) override;
    bool intercept_connecting(Instant t, const wire::Segment& seg, Outbox& out) override;
    void on_established(Instant t, Outbox& out) override;
    void on_connected_timer(Instant now, Outbox& out) override;
    std::optional<Instant> connected_deadline() const override;
    void observe(Instant t, const tcb::Action& a, Outbox& out) override;
    wire::FormatContext context_for(wire::Direction d, const wire::Segment& seg) const override;

private:
    bool about_stale(wire::Seq our_seq) const;

    HandshakeConfig cfg_;
    std::optional<StaleSynReport> stale_;
    std::optional<wire::Seq> stale_irs_;
    std::optional<Instant> linger_until_;
};

}  // namespace tcpprobe::probe
