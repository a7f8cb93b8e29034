// A flow is one connection a scenario drives (one 4-tuple, one TCB); a Session holds
// many flows, dispatches captured packets to them by 4-tuple in O(1) and starts them on
// a schedule. Both are sans-IO: the runner feeds (capture time, packet) and (now).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tcpprobe/probe/event.hpp"
#include "tcpprobe/wire/packet.hpp"

namespace tcpprobe::probe {

class Flow {
public:
    virtual ~Flow() = default;
    virtual wire::FourTuple tuple() const = 0;
    virtual void start(Instant now, Outbox& out) = 0;
    /// A captured TCP segment of this flow; `outgoing` when we (or our kernel) sent it.
    virtual void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) = 0;
    virtual void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) = 0;
    virtual void on_timer(Instant now, Outbox& out) = 0;
    /// Stop now (Ctrl-C): settle the verdict from what was seen.
    virtual void interrupt(Instant now, Outbox& out) = 0;
    /// The session's time is up (--max-wait of a passive run): by default like an interrupt.
    virtual void stop(Instant now, Outbox& out) { interrupt(now, out); }
    virtual std::optional<Instant> next_deadline() const = 0;
    virtual bool done() const = 0;
    /// A short live status for long waits ("3 retransmissions, ..."); empty when none.
    virtual std::string progress(Instant) const { return {}; }
};

/// The flow table and the one timer structure of a run.
///
/// Lookup is one hash probe per packet; timers live in one binary heap with lazy
/// deletion (a flow's entry is replaced whenever the flow is touched), so neither a
/// packet nor a timer costs anything per other flow. A flow's 4-tuple is registered
/// when it starts, so a later flow may reuse the tuple of one that is done.
class Session {
public:
    /// Adds a flow that starts at `start_at`.
    Flow& add(Instant start_at, std::unique_ptr<Flow> flow);
    /// Room for `flows` flows and their timers, when the caller knows how many it adds
    /// (grown by doubling, the table and heap held up to 60 % more than they used).
    void reserve(std::size_t flows);
    /// Each flow starts only once the one before it is done (measurements that must not overlap).
    void set_sequential(bool s) { sequential_ = s; }
    /// A global pace on new connections (runs of several experiments at one host): at most
    /// `syns` SYNs (without ACK) go out in any window of `per`. A SYN beyond it is held,
    /// in order, until the window has room; a flow whose start time has come while the
    /// window is full starts when it has room again (so it does not queue SYNs for later).
    void set_pace(unsigned syns, Duration per);
    /// For passive scenarios: a segment that belongs to no flow is offered to the acceptor,
    /// which may return a new flow for it (keyed by the segment's dst -> src); the flow
    /// starts at once and receives the segment.
    using Acceptor = std::function<std::unique_ptr<Flow>(Instant, const wire::Segment&)>;
    void set_acceptor(Acceptor a) { acceptor_ = std::move(a); }
    /// Passive sessions end when this returns true (e.g. enough clients seen), or never.
    void set_stop_when(std::function<bool()> f) { stop_when_ = std::move(f); }
    /// At `end` every running flow is stopped (Flow::stop) and the session is done.
    void set_end(Instant end);
    void on_packet(Instant t, const wire::DecodedPacket& p, Outbox& out);
    /// Starts and serves the flows whose time has come, at most flows_per_call of them:
    /// the rest are still due (next_deadline() is not later than now), and the caller
    /// sends, reports and reads the capture in between. Ten thousand flows that start
    /// (or time out) at one instant would otherwise queue all their segments and events
    /// at once (about 1.3 KB a flow), and their answers would pile up in the capture.
    void on_timer(Instant now, Outbox& out);
    static constexpr std::size_t flows_per_call = 64;
    void interrupt(Instant now, Outbox& out);
    std::optional<Instant> next_deadline() const;
    bool done() const;
    /// The progress of a flow still running, for a live status line (several lines when a
    /// progress function was set: e.g. one per experiment of a profile).
    std::string progress(Instant now) const;
    void set_progress(std::function<std::string(Instant)> f) { progress_ = std::move(f); }
    std::size_t size() const { return flows_.size(); }
    std::size_t finished() const { return done_count_; }
    const Flow& flow(std::size_t i) const { return *flows_[i].flow; }
    /// Captured packets that belonged to no flow (a narrow capture filter keeps this at 0).
    std::uint64_t unmatched() const { return unmatched_; }
    /// Entries in the timer heap, live and stale: at most a few per flow, however many
    /// segments a peer sends (each may move a flow's deadline).
    std::size_t timer_entries() const { return heap_.size(); }

private:
    struct Entry {
        std::unique_ptr<Flow> flow;
        Instant start_at;
        bool started = false;
        bool counted_done = false;
        std::uint32_t generation = 0;  ///< heap entries with an older generation are stale
        std::optional<Instant> queued = std::nullopt;  ///< the deadline of its one live heap entry
    };
    struct Timer {
        Instant at;
        std::size_t index;
        std::uint32_t generation;
        bool operator>(const Timer& o) const { return at > o.at; }
    };
    Entry* find(const wire::FourTuple& t);
    void start(std::size_t i, Instant now, Outbox& out);
    /// After any call into flow i: count it done, or queue its next deadline.
    void touch(std::size_t i);
    void drop_stale() const;
    /// Removes every stale entry once they outnumber the flows.
    void compact();

    std::vector<Entry> flows_;
    std::unordered_map<wire::FourTuple, std::size_t, wire::FourTupleHash> by_tuple_;
    mutable std::vector<Timer> heap_;  ///< min-heap on `at` (std::push_heap with greater)
    std::size_t done_count_ = 0;
    std::size_t next_sequential_ = 0;
    std::uint64_t unmatched_ = 0;
    bool sequential_ = false;
    Acceptor acceptor_;
    std::function<bool()> stop_when_;
    std::function<std::string(Instant)> progress_;
    std::optional<Instant> end_;
    bool ended_ = false;
    bool pace_full(Instant now) const;
    /// SYNs the call that began at out.send[from] added: sent within the pace, or held.
    void pace(Instant now, Outbox& out, std::size_t from);
    void release_held(Instant now, Outbox& out);

    unsigned pace_syns_ = 0;               ///< 0: no pace
    Duration pace_per_{};
    std::deque<Instant> recent_syns_;      ///< when the last pace_syns_ SYNs went out
    std::deque<wire::Segment> held_;       ///< SYNs waiting for room, in order
};

}  // namespace tcpprobe::probe
