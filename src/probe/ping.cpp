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

PingLane::PingLane(PingLaneConfig config, std::shared_ptr<PingPlan> plan)
    : cfg_(std::move(config)), plan_(std::move(plan)), tcb_(cfg_.tcb), isn_(cfg_.tcb.iss) {}

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
    // A new ISN per probe, far from the previous one: answers are matched by ack - 1.
    isn_ += 0x01000193u;
    ProbeRecord r;
    r.seq_no = next_seq_no_;
    r.sent = now;  // replaced by the capture time
    probes_.push_back(r);
    outstanding_ = true;
    captured_ = false;
    give_up_at_ = now + cfg_.timeout;
    out.send.push_back(tcb_.make_segment(now, static_cast<std::uint16_t>(flag::syn | cfg_.tcb.extra_syn_flags), isn_, Seq{0}));
}

void PingLane::finish_probe(Instant t, ProbeResult result, Outbox& out, const char* what) {
    ProbeRecord& r = probes_.back();
    r.result = result;
    if (result != ProbeResult::Silence) r.rtt_ns = (t - r.sent).count();
    outstanding_ = false;
    give_up_at_.reset();
    if (cfg_.events) {
        ProbeEvent e{fmt::format("{}:{}", to_string(tuple().remote.addr), tuple().remote.port), r.seq_no, what, std::nullopt};
        if (r.rtt_ns >= 0) e.rtt = Duration{r.rtt_ns};
        out.events.push_back({t, tuple().local.port, std::move(e)});
    }
    next_ticket(t);
}

void PingLane::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (outgoing) {
        if (seg.has(flag::syn) && !seg.has(flag::ack) && seg.seq == isn_ && outstanding_ && !captured_) {
            probes_.back().sent = t;  // every RTT runs from the SYN's capture time
            captured_ = true;
        } else if (seg.has(flag::rst)) {
            // The first RST after a SYN-ACK is ours (we send it at once); any other is the
            // local kernel's, which answers the SYN-ACK too (no RST guard for half-open probes).
            // Ours carries the IP ID we gave it.
            if (our_rst_id_ && seg.ip.id == *our_rst_id_) our_rst_id_.reset();
            else ++kernel_rsts_;
        }
        return;
    }
    if (!outstanding_ || seg.ack != isn_ + 1) {
        ++late_;  // an answer to an earlier probe that had already timed out, or a stray
        return;
    }
    if (seg.has(flag::rst)) {
        finish_probe(t, ProbeResult::Rst, out, format_flags(seg.flags).c_str());
    } else if (seg.has(flag::syn | flag::ack)) {
        // Reset the half-open connection the peer now holds.
        Segment rst = tcb_.make_segment(t, flag::rst, seg.ack, Seq{0});
        our_rst_id_ = rst.ip.id;
        out.send.push_back(std::move(rst));
        finish_probe(t, ProbeResult::SynAck, out, "S.");
    }
}

void PingLane::on_icmp(Instant t, const IcmpError& err, Outbox& out) {
    if (!outstanding_ || err.quoted_seq != isn_) {
        ++late_;
        return;
    }
    probes_.back().icmp_type = err.type;
    probes_.back().icmp_code = err.code;
    finish_probe(t, ProbeResult::Icmp, out, describe_icmp(err.type, err.code).c_str());
}

void PingLane::on_timer(Instant now, Outbox& out) {
    if (outstanding_ && give_up_at_ && now >= *give_up_at_) finish_probe(now, ProbeResult::Silence, out, "no answer");
    if (!outstanding_ && send_at_ && now >= *send_at_) send_probe(now, out);
}

void PingLane::interrupt(Instant now, Outbox& out) {
    (void)now;
    (void)out;
    if (outstanding_) probes_.pop_back();  // an unfinished probe is not counted
    outstanding_ = false;
    done_ = true;
}

std::optional<Instant> PingLane::next_deadline() const {
    if (done_) return std::nullopt;
    if (outstanding_) return give_up_at_;
    return send_at_;
}

}  // namespace tcpprobe::probe
