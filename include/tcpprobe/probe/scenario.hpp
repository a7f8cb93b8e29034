// A flow is one connection a scenario drives (one 4-tuple, one TCB); a Session holds
// many flows, dispatches captured packets to them by 4-tuple in O(1) and starts them on
// a schedule. Both are sans-IO: the runner feeds (capture time, packet) and (now).
#pragma once

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
    virtual std::optional<Instant> next_deadline() const = 0;
    virtual bool done() const = 0;
    /// A short live status for long waits ("3 retransmissions, ..."); empty when none.
    virtual std::string progress(Instant) const { return {}; }
};

class Session {
public:
    /// Adds a flow that starts at `start_at`. Its 4-tuple must be unique in the session.
    Flow& add(Instant start_at, std::unique_ptr<Flow> flow);
    /// Each flow starts only once the one before it is done (measurements that must not overlap).
    void set_sequential(bool s) { sequential_ = s; }
    void on_packet(Instant t, const wire::DecodedPacket& p, Outbox& out);
    void on_timer(Instant now, Outbox& out);
    void interrupt(Instant now, Outbox& out);
    std::optional<Instant> next_deadline() const;
    bool done() const;
    /// The progress of the flows still running, for a live status line.
    std::string progress(Instant now) const;
    std::size_t size() const { return flows_.size(); }
    const Flow& flow(std::size_t i) const { return *flows_[i].flow; }
    /// Captured packets that belonged to no flow (a narrow capture filter keeps this at 0).
    std::uint64_t unmatched() const { return unmatched_; }

private:
    struct Entry {
        std::unique_ptr<Flow> flow;
        Instant start_at;
        bool started = false;
    };
    Entry* find(const wire::FourTuple& t);

    std::vector<Entry> flows_;
    std::unordered_map<wire::FourTuple, std::size_t, wire::FourTupleHash> by_tuple_;
    std::uint64_t unmatched_ = 0;
    bool sequential_ = false;
};

}  // namespace tcpprobe::probe
