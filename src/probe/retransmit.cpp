// Retransmission measurement (see retransmit.hpp).
#include "tcpprobe/probe/retransmit.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

std::string_view to_string(RetxSegment s) { return s == RetxSegment::SynAck ? "synack" : "fin"; }

using namespace tcpprobe::wire;

namespace {
/// Far outside any receive window, so the probe is never accepted (RFC 9293 §3.10.7.4:
/// "if a segment's contents straddle the boundary ... not acceptable ... send an ACK").
constexpr std::uint32_t out_of_window = 0x40000000;
/// How many expected copies ahead the probe rounds are planned.
constexpr std::size_t rounds_ahead = 4;
}  // namespace

RetransmitFlow::RetransmitFlow(RetransmitConfig config)
    : ConnectionFlow(config.connect), cfg_(std::move(config)), prober_(cfg_.liveness) {}

void RetransmitFlow::record(Instant t, Outbox& out) {
    if (report_.times.size() >= cfg_.max_copies) {
        anomaly(t, fmt::format("more than {} copies: a flood, not a retransmission schedule", cfg_.max_copies), out);
        conclude(t, "flood", out);
        return;
    }
    report_.times.push_back(t);
    const std::size_t n = report_.times.size();
    if (n == 1) {
        note(t, fmt::format("first {} (not acknowledged, on purpose)", cfg_.segment == RetxSegment::SynAck ? "SYN-ACK" : "FIN"), out);
    } else {
        Duration gap = report_.times[n - 1] - report_.times[n - 2];
        note(t, fmt::format("retransmission #{}: {:.3f} ms after the previous", n - 1, to_ms_f(gap)), out);
    }
    replan(t);
}

ScheduleEvidence RetransmitFlow::evidence(bool stopped_early) const {
    ScheduleEvidence ev;
    if (!report_.origin) return ev;
    const Instant origin = *report_.origin;
    for (auto t : report_.times) ev.copies.push_back(t - origin);
    ev.origin_is_first_copy = cfg_.segment == RetxSegment::Fin;
    // FIN: the connection's RTT bounds Linux's RTO; an RTT after a repeated SYN may be
    // measured from the wrong SYN (Karn), so it is not used then.
    const bool clean_rtt = cres_.rtt && !cres_.rtt_ambiguous && cres_.syns_sent == 1;
    ev.rtt = cfg_.segment == RetxSegment::Fin ? (clean_rtt ? cres_.rtt : std::nullopt) : prober_.rtt();
    ev.probes = prober_.relative(origin);
    if (report_.rst_at) ev.peer_rst = *report_.rst_at - origin;
    ev.stopped_early = stopped_early;
    return ev;
}

void RetransmitFlow::replan(Instant now) {
    // A round just after each moment the model expects a copy: if the copy is not there
    // then, the probe tells a lost copy (still held) from the end (gone).
    const ScheduleEvidence ev = evidence(true);
    std::vector<Instant> due;
    Instant prev = report_.times.back();
    for (Duration rel : next_expected(ev, cfg_.tolerance, rule(), rounds_ahead)) {
        const Instant at = *report_.origin + rel;
        due.push_back(at + cfg_.tolerance.for_gap(at - prev));
        prev = at;
    }
    // A peer keeping no state at all (SYN cookies, a proxy that answered for it) is gone at once.
    if (report_.times.size() == 1 && cfg_.segment == RetxSegment::SynAck) due.push_back(now + std::chrono::milliseconds{300});
    prober_.plan(std::move(due));
}

void RetransmitFlow::send_liveness_probe(Instant now, Outbox& out) {
    Segment probe = cfg_.segment == RetxSegment::SynAck
                        ? tcb_.make_segment(now, flag::ack, tcb_.iss() + 1 + out_of_window, *cres_.irs + 1, {0})
                        : tcb_.make_segment(now, flag::ack, tcb_.snd.nxt + out_of_window, tcb_.rcv.nxt, {0});
    send(probe, out);
    prober_.sent(now);
}

