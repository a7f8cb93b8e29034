// Measuring a peer's retransmission schedule at the wire.
//
//   synack  one SYN, never ACKed: the peer retransmits its SYN-ACK (Linux:
//           tcp_synack_retries times, 1 s doubling) and then drops the half-open request.
//   fin     the peer's FIN, never ACKed: by default we close first, so the peer sits in
//           LAST-ACK; with peer_closes_first it closes first and sits in FIN-WAIT-1. Its
//           FIN is retransmitted (Linux: tcp_orphan_retries for an orphaned socket).
//
// The end is never taken from silence alone: at each moment the model expects the next
// copy (plus tolerance) a liveness probe asks whether the peer still holds the state
// (an out-of-window segment carrying one byte: answered with an ACK while held, with a
// RST once gone; see liveness.hpp). A RST from the peer ends it too; silence ends it
// only after two model gaps with every probe unanswered. Then our own RST clears what
// the peer still holds (unless cleanup is off).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/liveness.hpp"
#include "tcpprobe/probe/schedule.hpp"

namespace tcpprobe::probe {

enum class RetxSegment { SynAck, Fin };
std::string_view to_string(RetxSegment s);  ///< "synack", "fin" (the --segment words)

/// What a follow-up run does next (see RetransmitConfig::follow_up).
struct FollowUp {
    enum class Step { Wait, Skip, Run };
    Step step = Step::Wait;
    Duration ack_delay{};  ///< Run: our ACKs' delay
    std::string why;       ///< Run: the note that opens the run
    /// Run past a cached RTT: the first runs' RTO (ScheduleEvidence::past_cache_rto).
    std::optional<Duration> past_cache_rto;

    static FollowUp skip() {
        FollowUp f;
        f.step = Step::Skip;
        return f;
    }
};

struct RetransmitConfig {
    ConnectConfig connect;
    RetxSegment segment = RetxSegment::SynAck;
    bool peer_closes_first = false;
    wire::ByteVec request;
    Duration idle = std::chrono::milliseconds{200};      ///< fin: quiet time before our FIN
    Duration max_wait = std::chrono::seconds{75};
    Tolerance tolerance;
    LivenessConfig liveness;
    bool cleanup = true;
    /// More copies than this is a flood, not a schedule (no stack retransmits so often):
    /// the run ends, and the fitting (which grows with the copies) stays bounded.
    std::size_t max_copies = 64;
    /// Set for a follow-up run (FIN): it opens its connection only when this says Run, with
    /// the ACK delay it names, and is skipped when it says Skip (see decide_follow_up).
    std::function<FollowUp()> follow_up;
};

struct RetransmitReport {
    std::vector<Instant> times;       ///< original transmission, then each retransmission (capture)
    std::optional<Instant> rst_at;    ///< a RST from the peer ended it
    std::string end = "pending";      ///< rst, confirmed, silence, max-wait, interrupted, no-fin, flood (pending: never connected)
    std::optional<Instant> origin;    ///< synack: our SYN the peer answered; fin: the first FIN
    ScheduleEvidence evidence;        ///< on the origin's axis, with the liveness probes
    ScheduleFit fit;
    unsigned probes_sent = 0;
    bool cleanup_sent = false;
    std::optional<Duration> fin_after_request;  ///< fin mode: first FIN relative to our FIN or request
    bool follow_up = false;           ///< a follow-up run that ran (at its own ACK delay)
    /// fin mode: the peer's FIN came before ours (it closed by itself): an ACK of its data
    /// that we held back would restart its FIN timer, so no follow-up delays ours.
    bool peer_closed_first = false;
};

/// A Flow that holds its Connection: the connection opens and reports; once it is open
/// (synack: at the SYN-ACK, which is never acknowledged) the measurement is this flow's.
class RetransmitFlow final : public Flow, private ConnectionHooks {
public:
    explicit RetransmitFlow(RetransmitConfig config);
    const RetransmitReport& report() const { return report_; }
    const RetransmitConfig& config() const { return cfg_; }
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    /// "3 retransmissions, next expected in ~4.0 s" for the live progress line.
    std::string progress(Instant now) const override;
    /// What was seen so far on the schedule's axis (the final one once concluded).
    ScheduleEvidence evidence(bool stopped_early) const;

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override {
        if (waiting_) {  // a follow-up run that never started: nothing to settle
            waiting_ = false;
            skipped_ = true;
            return;
        }
        conn_.interrupt(now, out);
        on_interrupt(now, out);
    }
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return skipped_ || (!waiting_ && conn_.done()); }
    /// A follow-up run that was not needed, or never started (it sent nothing).
    bool skipped() const { return skipped_ || (cfg_.follow_up && !report_.follow_up); }

private:
    // What the connection tells us.
    bool intercept_connecting(Instant t, const wire::Segment& seg, Outbox& out) override;
    void on_established(Instant t, Outbox& out) override;

