// TIME-WAIT of a remote host (RFC 9293 §3.6.1 and §3.10.7.4, RFC 1337, RFC 6191).
//
// The peer must close first to hold TIME-WAIT: we send the request (e.g. an HTTP/1.0
// GET), ACK the peer's FIN, close (LAST-ACK) and, once the peer has ACKed our FIN, ask
// its TIME-WAIT socket questions on the same 4-tuple:
//
//   duration  how long it lasts. Stacks differ in which probes their TIME-WAIT answers
//             and in which ones restart its timer (DESIGN §3b), so the test first
//             learns a probe the peer answers, in this order:
//               fin-noack  a FIN without ACK, outside the window (at our old ISS, so
//                          not a copy of our FIN): Linux answers it with an ACK and
//                          leaves its timer alone;
//               retx-fin   our FIN again (FIN+ACK at our old FIN's sequence number,
//                          acknowledging the peer's FIN): RFC 9293 §3.10.7.4 makes every
//                          TIME-WAIT acknowledge it, and restart its timer;
//               ack        an ACK far outside the window (the last resort).
//             The connection then probes every --probe-interval with that kind (the
//             series). Beside it, the lifetime engine (lifetime.hpp) probes other
//             connections once each; they check the series: a connection probed once
//             that is gone while the series connection still answers well after means
//             the series keeps the state alive itself (its probe restarts the timer),
//             and the engine's bracket is the answer; a connection probed once still
//             there shortly before the series' end confirms the series, whose finer
//             result is kept. The series' end is the first probe left unanswered after
//             its retries, confirmed by the ACK probe, which a closed socket answers
//             with RST; an end that is only a silence is not trusted (loss can take
//             every copy), the engine answers then.
//   reuse     a new SYN with a higher or lower ISN than the old connection's SND.NXT,
//             with a newer, older or no timestamp: accepted (SYN-ACK, whose ISN Linux
//             derives from the old one: old SND.NXT + 65537) or refused (ACK).
//   rst       an in-window RST, then an out-of-window ACK: answered with an ACK the
//             TIME-WAIT survived (RFC 1337), with a RST the RST killed it.
//   fin       our FIN again: the TIME-WAIT socket re-ACKs it (and restarts its timer).
//
// Loss: every probe whose answer decides an outcome is sent again (twice by default)
// before its silence counts: FIN probes 300 ms apart (FINs are answered at once), SYN
// and ACK probes 600 ms apart (Linux answers those at most once per 500 ms,
// tcp_invalid_ratelimit), never closer than two handshake round trips.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/lifetime.hpp"

