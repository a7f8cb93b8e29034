// Shared connection handling (see connection.hpp). Every segment is reported when it is
// *captured*, in both directions, so the trace and every interval come from one time base.
#include "tcpprobe/probe/connection.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

Connection::Connection(ConnectConfig config, ConnectionHooks& hooks)
    : ccfg_(config), hooks_(hooks), tcb_(std::move(config.tcb)) {}

std::vector<std::string> syn_option_anomalies(const OptionList& options) {
    std::vector<std::string> out;
    if (auto ws = find_option<opt::WindowScale>(options); ws && ws->shift > 14)
        out.push_back(fmt::format("window scale {} is above 14: RFC 7323 §2.3 uses 14 instead", ws->shift));
    if (auto mss = find_option<opt::Mss>(options); mss && mss->value < 88)
        out.push_back(mss->value == 0 ? std::string("MSS 0: no segment could carry data")
                                      : fmt::format("MSS {} is below 88 (Linux's TCP_MIN_MSS; it never sends segments "
                                                    "under TCP_MIN_SND_MSS = 48 bytes)", mss->value));
    return out;
}

void Connection::event(Instant t, decltype(Event::body) body, Outbox& out) const {
    out.events.push_back(Event{t, port(), std::move(body)});
}

void Connection::note(Instant t, std::string text, Outbox& out) const {
    event(t, NoteEvent{Severity::Info, std::move(text)}, out);
}

void Connection::anomaly(Instant t, std::string text, Outbox& out) {
    ++cres_.anomaly_total;
    auto& texts = cres_.anomalies;
    const auto it = std::find(texts.begin(), texts.end(), text);
    if (it == texts.end()) {
        if (texts.size() >= max_anomaly_texts) {
            if (!overflow_noted_) {
                overflow_noted_ = true;
                event(t, NoteEvent{Severity::Anomaly, fmt::format("more than {} kinds of anomaly: the rest are only counted",
                                                                  max_anomaly_texts)}, out);
            }
            return;
        }
        event(t, NoteEvent{Severity::Anomaly, text}, out);
        texts.push_back(std::move(text));
        cres_.anomaly_counts.push_back(1);
        return;
    }
    const std::uint64_t n = ++cres_.anomaly_counts[static_cast<std::size_t>(it - texts.begin())];
    if (n <= max_anomaly_repeats_shown) event(t, NoteEvent{Severity::Anomaly, text}, out);
    else if (n == max_anomaly_repeats_shown + 1)
        event(t, NoteEvent{Severity::Anomaly, fmt::format("{} (repeated: further ones are only counted)", text)}, out);
}

void Connection::peer_state(Instant t, std::string from, std::string to, std::string cause, Outbox& out) const {
    event(t, StateEvent{"peer", std::move(from), std::move(to), std::move(cause)}, out);
}

void Connection::send(const Segment& s, Outbox& out) {
    release_held(std::nullopt, out);
    transmit(s, out);
}

void Connection::transmit(const Segment& s, Outbox& out) {
    expected_.push_back({s.flags, s.seq, s.ack});
    if (s.has(flag::syn) && !s.has(flag::ack)) ++cres_.syns_sent;
    out.send.push_back(s);
}

Segment Connection::make_segment(Instant now, std::uint16_t flags, Seq seq, Seq ack, ByteVec payload) {
    Segment s = tcb_.make_segment(now, flags, seq, ack, std::move(payload));
    return ip_ids_.stamp(s);
}

void Connection::apply(Instant now, const tcb::Actions& actions, Outbox& out) {
    for (const auto& a : actions) {
        if (const auto* s = std::get_if<tcb::SendSegment>(&a)) {
            if (s->reason == tcb::SendReason::Retransmission && phase_ == ConnectPhase::Connected) ++connected_retransmissions_;
            if (ccfg_.ack_delay > Duration::zero() && s->segment.flags == flag::ack && s->segment.payload.empty()) {
                held_.push_back({now + ccfg_.ack_delay, s->segment});  // stamped when it goes out
            } else {
                Segment seg = s->segment;
                send(ip_ids_.stamp(seg), out);
            }
        } else if (const auto* c = std::get_if<tcb::StateChanged>(&a)) {
            event(now, StateEvent{"local", std::string(to_string(c->from)), std::string(to_string(c->to)), c->cause}, out);
            cres_.final_state = std::string(to_string(c->to));
        } else if (const auto* n = std::get_if<tcb::Note>(&a)) {
            note(now, n->text, out);
        } else if (const auto* g = std::get_if<tcb::GaveUp>(&a)) {
            note(now, fmt::format("no answer after {} retransmissions of our {}", g->retransmissions, g->what), out);
            // A SYN given up on may still be answered: --timeout decides when to stop.
            if (phase_ == ConnectPhase::Connecting && now >= started_ + ccfg_.timeout) finish(now, Verdict::Filtered, out);
        } else if (const auto* d = std::get_if<tcb::DataReceived>(&a)) {
            note(now, fmt::format("received {} bytes of data", d->data.size()), out);
        }
        // ArmTimer/CancelTimer: next_deadline() asks the TCB directly.
        hooks_.observe(now, a, out);
    }
}

