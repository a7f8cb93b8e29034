// The userspace TCB: RFC 9293 connection management, sans-IO.
//
// Inputs are (now, segment), (now) for timers, and the user calls of RFC 9293 §3.10
// (OPEN, SEND, CLOSE, ABORT); outputs are Actions. The TCB owns no clock and no socket,
// so every behaviour is testable with a simulated clock and a scripted peer.
//
// RFC 5961 is applied: RST and SYN in synchronized states are validated by exact
// sequence number, answered with a challenge ACK when merely in window. Options are
// negotiated from what our SYN actually carried (the user may send any list), so
// "window scaling only if both sides offer it" holds even for hand-made option lists.
#pragma once

#include <memory>

#include <cstddef>
#include <vector>
#include <optional>

#include "tcpprobe/tcb/action.hpp"
#include "tcpprobe/tcb/state.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::tcb {

/// Our own retransmission schedule for SYN, FIN and data (RFC 6298 shape).
struct RetransmitPolicy {
    Duration initial_rto = std::chrono::seconds{1};
    double backoff = 2.0;
    unsigned max_retries = 3;  ///< retransmissions before giving up
    Duration max_rto = std::chrono::seconds{60};
    /// RFC 6298 §2: once a segment sent once has been acknowledged (the SYN, by the
    /// SYN-ACK), the RTO is SRTT + 4 x RTTVAR, at least min_rto, instead of initial_rto.
    /// Off: every segment starts from initial_rto (a simulated peer with a fixed schedule).
    bool from_rtt = false;
    /// Linux's floor (TCP_RTO_MIN). RFC 6298 §2.4 asks for 1 s (a SHOULD); Linux uses
    /// 200 ms and FreeBSD 30 ms, so a peer's own timers are tuned to retries this fast.
    Duration min_rto = std::chrono::milliseconds{200};
    /// SYN retransmissions after which the RTO is not yet backed off: Linux 6.7+ keeps the
    /// first tcp_syn_linear_timeouts (4) + 1 SYN gaps at the initial RTO, so that a SYN lost
    /// on the path costs one second, not a doubling wait. 0: RFC 6298 §5.5 from the first.
    unsigned syn_linear = 0;
    friend bool operator==(const RetransmitPolicy&, const RetransmitPolicy&) = default;
};

/// The smallest MSS we send with, whatever the peer announced. RFC 9293 §3.7.1 lets a
/// peer announce any value, including 0, and a value under 12 leaves no room for the
/// timestamps option. Like Linux (net.ipv4.tcp_min_snd_mss, 48 by default since the
/// CVE-2019-11479 fixes), a smaller announcement is taken as 48: at most 36 bytes of
/// payload with timestamps, 48 without. RFC 879's 536 is only the default when the peer
/// announces nothing; a peer may ask for less, and we honour it down to this floor.
inline constexpr std::uint16_t min_send_mss = 48;

/// Segments of ours outstanding at once: RFC 6928's initial window of ten segments. The
/// TCB has no congestion control, so the window never grows: a probe's request is small,
/// and a peer announcing a tiny MSS must not receive thousands of segments in a burst.
inline constexpr std::size_t max_segments_in_flight = 10;

struct TcbConfig {
    wire::FourTuple tuple;
    wire::Seq iss;
    std::uint32_t rcv_wnd = 65535;    ///< our receive window in bytes (scaled when WS is on)
    std::uint16_t syn_window = 0;     ///< window field of our SYN; 0 = min(rcv_wnd, 65535)
    wire::OptionList syn_options;     ///< what our SYN / SYN-ACK carries, in this order
    std::uint16_t extra_syn_flags = 0;  ///< e.g. ECE|CWR on our SYN
    wire::IpFields ip;                ///< TTL, TOS, DF, IP ID: copied as they are (the sender counts IP IDs: probe::IpIds)
    std::uint32_t mtu = 65535;        ///< the link's MTU: no packet we send is larger (68..65535 used)
    RetransmitPolicy rto;
    Duration time_wait = std::chrono::seconds{60};  ///< 2MSL
    /// A retransmitted FIN restarts 2MSL (RFC 9293 §3.10.7.4), but never past this many
    /// 2MSL periods after TIME-WAIT began: a peer repeating its FIN cannot hold us forever.
    unsigned time_wait_max_periods = 2;
    std::uint32_t ts_offset = 0;      ///< TSval at the TCB's first instant
    bool rfc1337 = false;             ///< ignore RST in TIME-WAIT (RFC 1337 TIME-WAIT assassination)
    friend bool operator==(const TcbConfig&, const TcbConfig&) = default;
};