namespace tcpprobe::probe {

enum class TwTest { Duration, Reuse, Rst, Fin };
enum class TwIsn { Higher, Lower };
enum class TwTs { Newer, Older, None };
/// The probes a TIME-WAIT may answer, in the order the duration test tries them.
enum class TwProbe { FinNoAck, RetxFin, Ack };
/// How the duration was measured: one connection probed in a series, or the lifetime
/// engine's one probe per connection.
enum class TwMethod { None, Series, Lifetime };
/// What the connections probed once said about the series.
enum class TwCheck {
    NotRun,        ///< no series, or nothing to compare yet
    Confirmed,     ///< a connection probed once was alive shortly before the series' end
    Extended,      ///< one was gone while the series connection still answered
    Inconsistent,  ///< the series' end contradicted itself (its ACK probe was answered)
    Unchecked,     ///< no connection probed once could tell (one connection, or none left)
};
/// How a test ended; the text is the outcome column and the JSON "outcome" word.
enum class TwOutcome {
    Pending,        ///< not concluded
    ConnectFailed,  ///< the connection never opened (the connect verdict tells how)
    Reset,          ///< the peer reset the connection instead of closing it
    Incomplete,     ///< the peer did not close first within --max-wait
    Interrupted,
    NoAnswer,       ///< the deciding probes drew no answer at all
    NoTimeWait,     ///< a probe drew a RST: no TIME-WAIT
    // duration
    Observed,       ///< the end bracketed and confirmed by a RST
    SilentEnd,      ///< bracketed, but its end is a silence
    LongerThanMax,  ///< still there at --max-duration
    Inconsistent,   ///< the evidence contradicts itself
    // reuse
    Accepted,       ///< the new SYN was answered with a SYN-ACK
    Refused,        ///< it was answered with an ACK: TIME-WAIT kept
    // rst
    Killed,         ///< an in-window RST ended TIME-WAIT (RFC 1337 not applied)
    Ignored,        ///< TIME-WAIT survived the RSTs (RFC 1337)
    // fin
    ReAcked,        ///< our repeated FIN was acknowledged
};
std::string_view to_string(TwOutcome o);
std::string_view to_string(TwTest t);
std::string_view to_string(TwIsn i);
std::string_view to_string(TwTs t);
std::string_view to_string(TwProbe p);
std::string_view to_string(TwMethod m);
std::string_view to_string(TwCheck c);
inline constexpr TwProbe tw_probes[] = {TwProbe::FinNoAck, TwProbe::RetxFin, TwProbe::Ack};

/// What is known about one probe kind: answered by the TIME-WAIT? restarts its timer?
struct TwKind {
    std::optional<bool> answered;
    std::optional<bool> restarts;
    unsigned copies = 0;  ///< sent while learning: a "not answered" after this many
};

/// One connection of the lifetime engine and its one probe.
struct TwMemberResult {
    Round round = Round::Coarse;
    unsigned slot = 0;
    std::uint16_t port = 0;
    Duration offset{};   ///< since that connection's TIME-WAIT began
    Liveness result = Liveness::Silent;
    unsigned copies = 0;  ///< probe segments it took (the probe, its copies, the ACK probes)
};

struct TwDurationConfig {
    LifetimeConfig lifetime;
    /// Connections probed once run beside the series (false: one connection, nothing
    /// checks the series and there is nothing to fall back on).
    bool controls = true;
    /// How far apart the ends of two connections' TIME-WAIT may lie although they began
    /// together: Linux's timer wheel fires up to 512 jiffies late (2.05 s at HZ=250,
    /// 5.12 s at HZ=100).
    Duration slack = std::chrono::seconds{6};
    /// How often a connection that waits for the others looks again.
    Duration poll = std::chrono::milliseconds{200};
};

/// One duration measurement, shared by the series connection and the connections
/// probed once: it learns the probe kind from the first, keeps the lifetime engine for
/// the others, compares the two and decides the method.
class TwDuration {
public:
    explicit TwDuration(TwDurationConfig cfg = {});
    const TwDurationConfig& config() const { return cfg_; }

    // --- the series connection ------------------------------------------------------
    /// A kind was tried: answered or not. `first_offset`: its first copy, since the
    /// series connection's TIME-WAIT began (a first answer is safe evidence: nothing
    /// before it can have restarted the timer).
    void tried(TwProbe kind, bool answered, Duration first_offset, unsigned copies);
    /// The series connection knows no probe kind the peer answers (or found no TIME-WAIT):
    /// the measurement is over.
    void abandon();
    void series_alive(Duration offset);
    /// The series' end: last answered probe, first unanswered one; confirmed by a RST.
    void series_ended(Duration last_alive, Duration first_dead, bool confirmed);
    void series_at_max(Duration last_alive);
    /// The series' ACK probe found TIME-WAIT still there after the series had stopped
    /// getting answers: the series cannot be trusted (and its timer was just restarted).
    void series_inconsistent();
    /// The series connection should stop probing (its probe restarts the timer).
    bool stop_series() const { return check_ == TwCheck::Extended; }

    // --- the connections probed once ------------------------------------------------
    using MemberAction = LifetimeEngine::SlotAction;
    MemberAction member_action(Round r, unsigned slot) const;
    LifetimeEngine::SlotPlan plan(Round r, unsigned slot) const { return engine_.plan(r, slot); }
    void member_result(const TwMemberResult& m);
    void member_failed(Round r, unsigned slot);

    /// Ctrl-C: the measurement ends with what it has.
    void interrupt();

    // --- the answer ------------------------------------------------------------------
    bool done() const { return done_; }
    std::optional<TwProbe> kind() const { return kind_; }
    const TwKind& kind_info(TwProbe p) const { return kinds_[static_cast<std::size_t>(p)]; }
    TwMethod method() const { return method_; }
    TwCheck check() const { return check_; }
    /// The evidence of the check: the series' last answered probe, and the connection
    /// probed once that agreed with it (alive) or contradicted it (gone).
    std::optional<Duration> series_last_alive() const { return series_last_alive_; }
    std::optional<Duration> series_first_dead() const { return series_first_dead_; }
    bool series_end_confirmed() const { return series_confirmed_; }
    bool series_reached_max() const { return series_at_max_; }
    std::optional<Duration> check_offset() const { return check_offset_; }
    /// The contradicting connection fell silent (no RST confirmed its end).
    bool check_by_silence() const { return check_by_silence_; }
    const LifetimeEngine& engine() const { return engine_; }
    const std::vector<TwMemberResult>& members() const { return members_; }

private:
    void decide();
    void finish(TwMethod m);

