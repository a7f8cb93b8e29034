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

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/probe/verdict.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::probe {

struct HandshakeConfig {
    tcb::TcbConfig tcb;
    bool half_open = false;
    bool rst_guard = true;                  ///< false: a RST from our own kernel is expected, not an anomaly
    bool stale_syn = false;
    wire::Seq stale_isn;                    ///< ISN of the stale SYN
    Duration timeout = std::chrono::seconds{3};  ///< no verdict by then: filtered
    Duration linger = Duration::zero();     ///< after the handshake, keep ACKing what arrives
    Duration capture_grace = std::chrono::milliseconds{200};  ///< wait for our last segment's capture
};

struct StaleSynReport {
    bool first_answered = false;   ///< the stale SYN got a SYN-ACK
    std::optional<std::string> second_answer;  ///< flags of the peer's answer to the real SYN
    bool second_answer_acks_old = false;       ///< ...acknowledging the stale ISN (RFC behaviour)
    bool reset_sent = false;                   ///< we reset the stale half-open connection
};

struct HandshakeResult {
    Verdict verdict = Verdict::Pending;
    std::optional<Duration> rtt;
    bool rtt_ambiguous = false;   ///< answer came after a retransmitted SYN without timestamps
    unsigned syns_sent = 0;
    std::optional<wire::Segment> answer;   ///< the SYN-ACK or RST that decided the verdict
    std::optional<wire::IcmpError> icmp;
    wire::OptionList peer_options;
    std::optional<tcb::Negotiated> negotiated;
    std::optional<wire::Seq> irs;
    std::vector<std::string> anomalies;
    std::optional<StaleSynReport> stale;
    bool interrupted = false;
    std::string final_state = "CLOSED";
};

class HandshakeFlow final : public Flow {
public:
    explicit HandshakeFlow(HandshakeConfig config);

    wire::FourTuple tuple() const override { return cfg_.tcb.tuple; }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override;
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return done_; }

    const HandshakeResult& result() const { return result_; }
    const tcb::Tcb& tcb() const { return tcb_; }

private:
    enum class Phase { Idle, StaleSent, Connecting, Lingering, Done };

    void apply(Instant now, const tcb::Actions& actions, Outbox& out);
    void send(const wire::Segment& s, Outbox& out);
    void record_outgoing(Instant t, const wire::Segment& seg, Outbox& out);
    void on_synack(Instant t, const wire::Segment& seg, Outbox& out);
    void anomaly(Instant t, std::string text, Outbox& out);
    void finish(Instant now, Verdict v, Outbox& out);
    void event(Instant t, decltype(Event::body) body, Outbox& out) const;
    std::uint16_t port() const { return cfg_.tcb.tuple.local.port; }

    HandshakeConfig cfg_;
    tcb::Tcb tcb_;
    HandshakeResult result_;
    Phase phase_ = Phase::Idle;
    bool done_ = false;
    Instant started_{};
    std::optional<Instant> linger_until_;
    std::optional<Instant> grace_until_;
    std::optional<wire::Seq> stale_irs_;   ///< the peer's ISN in its answer to the stale SYN
    bool about_stale(wire::Seq our_seq) const;

    struct Expected {
        std::uint16_t flags;
        wire::Seq seq;
        wire::Seq ack;
    };
    std::vector<Expected> expected_;       ///< sent, not yet seen in the capture
    struct SynSeen {
        Instant t;
        wire::Seq seq;
        std::uint32_t tsval;
    };
    std::vector<SynSeen> syns_seen_;       ///< capture times of our SYNs
};

}  // namespace tcpprobe::probe
