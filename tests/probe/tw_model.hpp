// A Linux TIME-WAIT socket as a scripted peer for the time-wait scenario tests, after
// tcp_timewait_state_process() (net/ipv4/tcp_minisocks.c) and DESIGN §3:
//
//   * in window (SEG.SEQ == RCV.NXT, no SYN/FIN/data, not PAWS-rejected): a RST kills
//     the socket unless tcp_rfc1337; anything else restarts the timer, silently;
//   * a SYN without ACK/RST, not PAWS-rejected, whose SEG.SEQ is after RCV.NXT or
//     whose TSval is newer than TS.Recent reuses the 4-tuple: SYN-ACK with
//     ISN = SND.NXT + 65537 (the TIME-WAIT socket is gone);
//   * otherwise (out of window): a RST is dropped; any other segment restarts the
//     timer when it carries ACK or was PAWS-rejected, and is answered with an ACK
//     (SND.NXT, RCV.NXT, TS echoing TS.Recent) — rate-limited to one answer per
//     tcp_invalid_ratelimit (500 ms) for segments without payload/FIN and for SYNs
//     (tcp_oow_rate_limited: FINs and data are not rate-limited);
//   * once expired (or killed, or replaced by a new connection) the port answers like
//     the lab's listening port: a segment with ACK gets a RST (seq = SEG.ACK), one
//     without ACK (a FIN) nothing, a RST nothing; a SYN gets a RST/ACK (a real
//     listener would start a new connection, which no test here needs).
//
// Time is data: expiry is checked when a segment arrives, no timer of its own.
#pragma once

#include <optional>
#include <vector>

#include "tcpprobe/tcb/tcb.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::sim {

struct TwModelConfig {
    Duration time_wait = std::chrono::seconds{60};         ///< TCP_TIMEWAIT_LEN
    Duration ratelimit = std::chrono::milliseconds{500};   ///< tcp_invalid_ratelimit
    bool rfc1337 = false;                                  ///< tcp_rfc1337
};

class TwModel {
public:
    enum class End { None, Expired, Killed, Reused };

    struct Init {
        wire::FourTuple tuple;        ///< (the TIME-WAIT socket, its peer)
        wire::Seq snd_nxt, rcv_nxt;
        bool timestamps = false;      ///< the connection used timestamps
        std::uint32_t ts_recent = 0;
        std::uint32_t ts_offset = 0;  ///< our TSval at the start
        std::uint16_t window = 502;
    };

    TwModel(Init init, Instant start, TwModelConfig cfg = {});
    /// Takes over a peer TCB that entered TIME-WAIT at `start`.
    static TwModel from(const tcb::Tcb& peer, Instant start, TwModelConfig cfg = {});

    /// A segment arriving at `now`: the answers (none, one ACK, a SYN-ACK or a RST).
    std::vector<wire::Segment> on_segment(Instant now, const wire::Segment& seg);

    Instant start() const { return start_; }
    /// When the timer fires (last restart + time_wait), unless something ended it first.
    Instant deadline() const { return deadline_; }
    /// Whether TIME-WAIT was (or, as far as the model knows now, will be) there at t.
    bool alive_at(Instant t) const { return t >= start_ && t < ended_at_.value_or(deadline_); }
    End end() const { return end_; }
    /// When TIME-WAIT ended, once a segment found it over (expiry: the deadline).
    std::optional<Instant> ended_at() const { return ended_at_; }
    /// Capture-free record of what the socket saw: every timer restart, every answer.
    const std::vector<Instant>& restarts() const { return restarts_; }
    unsigned acks_sent() const { return acks_; }
    unsigned rate_limited() const { return rate_limited_; }
    std::optional<wire::Seq> new_isn() const { return new_isn_; }
    std::uint32_t ts_recent() const { return init_.ts_recent; }
    wire::Seq snd_nxt() const { return init_.snd_nxt; }
    wire::Seq rcv_nxt() const { return init_.rcv_nxt; }

private:
    bool paws_rejects(const wire::Segment& seg) const;
    void restart(Instant now);
    bool rate_limited(Instant now, const wire::Segment& seg);
    wire::Segment answer(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack) const;
    std::vector<wire::Segment> closed_answer(Instant now, const wire::Segment& seg) const;

    Init init_;
    TwModelConfig cfg_;
    Instant start_;
    Instant deadline_;
    End end_ = End::None;
    std::optional<Instant> ended_at_;
    std::optional<Instant> last_oow_ack_;
    std::vector<Instant> restarts_;
    unsigned acks_ = 0;
    unsigned rate_limited_ = 0;
    std::optional<wire::Seq> new_isn_;
};

}  // namespace tcpprobe::sim
