// TIME-WAIT of a remote host (RFC 9293 §3.6.1, RFC 1337, RFC 6191).
//
// The peer must close first to hold TIME-WAIT: we send the request (e.g. an HTTP/1.0
// GET), ACK the peer's FIN, close (LAST-ACK) and, once the peer has ACKed our FIN, ask
// its TIME-WAIT socket questions on the same 4-tuple:
//
//   duration  FINs without ACK, outside the window: a TIME-WAIT socket answers them
//             with an ACK and does not restart its timer (anything carrying ACK would);
//             a closed Linux socket does not answer them at all. Spaced >= 600 ms
//             because Linux rate-limits these answers (tcp_invalid_ratelimit, 500 ms).
//             The first unanswered probe is confirmed with an ACK probe, which a
//             closed socket answers with RST.
//   reuse     a new SYN with a higher or lower ISN than the old connection's SND.NXT,
//             with a newer, older or no timestamp: accepted (SYN-ACK, whose ISN Linux
//             derives from the old one: old SND.NXT + 65537) or refused (ACK).
//   rst       an in-window RST, then an out-of-window ACK: answered with an ACK the
//             TIME-WAIT survived (RFC 1337), with a RST the RST killed it.
//   fin       our FIN again: the TIME-WAIT socket re-ACKs it (and restarts its timer).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/connection.hpp"

namespace tcpprobe::probe {

enum class TwTest { Duration, Reuse, Rst, Fin };
enum class TwIsn { Higher, Lower };
enum class TwTs { Newer, Older, None };
std::string_view to_string(TwTest t);
std::string_view to_string(TwIsn i);
std::string_view to_string(TwTs t);

struct TimeWaitConfig {
    ConnectConfig connect;
    TwTest test = TwTest::Duration;
    TwIsn isn = TwIsn::Higher;
    TwTs ts = TwTs::Newer;
    wire::ByteVec request;
    Duration max_wait = std::chrono::seconds{10};        ///< for the peer to close first
    Duration probe_interval = std::chrono::seconds{1};   ///< duration probes (>= 600 ms)
    Duration max_duration = std::chrono::seconds{90};    ///< stop probing a TIME-WAIT longer than this
    Duration answer_wait = std::chrono::seconds{2};      ///< for the answer to a single probe
    Duration settle = std::chrono::milliseconds{600};    ///< after the close, before the first probe
};

struct TimeWaitReport {
    bool peer_closed_first = false;
    std::optional<Instant> tw_start;        ///< capture of the peer's ACK of our FIN
    std::string outcome = "pending";        ///< see time_wait.cpp
    // duration
    std::optional<Instant> last_alive;      ///< last probe answered with ACK
    std::optional<Instant> first_dead;      ///< first probe answered with RST
    unsigned probes = 0;
    unsigned unanswered = 0;
    bool end_confirmed = false;             ///< the ACK probe got a RST too
    // reuse
    std::optional<std::string> answer;      ///< flags of the peer's answer to the probe
    std::optional<wire::Seq> new_isn;
    std::optional<std::int64_t> isn_distance;  ///< new ISN - old SND.NXT of the peer
    std::optional<bool> tw_alive_after;     ///< rst / reuse: a follow-up probe still got an ACK
    wire::Seq old_our_nxt, old_peer_nxt;
    std::uint32_t old_our_tsval = 0;
};

class TimeWaitFlow final : public ConnectionFlow {
public:
    explicit TimeWaitFlow(TimeWaitConfig config);
    const TimeWaitReport& report() const { return report_; }
    const TimeWaitConfig& config() const { return cfg_; }
    /// The measured TIME-WAIT: from its start to the midpoint of the last ACK and the first RST.
    std::optional<Duration> duration() const;
    /// Half the spacing between the last answered and the first refused probe.
    std::optional<Duration> resolution() const;
    std::string progress(Instant now) const override;

protected:
    void on_established(Instant t, Outbox& out) override;
    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out) override;
    void on_connected_timer(Instant now, Outbox& out) override;
    std::optional<Instant> connected_deadline() const override;
    void observe_outgoing(Instant t, const wire::Segment& seg, bool ours, Outbox& out) override;
    void on_interrupt(Instant now, Outbox& out) override;

private:
    enum class Step { Setup, Settling, Probing, Confirming, FollowUp, Done };
    void start_tests(Instant now, Outbox& out);
    void send_probe(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack, Outbox& out,
                    std::optional<std::uint32_t> tsval = std::nullopt);
    void conclude(Instant now, std::string outcome, Outbox& out);
    void on_answer(Instant t, const wire::Segment& seg, Outbox& out);
    void begin_confirm(Instant now, Outbox& out);

    TimeWaitConfig cfg_;
    TimeWaitReport report_;
    Step step_ = Step::Setup;
    std::optional<Instant> setup_deadline_;
    std::optional<Instant> next_at_;          ///< next probe / step
    std::optional<Instant> answer_by_;        ///< a probe is outstanding until then
    std::optional<Instant> last_probe_at_;    ///< capture time of the last probe
    std::optional<wire::Seq> reuse_isn_;
    bool concluded_ = false;
};

}  // namespace tcpprobe::probe