/// The linux-like option list: mss, sackOK, TS, nop, wscale (omitting what is off).
wire::OptionList default_syn_options(std::optional<std::uint16_t> mss, std::optional<std::uint8_t> wscale,
                                     bool sack, bool timestamps);

struct Negotiated {
    std::optional<std::uint16_t> our_mss;
    std::optional<std::uint16_t> peer_mss;
    /// What we send with: min(peer MSS or 536, our MSS) — RFC 9293 §3.7.1 — raised to
    /// min_send_mss, and never more than the link MTU less 40 bytes of IPv4 and TCP header.
    std::uint16_t effective_mss = 536;
    std::optional<std::uint8_t> our_wscale;
    std::optional<std::uint8_t> peer_wscale;
    bool window_scaling = false;  ///< both offered
    bool sack = false;
    bool timestamps = false;
    /// Bytes of payload per full segment once the timestamps option takes its 12 bytes
    /// (at least 16: the effective MSS is at least 28, on IPv4's smallest link).
    std::uint16_t payload_per_segment() const {
        const std::uint16_t options = timestamps ? 12 : 0;
        return static_cast<std::uint16_t>(effective_mss > options ? effective_mss - options : 1);
    }
};

class Tcb {
public:
    explicit Tcb(TcbConfig config);

    // RFC 9293 §3.10 user calls.
    Actions open_active(Instant now);
    Actions open_passive(Instant now);
    Actions send(Instant now, wire::ByteVec data);
    Actions close(Instant now);
    Actions abort(Instant now);

    Actions on_segment(Instant now, const wire::Segment& seg);
    Actions on_timer(Instant now);
    std::optional<Instant> next_deadline() const;

    State state() const { return state_; }
    /// The configuration it was made with (put together again: a copy).
    TcbConfig config() const;
    const wire::FourTuple& tuple() const { return tuple_; }
    std::uint16_t extra_syn_flags() const { return cfg_->extra_syn_flags; }
    const wire::OptionList& syn_options() const { return cfg_->syn_options; }
    const Negotiated& negotiated() const { return neg_; }
    wire::Seq iss() const { return iss_; }
    std::optional<wire::Seq> irs() const { return irs_; }
    wire::FormatContext format_context(wire::Direction d) const { return {d, iss_, irs_}; }
    bool fin_sent() const { return fin_seq_.has_value(); }
    bool fin_acked() const;
    bool fin_received() const { return fin_received_; }
    std::uint32_t ts_recent() const { return ts_recent_; }
    /// When TIME-WAIT began, and how many retransmitted FINs the peer sent in it.
    std::optional<Instant> time_wait_since() const { return time_wait_since_; }
    unsigned time_wait_fins() const { return time_wait_fins_; }

    struct SendVars {
        wire::Seq una, nxt;
        std::uint32_t wnd = 0;
        wire::Seq wl1, wl2;
    } snd;
    struct RecvVars {
        wire::Seq nxt;
        std::uint32_t wnd = 0;
    } rcv;

    /// A segment from us with the TCB's addresses, window, timestamps and IP fields.
    /// Probes use it to send segments the state machine would not (stale SYNs, probes).
    wire::Segment make_segment(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack,
                               wire::ByteVec payload = {});

private:
    /// OPEN's common part: refused (a note) unless CLOSED; else a new TCB in LISTEN or SYN-SENT.
    bool open(Instant now, bool passive, Actions& out);
    struct Pending {
        wire::Seq seq;
        std::uint16_t flags;  ///< SYN / FIN / PSH, plus ACK when synchronized
        bool retransmitted = false;  ///< its ACK is no RTT sample (Karn)
        wire::ByteVec data;
        Instant sent_at{};           ///< first transmission
        wire::Seq end() const { return seq + static_cast<std::uint32_t>(data.size()) +
                                       ((flags & wire::flag::syn) ? 1u : 0u) +
                                       ((flags & wire::flag::fin) ? 1u : 0u); }
    };

    // Segment processing, one handler per RFC 9293 §3.10.7 group.
    void handle_closed(Instant now, const wire::Segment& seg, Actions& out);
    void handle_listen(Instant now, const wire::Segment& seg, Actions& out);
    void handle_syn_sent(Instant now, const wire::Segment& seg, Actions& out);
    void handle_synchronized(Instant now, const wire::Segment& seg, Actions& out);
    void handle_time_wait(Instant now, const wire::Segment& seg, Actions& out);

