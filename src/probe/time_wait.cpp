// TIME-WAIT probing (see time_wait.hpp). Outcomes: observed / longer-than-max
// (duration), accepted / refused (reuse), killed / ignored (rst), re-acked (fin),
// no-time-wait (the peer did not close first or no TIME-WAIT answered), reset,
// no-answer.
#include "tcpprobe/probe/time_wait.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

std::string_view to_string(TwTest t) {
    switch (t) {
        case TwTest::Duration: return "duration";
        case TwTest::Reuse: return "reuse";
        case TwTest::Rst: return "rst";
        case TwTest::Fin: return "fin";
    }
    return "?";
}
std::string_view to_string(TwIsn i) { return i == TwIsn::Higher ? "higher" : "lower"; }
std::string_view to_string(TwTs t) {
    switch (t) {
        case TwTs::Newer: return "newer";
        case TwTs::Older: return "older";
        case TwTs::None: return "none";
    }
    return "?";
}

namespace {
// Far enough from the old sequence space to be clearly "higher" or "lower", near
// enough not to wrap into the other half.
constexpr std::uint32_t isn_offset = 100000;
constexpr std::uint32_t ts_offset = 1000;
}  // namespace

TimeWaitFlow::TimeWaitFlow(TimeWaitConfig config) : ConnectionFlow(config.connect), cfg_(std::move(config)) {}

std::optional<Duration> TimeWaitFlow::duration() const {
    if (!report_.tw_start || !report_.last_alive || !report_.first_dead) return std::nullopt;
    Instant mid = *report_.last_alive + (*report_.first_dead - *report_.last_alive) / 2;
    return mid - *report_.tw_start;
}

std::optional<Duration> TimeWaitFlow::resolution() const {
    if (!report_.last_alive || !report_.first_dead) return std::nullopt;
    return (*report_.first_dead - *report_.last_alive) / 2;
}

void TimeWaitFlow::on_established(Instant t, Outbox& out) {
    setup_deadline_ = t + cfg_.max_wait;
    if (!cfg_.request.empty()) apply(t, tcb_.send(t, cfg_.request), out);
}

void TimeWaitFlow::observe_outgoing(Instant t, const Segment& seg, bool ours, Outbox&) {
    if (!ours) return;
    if (step_ == Step::Setup) {
        if (auto ts = find_option<opt::Timestamps>(seg.options)) report_.old_our_tsval = ts->tsval;
        return;
    }
    // A probe's capture time is its send time for every interval.
    if (answer_by_) last_probe_at_ = t;
}

void TimeWaitFlow::send_probe(Instant now, std::uint16_t flags, Seq seq, Seq ack, Outbox& out,
                              std::optional<std::uint32_t> tsval) {
    Segment s = tcb_.make_segment(now, flags, seq, ack);
    // make_segment adds the old connection's options; a probe carries a timestamp only
    // when asked (an old TSval would be a PAWS reject, which restarts the timer).
    if (!(flags & flag::syn)) s.options.clear();
    if (tsval) {
        s.options.erase(std::remove_if(s.options.begin(), s.options.end(),
                                       [](const TcpOption& o) { return std::holds_alternative<opt::Timestamps>(o); }),
                        s.options.end());
        if (!(flags & flag::syn)) s.options = {opt::Nop{}, opt::Nop{}};
        s.options.push_back(opt::Timestamps{*tsval, 0});
    } else if (flags & flag::syn) {
        OptionList kept;
        for (const auto& o : s.options)
            if (!std::holds_alternative<opt::Timestamps>(o)) kept.push_back(o);
        while (!kept.empty() && std::holds_alternative<opt::Nop>(kept.back())) kept.pop_back();
        s.options = std::move(kept);
    }
    send(s, out);
    const Duration wait = cfg_.test == TwTest::Duration && step_ == Step::Probing
                              ? std::min(cfg_.answer_wait, cfg_.probe_interval - std::chrono::milliseconds{100})
                              : cfg_.answer_wait;
    answer_by_ = now + wait;
}

