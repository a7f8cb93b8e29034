// Close sequences, on one established connection (RFC 9293 §3.6):
//
//   active        we FIN first (after the request and a quiet --idle); the peer answers
//                 with an ACK then its FIN (4-way) or a combined FIN/ACK (3-way)
//   passive       the peer FINs first; we sit in CLOSE-WAIT for --idle, then FIN (LAST-ACK)
//   simultaneous  when the peer's FIN arrives we send our FIN *before* ACKing theirs,
//                 so both sides pass through CLOSING
//   abort         an in-window RST, then an ACK on the same 4-tuple: a peer that dropped
//                 the connection answers it with a RST
//   half-close    our FIN right after the request (shutdown(SHUT_WR)); we keep receiving
//                 and ACKing until the peer's FIN, a RST or --max-wait
//
// Our states are observed (the TCB); the peer's are inferred from what it sends, and
// every interval is taken from capture timestamps.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/liveness.hpp"

namespace tcpprobe::probe {

enum class CloseMode { Active, Passive, Simultaneous, Abort, HalfClose };
std::string_view to_string(CloseMode m);

struct CloseConfig {
    ConnectConfig connect;
    CloseMode mode = CloseMode::Active;
    wire::ByteVec request;
    Duration idle = std::chrono::milliseconds{200};   ///< quiet time before our FIN / RST, time in CLOSE-WAIT
    Duration max_wait = std::chrono::seconds{10};     ///< for the peer's part of the close
    Duration abort_probe_delay = std::chrono::milliseconds{100};
    unsigned abort_rsts = 5;   ///< abort: our RST is sent again (it may be lost) while the peer still answers in state
    LivenessConfig liveness;   ///< abort: the probes that tell whether the connection is gone
};

/// A state and when it was entered (capture time or timer instant).
struct StateSpan {
    tcb::State state;
    Instant since;
};

/// The outcome words: clean (exit 0), differs (1), incomplete (2).
enum class CloseOutcome { Pending, Clean, Differs, Incomplete };
std::string_view to_string(CloseOutcome o);

/// The close sequence seen, named once the flow concludes (text: "4-way", "3-way", ...).
enum class ClosePattern {
    None,             ///< not concluded
    FourWay,          ///< the peer's ACK of our FIN, then its FIN
    ThreeWay,         ///< the peer's FIN acknowledged ours (FIN/ACK combined)
    /// FIN and ACK came together, but nothing rules out a separate ACK lost on the path
    /// (the peer's IP IDs are no per-connection counter, its FIN came within RFC 1122's
    /// delayed-ACK bound): 3-way or 4-way, the pattern is not a fact.
    ThreeWayUnconfirmed,
    Simultaneous,     ///< both FINs crossed: both ends in CLOSING
    Passive,          ///< the peer closed first, we followed (LAST-ACK)
    Reset,            ///< the peer reset the connection
    Abort,            ///< our RST, then the check that the peer dropped it
    PeerClosedFirst,  ///< active mode, but the peer's FIN came before ours
    Incomplete,       ///< the sequence did not complete (no answer, --max-wait)
};
std::string_view to_string(ClosePattern p);

struct CloseReport {
    CloseOutcome outcome = CloseOutcome::Pending;
    ClosePattern pattern = ClosePattern::None;
    std::vector<std::string> findings;
    std::optional<Instant> our_fin;          ///< capture time of our first FIN
    std::optional<Instant> peer_ack_of_fin;  ///< first segment acknowledging our FIN
    std::optional<Instant> peer_fin;         ///< capture time of the peer's FIN
    std::optional<Instant> our_ack_of_peer_fin;
    bool combined_fin_ack = false;           ///< the peer's FIN also acknowledged our FIN
    /// The FIN that first acknowledged ours came after a segment we never saw: the IP ID
    /// skipped (a per-connection counter), or it came later than RFC 1122's 0.5 s limit
    /// on delaying an ACK. The peer's own ACK of our FIN was lost: a 4-way close.
    bool peer_ack_lost = false;
    /// A combined FIN/ACK whose IP IDs prove nothing (not a per-connection counter):
    /// a separate ACK lost on the path cannot be ruled out.
    bool combined_unconfirmed = false;
    bool peer_reset = false;
    bool peer_passed_closing = false;
    std::optional<bool> abort_confirmed;     ///< abort: a probe got a RST (true) or, after every RST, an in-state answer (false)
    unsigned abort_rsts_sent = 0;            ///< abort: our RSTs (the first and its repeats)
    unsigned abort_probes_sent = 0;          ///< abort: liveness probes, tries included
    std::uint64_t bytes_before_our_fin = 0, bytes_after_our_fin = 0;
    std::uint64_t segments_after_our_fin = 0;
    std::uint64_t bytes_before_peer_fin = 0, bytes_after_peer_fin = 0;
    std::vector<StateSpan> local_states;
    std::vector<StateSpan> peer_states;
    std::optional<Instant> end;
};

class CloseFlow final : public ConnectionFlow {
public:
    explicit CloseFlow(CloseConfig config);
    const CloseReport& report() const { return report_; }
    /// Time from the peer's ACK of our FIN to its FIN (its CLOSE-WAIT), when both were seen.
    std::optional<Duration> peer_close_wait() const;

protected:
    void on_established(Instant t, Outbox& out) override;
    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out) override;
    void on_connected_timer(Instant now, Outbox& out) override;
    std::optional<Instant> connected_deadline() const override;
    void observe(Instant t, const tcb::Action& a, Outbox& out) override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;

private:
    std::optional<Instant> give_up_at() const;
    void send_fin(Instant now, Outbox& out);
    void peer_goes(Instant t, tcb::State to, std::string cause, Outbox& out);
    tcb::State peer_now() const;
    void conclude(Instant now, CloseOutcome o, ClosePattern pattern, Outbox& out);
    /// The close completed (our TCB reached CLOSED, or TIME-WAIT ended as below): name it.
    void name_completed_close(Instant t, Outbox& out);
    void give_up(Instant now, std::string why, Outbox& out);
    void finding(Instant t, std::string text, bool is_anomaly, Outbox& out);
    void send_abort_rst(Instant now, Outbox& out);
    void on_abort_answer(Instant t, Liveness l, Outbox& out);

    CloseConfig cfg_;
    CloseReport report_;
    std::optional<wire::Seq> our_fin_seq_;
    std::optional<wire::Seq> peer_fin_seq_;
    std::optional<Instant> quiet_until_;      ///< active/abort: when to act; passive: when to FIN
    std::optional<Instant> max_wait_until_;
    LivenessProber prober_;                   ///< abort: is the connection gone?
    unsigned silent_rounds_ = 0;
    bool aborted_ = false;
    // The peer's IP IDs after the handshake: do they count per connection (+1 each)?
    std::optional<std::uint16_t> last_peer_ip_id_;
    unsigned peer_id_steps_ = 0;              ///< consecutive segments exactly +1 apart
    bool peer_id_counter_ = true;             ///< no other step seen
    Conclusion concluded_;
    bool giving_up_ = false;
    /// We sent a segment after our ACK of the peer's FIN (a re-ACK of a copy of its FIN):
    /// a peer that had already closed answers it with a RST.
    bool sent_after_close_ = false;
};

}  // namespace tcpprobe::probe
