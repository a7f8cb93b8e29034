// TCP ping lanes (see ping.hpp).
#include "tcpprobe/probe/ping.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

PingPlan::PingPlan(Instant start, Duration spacing, std::size_t destinations, std::uint32_t per_destination)
    : start_(start), spacing_(spacing), per_destination_(per_destination), taken_(destinations, 0) {}

std::optional<PingPlan::Ticket> PingPlan::take(std::size_t d) {
    if (taken_.at(d) >= per_destination_) return std::nullopt;
    return Ticket{start_ + spacing_ * static_cast<std::int64_t>(issued_++), taken_[d]++};
}

void PingTally::record(std::size_t d, ProbeResult r, std::int64_t rtt_ns) {
    Destination& t = dests_.at(d);
    ++t.sent;
    switch (r) {
        case ProbeResult::SynAck: ++t.synack; break;
        case ProbeResult::Rst: ++t.rst; break;
        case ProbeResult::Icmp: ++t.icmp; break;
        case ProbeResult::Silence:
        case ProbeResult::Pending: ++t.silence; break;
    }
    if (rtt_ns >= 0) t.rtt_ns.push_back(rtt_ns);
}

PingLane::PingLane(PingLaneConfig config, std::shared_ptr<PingPlan> plan, std::shared_ptr<PingTally> tally)
    : cfg_(std::move(config)), plan_(std::move(plan)), tally_(std::move(tally)), isn_(cfg_.iss) {}

void PingLane::next_ticket(Instant now) {
    (void)now;
    auto ticket = plan_->take(cfg_.destination);
    if (!ticket) {
        done_ = true;
        return;
    }
    send_at_ = ticket->at;
    next_seq_no_ = ticket->seq_no;
}

void PingLane::start(Instant now, Outbox& out) {
    next_ticket(now);
    if (send_at_ && *send_at_ <= now) send_probe(now, out);
}

void PingLane::send_probe(Instant now, Outbox& out) {
    send_at_.reset();
    seq_no_ = next_seq_no_;
    outstanding_ = true;
    resent_ = false;
    send_syn(now, out);
}

void PingLane::send_syn(Instant now, Outbox& out) {
    // A new ISN per SYN, far from the previous one: answers are matched by ack - 1.
    if (syn_sent_) previous_isn_ = isn_;
    syn_sent_ = true;
    isn_ += 0x01000193u;
    sent_ = now;  // replaced by the capture time
    captured_ = false;
    give_up_at_ = now + cfg_.timeout;
    Segment syn = cfg_.syn_maker->make_segment(
        now, static_cast<std::uint16_t>(flag::syn | cfg_.syn_maker->extra_syn_flags()), isn_, Seq{0});
    syn.src = cfg_.tuple.local;
    syn.dst = cfg_.tuple.remote;
    cfg_.ip_ids->stamp(syn);
    out.send.push_back(std::move(syn));
}

void PingLane::finish_probe(Instant t, ProbeResult result, Outbox& out, const char* what) {
    const std::int64_t rtt_ns = result != ProbeResult::Silence ? (t - sent_).count() : -1;
    tally_->record(cfg_.destination, result, rtt_ns);
    outstanding_ = false;
    give_up_at_.reset();
    if (cfg_.events) {
        ProbeEvent e{fmt::format("{}:{}", to_string(tuple().remote.addr), tuple().remote.port), seq_no_, what, std::nullopt};
        if (rtt_ns >= 0) e.rtt = Duration{rtt_ns};
        out.events.push_back({t, tuple().local.port, std::move(e)});
    }
    next_ticket(t);
}

void PingLane::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (outgoing) {
        if (seg.has(flag::syn) && !seg.has(flag::ack) && seg.seq == isn_ && outstanding_ && !captured_) {
            sent_ = t;  // every RTT runs from the SYN's capture time
            captured_ = true;
        } else if (seg.has(flag::rst)) {
            // Ours clear a held connection (below); any other is the local kernel's answer
            // to a SYN-ACK (seen only when the capture sees the kernel's packets, see
            // io/raw_source.hpp).
            if (own_rsts_ > 0) --own_rsts_;
            else ++kernel_rsts_;
        }
        return;
    }
    if (outstanding_ && !resent_ && previous_isn_ && seg.ack == *previous_isn_ + 1 && seg.has(flag::ack) &&
        !seg.has_any(flag::syn | flag::rst)) {
        // An ACK for the lane's previous SYN answers this one: the peer still holds the
        // previous probe's half-open connection (its SYN-ACK, or the local kernel's RST
        // to it, was lost) and acknowledges a SYN outside that connection's window
        // instead of answering it (RFC 9293 3.10.7.4, RFC 5961). The probe has met our
        // own leftover, not the path: reset that connection, as the local kernel does
        // on this ACK too, and send the probe's SYN again, once.
        ++held_;
        resent_ = true;
        Segment rst = cfg_.syn_maker->make_segment(t, flag::rst, *previous_isn_ + 1, Seq{0});
        rst.src = cfg_.tuple.local;
        rst.dst = cfg_.tuple.remote;
        rst.options.clear();
        rst.window = 0;
        cfg_.ip_ids->stamp(rst);
        ++own_rsts_;
        out.send.push_back(std::move(rst));
        send_syn(t, out);
        return;
    }
    if (!outstanding_ || seg.ack != isn_ + 1) {
        ++late_;  // an answer to an earlier probe that had already timed out, or a stray
        return;
    }
    if (answered_too_late(t, out)) return;
    if (seg.has(flag::rst)) {
        finish_probe(t, ProbeResult::Rst, out, format_flags(seg.flags).c_str());
    } else if (seg.has(flag::syn | flag::ack)) {
        // The half-open connection the peer now holds is reset by the local kernel, which
        // knows nothing of it (ping runs without the RST guard): a RST of ours would double
        // the packets per probe and halve the flood rate for nothing.
        finish_probe(t, ProbeResult::SynAck, out, "S.");
    }
}

void PingLane::on_icmp(Instant t, const IcmpError& err, Outbox& out) {
    if (icmp_is_advisory(err.type)) {
        ++advisories_;  // the SYN went on: its answer is still to come
        return;
    }
    if (!outstanding_ || err.quoted_seq != isn_) {
        ++late_;
        return;
    }
    if (answered_too_late(t, out)) return;
    finish_probe(t, ProbeResult::Icmp, out, describe_icmp(err.type, err.code).c_str());
}

bool PingLane::answered_too_late(Instant t, Outbox& out) {
    // The answer is dated by the capture, the give-up by the loop's clock: when the loop
    // falls behind a flood, an answer can be read before the timer that should have
    // given its probe up. --timeout is a wire interval, so it is judged on capture times.
    const Instant deadline = sent_ + cfg_.timeout;
    if (t <= deadline) return false;
    finish_probe(deadline, ProbeResult::Silence, out, "no answer");
    ++late_;
    return true;
}

void PingLane::on_timer(Instant now, Outbox& out) {
    if (outstanding_ && give_up_at_ && now >= *give_up_at_) finish_probe(now, ProbeResult::Silence, out, "no answer");
    if (!outstanding_ && send_at_ && now >= *send_at_) send_probe(now, out);
}

void PingLane::interrupt(Instant now, Outbox& out) {
    (void)now;
    (void)out;
    // An unfinished probe is not counted.
    outstanding_ = false;
    done_ = true;
}

std::optional<Instant> PingLane::next_deadline() const {
    if (done_) return std::nullopt;
    if (outstanding_) return give_up_at_;
    return send_at_;
}

}  // namespace tcpprobe::probe