void TimeWaitFlow::start_tests(Instant now, Outbox& out) {
    const Seq fin_seq = report_.old_our_nxt - 1;
    switch (cfg_.test) {
        case TwTest::Duration:
            step_ = Step::Probing;
            note(now, fmt::format("probing every {:.0f} ms with FINs without ACK (they do not restart the timer)",
                                  to_ms_f(cfg_.probe_interval)), out);
            send_probe(now, flag::fin, fin_seq, Seq{0}, out);
            ++report_.probes;
            next_at_ = now + cfg_.probe_interval;
            return;
        case TwTest::Reuse: {
            step_ = Step::Probing;
            const Seq isn = cfg_.isn == TwIsn::Higher ? report_.old_our_nxt + isn_offset : report_.old_our_nxt - isn_offset;
            reuse_isn_ = isn;
            std::optional<std::uint32_t> tsval;
            TwTs ts = cfg_.ts;
            if (ts != TwTs::None && !(cres_.negotiated && cres_.negotiated->timestamps)) {
                note(now, "timestamps were not negotiated: the new SYN carries none", out);
                ts = TwTs::None;
            }
            if (ts == TwTs::Newer) tsval = report_.old_our_tsval + ts_offset;
            if (ts == TwTs::Older) tsval = report_.old_our_tsval - ts_offset;
            note(now, fmt::format("new SYN on the TIME-WAIT 4-tuple: ISN {} the old SND.NXT by {}, timestamp {}",
                                  to_string(cfg_.isn), isn_offset, to_string(ts)), out);
            send_probe(now, flag::syn, isn, Seq{0}, out, tsval);
            next_at_.reset();
            return;
        }
        case TwTest::Rst:
            step_ = Step::FollowUp;
            note(now, "an in-window RST (at RCV.NXT of the TIME-WAIT socket), then a probe", out);
            send(tcb_.make_segment(now, flag::rst, report_.old_our_nxt, Seq{0}), out);
            next_at_ = now + cfg_.settle;
            return;
        case TwTest::Fin:
            step_ = Step::Probing;
            note(now, "our FIN again, as if the peer's ACK of it had been lost", out);
            send_probe(now, flag::fin | flag::ack, fin_seq, report_.old_peer_nxt, out);
            next_at_.reset();
            return;
    }
}

void TimeWaitFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_) return;
    if (step_ != Step::Setup) {
        on_answer(t, seg, out);
        return;
    }
    if (seg.has(flag::fin) && !report_.peer_closed_first && tcb_.state() == State::Established)
        report_.peer_closed_first = true;
    const bool reset = feed(t, seg, out);
    if (reset) {
        conclude(t, "reset", out);
        return;
    }
    if (tcb_.state() == State::CloseWait) {
        // The peer closed first: it will hold TIME-WAIT. Close our side at once.
        apply(t, tcb_.close(t), out);
    } else if (tcb_.state() == State::Closed && report_.peer_closed_first) {
        report_.tw_start = t;
        report_.old_our_nxt = tcb_.snd.nxt;
        report_.old_peer_nxt = tcb_.rcv.nxt;
        peer_state(t, "FIN-WAIT-2", "TIME-WAIT", "acknowledged our FIN", out);
        step_ = Step::Settling;
        next_at_ = t + cfg_.settle;
    }
}

void TimeWaitFlow::on_answer(Instant t, const Segment& seg, Outbox& out) {
    if (!answer_by_) {
        note(t, "a segment from the peer nobody asked for", out);
        return;
    }
    answer_by_.reset();
    const std::string flags = format_flags(seg.flags);
    switch (cfg_.test) {
        case TwTest::Duration:
            if (step_ == Step::Confirming) {
                report_.end_confirmed = seg.has(flag::rst);
                if (!report_.end_confirmed) {
                    anomaly(t, "the ACK probe was not answered with RST: TIME-WAIT was still there (and restarted)", out);
                    conclude(t, "inconsistent", out);
                    return;
                }
                // A closed socket from the very first probe: there was no TIME-WAIT to see.
                conclude(t, report_.last_alive ? "observed" : "no-time-wait", out);
                return;
            }
            if (seg.has(flag::rst)) {
                begin_confirm(t, out);
            } else if (seg.has(flag::ack)) {
                report_.last_alive = last_probe_at_;
            }
            return;
        case TwTest::Reuse:
            report_.answer = flags;
            if (seg.has(flag::syn | flag::ack) && reuse_isn_ && seg.ack == *reuse_isn_ + 1) {
                report_.new_isn = seg.seq;
                report_.isn_distance = distance(report_.old_peer_nxt, seg.seq);
                note(t, fmt::format("accepted: the peer's new ISN is its old SND.NXT + {}", *report_.isn_distance), out);
                send(tcb_.make_segment(t, flag::rst, *reuse_isn_ + 1, Seq{0}), out);  // cleanup
                conclude(t, "accepted", out);
            } else if (seg.has(flag::rst)) {
                conclude(t, "no-time-wait", out);
            } else {
                note(t, fmt::format("refused: the TIME-WAIT socket answered with {} (ack {})", flags,
                                    static_cast<std::int64_t>(distance(report_.old_our_nxt, seg.ack))), out);
                report_.tw_alive_after = true;
                conclude(t, "refused", out);
            }
            return;
        case TwTest::Rst:
            report_.answer = flags;
            report_.tw_alive_after = !seg.has(flag::rst);
            conclude(t, seg.has(flag::rst) ? "killed" : "ignored", out);
            return;
        case TwTest::Fin:
            report_.answer = flags;
            conclude(t, seg.has(flag::rst) ? "no-time-wait" : "re-acked", out);
            return;
    }
}