void Connection::apply_with_cause(Instant now, tcb::Actions actions, const std::string& cause, Outbox& out) {
    for (auto& a : actions)
        if (auto* c = std::get_if<tcb::StateChanged>(&a)) c->cause = cause;
    apply(now, actions, out);
}

bool Connection::feed(Instant t, const Segment& seg, Outbox& out) {
    auto actions = tcb_.on_segment(t, seg);
    const bool reset = std::any_of(actions.begin(), actions.end(),
                                   [](const tcb::Action& a) { return std::holds_alternative<tcb::ConnectionReset>(a); });
    apply(t, actions, out);
    return reset;
}

void Connection::connect(Instant now, Outbox& out) {
    phase_ = ConnectPhase::Connecting;
    apply(now, tcb_.open_active(now), out);
}

FormatContext Connection::tcb_context(Direction d, const Segment& seg) const {
    FormatContext ctx = tcb_.format_context(d);
    if (d == Direction::In && !ctx.irs && seg.has(flag::syn)) ctx.irs = seg.seq;
    return ctx;
}

FormatContext Connection::context_for(Direction d, const Segment& seg) const {
    if (auto ctx = hooks_.format_context(d, seg)) return *ctx;
    return tcb_context(d, seg);
}

std::optional<Instant> Connection::last_syn_before(Instant t) const {
    // The latest in time: a capture may hand a copy over after a later one (one held
    // back for its transmit stamp).
    std::optional<Instant> best;
    for (const auto& s : syns_seen_)
        if (s.seq == tcb_.iss() && s.t <= t && (!best || s.t > *best)) best = s.t;
    return best;
}

void Connection::time_answer(Instant t) {
    // Karn: after a retransmitted SYN, an answer that names no SYN (a RST acks the ISN
    // every copy carries; an ICMP error or a SYN-ACK without TSecr) may answer any of
    // them. The RTT runs from the last one and is marked.
    if (auto syn = last_syn_before(t)) cres_.rtt = t - *syn;
    cres_.rtt_ambiguous = std::count_if(syns_seen_.begin(), syns_seen_.end(), [&](const SynSeen& s) {
                              return s.seq == tcb_.iss() && s.t <= t;
                          }) > 1;
}

void Connection::record_outgoing(Instant t, const Segment& seg, Outbox& out) {
    auto it = std::find_if(expected_.begin(), expected_.end(), [&](const Expected& e) {
        return e.flags == seg.flags && e.seq == seg.seq && e.ack == seg.ack;
    });
    const bool ours = it != expected_.end();
    if (ours) expected_.erase(it);
    event(t, SegmentEvent{Direction::Out, seg, format_segment(seg, context_for(Direction::Out, seg)), ours}, out);
    if (ours && seg.has(flag::syn) && !seg.has(flag::ack)) {
        auto ts = find_option<opt::Timestamps>(seg.options);
        syns_seen_.push_back({t, seg.seq, ts ? ts->tsval : 0});
    }
    if (!ours) {
        if (seg.has(flag::rst) && ccfg_.kernel_rst_expected)
            note(t, "the local kernel sent a RST too (expected: no RST guard in this mode)", out);
        else if (seg.has(flag::rst))
            anomaly(t, "the local kernel sent a RST on this flow (RST guard off or ineffective)", out);
        else
            anomaly(t, "an outgoing segment on this flow that tcpprobe did not send", out);
    }
    hooks_.observe_outgoing(t, seg, ours, out);
}

