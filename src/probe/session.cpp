// Flow table and timer heap (see scenario.hpp).
#include <algorithm>
#include <functional>
#include <limits>

#include "tcpprobe/probe/scenario.hpp"

namespace tcpprobe::probe {

namespace {
constexpr std::size_t end_marker = std::numeric_limits<std::size_t>::max();
}

Flow& Session::add(Instant start_at, std::unique_ptr<Flow> flow) {
    flows_.push_back({std::move(flow), start_at});
    const std::size_t i = flows_.size() - 1;
    if (!sequential_ || i == 0) {
        heap_.push_back({start_at, i, 0});
        std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
    }
    return *flows_.back().flow;
}

void Session::reserve(std::size_t flows) {
    flows_.reserve(flows);
    heap_.reserve(flows + 1);  // one live entry per flow, and the end
    by_tuple_.reserve(flows);
}

void Session::set_pace(unsigned syns, Duration per) {
    pace_syns_ = syns;
    pace_per_ = per;
}

bool Session::pace_full(Instant now) const {
    return pace_syns_ > 0 && recent_syns_.size() == pace_syns_ && recent_syns_.front() + pace_per_ > now;
}

void Session::pace(Instant now, Outbox& out, std::size_t from) {
    if (pace_syns_ == 0) return;
    for (std::size_t i = from; i < out.send.size();) {
        const wire::Segment& seg = out.send[i];
        if (!seg.has(wire::flag::syn) || seg.has_any(wire::flag::ack | wire::flag::rst)) {
            ++i;
            continue;
        }
        if (!held_.empty() || pace_full(now)) {
            held_.push_back(seg);
            out.send.erase(out.send.begin() + static_cast<std::ptrdiff_t>(i));
            continue;
        }
        recent_syns_.push_back(now);
        if (recent_syns_.size() > pace_syns_) recent_syns_.pop_front();
        ++i;
    }
}

void Session::release_held(Instant now, Outbox& out) {
    while (!held_.empty() && !pace_full(now)) {
        out.send.push_back(std::move(held_.front()));
        held_.pop_front();
        recent_syns_.push_back(now);
        if (recent_syns_.size() > pace_syns_) recent_syns_.pop_front();
    }
}

void Session::set_end(Instant end) {
    end_ = end;
    heap_.push_back({end, end_marker, 0});
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

Session::Entry* Session::find(const wire::FourTuple& t) {
    auto it = by_tuple_.find(t);
    return it == by_tuple_.end() ? nullptr : &flows_[it->second];
}

void Session::touch(std::size_t i) {
    Entry& e = flows_[i];
    const std::optional<Instant> d = e.flow->done() ? std::nullopt : e.flow->next_deadline();
    // The deadline did not move: its live entry stands (a segment per microsecond from a
    // peer must not add an entry each).
    if (d && d == e.queued) return;
    ++e.generation;
    e.queued = d;
    if (e.flow->done()) {
        if (!e.counted_done) {
            e.counted_done = true;
            ++done_count_;
            if (sequential_ && i + 1 < flows_.size() && next_sequential_ == i + 1) {
                heap_.push_back({flows_[i + 1].start_at, i + 1, flows_[i + 1].generation});
                std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
            }
        }
        return;
    }
    if (d) {
        heap_.push_back({*d, i, e.generation});
        std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
        if (heap_.size() > 2 * flows_.size() + 64) compact();
    }
}

void Session::compact() {
    std::erase_if(heap_, [&](const Timer& t) {
        return t.index != end_marker && flows_[t.index].started && t.generation != flows_[t.index].generation;
    });
    std::make_heap(heap_.begin(), heap_.end(), std::greater<>{});
}

void Session::start(std::size_t i, Instant now, Outbox& out) {
    Entry& e = flows_[i];
    e.started = true;
    by_tuple_[e.flow->tuple()] = i;  // a later flow may take over a finished flow's tuple
    if (sequential_) next_sequential_ = i + 1;
    const std::size_t from = out.send.size();
    e.flow->start(now, out);
    pace(now, out, from);
    touch(i);
}

void Session::on_packet(Instant t, const wire::DecodedPacket& p, Outbox& out) {
    auto deliver = [&](Entry* e, auto&& call) {
        const std::size_t from = out.send.size();
        call(*e->flow);
        pace(t, out, from);
        touch(static_cast<std::size_t>(e - flows_.data()));
    };
    if (const auto* seg = p.segment()) {
        // Our segments go local -> remote; answers come back reversed.
        if (Entry* e = find({seg->src, seg->dst}); e && e->started) {
            deliver(e, [&](Flow& f) { f.on_segment(t, *seg, true, out); });
            return;
        }
        if (Entry* e = find({seg->dst, seg->src}); e && e->started) {
            deliver(e, [&](Flow& f) { f.on_segment(t, *seg, false, out); });
            return;
        }
        if (acceptor_) {
            if (auto flow = acceptor_(t, *seg)) {
                flows_.push_back({std::move(flow), t});
                const std::size_t i = flows_.size() - 1;
                start(i, t, out);
                flows_[i].flow->on_segment(t, *seg, false, out);
                touch(i);
                return;
            }
        }
    } else if (const auto* icmp = p.icmp()) {
        if (Entry* e = find({icmp->quoted_src, icmp->quoted_dst}); e && e->started) {
            deliver(e, [&](Flow& f) { f.on_icmp(t, *icmp, out); });
            return;
        }
    }
    ++unmatched_;
}

void Session::drop_stale() const {
    while (!heap_.empty()) {
        const Timer& top = heap_.front();
        const bool stale = top.index == end_marker
                               ? ended_
                               : (flows_[top.index].started
                                      ? (top.generation != flows_[top.index].generation || flows_[top.index].flow->done())
                                      : false);
        if (!stale) return;
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
        heap_.pop_back();
    }
}

void Session::on_timer(Instant now, Outbox& out) {
    // Bounded: a flow that keeps asking for a past deadline is served again on the next
    // call, after the runner has had a chance to read the capture.
    release_held(now, out);
    std::size_t budget = 2 * heap_.size() + 16;
    std::size_t served = 0;
    for (; budget > 0 && served < flows_per_call; --budget) {
        drop_stale();
        if (heap_.empty() || heap_.front().at > now) return;
        Timer top = heap_.front();
        std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
        heap_.pop_back();
        if (top.index != end_marker) flows_[top.index].queued.reset();  // its live entry is gone
        if (top.index == end_marker) {
            ended_ = true;
            held_.clear();  // the run is over: no new connection
            for (std::size_t i = 0; i < flows_.size(); ++i)
                if (flows_[i].started && !flows_[i].flow->done()) {
                    flows_[i].flow->stop(now, out);
                    touch(i);
                }
            return;
        }
        Entry& e = flows_[top.index];
        if (!e.started) {
            if (pace_full(now) || !held_.empty()) {
                // No room for its SYN now: come back when the window has some.
                const Instant again = held_.empty() ? recent_syns_.front() + pace_per_ : now + pace_per_;
                heap_.push_back({again, top.index, e.generation});
                std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
                continue;
            }
            start(top.index, now, out);
            ++served;
            continue;
        }
        const std::size_t from = out.send.size();
        e.flow->on_timer(now, out);
        pace(now, out, from);
        touch(top.index);
        ++served;
    }
}

void Session::interrupt(Instant now, Outbox& out) {
    held_.clear();  // nothing new after a stop signal
    for (std::size_t i = 0; i < flows_.size(); ++i)
        if (flows_[i].started && !flows_[i].flow->done()) {
            flows_[i].flow->interrupt(now, out);
            touch(i);
        }
}

std::optional<Instant> Session::next_deadline() const {
    drop_stale();
    std::optional<Instant> d;
    if (!heap_.empty()) d = heap_.front().at;
    if (!held_.empty()) {
        const Instant room = recent_syns_.front() + pace_per_;
        if (!d || room < *d) d = room;
    }
    return d;
}

bool Session::done() const {
    if (ended_) return true;
    if (!held_.empty()) return false;
    if (stop_when_) {
        if (!stop_when_()) return false;
    } else if (acceptor_) {
        return false;  // a passive session runs until it is told to stop
    }
    return done_count_ == flows_.size();
}

std::string Session::progress(Instant now) const {
    // Called a few times a second on a TTY only; it looks for the first running flow.
    if (progress_) return progress_(now);
    for (const auto& e : flows_) {
        if (!e.started || e.flow->done()) continue;
        std::string first = e.flow->progress(now);
        if (flows_.size() <= 1 || first.empty()) return first;
        return first + " [" + std::to_string(done_count_ + 1) + "/" + std::to_string(flows_.size()) + "]";
    }
    return {};
}

}  // namespace tcpprobe::probe
