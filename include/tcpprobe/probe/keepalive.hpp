// Keepalive (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4) on one idle connection.
//
// Watch (default): open, send the request if any, then stay idle and record the
// peer's keepalive probes: segments at its SND.NXT-1 (our RCV.NXT-1) with no data or
// one byte of garbage (the BSD form). We answer none by default: the first probe gives
// the idle time (since our last segment, which is what the peer last received),
// the unanswered ones the interval and the count, and what ends them (a RST, Linux's
// way once tcp_keepalive_probes went unanswered, or silence) the give-up. With
// `answer` N the first N probes are answered with an ACK first: the peer's idle timer
// must then restart (the next probe a whole idle time after our answer).
//
// Linux: tcp_keepalive_time (7200 s), tcp_keepalive_intvl (75 s), tcp_keepalive_probes
// (9), or the socket's TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT. It sends probe k+1
// one interval after probe k, and once `probes` of them are unanswered, one interval
// after the last, a RST (tcp_keepalive_timer: icsk_probes_out >= keepalive_probes).
// Its timers run on the timer wheel: late by up to its granularity (infer_linux_seconds).
//
// Send: we send keepalive probes ourselves (seq = SND.NXT-1, no data) every
// `send_interval`, `count` times, and record whether the peer answers each (RFC 1122
// requires an ACK; Linux rate-limits such answers to one per 500 ms).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"

namespace tcpprobe::probe {

enum class KeepaliveMode { Watch, Send };
enum class KeepaliveEnd { None, Rst, Silence, PeerFin, MaxWait, Interrupted };
std::string_view to_string(KeepaliveEnd e);

struct KeepaliveConfig {
    ConnectConfig connect;
    wire::ByteVec request;
    KeepaliveMode mode = KeepaliveMode::Watch;
    unsigned answer = 0;                                 ///< watch: probes answered first
    Duration max_wait = std::chrono::minutes{135};       ///< watch: 2 h 15 min covers Linux's default 2 h
    Duration send_interval = std::chrono::seconds{1};    ///< send: between our probes
    unsigned count = 3;                                  ///< send: probes we send
    Duration answer_wait = std::chrono::seconds{2};      ///< send: after the last probe
};

struct KeepaliveProbe {
    Instant t;
    std::size_t length = 0;   ///< 0 or 1 byte
    bool answered = false;    ///< we ACKed it (watch) / the peer ACKed ours (send)
    std::optional<Duration> rtt;  ///< send: our probe -> the peer's ACK
};

struct KeepaliveReport {
    std::optional<Instant> idle_start;      ///< our last segment before the first probe
    std::vector<KeepaliveProbe> probes;
    KeepaliveEnd end = KeepaliveEnd::None;
    std::optional<Instant> end_at;          ///< the RST / FIN, or when silence was called
    std::vector<std::string> anomalies;
};

/// The figures of a watched run, from the probes (pure; see the file comment).
struct KeepaliveFigures {
    std::optional<Duration> idle;           ///< last segment from us -> first probe
    std::vector<Duration> idle_after_answer;///< our answer -> the next probe (the timer restarted)
    std::optional<Duration> interval;       ///< median gap between unanswered probes
    unsigned unanswered = 0;                ///< probes of the final, unanswered run
    std::optional<Duration> end_after_last; ///< last probe -> RST
};
KeepaliveFigures keepalive_figures(const KeepaliveReport& r, const std::vector<Instant>& answers);

/// A Linux setting in whole seconds that explains `measured`: n with n <= measured
/// and measured <= n + the timer wheel's granularity at n seconds (at HZ=100, the
/// coarsest; HZ=250 is finer) + `tolerance`. Unset when none or several fit.
std::optional<unsigned> infer_linux_seconds(Duration measured, Duration tolerance);
/// The same for a lifetime known to lie in (lower, upper]: the one n whose firing window
/// [n, n + slack] meets it. Several: not inferred (e.g. 60 s, whose slack is 2 s).
std::optional<unsigned> infer_linux_seconds_in(Duration lower, Duration upper, Duration tolerance);
/// How late a Linux timer of `d` may fire (one granularity of its wheel level at HZ=100).
Duration linux_timer_slack(Duration d);

/// A Flow that holds its Connection: the connection opens and reports; once it is open
/// the idle watch (or our own probes) is this flow's.
class KeepaliveFlow final : public Flow, private ConnectionHooks {
public:
    explicit KeepaliveFlow(KeepaliveConfig config);
    const KeepaliveReport& report() const { return report_; }
    const KeepaliveConfig& config() const { return cfg_; }
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    /// Watch: capture times of our ACKs of the answered probes.
    const std::vector<Instant>& answers() const { return answers_; }
    KeepaliveFigures figures() const { return keepalive_figures(report_, answers_); }
    std::string progress(Instant now) const override;

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override {
        if (conn_.on_segment(t, seg, outgoing, out)) on_connected_segment(t, seg, out);
    }
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override {
        if (conn_.on_timer(now, out)) on_connected_timer(now, out);
    }
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant t, Outbox& out) override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;

    // The watch, once connected.
    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out);
    void on_connected_timer(Instant now, Outbox& out);
    bool is_keepalive(const wire::Segment& seg) const;
    void end(Instant now, KeepaliveEnd e, Outbox& out);
    void send_probe(Instant now, Outbox& out);
    /// Watch: when silence after the last unanswered probe counts as the end.
    std::optional<Instant> silence_deadline() const;

    KeepaliveConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    tcb::Tcb& tcb_ = conn_.tcb();
    KeepaliveReport report_;
    std::optional<Instant> last_ours_;       ///< our last segment's capture
    std::optional<Instant> watch_until_;     ///< --max-wait
    std::optional<Instant> next_send_;
    std::vector<Instant> answers_;
    std::optional<wire::Segment> answer_pending_;  ///< our ACK to a probe, until captured
    std::optional<wire::Segment> our_probe_;
    Conclusion ended_;
};

}  // namespace tcpprobe::probe
