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
//
// Each mode is a scenario of its own (close_modes.cpp: what to do at ESTABLISHED, when
// the peer's FIN comes first, when the quiet time is over, how a completed close is
// named); CloseSequence is what they share: the report, the peer's states modelled from
// what it sends, findings, the naming of a close we began, --max-wait. CloseFlow holds
// the Connection, the sequence and the mode's scenario.
#pragma once

#include <memory>
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

class CloseScenario;

/// What every close mode shares, on the connection it is given: the report, the peer's
/// states as its segments show them, the findings, the naming of a close we began, and
/// --max-wait. A mode decides through CloseScenario; the sequence never asks which mode.
class CloseSequence {
public:
    CloseSequence(const CloseConfig& cfg, Connection& conn) : cfg_(cfg), conn_(conn) {}
    const CloseReport& report() const { return report_; }
    CloseReport& report() { return report_; }
    const CloseConfig& config() const { return cfg_; }
    Connection& connection() { return conn_; }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    bool concluded() const { return concluded_.reached(); }

    // The connection's events, passed on by the flow.
    void established(Instant t, Outbox& out);
    void on_segment(Instant t, const wire::Segment& seg, CloseScenario& mode, Outbox& out);
    void observe(Instant t, const tcb::Action& a, CloseScenario& mode, Outbox& out);
    void observe_outgoing(Instant t, const wire::Segment& seg, Outbox& out);
    void on_timer(Instant now, CloseScenario& mode, Outbox& out);
    /// The TCB's timers, the quiet time and --max-wait.
    std::optional<Instant> deadline() const;

    // What a mode does with it.
    /// Our FIN (the TCB's close: FIN-WAIT-1 or LAST-ACK).
    void send_fin(Instant now, Outbox& out);
    /// The quiet time before we act starts again at t.
    void quiet_from(Instant t) { quiet_until_ = t + cfg_.idle; }
    /// The peer's FIN came first: we stay in CLOSE-WAIT for the quiet time (unless our
    /// FIN is already out).
    void close_wait_from(Instant t) {
        if (!our_fin_seq_) quiet_from(t);
    }
    void peer_goes(Instant t, tcb::State to, std::string cause, Outbox& out);
    void finding(Instant t, std::string text, bool is_anomaly, Outbox& out);
    void conclude(Instant now, CloseOutcome o, ClosePattern pattern, Outbox& out);
    /// A close we began (our FIN first) completed: 4-way, 3-way, or the peer's FIN crossed
    /// or came before ours.
    void name_our_close(Instant t, Outbox& out);
    /// Ends the run incomplete, resetting what is left of the connection.
    void give_up(Instant now, std::string why, Outbox& out);

private:
    tcb::State peer_now() const;
    std::optional<Instant> give_up_at() const;
    /// The close completed (our TCB reached CLOSED, or TIME-WAIT ended as below): the mode names it.
    void completed(Instant t, CloseScenario& mode, Outbox& out);

    const CloseConfig& cfg_;
    Connection& conn_;
    CloseReport report_;
    std::optional<wire::Seq> our_fin_seq_;
    std::optional<wire::Seq> peer_fin_seq_;
    std::optional<Instant> quiet_until_;      ///< when to act (FIN or RST); passive: when to FIN
    std::optional<Instant> max_wait_until_;
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

/// One close mode: what it does at the moments the sequence hands it (close_modes.cpp).
class CloseScenario {
public:
    /// ESTABLISHED, the request sent.
    virtual void established(Instant t, CloseSequence& s, Outbox& out) = 0;
    /// The peer's FIN came before ours, with no ACK of it from us yet.
    virtual void peer_fin_first(Instant t, CloseSequence& s, Outbox& out) = 0;
    /// The quiet time is over. By default our FIN, while the connection is open.
    virtual void quiet_over(Instant now, CloseSequence& s, Outbox& out);
    /// Our TCB closed normally (LAST-ACK acknowledged, TIME-WAIT over): name the close.
    virtual void completed(Instant t, CloseSequence& s, Outbox& out) = 0;
    /// The peer sent data before our FIN.
    virtual void data_before_fin(Instant, CloseSequence&) {}
    /// A segment of the peer / the timer, when the mode takes it instead of the sequence.
    virtual bool take_segment(Instant, const wire::Segment&, CloseSequence&, Outbox&) { return false; }
    virtual bool take_timer(Instant, CloseSequence&, Outbox&) { return false; }
    /// The next deadline, given the sequence's.
    virtual std::optional<Instant> deadline(std::optional<Instant> sequence, const CloseSequence&) const { return sequence; }
    /// A segment of ours, captured.
    virtual void sent(Instant, const wire::Segment&, CloseSequence&, Outbox&) {}

    virtual ~CloseScenario() = default;
};

std::unique_ptr<CloseScenario> make_close_scenario(const CloseConfig& cfg);

/// A Flow that holds its Connection: the connection opens and reports; the close is the
/// mode's scenario on the shared sequence.
class CloseFlow final : public Flow, private ConnectionHooks {
public:
    explicit CloseFlow(CloseConfig config);
    const CloseReport& report() const { return seq_.report(); }
    /// Time from the peer's ACK of our FIN to its FIN (its CLOSE-WAIT), when both were seen.
    std::optional<Duration> peer_close_wait() const;
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override {
        if (conn_.on_timer(now, out)) seq_.on_timer(now, *mode_, out);
    }
    void interrupt(Instant now, Outbox& out) override { conn_.interrupt(now, out); }
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant t, Outbox& out) override;
    void observe(Instant t, const tcb::Action& a, Outbox& out) override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;

    CloseConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    CloseSequence seq_{cfg_, conn_};
    std::unique_ptr<CloseScenario> mode_ = make_close_scenario(cfg_);
};

}  // namespace tcpprobe::probe