    TwDurationConfig cfg_;
    LifetimeEngine engine_;
    TwKind kinds_[3];
    std::optional<TwProbe> kind_;
    bool abandoned_ = false;
    bool series_running_ = false;
    bool series_over_ = false;  ///< ended, at max, or inconsistent
    bool series_at_max_ = false;
    bool series_confirmed_ = false;
    bool series_inconsistent_ = false;
    std::optional<Duration> series_last_alive_, series_first_dead_;
    std::optional<Duration> check_offset_;
    bool check_by_silence_ = false;
    TwCheck check_ = TwCheck::NotRun;
    TwMethod method_ = TwMethod::None;
    bool done_ = false;
    std::vector<TwMemberResult> members_;
};

struct TimeWaitConfig {
    ConnectConfig connect;
    TwTest test = TwTest::Duration;
    TwIsn isn = TwIsn::Higher;
    TwTs ts = TwTs::Newer;
    wire::ByteVec request;
    Duration max_wait = std::chrono::seconds{10};        ///< for the peer to close first
    Duration probe_interval = std::chrono::seconds{1};   ///< duration: series probes (>= 600 ms)
    Duration max_duration = std::chrono::seconds{150};   ///< stop probing a TIME-WAIT longer than this
    Duration answer_wait = std::chrono::seconds{2};      ///< after the last copy of a deciding probe
    Duration settle = std::chrono::milliseconds{600};    ///< after the close, before the first probe
    /// Copies of a probe sent again after silence. `time-wait` and `profile` pass
    /// `--retries` (4 by default, as for our own SYN, data and FIN): at 10 % loss each way
    /// a probe and its answer both pass with p = 0.81, so all of 1 + 4 exchanges fail with
    /// 0.19^5 = 0.025 % (0.7 % with two).
    unsigned retries = 2;
    /// rst: the in-window RST goes this many times in each round, back to back. A RST is
    /// never answered, so nothing tells a lost one from an ignored one; copies make all of
    /// them lost unlikely (three rounds of three at 30 % loss: 0.3^9 = 2e-5), and a stack
    /// that ignores the first ignores the others.
    unsigned rst_copies = 3;
    /// Between copies of a FIN probe: FINs are answered at once and never rate-limited, so a
    /// copy is due once an answer had a round trip and the peer's processing time (at least
    /// twice the path's RTT). The series' end is dated by the ACK probe that follows its
    /// last copy, so this gap is part of the duration's resolution.
    Duration retry_gap = std::chrono::milliseconds{100};
    Duration retry_gap_limited = std::chrono::milliseconds{600};  ///< ... of a SYN or ACK probe
    /// duration: the measurement this connection belongs to (the series connection and
    /// every connection probed once share it).
    std::shared_ptr<TwDuration> duration;
    /// A connection probed once by the lifetime engine: its round and slot.
    std::optional<std::pair<Round, unsigned>> slot;
};

struct TimeWaitReport {
    bool peer_closed_first = false;
    std::optional<Instant> tw_start;        ///< capture of the peer's ACK of our FIN
    TwOutcome outcome = TwOutcome::Pending;
    std::optional<std::string> answer;      ///< flags of the answer that decided the outcome
    // duration (the series connection)
    std::optional<Instant> last_alive;      ///< last series probe answered (its first copy)
    std::optional<Instant> first_dead;      ///< first series probe left unanswered
    bool end_confirmed = false;             ///< the ACK probe after it drew a RST
    // every test: probe segments sent after the close (copies included), how many of
    // them were copies sent again after silence, how many drew no answer at all
    unsigned probes = 0;
    unsigned retries = 0;
    unsigned unanswered = 0;
    // reuse
    std::optional<wire::Seq> new_isn;
    std::optional<std::int64_t> isn_distance;  ///< new ISN - old SND.NXT of the peer
    // rst / reuse: a follow-up probe still got an ACK
    std::optional<bool> tw_alive_after;
    unsigned rounds = 0;                    ///< rst: RSTs sent, each followed by its probe
    wire::Seq old_our_nxt, old_peer_nxt;
    std::uint32_t old_our_tsval = 0;
};

/// A Flow that holds its Connection: the connection opens and reports; the close, the
/// probes and the measurement are this flow's.
class TimeWaitFlow final : public Flow, private ConnectionHooks {
public:
    explicit TimeWaitFlow(TimeWaitConfig config);
    const TimeWaitReport& report() const { return report_; }
    const TimeWaitConfig& config() const { return cfg_; }
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    /// duration: the measured TIME-WAIT (the midpoint of its bracket).
    std::optional<Duration> duration() const;
    /// duration: half the width of the bracket.
    std::optional<Duration> resolution() const;
    /// duration: the bracket [longest alive, shortest gone] (or first silence).
    std::optional<std::pair<Duration, Duration>> bracket() const;
    /// A connection of the lifetime engine (probed once), not a test of its own.
    bool is_member() const { return cfg_.slot.has_value(); }
    /// Whether the peer's TIME-WAIT answered this connection's probes (the outcome shows it).
    bool time_wait_seen() const;
    std::string progress(Instant now) const override;

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override {
        if (conn_.on_segment(t, seg, outgoing, out)) on_connected_segment(t, seg, out);
    }
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant t, Outbox& out) override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;
    /// The connection failed on its own (no answer to our SYN, RST, ICMP): the
    /// measurement must not wait for it.
    void on_connect_failed(Instant now, Outbox& out) override;

    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out);
    void on_connected_timer(Instant now, Outbox& out);
    std::optional<Instant> connected_deadline() const;
    enum class Step {
        Waiting,    ///< a member not yet told to connect
        Setup,      ///< the connection and the peer's close
        Settling,   ///< TIME-WAIT began; the first probe follows after `settle`
        Learning,   ///< duration: which probe kind does the peer answer?
        Series,     ///< duration: one probe every interval
        Holding,    ///< duration: waiting for the measurement (series done, or a member's time)
        Probing,    ///< one probe (and its copies) is out
        RstSettle,  ///< rst: between the RST and its follow-up probe
        Done,
    };
    /// What an outstanding probe is for, i.e. what its answer decides.
    enum class Purpose { Learn, Series, SeriesEnd, Member, Reuse, RstFollowUp, Fin };
    /// One probe and the copies sent again when it is not answered.
    struct Exchange {
        Purpose purpose = Purpose::Fin;
        std::optional<TwProbe> kind;        ///< Learn / Series / Member
        std::vector<wire::Segment> copies;  ///< what to send, in order
        std::size_t next = 0;               ///< the next copy to send
        std::vector<Instant> sent;          ///< when each copy went (its capture once seen)
        Duration gap{}, final_wait{};
        Instant due{};                      ///< the next copy, or the end of the wait
    };

    wire::Segment probe_segment(Instant now, TwProbe kind);
    wire::Segment make_probe(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack,
                             std::optional<std::uint32_t> tsval = std::nullopt);
    Duration gap_for(const wire::Segment& s) const;
    void start_exchange(Instant now, Purpose p, std::vector<wire::Segment> copies, Duration final_wait, Outbox& out,
                        std::optional<TwProbe> kind = std::nullopt);
    void send_next_copy(Instant now, Outbox& out);
    void on_answer(Instant t, const wire::Segment& seg, Outbox& out);
    void on_silence(Instant now, Outbox& out);
    void start_tests(Instant now, Outbox& out);
    void learn(Instant now, std::size_t kind_index, Outbox& out);
    void series_probe(Instant now, Outbox& out);
    void rst_round(Instant now, Outbox& out);
    void member_tick(Instant now, Outbox& out);
    void hold_tick(Instant now, Outbox& out);
    void member_done(Instant now, Liveness l, Duration offset, Outbox& out);
    void conclude(Instant now, TwOutcome outcome, Outbox& out);
    void conclude_duration(Instant now, Outbox& out);
    Duration since_tw(Instant t) const { return t - *report_.tw_start; }

    TimeWaitConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    tcb::Tcb& tcb_ = conn_.tcb();
    TimeWaitReport report_;
    Step step_ = Step::Setup;
    std::optional<Instant> setup_deadline_;
    std::optional<Instant> next_at_;          ///< next probe / step
    std::optional<Exchange> ex_;              ///< the probe that is out
    std::optional<wire::Seq> reuse_isn_;
    std::size_t learn_index_ = 0;
    /// The shortest probe -> answer time seen (a probe answered at its only copy): the
    /// handshake's RTT overstates the path when the peer's first SYN-ACK was lost.
    std::optional<Duration> probe_rtt_;
    Conclusion concluded_;
};

}  // namespace tcpprobe::probe