    // The measurement, once connected.
    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out);
    void on_connected_timer(Instant now, Outbox& out);
    std::optional<Instant> connected_deadline() const;
    void on_interrupt(Instant now, Outbox& out);
    void record(Instant t, Outbox& out);
    void replan(Instant now);
    void send_liveness_probe(Instant now, Outbox& out);
    void on_probe_answer(Instant t, Liveness l, Outbox& out);
    void conclude(Instant now, std::string end, Outbox& out);
    std::optional<Instant> silence_at() const;
    RetryRule rule() const { return cfg_.segment == RetxSegment::SynAck ? RetryRule::Count : RetryRule::OrphanTime; }
    /// A follow-up past a cache whose SYN went more than once: it cannot show whether the
    /// peer's RTO follows the RTT (see evidence()).
    bool follow_up_void() const { return past_cache_rto_ && conn_.result().syns_sent > 1; }

    RetransmitConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    RetransmitReport report_;
    std::optional<Instant> measuring_since_;
    std::optional<Instant> fin_at_;
    std::optional<Instant> request_at_;  ///< the request, once the held handshake ACK has gone
    std::optional<wire::Seq> peer_fin_seq_;
    LivenessProber prober_;
    std::optional<Instant> last_held_;     ///< latest liveness answer "held"
    Conclusion concluded_;
    bool waiting_ = false;  ///< a follow-up run waiting for its decision
    bool skipped_ = false;
    std::optional<Instant> poll_at_;
    std::optional<Duration> past_cache_rto_;  ///< a follow-up past a cached RTT (FollowUp::past_cache_rto)
    void poll_follow_up(Instant now, Outbox& out);
};

/// Several runs of one schedule (separate connections started together), judged as one:
/// SYN-ACK runs merged on one axis (the peer's timer starts at our SYN and counts copies),
/// FIN runs voting (each connection has its own RTO). Shared by `retransmit` and `profile`.
struct RetransmitRuns {
    Verdict connect = Verdict::Pending;           ///< the runs' connect verdicts combined
    std::vector<const RetransmitFlow*> measured;  ///< the runs that connected
    std::optional<ScheduleEvidence> evidence;     ///< the schedule that speaks for all
    ScheduleFit fit;
    std::optional<std::uint16_t> speaker;         ///< FIN: the run whose schedule speaks
    std::optional<ScheduleVerdict> judged;        ///< when measured
};
RetransmitRuns judge_runs(const std::vector<const RetransmitFlow*>& flows, RetxSegment segment, const Tolerance& tol);

/// FIN: whether the runs that went first leave Linux's tcp_orphan_retries between several
/// values only because of their RTO (see ack_delay_to_split): then a follow-up run at the
/// ACK delay that separates them (Run), else Skip; Wait while any of them is still running.
FollowUp decide_follow_up(const std::vector<const RetransmitFlow*>& first_runs, const Tolerance& tol);
/// A follow-up run's configuration: `base` deciding through `decide`, its SYN without
/// SACK-permitted (Linux's tail-loss probe, RFC 8985, needs SACK; without it every copy
/// is an RTO expiry).
RetransmitConfig follow_up_config(RetransmitConfig base, std::function<FollowUp()> decide);

}  // namespace tcpprobe::probe