    // The numbered steps of §3.10.7.4; each returns false when the segment is finished with.
    bool check_sequence(Instant now, const wire::Segment& seg, Actions& out);
    bool check_rst(Instant now, const wire::Segment& seg, Actions& out);
    bool check_syn(Instant now, const wire::Segment& seg, Actions& out);
    bool check_ack(Instant now, const wire::Segment& seg, Actions& out);
    void check_urg(const wire::Segment& seg, Actions& out);
    bool process_text(const wire::Segment& seg, Actions& out);
    bool process_fin(Instant now, const wire::Segment& seg, Actions& out);

    bool acceptable(const wire::Segment& seg) const;
    void negotiate(const wire::Segment& syn);
    void update_timestamps(const wire::Segment& seg);
    bool paws_rejects(const wire::Segment& seg) const;
    void update_window(const wire::Segment& seg);
    void on_ack_advanced(Instant now, Actions& out);

    void set_state(State to, std::string cause, Actions& out);
    void enter_time_wait(Instant now, std::string cause, Actions& out);
    void emit(Instant now, std::uint16_t flags, wire::Seq seq, wire::Seq ack, SendReason why,
              Actions& out, wire::ByteVec payload = {});
    void send_ack(Instant now, SendReason why, Actions& out);
    void send_reset_reply(Instant now, const wire::Segment& seg, Actions& out);
    void queue_and_send(Instant now, Pending p, SendReason why, Actions& out);
    bool may_send(std::size_t len) const;
    bool send_unsent(Instant now, Actions& out);
    void send_fin(Instant now, Actions& out);
    void arm_retransmit(Instant now, Actions& out);
    /// RFC 6298 §2.2-2.3: one RTT measurement into SRTT and RTTVAR.
    void rtt_sample(Duration r);
    /// The RTO a newly armed timer starts from (before any backoff).
    Duration base_rto() const;
    void cancel_timers(Actions& out);
    std::uint32_t ts_now(Instant now) const;
    std::uint16_t advertised_window(bool syn) const;

    /// The configuration without the 4-tuple, ISS, IP fields and TSval offset: one copy
    /// for every live TCB made with the same one (a run's thousands of flows share it;
    /// a copy with its option list was 170 bytes a flow). Those four are this TCB's own.
    std::shared_ptr<const TcbConfig> cfg_;
    wire::FourTuple tuple_;
    wire::Seq iss_;
    wire::IpFields ip_;
    std::uint32_t ts_offset_ = 0;
    State state_ = State::Closed;
    bool passive_ = false;
    /// SYN-SENT: this copy of our SYN drew an unacceptable ACK and went again behind our
    /// RST (once per copy; the retransmission timer clears it).
    bool syn_resent_ = false;
    CompactInstant epoch_;
    std::optional<wire::Seq> irs_;
    Negotiated neg_;
    std::uint8_t snd_wscale_ = 0;
    std::uint8_t rcv_wscale_ = 0;
    std::uint32_t ts_recent_ = 0;
    wire::Seq last_ack_sent_;
    std::optional<wire::Seq> fin_seq_;
    bool fin_received_ = false;

    /// SEND's data not sent yet (the send window was full), already cut into segments;
    /// `push` marks the last segment of a SEND call.
    struct Unsent {
        wire::ByteVec data;
        bool push = false;
    };
    // Vectors, not deques: an empty std::deque already holds a 512-byte block and its
    // map, about 1.2 KB per TCB for the two, most of a half-open flow's memory. Both
    // stay short (the retransmission queue at most max_segments_in_flight), so taking
    // from the front costs little.
    std::vector<Unsent> unsent_;
    bool fin_queued_ = false;  ///< CLOSE came while data was unsent: the FIN follows it

    std::vector<Pending> retransmit_queue_;
    CompactInstant rto_deadline_;
    Duration rto_{};
    unsigned retries_ = 0;
    CompactInstant time_wait_deadline_;
    CompactInstant time_wait_since_;
    /// RFC 6298's estimator in microseconds (4 bytes each: a flow stays under 1 KB);
    /// srtt_us_ == 0: no sample yet.
    std::uint32_t srtt_us_ = 0;
    std::uint32_t rttvar_us_ = 0;
    unsigned time_wait_fins_ = 0;
};

}  // namespace tcpprobe::tcb