void RetransmitFlow::on_probe_answer(Instant t, Liveness l, Outbox& out) {
    prober_.answered(t, l);
    if (l == Liveness::Alive) {
        last_held_ = t;
        note(t, "liveness probe: the peer still holds the state (it answered in state)", out);
        return;
    }
    note(t, "liveness probe: the state is gone (RST)", out);
    conclude(t, "confirmed", out);
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
    // The peer's schedule starts when our SYN reached it: the axis is from that SYN, so
    // a first copy one RTO later is seen as the retransmission it is.
    report_.origin = last_syn_before(t).value_or(t);
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
    const bool answer_pending = prober_.outstanding();
    if (seg.has(flag::rst)) {
        if (answer_pending) {
            on_probe_answer(t, Liveness::Gone, out);
            return;
        }
        report_.rst_at = t;
        note(t, "the peer ended it with a RST", out);
        conclude(t, "rst", out);
        return;
    }
    if (cfg_.segment == RetxSegment::SynAck) {
        if (seg.has(flag::syn | flag::ack) && cres_.irs && seg.seq == *cres_.irs) record(t, out);
        else if (answer_pending && seg.has(flag::ack) && !seg.has(flag::syn)) on_probe_answer(t, Liveness::Alive, out);
        else note(t, "unexpected segment while measuring SYN-ACK retransmissions", out);
        return;
    }
    // fin mode: everything but the FIN goes to the TCB (data is ACKed); the FIN never is.
    if (seg.has(flag::fin)) {
        const Seq fin_seq = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
        if (!peer_fin_seq_) {
            peer_fin_seq_ = fin_seq;
            report_.origin = t;
        }
        if (fin_seq == *peer_fin_seq_) record(t, out);
        if (report_.times.size() > 1) return;  // a retransmission: nothing new for the TCB
        Segment without_fin = seg;
        without_fin.flags = static_cast<std::uint16_t>(seg.flags & ~flag::fin);
        feed(t, without_fin, out);
        return;
    }
    if (answer_pending && peer_fin_seq_ && seg.payload.empty() && seg.has(flag::ack)) {
        on_probe_answer(t, Liveness::Alive, out);
        return;
    }
    feed(t, seg, out);
}

std::optional<Instant> RetransmitFlow::silence_at() const {
    if (report_.times.empty() || !report_.origin) return std::nullopt;
    Instant alive = report_.times.back();
    if (last_held_ && *last_held_ > alive) alive = *last_held_;
    return alive + silence_after(evidence(true), cfg_.tolerance, rule());
}

void RetransmitFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    ConnectionFlow::on_connected_timer(now, out);
    if (fin_at_ && now >= *fin_at_) {
        fin_at_.reset();
        apply(now, tcb_.close(now), out);
    }
    if (!report_.times.empty() && prober_.due(now)) send_liveness_probe(now, out);
    if (auto s = silence_at(); s && now >= *s && !prober_.outstanding()) {
        note(now, "no copy for two model gaps and no answer to the liveness probes", out);
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
    // As in listen: silence counts only with no probe outstanding, else a silence already
    // past is a deadline that never moves.
    if (!prober_.outstanding()) consider(silence_at());
    if (!report_.times.empty()) consider(prober_.next_deadline());
    if (measuring_since_) consider(*measuring_since_ + cfg_.max_wait);
    return d;
}

void RetransmitFlow::conclude(Instant now, std::string end, Outbox& out) {
    if (concluded_) return;
    concluded_ = true;
    report_.end = std::move(end);
    const bool stopped = report_.end == "max-wait" || report_.end == "no-fin" || report_.end == "interrupted" ||
                         report_.end == "flood";
    report_.evidence = evidence(stopped);
    report_.probes_sent = prober_.probes_sent();
    report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, rule());
    for (const auto& n : report_.fit.notes) note(now, n, out);
    if (cfg_.cleanup && report_.end != "rst" && report_.end != "confirmed" && !report_.times.empty()) {
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
    report_.evidence = evidence(true);
    report_.probes_sent = prober_.probes_sent();
    report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, rule());
    if (cfg_.cleanup && !report_.times.empty()) {
        Seq at = cfg_.segment == RetxSegment::SynAck ? tcb_.iss() + 1 : tcb_.snd.nxt;
        send(tcb_.make_segment(now, flag::rst, at, Seq{0}), out);
        report_.cleanup_sent = true;
    }
}

std::string RetransmitFlow::progress(Instant now) const {
    if (report_.times.empty()) return "waiting for the first transmission";
    std::string s = fmt::format("{} retransmission(s)", report_.times.size() - 1);
    if (auto d = prober_.next_deadline(); d && *d > now) s += fmt::format(", next liveness probe in {:.1f} s", to_ms_f(*d - now) / 1000);
    return s;
}

}  // namespace tcpprobe::probe
