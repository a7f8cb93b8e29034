// The part every connection-driving scenario shares: open a connection with our TCB,
// report every captured segment (both directions) and every state change, tell our
// segments from the local kernel's, time the SYN -> answer at the wire, and settle the
// connect verdict (open / closed / filtered / unreachable). Scenarios (handshake,
// teardown, half-close) derive from ConnectionFlow and add what happens once the
// connection is ESTABLISHED.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/ip_id.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/probe/verdict.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::probe {

struct ConnectConfig {
    tcb::TcbConfig tcb;
    /// The scenario deliberately runs without the RST guard (half-open probes): a RST from
    /// our own kernel is then expected, not an anomaly.
    bool kernel_rst_expected = false;
    Duration timeout = std::chrono::seconds{3};               ///< no answer to our SYN by then: filtered
    Duration capture_grace = std::chrono::milliseconds{200};  ///< wait for our last segments' capture
};

struct ConnectResult {
    Verdict verdict = Verdict::Pending;
    std::optional<Duration> rtt;
    bool rtt_ambiguous = false;   ///< answer came after a retransmitted SYN without timestamps
    unsigned syns_sent = 0;
    std::optional<wire::Segment> answer;   ///< the SYN-ACK or RST that decided the verdict
    std::optional<wire::IcmpError> icmp;
    wire::OptionList peer_options;
    std::optional<tcb::Negotiated> negotiated;
    std::optional<wire::Seq> irs;
    /// Distinct anomaly texts in the order first seen, at most max_anomaly_texts, with
    /// how often each came; anomaly_total counts every one (also those not listed).
    std::vector<std::string> anomalies;
    std::vector<std::uint64_t> anomaly_counts;
    std::uint64_t anomaly_total = 0;
    bool interrupted = false;
    std::string final_state = "CLOSED";
};

/// A hostile peer can make every segment an anomaly: the report keeps this many
/// distinct texts, and the trace shows each text this many times, then counts it.
inline constexpr std::size_t max_anomaly_texts = 16;
inline constexpr std::uint64_t max_anomaly_repeats_shown = 3;

/// Option values outside their RFC ranges on a SYN or SYN-ACK (window scale above 14,
/// MSS 0 or below 88), one text each.
std::vector<std::string> syn_option_anomalies(const wire::OptionList& options);

class ConnectionFlow : public Flow {
public:
    wire::FourTuple tuple() const override { return ccfg_.tcb.tuple; }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override;
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return done_; }

    const ConnectResult& connect_result() const { return cres_; }
    const tcb::Tcb& tcb() const { return tcb_; }

protected:
    explicit ConnectionFlow(ConnectConfig config);

    enum class Phase { Idle, PreConnect, Connecting, Connected, Draining };

    // --- hooks for scenarios -------------------------------------------------
    /// First thing at start; the default opens the connection.
    virtual void begin(Instant now, Outbox& out) { connect(now, out); }
    /// An incoming segment before the connection opened (PreConnect phase, e.g. a stale SYN's answer).
    virtual void on_preconnect_segment(Instant, const wire::Segment&, Outbox&) {}
    /// An incoming segment in SYN-SENT; return true when the scenario handled it itself.
    virtual bool intercept_connecting(Instant, const wire::Segment&, Outbox&) { return false; }
    /// The connection reached ESTABLISHED (or CLOSE-WAIT: FIN on the SYN-ACK).
    virtual void on_established(Instant t, Outbox& out) = 0;
    /// An incoming segment once connected. The default feeds it to the TCB.
    virtual void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out);
    /// Timers once connected. The default runs the TCB's.
    virtual void on_connected_timer(Instant now, Outbox& out);
    virtual std::optional<Instant> connected_deadline() const { return tcb_.next_deadline(); }
    /// Every TCB action passes here after the shared handling (scenarios watch for states).
    virtual void observe(Instant, const tcb::Action&, Outbox&) {}
    /// Our own captured segment, after it has been reported.
    virtual void observe_outgoing(Instant, const wire::Segment&, bool /*ours*/, Outbox&) {}
    /// Sequence numbers of segments that belong to something other than the TCB (stale SYN).
    virtual wire::FormatContext context_for(wire::Direction d, const wire::Segment& seg) const;
    virtual void on_interrupt(Instant, Outbox&) {}

    // --- helpers ---------------------------------------------------------------
    void connect(Instant now, Outbox& out);
    /// Carries out TCB actions: sends, state events, notes; then observe() sees each.
    void apply(Instant now, const tcb::Actions& actions, Outbox& out);
    /// Feeds a segment to the TCB and applies the result; true when it reset the connection.
    bool feed(Instant t, const wire::Segment& seg, Outbox& out);
    void send(const wire::Segment& s, Outbox& out);
    /// A segment of this connection made by the TCB (options, timestamps, IP fields) with
    /// the flow's next IP ID; the scenario sends it now or keeps it to send (again) later.
    wire::Segment make_segment(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack, wire::ByteVec payload = {});
    void anomaly(Instant t, std::string text, Outbox& out);
    void note(Instant t, std::string text, Outbox& out) const;
    void peer_state(Instant t, std::string from, std::string to, std::string cause, Outbox& out) const;
    void event(Instant t, decltype(Event::body) body, Outbox& out) const;
    /// Stops the scenario: the flow is done once our last segments have been captured.
    void finish(Instant now, Verdict v, Outbox& out);
    /// A state change caused by the scenario, not by a segment (close on timeout, ...).
    void apply_with_cause(Instant now, tcb::Actions actions, const std::string& cause, Outbox& out);
    std::uint16_t port() const { return flow_tag_; }
    Phase phase() const { return phase_; }
    void set_phase(Phase p) { phase_ = p; }
    /// Capture time of our last SYN at or before t (for times to an answer).
    std::optional<Instant> last_syn_before(Instant t) const;

    ConnectConfig ccfg_;
    std::uint16_t flow_tag_ = ccfg_.tcb.tuple.local.port;  ///< the `flow` of our events
    tcb::Tcb tcb_;
    /// The IP IDs of everything this flow sends, counted from the configured first one
    /// across the flow's connections (TIME-WAIT reuse reopens the TCB, not the sender).
    IpIds ip_ids_{ccfg_.tcb.ip.id};
    ConnectResult cres_;
    Instant started_{};
    /// Our retransmissions once connected (data, FIN): something of ours went unanswered,
    /// so the peer's own timers may have run out meanwhile (loss, not its behaviour).
    unsigned connected_retransmissions_ = 0;

private:
    void record_outgoing(Instant t, const wire::Segment& seg, Outbox& out);
    void on_synack(Instant t, const wire::Segment& seg, Outbox& out);
    void check_established(Instant t, Outbox& out);

    Phase phase_ = Phase::Idle;
    bool overflow_noted_ = false;  ///< the "only counted" note for new kinds was shown
    bool done_ = false;
    std::optional<Instant> drain_until_;

    struct Expected {
        std::uint16_t flags;
        wire::Seq seq;
        wire::Seq ack;
    };
    std::vector<Expected> expected_;  ///< sent, not yet seen in the capture
    struct SynSeen {
        Instant t;
        wire::Seq seq;
        std::uint32_t tsval;
    };
    std::vector<SynSeen> syns_seen_;
};

}  // namespace tcpprobe::probe
