// Keepalive on one idle connection (see keepalive.hpp).
#include "tcpprobe/probe/keepalive.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

std::string_view to_string(KeepaliveEnd e) {
    switch (e) {
        case KeepaliveEnd::None: return "none";
        case KeepaliveEnd::Rst: return "rst";
        case KeepaliveEnd::Silence: return "silence";
        case KeepaliveEnd::PeerFin: return "fin";
        case KeepaliveEnd::MaxWait: return "max-wait";
        case KeepaliveEnd::Interrupted: return "interrupted";
    }
    return "?";
}

// Linux's timer wheel (kernel/time/timer.c) at HZ=250, Debian's: level n >= 1 starts
// at 63 << 3(n-1) jiffies and rounds its timers up to 8^n jiffies, so a timer of d
// fires up to one granularity late (60 s: 2.048 s, as DESIGN §3 measured for TIME-WAIT).
Duration linux_timer_slack(Duration d) {
    constexpr Duration jiffy = std::chrono::milliseconds{4};
    const auto j = d / jiffy;
    Duration gran = jiffy;
    for (std::int64_t start = 63; j >= start && gran < std::chrono::hours{1}; start <<= 3) gran *= 8;
    return gran;
}

std::optional<unsigned> infer_linux_seconds(Duration measured, Duration tolerance) {
    return infer_linux_seconds_in(measured, measured, tolerance);
}

std::optional<unsigned> infer_linux_seconds_in(Duration lower, Duration upper, Duration tolerance) {
    std::optional<unsigned> found;
    if (upper < lower) return found;
    const auto hi = std::chrono::ceil<std::chrono::seconds>(upper + tolerance).count();
    // The slack is at most 1/8 of the setting above the first wheel levels: n >= hi * 8/9.
    for (auto n = std::max<std::int64_t>(1, hi * 8 / 9 - 2); n <= hi; ++n) {
        const Duration s = std::chrono::seconds{n};
        if (s > upper + tolerance || lower > s + linux_timer_slack(s) + tolerance) continue;
        if (found) return std::nullopt;  // two settings fit: not inferred
        found = static_cast<unsigned>(n);
    }
    return found;
}

KeepaliveFigures keepalive_figures(const KeepaliveReport& r, const std::vector<Instant>& answers) {
    KeepaliveFigures f;
    if (r.probes.empty()) return f;
    if (r.idle_start) f.idle = r.probes.front().t - *r.idle_start;
    std::size_t k = 0;  // answers_[k] belongs to the k-th answered probe
    std::size_t run_begin = 0;
    for (std::size_t i = 0; i < r.probes.size(); ++i) {
        if (!r.probes[i].answered) continue;
        if (k < answers.size() && i + 1 < r.probes.size()) f.idle_after_answer.push_back(r.probes[i + 1].t - answers[k]);
        ++k;
        run_begin = i + 1;
    }
    f.unanswered = static_cast<unsigned>(r.probes.size() - run_begin);
    std::vector<Duration> gaps;
    for (std::size_t i = run_begin + 1; i < r.probes.size(); ++i) gaps.push_back(r.probes[i].t - r.probes[i - 1].t);
    if (!gaps.empty()) {
        std::sort(gaps.begin(), gaps.end());
        f.interval = gaps[gaps.size() / 2];
    }
    if (r.end == KeepaliveEnd::Rst && r.end_at && f.unanswered > 0) f.end_after_last = *r.end_at - r.probes.back().t;
    return f;
}

KeepaliveFlow::KeepaliveFlow(KeepaliveConfig config) : cfg_(std::move(config)) {}

void KeepaliveFlow::start(Instant now, Outbox& out) {
    conn_.start(now);
    conn_.connect(now, out);
}

void KeepaliveFlow::on_established(Instant t, Outbox& out) {
    if (!cfg_.request.empty()) conn_.apply(t, tcb_.send(t, cfg_.request), out);
    if (cfg_.mode == KeepaliveMode::Watch) {
        watch_until_ = t + cfg_.max_wait;
        conn_.note(t, cfg_.answer > 0 ? fmt::format("idle: waiting for the peer's keepalive probes (answering the first {})", cfg_.answer)
                                : std::string("idle: waiting for the peer's keepalive probes (answering none)"), out);
    } else {
        next_send_ = t + cfg_.send_interval;
    }
}

void KeepaliveFlow::observe_outgoing(Instant t, const Segment& seg, bool ours, Outbox&) {
    if (!ours) return;
    if (answer_pending_ && seg.flags == answer_pending_->flags && seg.seq == answer_pending_->seq &&
        seg.ack == answer_pending_->ack) {
        answers_.push_back(t);
        answer_pending_.reset();
    } else if (our_probe_ && seg.flags == our_probe_->flags && seg.seq == our_probe_->seq && !report_.probes.empty()) {
        report_.probes.back().t = t;  // the capture is the send time
    }
    // The peer's idle timer runs from what it last received: our last segment.
    if (report_.probes.empty()) last_ours_ = t;
}

bool KeepaliveFlow::is_keepalive(const Segment& seg) const {
    if (seg.has_any(flag::syn | flag::fin | flag::rst) || !seg.has(flag::ack) || seg.payload.size() > 1) return false;
    return seg.seq == tcb_.rcv.nxt - 1;
}

void KeepaliveFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (ended_) return;
    if (seg.has(flag::rst)) {
        conn_.feed(t, seg, out);
        end(t, KeepaliveEnd::Rst, out);
        return;
    }
    if (cfg_.mode == KeepaliveMode::Send && our_probe_ && seg.has(flag::ack) && seg.payload.empty() &&
        !seg.has_any(flag::syn | flag::fin) && seg.ack == tcb_.snd.nxt) {
        auto& p = report_.probes.back();
        p.answered = true;
        p.rtt = t - p.t;
        our_probe_.reset();
        return;
    }
    if (cfg_.mode == KeepaliveMode::Watch && is_keepalive(seg)) {
        if (report_.probes.empty()) report_.idle_start = last_ours_;
        KeepaliveProbe p{t, seg.payload.size(), false, std::nullopt};
        const auto answered = static_cast<unsigned>(
            std::count_if(report_.probes.begin(), report_.probes.end(), [](const KeepaliveProbe& x) { return x.answered; }));
        if (answered < cfg_.answer) {
            p.answered = true;
            answer_pending_ = conn_.make_segment(t, flag::ack, tcb_.snd.nxt, tcb_.rcv.nxt);
            conn_.send(*answer_pending_, out);
        }
        report_.probes.push_back(p);
        conn_.note(t, fmt::format("keepalive probe {} ({} byte{}){}", report_.probes.size(), p.length, p.length == 1 ? "" : "s",
                            p.answered ? ", answered" : ", not answered"), out);
        return;
    }
    const bool fin = seg.has(flag::fin);
    conn_.feed(t, seg, out);
    if (fin) end(t, KeepaliveEnd::PeerFin, out);
}

std::optional<Instant> KeepaliveFlow::silence_deadline() const {
    if (cfg_.mode != KeepaliveMode::Watch || report_.probes.size() < 2 || report_.probes.back().answered) return std::nullopt;
    const auto& a = report_.probes[report_.probes.size() - 2];
    const auto& b = report_.probes.back();
    if (a.answered) return std::nullopt;
    // Linux's RST comes one interval after the last probe: two intervals and a second
    // of silence mean the peer gave up without one (or keeps probing slower: not seen).
    return b.t + 2 * (b.t - a.t) + std::chrono::seconds{1};
}

void KeepaliveFlow::send_probe(Instant now, Outbox& out) {
    our_probe_ = conn_.make_segment(now, flag::ack, tcb_.snd.nxt - 1, tcb_.rcv.nxt);
    report_.probes.push_back({now, 0, false, std::nullopt});
    conn_.send(*our_probe_, out);
}

void KeepaliveFlow::on_connected_timer(Instant now, Outbox& out) {
    if (ended_) return;
    conn_.run_tcb_timers(now, out);
    if (cfg_.mode == KeepaliveMode::Send) {
        if (!next_send_ || now < *next_send_) return;
        if (report_.probes.size() < cfg_.count) {
            send_probe(now, out);
            next_send_ = now + (report_.probes.size() < cfg_.count ? cfg_.send_interval
                                                                   : std::max(cfg_.send_interval, cfg_.answer_wait));
        } else {
            end(now, KeepaliveEnd::None, out);
        }
        return;
    }
    if (auto s = silence_deadline(); s && now >= *s) {
        end(now, KeepaliveEnd::Silence, out);
        return;
    }
    if (watch_until_ && now >= *watch_until_) end(now, KeepaliveEnd::MaxWait, out);
}

std::optional<Instant> KeepaliveFlow::next_deadline() const {
    if (conn_.phase() != ConnectPhase::Connected || ended_) return conn_.next_deadline(std::nullopt);
    return conn_.next_deadline(earliest({tcb_.next_deadline(), watch_until_, next_send_, silence_deadline()}));
}

void KeepaliveFlow::end(Instant now, KeepaliveEnd e, Outbox& out) {
    if (!ended_.conclude()) return;
    report_.end = e;
    report_.end_at = now;
    if (e == KeepaliveEnd::Rst) conn_.note(now, "the peer reset the connection", out);
    if (e == KeepaliveEnd::Silence) conn_.note(now, "no RST and no further probe: the peer gave up silently", out);
    // Leave nothing behind on the peer.
    if (tcb::in_state(tcb_.state(), {State::Established, State::CloseWait}))
        conn_.apply_with_cause(now, tcb_.abort(now), "cleanup (RST)", out);
    conn_.finish(now, Verdict::Open, out);
}

void KeepaliveFlow::interrupt(Instant now, Outbox& out) {
    conn_.interrupt(now, out);
    if (!ended_.conclude()) return;
    report_.end = KeepaliveEnd::Interrupted;
    report_.end_at = now;
    if (tcb::in_state(tcb_.state(), {State::Established, State::CloseWait}))
        conn_.apply_with_cause(now, tcb_.abort(now), "interrupted: RST", out);
}

std::string KeepaliveFlow::progress(Instant now) const {
    if (cfg_.mode == KeepaliveMode::Send) return fmt::format("sent {} of {} keepalive probes", report_.probes.size(), cfg_.count);
    if (report_.probes.empty()) {
        if (!last_ours_) return "connecting";
        return fmt::format("idle {:.0f} s, waiting for the peer's first keepalive probe (up to --max-wait)",
                           to_ms_f(now - *last_ours_) / 1000);
    }
    return fmt::format("{} keepalive probe(s); waiting for the next, a RST or silence", report_.probes.size());
}

}  // namespace tcpprobe::probe