void Connection::on_synack(Instant t, const Segment& seg, Outbox& out) {
    if (seg.ack != tcb_.iss() + 1) {
        anomaly(t, fmt::format("SYN-ACK acknowledges {} (relative {}), expected ISS+1", seg.ack.raw(),
                               static_cast<std::int64_t>(distance(tcb_.iss(), seg.ack))), out);
        return;
    }
    if (cres_.rtt) return;  // a retransmitted SYN-ACK: keep the first
    cres_.answer = std::make_shared<const Segment>(seg);
    cres_.irs = seg.seq;
    cres_.peer_options = seg.options;
    if (!seg.payload.empty()) anomaly(t, fmt::format("SYN-ACK carries {} bytes of data", seg.payload.size()), out);
    for (auto& a : syn_option_anomalies(seg.options)) anomaly(t, std::move(a), out);
    std::uint16_t allowed = flag::syn | flag::ack;
    if ((tcb_.extra_syn_flags() & (flag::ece | flag::cwr)) == (flag::ece | flag::cwr)) allowed |= flag::ece;
    if (seg.flags & ~allowed) anomaly(t, fmt::format("unexpected flags on the SYN-ACK: {}", format_flags(seg.flags)), out);

    // RTT: SYN capture -> SYN-ACK capture. After a retransmitted SYN the SYN-ACK's TSecr
    // names the SYN it answers; without timestamps the pairing is ambiguous (Karn).
    const SynSeen* syn = nullptr;
    auto ts = find_option<opt::Timestamps>(seg.options);
    if (ts && find_option<opt::Timestamps>(tcb_.syn_options()))
        for (const auto& s : syns_seen_)
            if (s.seq == tcb_.iss() && s.t <= t && s.tsval == ts->tsecr) syn = &s;
    if (syn) cres_.rtt = t - syn->t;
    else time_answer(t);
}

void Connection::check_established(Instant t, Outbox& out) {
    if (phase_ != ConnectPhase::Connecting) return;
    if (!tcb::in_state(tcb_.state(), {tcb::State::Established, tcb::State::CloseWait})) return;
    cres_.negotiated = tcb_.negotiated();
    cres_.verdict = Verdict::Open;
    phase_ = ConnectPhase::Connected;
    established_ = true;
    hooks_.on_established(t, out);
}

bool Connection::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    const bool theirs = take_segment(t, seg, outgoing, out);
    tell_failure(t, out);
    return theirs;
}

void Connection::on_icmp(Instant t, const IcmpError& err, Outbox& out) {
    take_icmp(t, err, out);
    tell_failure(t, out);
}

bool Connection::on_timer(Instant now, Outbox& out) {
    const bool theirs = take_timer(now, out);
    tell_failure(now, out);
    return theirs;
}

void Connection::tell_failure(Instant now, Outbox& out) {
    if (failure_told_ || phase_ != ConnectPhase::Draining || established_) return;
    failure_told_ = true;
    hooks_.on_connect_failed(now, out);
}

bool Connection::take_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (outgoing) {
        record_outgoing(t, seg, out);
        if (phase_ == ConnectPhase::Draining) settle_drain(t, out);
        return false;
    }
    event(t, SegmentEvent{Direction::In, seg, format_segment(seg, context_for(Direction::In, seg)), true}, out);
    // Not an anomaly: segments of a peer on the same machine (loopback, veth with offload)
    // are captured before their checksum is filled in.
    if (seg.checksum_ok == false) note(t, "TCP checksum does not verify (offloaded checksum, or a corrupt segment)", out);
    if (seg.options_error) anomaly(t, fmt::format("malformed TCP options: {}", *seg.options_error), out);

    switch (phase_) {
        case ConnectPhase::Idle:
            return false;
        case ConnectPhase::PreConnect:
        case ConnectPhase::Connected:
            return true;
        case ConnectPhase::Draining:
            feed(t, seg, out);
            return false;
        case ConnectPhase::Connecting:
            break;
    }
    const bool synack = seg.has(flag::syn | flag::ack) && !seg.has(flag::rst);
    if (tcb_.state() == tcb::State::Closed && synack && seg.ack == tcb_.iss() + 1) {
        // Our TCB gave up on the SYN, but the answer came within --timeout: the port is
        // open. The closed TCB resets the half-open connection the peer holds.
        cres_.answer = std::make_shared<const Segment>(seg);
        cres_.irs = seg.seq;
        cres_.peer_options = seg.options;
        time_answer(t);
        anomaly(t, "SYN-ACK after our SYN retransmissions had given up", out);
        feed(t, seg, out);
        finish(t, Verdict::Open, out);
        return false;
    }
    if (tcb_.state() == tcb::State::SynSent && synack) on_synack(t, seg, out);
    if (hooks_.intercept_connecting(t, seg, out)) return false;
    if (feed(t, seg, out)) {
        cres_.answer = std::make_shared<const Segment>(seg);
        time_answer(t);  // time to the RST
        finish(t, Verdict::Closed, out);
        return false;
    }
    check_established(t, out);
    return false;
}

