// Retransmission measurement (see retransmit.hpp).
#include "tcpprobe/probe/retransmit.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

RetransmitFlow::RetransmitFlow(RetransmitConfig config) : ConnectionFlow(config.connect), cfg_(std::move(config)) {}

void RetransmitFlow::record(Instant t, Outbox& out) {
    report_.times.push_back(t);
    const std::size_t n = report_.times.size();
    if (n == 1) {
        note(t, fmt::format("first {} (not acknowledged, on purpose)", cfg_.segment == RetxSegment::SynAck ? "SYN-ACK" : "FIN"), out);
        return;
    }
    Duration gap = report_.times[n - 1] - report_.times[n - 2];
    note(t, fmt::format("retransmission #{}: {:.3f} ms after the previous", n - 1, to_ms_f(gap)), out);
}

bool RetransmitFlow::intercept_connecting(Instant t, const Segment& seg, Outbox& out) {
    if (cfg_.segment != RetxSegment::SynAck) return false;
    if (!seg.has(flag::syn | flag::ack) || seg.has(flag::rst) || seg.ack != tcb_.iss() + 1) return false;
    // The SYN-ACK is never acknowledged; our TCB stops here (no SYN retransmission either).
    cres_.verdict = Verdict::Open;
    cres_.negotiated = [&] {
        tcb::Tcb what_if = tcb_;
        (void)what_if.on_segment(t, seg);
        return what_if.negotiated();
    }();
    apply_with_cause(t, tcb_.close(t), "measuring: the SYN-ACK stays unacknowledged", out);
    set_phase(Phase::Connected);
    measuring_since_ = t;
    record(t, out);
    return true;
}

void RetransmitFlow::on_established(Instant t, Outbox& out) {
    // fin mode: the connection is complete; send the request, then (unless the peer is to
    // close first) our FIN after a quiet moment.
    measuring_since_ = t;
    if (!cfg_.request.empty()) apply(t, tcb_.send(t, cfg_.request), out);
    if (!cfg_.peer_closes_first) fin_at_ = t + cfg_.idle;
}

void RetransmitFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_) return;
    if (seg.has(flag::rst)) {
        report_.rst_at = t;
        note(t, "the peer ended it with a RST", out);
        conclude(t, "rst", out);
        return;
    }
    if (cfg_.segment == RetxSegment::SynAck) {
        if (seg.has(flag::syn | flag::ack) && cres_.irs && seg.seq == *cres_.irs) record(t, out);
        else note(t, "unexpected segment while measuring SYN-ACK retransmissions", out);
        return;
    }
    // fin mode: everything but the FIN goes to the TCB (data is ACKed); the FIN never is.
    if (seg.has(flag::fin)) {
        const Seq fin_seq = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
        if (!peer_fin_seq_) peer_fin_seq_ = fin_seq;
        if (fin_seq == *peer_fin_seq_) record(t, out);
        if (report_.times.size() > 1) return;  // a retransmission: nothing new for the TCB
        Segment without_fin = seg;
        without_fin.flags = static_cast<std::uint16_t>(seg.flags & ~flag::fin);
        feed(t, without_fin, out);
        return;
    }
    feed(t, seg, out);
}

std::optional<Instant> RetransmitFlow::silence_at() const {
    if (report_.times.empty()) return std::nullopt;
    return silence_deadline(report_.times, cfg_.tolerance, cfg_.quiet_first);
}

void RetransmitFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    ConnectionFlow::on_connected_timer(now, out);
    if (fin_at_ && now >= *fin_at_) {
        fin_at_.reset();
        apply(now, tcb_.close(now), out);
    }
    if (auto s = silence_at(); s && now >= *s) {
        conclude(now, "silence", out);
    } else if (measuring_since_ && now >= *measuring_since_ + cfg_.max_wait) {
        conclude(now, report_.times.empty() ? "no-fin" : "max-wait", out);
    }
}

std::optional<Instant> RetransmitFlow::connected_deadline() const {
    if (concluded_) return std::nullopt;
    std::optional<Instant> d = cfg_.segment == RetxSegment::Fin ? ConnectionFlow::connected_deadline() : std::nullopt;
    auto consider = [&](std::optional<Instant> x) {
        if (x && (!d || *x < *d)) d = x;
    };
    consider(fin_at_);
    consider(silence_at());
    if (measuring_since_) consider(*measuring_since_ + cfg_.max_wait);
    return d;
}

void RetransmitFlow::conclude(Instant now, std::string end, Outbox& out) {
    if (concluded_) return;
    concluded_ = true;
    report_.end = std::move(end);
    const bool ended = report_.end == "rst" || report_.end == "silence";
    report_.fit = fit_schedule(report_.times, cfg_.tolerance, ended,
                               cfg_.segment == RetxSegment::SynAck ? RetryRule::Count : RetryRule::OrphanTime);
    if (cfg_.cleanup && report_.end != "rst") {
        // Clear whatever the peer still holds: a RST at the sequence number it expects.
        Seq at = cfg_.segment == RetxSegment::SynAck ? tcb_.iss() + 1 : tcb_.snd.nxt;
        send(tcb_.make_segment(now, flag::rst, at, Seq{0}), out);
        report_.cleanup_sent = true;
        note(now, "cleanup: RST sent so the peer drops what it still holds", out);
    }
    finish(now, Verdict::Open, out);
}

void RetransmitFlow::on_interrupt(Instant now, Outbox& out) {
    if (concluded_) return;
    concluded_ = true;
    report_.end = "interrupted";
    report_.fit = fit_schedule(report_.times, cfg_.tolerance, false);
    if (cfg_.cleanup && !report_.times.empty()) {
        Seq at = cfg_.segment == RetxSegment::SynAck ? tcb_.iss() + 1 : tcb_.snd.nxt;
        send(tcb_.make_segment(now, flag::rst, at, Seq{0}), out);
        report_.cleanup_sent = true;
    }
}

std::string RetransmitFlow::progress(Instant now) const {
    if (report_.times.empty()) return "waiting for the first transmission";
    std::string s = fmt::format("{} retransmission(s)", report_.times.size() - 1);
    if (auto at = silence_at(); at && *at > now) s += fmt::format(", done if nothing comes in {:.1f} s", to_ms_f(*at - now) / 1000);
    return s;
}

}  // namespace tcpprobe::probe
