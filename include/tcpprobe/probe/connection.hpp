// The part every connection-driving scenario shares: open a connection with our TCB,
// report every captured segment (both directions) and every state change, tell our
// segments from the local kernel's, time the SYN -> answer at the wire, and settle the
// connect verdict (open / closed / filtered / unreachable). That is `Connection`, a
// component a scenario holds: the scenario is the Flow, passes the flow's calls on and
// hears back through the narrow ConnectionHooks; it decides what happens once the
// connection is ESTABLISHED.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/ip_id.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/probe/verdict.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::probe {

/// What a Connection keeps of its configuration; the TCB's part stays in the TCB (one
/// copy per flow: a copy per layer was a third of a half-open flow's memory).
struct ConnectSettings {
    /// The scenario deliberately runs without the RST guard (half-open probes): a RST from
    /// our own kernel is then expected, not an anomaly.
    bool kernel_rst_expected = false;
    Duration timeout = std::chrono::seconds{3};               ///< no answer to our SYN by then: filtered
    Duration capture_grace = std::chrono::milliseconds{200};  ///< wait for our last segments' capture
    /// Our pure ACKs (the handshake's, data's) go out this long after the TCB made them:
    /// the peer then measures a longer RTT, so its RTT-based RTO moves (retransmit's
    /// follow-up runs, --ack-delay). Anything else we send takes the held ACKs first.
    Duration ack_delay{0};
};

struct ConnectConfig : ConnectSettings {
    tcb::TcbConfig tcb;
};

struct ConnectResult {
    Verdict verdict = Verdict::Pending;
    std::optional<Duration> rtt;
    bool rtt_ambiguous = false;   ///< answer came after a retransmitted SYN and names none of them (no TSecr)
    unsigned syns_sent = 0;
    /// The SYN-ACK or RST that decided the verdict. Held apart: most flows of a wide run
    /// get none, and an optional Segment took 136 bytes in each.
    std::shared_ptr<const wire::Segment> answer;
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

/// Where a connection stands: what Connection does with a segment or a timer.
enum class ConnectPhase { Idle, PreConnect, Connecting, Connected, Draining };

/// What a scenario that holds a Connection hears from it while the connection does its
/// shared work. Everything but on_established has a default: a scenario overrides only
/// what it watches.
class ConnectionHooks {
public:
    /// The connection reached ESTABLISHED (or CLOSE-WAIT: FIN on the SYN-ACK).
    virtual void on_established(Instant t, Outbox& out) = 0;
    /// An incoming segment in SYN-SENT; true when the scenario handled it itself.
    virtual bool intercept_connecting(Instant, const wire::Segment&, Outbox&) { return false; }
    /// Every TCB action, after the shared handling.
    virtual void observe(Instant, const tcb::Action&, Outbox&) {}
    /// Our own captured segment, after it has been reported.
    virtual void observe_outgoing(Instant, const wire::Segment&, bool /*ours*/, Outbox&) {}
    /// Sequence numbers for a segment that belongs to something other than the TCB (a
    /// stale SYN); none: the TCB's.
    virtual std::optional<wire::FormatContext> format_context(wire::Direction, const wire::Segment&) const { return std::nullopt; }
    /// The connect ended without a connection: closed, filtered, unreachable, or open but
    /// answered only after our SYN retransmissions had given up (the verdict is in
    /// result(); the connection was never established); once, after the call that
    /// settled it.
    virtual void on_connect_failed(Instant, Outbox&) {}