void Connection::take_icmp(Instant t, const IcmpError& err, Outbox& out) {
    event(t, IcmpEvent{err, describe_icmp(err.type, err.code)}, out);
    if (err.quoted_seq != tcb_.iss() && !in_window(err.quoted_seq, tcb_.snd.una, distance(tcb_.snd.una, tcb_.snd.nxt) + 1u)) {
        anomaly(t, fmt::format("ICMP error quoting sequence number {} that we did not send", err.quoted_seq.raw()), out);
        return;
    }
    if (icmp_is_advisory(err.type)) {
        note(t, fmt::format("ICMP {} from {}: our segment was forwarded, not dropped; not an answer",
                            describe_icmp(err.type, err.code), to_string(err.reporter)), out);
        return;
    }
    if (phase_ != ConnectPhase::Connecting || cres_.verdict != Verdict::Pending) return;
    cres_.icmp = err;
    time_answer(t);
    apply_with_cause(t, tcb_.close(t), fmt::format("ICMP {}", describe_icmp(err.type, err.code)), out);
    finish(t, Verdict::Unreachable, out);
}

void Connection::finish(Instant now, Verdict v, Outbox& out) {
    release_held(std::nullopt, out);  // what the TCB decided to send goes out, late or not
    if (cres_.verdict == Verdict::Pending) cres_.verdict = v;
    phase_ = ConnectPhase::Draining;
    drain_until_ = now + ccfg_.capture_grace;
    if (expected_.empty()) done_ = true;
}

bool Connection::take_timer(Instant now, Outbox& out) {
    if (phase_ != ConnectPhase::Draining) release_held(now, out);
    switch (phase_) {
        case ConnectPhase::Idle:
            return false;
        case ConnectPhase::PreConnect:
        case ConnectPhase::Connecting:
            if (now >= started_ + ccfg_.timeout) {
                note(now, fmt::format("no answer within {:.1f} s", to_ms_f(ccfg_.timeout) / 1000), out);
                if (tcb_.state() != tcb::State::Closed) apply_with_cause(now, tcb_.close(now), "timeout", out);
                finish(now, Verdict::Filtered, out);
                return false;
            }
            if (phase_ == ConnectPhase::Connecting) apply(now, tcb_.on_timer(now), out);
            return false;
        case ConnectPhase::Connected:
            return true;
        case ConnectPhase::Draining:
            settle_drain(now, out);
            return false;
    }
    return false;
}

void Connection::release_held(std::optional<Instant> until, Outbox& out) {
    std::size_t n = 0;
    for (; n < held_.size() && (!until || held_[n].due <= *until); ++n) transmit(ip_ids_.stamp(held_[n].segment), out);
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
}

void Connection::settle_drain(Instant now, Outbox& out) {
    if (expected_.empty()) {
        done_ = true;
    } else if (drain_until_ && now >= *drain_until_) {
        anomaly(now, fmt::format("{} segment(s) we sent never appeared in the capture", expected_.size()), out);
        expected_.clear();
        done_ = true;
    }
}

void Connection::run_tcb_timers(Instant now, Outbox& out) {
    if (auto d = tcb_.next_deadline(); d && *d <= now) apply(now, tcb_.on_timer(now), out);
}

void Connection::interrupt(Instant now, Outbox& out) {
    cres_.interrupted = true;
    note(now, "interrupted", out);
    phase_ = ConnectPhase::Draining;
    done_ = true;
}

std::optional<Instant> Connection::next_deadline(std::optional<Instant> connected) const {
    switch (phase_) {
        case ConnectPhase::Idle:
            return std::nullopt;
        case ConnectPhase::PreConnect:
            return started_ + ccfg_.timeout;
        case ConnectPhase::Connecting:
            return earliest({started_ + ccfg_.timeout, tcb_.next_deadline(), held_due()});
        case ConnectPhase::Connected:
            return earliest({connected, held_due()});
        case ConnectPhase::Draining:
            return drain_until_;
    }
    return std::nullopt;
}

}  // namespace tcpprobe::probe
