// Flow table and scheduling. Lookup is one hash probe per packet whatever the number of
// flows. Deadlines are gathered by a scan over the flows, fine for the handful a
// handshake run holds.
#include "tcpprobe/probe/scenario.hpp"

namespace tcpprobe::probe {

Flow& Session::add(Instant start_at, std::unique_ptr<Flow> flow) {
    by_tuple_.emplace(flow->tuple(), flows_.size());
    flows_.push_back({std::move(flow), start_at, false});
    return *flows_.back().flow;
}

Session::Entry* Session::find(const wire::FourTuple& t) {
    auto it = by_tuple_.find(t);
    return it == by_tuple_.end() ? nullptr : &flows_[it->second];
}

void Session::on_packet(Instant t, const wire::DecodedPacket& p, Outbox& out) {
    if (const auto* seg = p.segment()) {
        // Our segments go local -> remote; answers come back reversed.
        if (Entry* e = find({seg->src, seg->dst}); e && e->started) {
            e->flow->on_segment(t, *seg, true, out);
            return;
        }
        if (Entry* e = find({seg->dst, seg->src}); e && e->started) {
            e->flow->on_segment(t, *seg, false, out);
            return;
        }
        if (acceptor_) {
            if (auto flow = acceptor_(t, *seg)) {
                Flow& f = add(t, std::move(flow));
                flows_.back().started = true;
                f.start(t, out);
                f.on_segment(t, *seg, false, out);
                return;
            }
        }
    } else if (const auto* icmp = p.icmp()) {
        if (Entry* e = find({icmp->quoted_src, icmp->quoted_dst}); e && e->started) {
            e->flow->on_icmp(t, *icmp, out);
            return;
        }
    }
    ++unmatched_;
}

void Session::on_timer(Instant now, Outbox& out) {
    if (end_ && !ended_ && now >= *end_) {
        ended_ = true;
        for (auto& e : flows_)
            if (e.started && !e.flow->done()) e.flow->stop(now, out);
        return;
    }
    for (std::size_t i = 0; i < flows_.size(); ++i) {
        Entry& e = flows_[i];
        if (!e.started) {
            if (e.start_at > now) continue;
            if (sequential_ && i > 0 && !(flows_[i - 1].started && flows_[i - 1].flow->done())) continue;
            e.started = true;
            e.flow->start(now, out);
            continue;
        }
        if (e.flow->done()) continue;
        if (auto d = e.flow->next_deadline(); d && *d <= now) e.flow->on_timer(now, out);
    }
}

void Session::interrupt(Instant now, Outbox& out) {
    for (auto& e : flows_)
        if (e.started && !e.flow->done()) e.flow->interrupt(now, out);
}

std::optional<Instant> Session::next_deadline() const {
    std::optional<Instant> best;
    auto consider = [&](Instant d) {
        if (!best || d < *best) best = d;
    };
    if (end_ && !ended_) consider(*end_);
    for (std::size_t i = 0; i < flows_.size(); ++i) {
        const Entry& e = flows_[i];
        if (!e.started) {
            // A sequential flow waits for its predecessor, whose deadline is considered.
            if (!sequential_ || i == 0 || (flows_[i - 1].started && flows_[i - 1].flow->done())) consider(e.start_at);
        } else if (!e.flow->done())
            if (auto d = e.flow->next_deadline()) consider(*d);
    }
    return best;
}

bool Session::done() const {
    if (ended_) return true;
    if (stop_when_) {
        if (!stop_when_()) return false;
    } else if (acceptor_) {
        return false;  // a passive session runs until it is told to stop
    }
    for (const auto& e : flows_)
        if (!e.started || !e.flow->done()) return false;
    return true;
}

}  // namespace tcpprobe::probe

namespace tcpprobe::probe {

std::string Session::progress(Instant now) const {
    std::size_t running = 0, finished = 0;
    std::string first;
    for (const auto& e : flows_) {
        if (e.started && e.flow->done()) ++finished;
        if (!e.started || e.flow->done()) continue;
        ++running;
        if (first.empty()) first = e.flow->progress(now);
    }
    if (flows_.size() <= 1) return first;
    return first.empty() ? std::string() : first + " [" + std::to_string(finished + 1) + "/" + std::to_string(flows_.size()) + "]";
}

}  // namespace tcpprobe::probe