    virtual ~ConnectionHooks() = default;
};

/// The connect/RTT/verdict bookkeeping a scenario holds: it opens the connection with our
/// TCB, reports every captured segment (both directions) and state change, tells our
/// segments from the local kernel's, times the SYN -> answer at the wire, settles the
/// connect verdict and waits for the capture of our last segments. The scenario is the
/// Flow: it passes the flow's calls on and decides what happens once connected.
class Connection {
public:
    Connection(ConnectConfig config, ConnectionHooks& hooks);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    wire::FourTuple tuple() const { return tcb_.tuple(); }
    /// The run starts (--timeout counts from here; a later connect() may restart it).
    void start(Instant now) { started_ = now; }
    /// Sends our SYN (a scenario that waits before it calls start(now) first: --timeout
    /// counts from our SYN).
    void connect(Instant now, Outbox& out);
    /// A captured segment. Reports it and does the connect work; true when it is the
    /// scenario's to handle: an incoming segment before the connection opened
    /// (PreConnect) or once it is open (Connected).
    [[nodiscard]] bool on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out);
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out);
    /// The connect timeout, SYN retransmissions and the final capture wait; true when the
    /// connection is open and the scenario's timers are due instead.
    [[nodiscard]] bool on_timer(Instant now, Outbox& out);
    /// The TCB's own timers once connected (retransmissions, TIME-WAIT).
    void run_tcb_timers(Instant now, Outbox& out);
    void interrupt(Instant now, Outbox& out);
    /// The next deadline: the connect or capture wait's, or `connected` once open.
    std::optional<Instant> next_deadline(std::optional<Instant> connected) const;
    bool done() const { return done_; }

    /// Carries out TCB actions: sends, state events, notes; then the hooks observe each.
    void apply(Instant now, const tcb::Actions& actions, Outbox& out);
    /// A state change caused by the scenario, not by a segment (close on timeout, ...).
    void apply_with_cause(Instant now, tcb::Actions actions, const std::string& cause, Outbox& out);
    /// Feeds a segment to the TCB and applies the result; true when it reset the connection.
    bool feed(Instant t, const wire::Segment& seg, Outbox& out);
    /// Sends a segment now, after any ACK still held back by ack_delay.
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
    /// Capture time of our last SYN at or before t (for times to an answer).
    std::optional<Instant> last_syn_before(Instant t) const;
    /// The answer's RTT from the last SYN before `t`, ambiguous when more went before it.
    void time_answer(Instant t);
    /// The TCB's sequence numbers, plus the IRS of a SYN not yet in the TCB.
    wire::FormatContext tcb_context(wire::Direction d, const wire::Segment& seg) const;

    ConnectPhase phase() const { return phase_; }
    void set_phase(ConnectPhase p) { phase_ = p; }
    /// Before connect(): the delay of our pure ACKs (see ConnectConfig::ack_delay).
    void set_ack_delay(Duration d) { ccfg_.ack_delay = d; }
    /// The `flow` of our events: our port, or the client's where all share ours (listen).
    std::uint16_t port() const { return flow_tag_; }
    void set_flow_tag(std::uint16_t tag) { flow_tag_ = tag; }
    const ConnectSettings& config() const { return ccfg_; }
    tcb::Tcb& tcb() { return tcb_; }
    const tcb::Tcb& tcb() const { return tcb_; }
    ConnectResult& result() { return cres_; }
    const ConnectResult& result() const { return cres_; }
    Instant started() const { return started_; }
    /// Our retransmissions once connected (data, FIN): something of ours went unanswered,
    /// so the peer's own timers may have run out meanwhile (loss, not its behaviour).
    unsigned connected_retransmissions() const { return connected_retransmissions_; }

private:
    bool take_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out);
    void take_icmp(Instant t, const wire::IcmpError& err, Outbox& out);
    bool take_timer(Instant now, Outbox& out);
    /// After every call from the flow: tells the hooks once that the connect failed.
    void tell_failure(Instant now, Outbox& out);
    void record_outgoing(Instant t, const wire::Segment& seg, Outbox& out);
    void on_synack(Instant t, const wire::Segment& seg, Outbox& out);
    void check_established(Instant t, Outbox& out);
    wire::FormatContext context_for(wire::Direction d, const wire::Segment& seg) const;
    /// Done once every segment we sent has been captured, or the capture wait is over.
    void settle_drain(Instant now, Outbox& out);
    /// Sends the held ACKs due by `until` (all of them: nullopt).
    void release_held(std::optional<Instant> until, Outbox& out);
    void transmit(const wire::Segment& s, Outbox& out);
    std::optional<Instant> held_due() const { return held_.empty() ? std::nullopt : std::optional<Instant>{held_.front().due}; }

    ConnectSettings ccfg_;
    ConnectionHooks& hooks_;
    tcb::Tcb tcb_;
    std::uint16_t flow_tag_ = tcb_.tuple().local.port;
    /// The IP IDs of everything this flow sends, counted from the configured first one
    /// across the flow's connections (TIME-WAIT reuse reopens the TCB, not the sender).
    IpIds ip_ids_{tcb_.config().ip.id};
    ConnectResult cres_;
    Instant started_{};
    unsigned connected_retransmissions_ = 0;
    ConnectPhase phase_ = ConnectPhase::Idle;
    bool overflow_noted_ = false;  ///< the "only counted" note for new kinds was shown
    bool done_ = false;
    bool failure_told_ = false;
    bool established_ = false;  // on_established was called
    CompactInstant drain_until_;
    struct Held {
        Instant due;
        wire::Segment segment;
    };
    std::vector<Held> held_;  ///< pure ACKs waiting out ack_delay, in order

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