void TimeWaitFlow::begin_confirm(Instant now, Outbox& out) {
    report_.first_dead = last_probe_at_;
    note(now, "the probe was not answered by a TIME-WAIT socket; confirming with an ACK probe", out);
    step_ = Step::Confirming;
    next_at_.reset();
    send_probe(now, flag::ack, report_.old_our_nxt, report_.old_peer_nxt, out);
}

void TimeWaitFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    if (step_ == Step::Setup) {
        ConnectionFlow::on_connected_timer(now, out);
        if (setup_deadline_ && now >= *setup_deadline_) {
            anomaly(now, "the peer did not close first within --max-wait: no TIME-WAIT on its side", out);
            if (!tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait}))
                apply_with_cause(now, tcb_.abort(now), "cleanup after --max-wait (RST)", out);
            conclude(now, "no-time-wait", out);
        }
        return;
    }
    if (answer_by_ && now >= *answer_by_) {
        answer_by_.reset();
        if (cfg_.test == TwTest::Duration && step_ == Step::Probing) {
            // A TIME-WAIT socket answers these probes; a closed one (on Linux) stays
            // silent: the end is likely here, and an ACK probe confirms it.
            ++report_.unanswered;
            begin_confirm(now, out);
            return;
        }
        // Silence to the ACK probe after a TIME-WAIT had answered: it is still there (and
        // the ACK restarted it); silence from the start: the peer answers nothing at all.
        conclude(now, step_ == Step::Confirming && report_.last_alive ? "inconsistent" : "no-answer", out);
        return;
    }
    if (!next_at_ || now < *next_at_) return;
    switch (step_) {
        case Step::Settling:
            start_tests(now, out);
            return;
        case Step::Probing:
            if (report_.tw_start && now - *report_.tw_start > cfg_.max_duration) {
                conclude(now, "longer-than-max", out);
                return;
            }
            send_probe(now, flag::fin, report_.old_our_nxt - 1, Seq{0}, out);
            ++report_.probes;
            next_at_ = now + cfg_.probe_interval;
            return;
        case Step::FollowUp:
            // An out-of-window ACK: a TIME-WAIT socket answers it with an ACK, a closed
            // one with a RST.
            next_at_.reset();
            send_probe(now, flag::ack, report_.old_our_nxt + isn_offset, report_.old_peer_nxt, out);
            return;
        case Step::Setup:
        case Step::Confirming:
        case Step::Done:
            return;
    }
}

std::optional<Instant> TimeWaitFlow::connected_deadline() const {
    if (concluded_) return std::nullopt;
    std::optional<Instant> d = step_ == Step::Setup ? ConnectionFlow::connected_deadline() : std::nullopt;
    auto consider = [&](std::optional<Instant> x) {
        if (x && (!d || *x < *d)) d = x;
    };
    if (step_ == Step::Setup) consider(setup_deadline_);
    consider(next_at_);
    consider(answer_by_);
    return d;
}

void TimeWaitFlow::conclude(Instant now, std::string outcome, Outbox& out) {
    if (concluded_) return;
    concluded_ = true;
    step_ = Step::Done;
    report_.outcome = std::move(outcome);
    finish(now, Verdict::Open, out);
}

void TimeWaitFlow::on_interrupt(Instant now, Outbox& out) {
    if (concluded_) return;
    if (step_ == Step::Setup && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait}))
        apply_with_cause(now, tcb_.abort(now), "interrupted: RST", out);
    concluded_ = true;
    report_.outcome = "interrupted";
}

std::string TimeWaitFlow::progress(Instant now) const {
    if (!report_.tw_start) return "waiting for the peer to close first";
    return fmt::format("peer TIME-WAIT for {:.1f} s, {} probe(s)", to_ms_f(now - *report_.tw_start) / 1000, report_.probes);
}

}  // namespace tcpprobe::probe
