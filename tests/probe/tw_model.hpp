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
// Other stacks (DESIGN §3b) are a policy on top: which kinds of segment the TIME-WAIT
// answers with an ACK, which ones restart its timer, and how the port answers once the
// socket is gone (the same vocabulary as the lab's foreign peer, tests/lab/foreign_peer.py).
//
// Time is data: expiry is checked when a segment arrives, no timer of its own.
//
// TwNet runs many connections of one tcpprobe run (one probe::Session) against a
// simulated server that closes first (an HTTP/1.0-like application on a real tcb::Tcb
// per client port) and hands each connection to a TwModel once it enters TIME-WAIT.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sim.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/tcb/tcb.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::sim {

/// What a segment is to a TIME-WAIT socket (foreign_peer.py's tw_kind).
enum class TwSegKind { RetxFin, FinNoAck, FinAck, Ack, Syn, Other };
/// How the port answers a segment once the socket is gone.
enum class TwClosedReply {
    Linux,       ///< ACK: RST; FIN without ACK: nothing; SYN: RST/ACK (the lab's listener)
    Rst,         ///< RFC 9293 §3.10.7.1: a RST to every segment but a RST
    RstAckOnly,  ///< a RST only to segments with ACK (or SYN)
    Silent,      ///< nothing
};

/// A stack that is not Linux: these replace Linux's rules for every segment that is
/// neither a RST nor a SYN.
struct TwPolicy {
    std::set<TwSegKind> answers;   ///< answered with an ACK (not rate-limited)
    std::set<TwSegKind> restarts;  ///< restart the timer
};

struct TwModelConfig {
    Duration time_wait = std::chrono::seconds{60};         ///< TCP_TIMEWAIT_LEN
    Duration ratelimit = std::chrono::milliseconds{500};   ///< tcp_invalid_ratelimit
    bool rfc1337 = false;                                  ///< tcp_rfc1337
    std::optional<TwPolicy> policy;                        ///< unset: Linux's rules
    TwClosedReply closed = TwClosedReply::Linux;
};

TwSegKind classify(const wire::Segment& seg, wire::Seq rcv_nxt);

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
    std::vector<wire::Segment> by_policy(Instant now, const wire::Segment& seg);

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

/// A probe::Session seen as one Flow, so that the single-flow Sim (sim.hpp) carries a
/// whole run: captured segments go to the session, which finds their flow.
class SessionFlow final : public probe::Flow {
public:
    explicit SessionFlow(probe::Session& s) : s_(s) {}
    wire::FourTuple tuple() const override { return {}; }
    void start(Instant now, probe::Outbox& out) override { s_.on_timer(now, out); }
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, probe::Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, probe::Outbox& out) override;
    void on_timer(Instant now, probe::Outbox& out) override { s_.on_timer(now, out); }
    void interrupt(Instant now, probe::Outbox& out) override { s_.interrupt(now, out); }
    std::optional<Instant> next_deadline() const override { return s_.next_deadline(); }
    bool done() const override { return s_.done(); }

private:
    probe::Session& s_;
};

/// Many connections of one run against one simulated server (see the file comment).
class TwNet {
public:
    explicit TwNet(TwModelConfig tw = {}, Duration one_way = std::chrono::microseconds{100});
    TwNet(const TwNet&) = delete;
    TwNet& operator=(const TwNet&) = delete;

    probe::Session& session() { return session_; }
    Instant start() const { return sim_.start(); }
    Instant now() const { return sim_.now(); }
    /// The server answers the request but never closes (no TIME-WAIT on its side).
    void set_closes_first(bool c) { closes_first_ = c; }
    /// Drops segments the server sends (loss on the way to us).
    void set_drop(std::function<bool(const wire::Segment&)> d) { sim_.set_peer_filter(std::move(d)); }
    /// A middlebox on the path: rewrites the server's segments on their way to us, and
    /// ours on their way to the server (MSS clamping, TTL rewriting).
    void set_rewrite_to_us(std::function<void(wire::Segment&)> f) { sim_.set_peer_rewrite(std::move(f)); }
    void set_rewrite_to_server(std::function<void(wire::Segment&)> f) { to_server_rewrite_ = std::move(f); }
    /// How many bytes the server answers a request with (100 by default).
    void set_answer_size(std::size_t n) { answer_size_ = n; }
    /// Runs until the session is done or `limit` of simulated time has passed.
    void run(Duration limit) { sim_.run(limit); }
    /// Every event the flows reported (segments both ways, states, notes), in order.
    std::vector<probe::Event>& events() { return sim_.events(); }

    /// The TIME-WAIT model of the connection from our port `port`, once it exists.
    const TwModel* model(std::uint16_t port) const;
    /// What reached the server's TIME-WAIT socket of `port`, and when.
    const std::vector<std::pair<Instant, wire::Segment>>& arrivals(std::uint16_t port) const;
    /// The flow's trace: its segment lines ("> F 0:0(0) win 64240"), relative numbers.
    std::vector<std::string> lines(std::uint16_t port);
    /// Segments the flows sent, in order, for each port.
    std::vector<wire::Segment> sent(std::uint16_t port) const;

private:
    struct Server {
        std::optional<tcb::Tcb> tcb;
        std::optional<TwModel> model;
        std::vector<std::pair<Instant, wire::Segment>> arrivals;
        bool answered = false;
    };
    std::optional<std::vector<wire::Segment>> to_server(Instant t, const wire::Segment& seg);
    void server_actions(std::uint16_t port, Instant t, const tcb::Actions& a);

    TwModelConfig tw_;
    bool closes_first_ = true;
    std::size_t answer_size_ = 100;
    std::function<void(wire::Segment&)> to_server_rewrite_;
    probe::Session session_;
    SessionFlow flow_{session_};
    Sim sim_;
    std::map<std::uint16_t, Server> servers_;
};

}  // namespace tcpprobe::sim
