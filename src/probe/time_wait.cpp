// TIME-WAIT probing (see time_wait.hpp). Outcomes: observed / silent-end /
// longer-than-max / inconsistent (duration), accepted / refused (reuse), killed /
// ignored (rst), re-acked (fin), no-time-wait (the peer did not close first or its
// socket was gone), reset, no-answer.
#include "tcpprobe/probe/time_wait.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/probe/lifetime_flow.hpp"

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
std::string_view to_string(TwProbe p) {
    switch (p) {
        case TwProbe::FinNoAck: return "fin-noack";
        case TwProbe::RetxFin: return "retx-fin";
        case TwProbe::Ack: return "ack";
    }
    return "?";
}
std::string_view to_string(TwOutcome o) {
    switch (o) {
        case TwOutcome::Pending: return "pending";
        case TwOutcome::ConnectFailed: return "connect-failed";
        case TwOutcome::Reset: return "reset";
        case TwOutcome::Incomplete: return "incomplete";
        case TwOutcome::Interrupted: return "interrupted";
        case TwOutcome::NoAnswer: return "no-answer";
        case TwOutcome::NoTimeWait: return "no-time-wait";
        case TwOutcome::Observed: return "observed";
        case TwOutcome::SilentEnd: return "silent-end";
        case TwOutcome::LongerThanMax: return "longer-than-max";
        case TwOutcome::Inconsistent: return "inconsistent";
        case TwOutcome::Accepted: return "accepted";
        case TwOutcome::Refused: return "refused";
        case TwOutcome::Killed: return "killed";
        case TwOutcome::Ignored: return "ignored";
        case TwOutcome::ReAcked: return "re-acked";
    }
    return "?";
}
std::string_view to_string(TwMethod m) {
    switch (m) {
        case TwMethod::None: return "none";
        case TwMethod::Series: return "series";
        case TwMethod::Lifetime: return "one-probe-per-connection";
    }
    return "?";
}
std::string_view to_string(TwCheck c) {
    switch (c) {
        case TwCheck::NotRun: return "not-run";
        case TwCheck::Confirmed: return "confirmed";
        case TwCheck::Extended: return "extended";
        case TwCheck::Inconsistent: return "inconsistent";
        case TwCheck::Unchecked: return "unchecked";
    }
    return "?";
}

namespace {
// Far enough from the old sequence space to be clearly "higher" or "lower", near
// enough not to wrap into the other half.
constexpr std::uint32_t isn_offset = 100000;
constexpr std::uint32_t ts_offset = 1000;
}  // namespace

// ---------------------------------------------------------------------------------------
// The measurement shared by the connections of one duration test.

TwDuration::TwDuration(TwDurationConfig cfg) : cfg_(cfg), engine_(cfg.lifetime) {}

void TwDuration::tried(TwProbe kind, bool answered, Duration first_offset, unsigned copies) {
    if (done_) return;
    const bool first_kind = std::none_of(std::begin(kinds_), std::end(kinds_), [](const TwKind& k) { return k.answered; });
    kinds_[static_cast<std::size_t>(kind)].answered = answered;
    kinds_[static_cast<std::size_t>(kind)].copies = copies;
    if (!answered || kind_) return;
    kind_ = kind;
    series_running_ = true;
    // The peer's ACK of our FIN began TIME-WAIT: it was there at offset 0. The first
    // probe the connection ever got is as safe: nothing before it can have restarted
    // the timer (a later kind may have been preceded by silent restarts).
    engine_.observe(Duration::zero(), Liveness::Alive);
    if (first_kind) engine_.observe(first_offset, Liveness::Alive);
    if (!cfg_.controls) engine_.stop();
    decide();
}

void TwDuration::abandon() {
    abandoned_ = true;
    decide();
}

void TwDuration::series_alive(Duration offset) {
    if (!series_last_alive_ || offset > *series_last_alive_) series_last_alive_ = offset;
    decide();
}

void TwDuration::series_ended(Duration last_alive, Duration first_dead, bool confirmed) {
    series_alive(last_alive);
    series_first_dead_ = first_dead;
    series_confirmed_ = confirmed;
    series_over_ = true;
    series_running_ = false;
    decide();
}

void TwDuration::series_at_max(Duration last_alive) {
    series_alive(last_alive);
    series_at_max_ = true;
    series_over_ = true;
    series_running_ = false;
    decide();
}

void TwDuration::series_inconsistent() {
    series_inconsistent_ = true;
    series_over_ = true;
    series_running_ = false;
    if (check_ != TwCheck::Extended) check_ = TwCheck::Inconsistent;
    decide();
}

TwDuration::MemberAction TwDuration::member_action(Round r, unsigned slot) const {
    if (done_ || abandoned_ || !cfg_.controls) return MemberAction::Skip;
    if (!kind_) return MemberAction::Wait;  // still learning which probe the peer answers
    return engine_.slot_action(r, slot);
}

void TwDuration::member_result(const TwMemberResult& m) {
    members_.push_back(m);
    engine_.record(m.round, m.slot, m.offset, m.result);
    decide();
}

void TwDuration::member_failed(Round r, unsigned slot) {
    engine_.drop(r, slot);
    decide();
}

void TwDuration::interrupt() {
    if (done_) return;
    finish(series_over_ && check_ != TwCheck::Extended ? TwMethod::Series
           : engine_.bracket().closed()                 ? TwMethod::Lifetime
                                                        : TwMethod::None);
}

void TwDuration::finish(TwMethod m) {
    method_ = m;
    done_ = true;
    engine_.stop();
    if (kind_) {
        auto& k = kinds_[static_cast<std::size_t>(*kind_)];
        if (check_ == TwCheck::Confirmed) k.restarts = false;
        if (check_ == TwCheck::Extended) k.restarts = true;
    }
}

// The series and the connections probed once, compared. Two connections that began
// TIME-WAIT together end it at most `slack` apart (plus 10 % for long ones), so:
//   * one probed once was gone (a RST; or the coarse round ended in silence, two
//     connections in a row) while the series connection still answered more than that
//     later: the series' probes keep its state alive;
//   * the series' end was confirmed by a RST, and one probed once was still there no
//     further below the series' last answer than the coarse spacing there (plus the
//     slack): the series is confirmed.
// A series that ended in silence proves nothing (loss can take the last answers and
// every copy): the connections probed once then give the answer.
void TwDuration::decide() {
    if (done_) return;
    if (abandoned_) {
        finish(TwMethod::None);
        return;
    }
    if (!kind_) return;
    auto tolerance = [&](Duration d) { return std::max(cfg_.slack, d / 10); };
    const LifetimeBracket b = engine_.bracket();
    const bool coarse_over = engine_.stage() != LifetimeEngine::Stage::Coarse;
    std::optional<Duration> member_alive;
    for (const auto& m : members_)
        if (m.result == Liveness::Alive && (!member_alive || m.offset > *member_alive)) member_alive = m.offset;

    const std::optional<Duration> against = b.gone ? b.gone : coarse_over ? b.silent : std::nullopt;
    if (check_ != TwCheck::Extended && series_last_alive_ && against && *against + tolerance(*against) < *series_last_alive_) {
        check_ = TwCheck::Extended;
        check_offset_ = against;
        check_by_silence_ = !b.gone;
    }
    if (!cfg_.controls) {
        if (series_over_) {
            check_ = series_inconsistent_ ? TwCheck::Inconsistent : TwCheck::Unchecked;
            finish(TwMethod::Series);
        }
        return;
    }
    const bool engine_done = engine_.stage() == LifetimeEngine::Stage::Done;
    if (check_ == TwCheck::Extended || check_ == TwCheck::Inconsistent) {
        if (engine_done) finish(TwMethod::Lifetime);
        return;
    }
    if (!series_over_) return;  // the series may still end, or be found extended

    if (series_confirmed_ || series_at_max_) {
        const Duration last = *series_last_alive_;
        const auto& cfg = engine_.config();
        const Duration spacing = std::max(cfg.min_step, last * cfg.growth_pct / 100);
        if (member_alive && *member_alive + spacing + tolerance(last) >= last) {
            check_ = TwCheck::Confirmed;
            check_offset_ = member_alive;
            finish(TwMethod::Series);
            return;
        }
    }
    if (!engine_done) return;  // more evidence to come
    // Nothing confirmed the series (it ended in silence, or no connection probed once
    // near its end could tell): the engine's bracket, when it has one, is the answer.
    check_ = TwCheck::Unchecked;
    finish(b.closed() && b.consistent() ? TwMethod::Lifetime : TwMethod::Series);
}

// ---------------------------------------------------------------------------------------
// One connection.

TimeWaitFlow::TimeWaitFlow(TimeWaitConfig config) : cfg_(std::move(config)) {
    if (cfg_.slot) step_ = Step::Waiting;
    // A duration test on its own: one connection, nothing to check the series with.
    if (cfg_.test == TwTest::Duration && !cfg_.duration) {
        TwDurationConfig d;
        d.controls = false;
        d.lifetime.max = cfg_.max_duration;
        cfg_.duration = std::make_shared<TwDuration>(d);
    }
}

std::optional<std::pair<Duration, Duration>> TimeWaitFlow::bracket() const {
    if (cfg_.test != TwTest::Duration || is_member() || !report_.tw_start) return std::nullopt;
    if (cfg_.duration) {
        const TwDuration& d = *cfg_.duration;
        if (d.method() == TwMethod::Lifetime) {
            const auto b = d.engine().bracket();
            if (!b.closed() || !b.consistent()) return std::nullopt;
            return std::pair{*b.alive, *b.upper()};
        }
        if (d.method() != TwMethod::Series) return std::nullopt;
    }
    if (!report_.last_alive || !report_.first_dead) return std::nullopt;
    return std::pair{since_tw(*report_.last_alive), since_tw(*report_.first_dead)};
}

std::optional<Duration> TimeWaitFlow::duration() const {
    auto b = bracket();
    if (!b) return std::nullopt;
    return b->first + (b->second - b->first) / 2;
}

std::optional<Duration> TimeWaitFlow::resolution() const {
    auto b = bracket();
    if (!b) return std::nullopt;
    return (b->second - b->first) / 2;
}

bool TimeWaitFlow::time_wait_seen() const {
    if (!report_.tw_start) return false;
    switch (report_.outcome) {
        case TwOutcome::Observed:
        case TwOutcome::SilentEnd:
        case TwOutcome::LongerThanMax:
        case TwOutcome::Inconsistent:
        case TwOutcome::Accepted:
        case TwOutcome::Refused:
        case TwOutcome::Killed:
        case TwOutcome::Ignored:
        case TwOutcome::ReAcked:
            return true;
        case TwOutcome::Interrupted:
            // An interrupted duration test still saw TIME-WAIT if it answered the learning probe.
            return cfg_.test == TwTest::Duration && cfg_.duration && cfg_.duration->kind();
        case TwOutcome::Pending:
        case TwOutcome::ConnectFailed:
        case TwOutcome::Reset:
        case TwOutcome::Incomplete:
        case TwOutcome::NoAnswer:
        case TwOutcome::NoTimeWait:
            return false;
    }
    return false;
}

void TimeWaitFlow::start(Instant now, Outbox& out) {
    conn_.start(now);
    if (step_ == Step::Waiting) {
        next_at_ = now;  // a connection probed once opens when the measurement wants it
        return;
    }
    conn_.connect(now, out);
}

std::optional<Instant> TimeWaitFlow::next_deadline() const {
    if (step_ == Step::Waiting) return next_at_;
    return conn_.next_deadline(conn_.phase() == ConnectPhase::Connected ? connected_deadline() : std::nullopt);
}

void TimeWaitFlow::on_timer(Instant now, Outbox& out) {
    if (step_ == Step::Waiting) {
        member_tick(now, out);
        return;
    }
    if (conn_.on_timer(now, out)) on_connected_timer(now, out);
}

void TimeWaitFlow::on_connect_failed(Instant now, Outbox& out) { conclude(now, TwOutcome::ConnectFailed, out); }

void TimeWaitFlow::on_established(Instant t, Outbox& out) {
    setup_deadline_ = t + cfg_.max_wait;
    if (!cfg_.request.empty()) conn_.apply(t, tcb_.send(t, cfg_.request), out);
}

void TimeWaitFlow::observe_outgoing(Instant t, const Segment& seg, bool ours, Outbox&) {
    if (!ours) return;
    if (step_ == Step::Setup) {
        if (auto ts = find_option<opt::Timestamps>(seg.options)) report_.old_our_tsval = ts->tsval;
        return;
    }
    // A probe's capture time is its send time for every interval.
    if (ex_ && !ex_->sent.empty()) {
        const Segment& last = ex_->copies[ex_->sent.size() - 1];
        if (last.flags == seg.flags && last.seq == seg.seq && last.ack == seg.ack) ex_->sent.back() = t;
    }
}

Segment TimeWaitFlow::make_probe(Instant now, std::uint16_t flags, Seq seq, Seq ack, std::optional<std::uint32_t> tsval) {
    Segment s = conn_.make_segment(now, flags, seq, ack);
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
    return s;
}

Segment TimeWaitFlow::probe_segment(Instant now, TwProbe kind) {
    const Seq fin_seq = report_.old_our_nxt - 1;
    switch (kind) {
        // At our ISS (the old SYN's number): far below the window, and not a
        // retransmission of our FIN, which a stack may treat apart (DESIGN §3b).
        case TwProbe::FinNoAck: return make_probe(now, flag::fin, tcb_.iss(), Seq{0});
        case TwProbe::RetxFin: return make_probe(now, flag::fin | flag::ack, fin_seq, report_.old_peer_nxt);
        case TwProbe::Ack: return make_probe(now, flag::ack, report_.old_our_nxt + isn_offset, report_.old_peer_nxt);
    }
    return make_probe(now, flag::ack, report_.old_our_nxt + isn_offset, report_.old_peer_nxt);
}

// FINs are answered at once (Linux does not rate-limit them); SYNs and bare ACKs at
// most once per 500 ms. Never closer than two round trips of the handshake.
Duration TimeWaitFlow::gap_for(const Segment& s) const {
    const Duration base = s.has(flag::fin) ? cfg_.retry_gap : cfg_.retry_gap_limited;
    std::optional<Duration> rtt = connect_result().rtt;
    if (probe_rtt_ && (!rtt || *probe_rtt_ < *rtt)) rtt = probe_rtt_;
    return std::max(base, rtt ? 2 * *rtt : Duration::zero());
}

void TimeWaitFlow::start_exchange(Instant now, Purpose p, std::vector<Segment> copies, Duration final_wait, Outbox& out,
                                  std::optional<TwProbe> kind) {
    ex_ = Exchange{};
    ex_->purpose = p;
    ex_->kind = kind;
    ex_->copies = std::move(copies);
    ex_->final_wait = final_wait;
    send_next_copy(now, out);
}

void TimeWaitFlow::send_next_copy(Instant now, Outbox& out) {
    Exchange& e = *ex_;
    const Segment& s = e.copies[e.next];
    if (e.next > 0) ++report_.retries;
    ++e.next;
    ++report_.probes;
    e.sent.push_back(now);
    conn_.send(s, out);
    e.due = now + (e.next == e.copies.size() ? std::max(gap_for(s), e.final_wait) : gap_for(s));
}

void TimeWaitFlow::start_tests(Instant now, Outbox& out) {
    const Seq fin_seq = report_.old_our_nxt - 1;
    const unsigned copies = 1 + cfg_.retries;
    switch (cfg_.test) {
        case TwTest::Duration:
            step_ = Step::Learning;
            learn(now, 0, out);
            return;
        case TwTest::Reuse: {
            step_ = Step::Probing;
            const Seq isn = cfg_.isn == TwIsn::Higher ? report_.old_our_nxt + isn_offset : report_.old_our_nxt - isn_offset;
            reuse_isn_ = isn;
            std::optional<std::uint32_t> tsval;
            TwTs ts = cfg_.ts;
            if (ts != TwTs::None && !(conn_.result().negotiated && conn_.result().negotiated->timestamps)) {
                conn_.note(now, "timestamps were not negotiated: the new SYN carries none", out);
                ts = TwTs::None;
            }
            if (ts == TwTs::Newer) tsval = report_.old_our_tsval + ts_offset;
            if (ts == TwTs::Older) tsval = report_.old_our_tsval - ts_offset;
            conn_.note(now, fmt::format("new SYN on the TIME-WAIT 4-tuple: ISN {} the old SND.NXT by {}, timestamp {}",
                                  to_string(cfg_.isn), isn_offset, to_string(ts)), out);
            start_exchange(now, Purpose::Reuse, std::vector<Segment>(copies, make_probe(now, flag::syn, isn, Seq{0}, tsval)),
                           cfg_.answer_wait, out);
            return;
        }
        case TwTest::Rst:
            conn_.note(now, "an in-window RST (at RCV.NXT of the TIME-WAIT socket), then a probe", out);
            rst_round(now, out);
            return;
        case TwTest::Fin:
            step_ = Step::Probing;
            conn_.note(now, "our FIN again, as if the peer's ACK of it had been lost", out);
            start_exchange(now, Purpose::Fin,
                           std::vector<Segment>(copies, make_probe(now, flag::fin | flag::ack, fin_seq, report_.old_peer_nxt)),
                           cfg_.answer_wait, out);
            return;
    }
}

void TimeWaitFlow::rst_round(Instant now, Outbox& out) {
    step_ = Step::RstSettle;
    ++report_.rounds;
    for (unsigned i = 0; i < std::max(1u, cfg_.rst_copies); ++i) conn_.send(make_probe(now, flag::rst, report_.old_our_nxt, Seq{0}), out);
    next_at_ = now + cfg_.settle;
}

void TimeWaitFlow::learn(Instant now, std::size_t kind_index, Outbox& out) {
    learn_index_ = kind_index;
    const TwProbe kind = tw_probes[kind_index];
    conn_.note(now, fmt::format("does the TIME-WAIT answer {}?", to_string(kind)), out);
    const Segment s = probe_segment(now, kind);
    start_exchange(now, Purpose::Learn, std::vector<Segment>(1 + cfg_.retries, s), gap_for(s), out, kind);
}

void TimeWaitFlow::series_probe(Instant now, Outbox& out) {
    TwDuration& d = *cfg_.duration;
    if (d.stop_series() || d.done()) {
        conn_.note(now, fmt::format("a connection probed once was gone at {:.2f} s while this one still answered: "
                              "{} probes restart this TIME-WAIT; the series stops",
                              to_ms_f(d.check_offset().value_or(Duration::zero())) / 1000, to_string(*d.kind())), out);
        step_ = Step::Holding;
        next_at_ = now;
        return;
    }
    if (since_tw(now) > cfg_.max_duration) {
        d.series_at_max(since_tw(report_.last_alive.value_or(*report_.tw_start)));
        step_ = Step::Holding;
        next_at_ = now;
        return;
    }
    const Segment s = probe_segment(now, *d.kind());
    start_exchange(now, Purpose::Series, std::vector<Segment>(1 + cfg_.retries, s), gap_for(s), out, d.kind());
    next_at_ = now + cfg_.probe_interval;
}

void TimeWaitFlow::member_tick(Instant now, Outbox& out) {
    TwDuration& d = *cfg_.duration;
    const auto [round, slot] = *cfg_.slot;
    if (step_ == Step::Waiting) {
        const auto taken = take_slot_action(d.member_action(round, slot), conn_, concluded_, next_at_, d.config().poll, now, out);
        if (taken == TwDuration::MemberAction::Connect) step_ = Step::Setup;
        if (taken == TwDuration::MemberAction::Skip) step_ = Step::Done;
        return;
    }
    // Holding: in TIME-WAIT, until this connection's offset comes.
    const auto plan = d.plan(round, slot);
    if (plan.action == LifetimeEngine::Action::Skip) {
        if (!concluded_.conclude()) return;
        step_ = Step::Done;
        conn_.finish(now, Verdict::Open, out);
        return;
    }
    const Instant at = *report_.tw_start + plan.offset;
    if (plan.action == LifetimeEngine::Action::Probe && now >= at) {
        step_ = Step::Probing;
        next_at_.reset();
        // The kind the peer answers, interleaved with the ACK probe: a closed socket
        // that ignores the first answers the second with RST (the end is then known
        // to within one gap, not after every retry).
        const Segment k = probe_segment(now, *d.kind());
        const Segment a = probe_segment(now, TwProbe::Ack);
        std::vector<Segment> copies;
        for (unsigned i = 0; i <= cfg_.retries; ++i) {
            copies.push_back(k);
            if (*d.kind() != TwProbe::Ack) copies.push_back(a);
        }
        start_exchange(now, Purpose::Member, std::move(copies), cfg_.answer_wait, out, d.kind());
        return;
    }
    next_at_ = plan.action == LifetimeEngine::Action::Probe ? std::min(at, now + d.config().poll) : now + d.config().poll;
}

void TimeWaitFlow::member_done(Instant now, Liveness l, Duration offset, Outbox& out) {
    const auto [round, slot] = *cfg_.slot;
    cfg_.duration->member_result({round, slot, conn_.port(), offset, l, report_.probes});
    if (!concluded_.conclude()) return;
    step_ = Step::Done;
    conn_.finish(now, Verdict::Open, out);
}

void TimeWaitFlow::hold_tick(Instant now, Outbox& out) {
    if (cfg_.duration->done()) {
        conclude_duration(now, out);
        return;
    }
    next_at_ = now + cfg_.duration->config().poll;
}

void TimeWaitFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_) return;
    if (step_ != Step::Setup) {
        on_answer(t, seg, out);
        return;
    }
    if (seg.has(flag::fin) && !report_.peer_closed_first && tcb_.state() == State::Established)
        report_.peer_closed_first = true;
    const bool reset = conn_.feed(t, seg, out);
    if (reset && conn_.connected_retransmissions() > 0) {
        // Our segments had gone unanswered: the peer's timers (FIN-WAIT-2, its own
        // retransmissions) may have run out meanwhile. The test was not set up.
        conn_.anomaly(t, fmt::format("the peer reset the connection after {} retransmission(s) of ours: TIME-WAIT not set up "
                               "(loss on the path explains it)", conn_.connected_retransmissions()), out);
        conclude(t, TwOutcome::Incomplete, out);
        return;
    }
    if (reset) {
        conclude(t, TwOutcome::Reset, out);
        return;
    }
    if (tcb_.state() == State::CloseWait) {
        // The peer closed first: it will hold TIME-WAIT. Close our side at once.
        conn_.apply(t, tcb_.close(t), out);
    } else if (tcb_.state() == State::Closed && report_.peer_closed_first) {
        report_.tw_start = t;
        report_.old_our_nxt = tcb_.snd.nxt;
        report_.old_peer_nxt = tcb_.rcv.nxt;
        conn_.peer_state(t, "FIN-WAIT-2", "TIME-WAIT", "acknowledged our FIN", out);
        if (is_member()) {
            step_ = Step::Holding;
            next_at_ = t;
        } else {
            step_ = Step::Settling;
            next_at_ = t + cfg_.settle;
        }
    }
}

void TimeWaitFlow::on_answer(Instant t, const Segment& seg, Outbox& out) {
    if (!ex_) {
        conn_.note(t, "a segment from the peer nobody asked for", out);
        return;
    }
    Exchange e = std::move(*ex_);
    ex_.reset();
    if (e.sent.size() == 1 && (!probe_rtt_ || t - e.sent.front() < *probe_rtt_)) probe_rtt_ = t - e.sent.front();
    const std::string flags = format_flags(seg.flags);
    const bool rst = seg.has(flag::rst);
    TwDuration* d = cfg_.duration.get();
    switch (e.purpose) {
        case Purpose::Learn:
            if (rst) {
                // A closed port's answer: the socket is gone, there is no TIME-WAIT to measure.
                d->tried(*e.kind, false, since_tw(e.sent.front()), static_cast<unsigned>(e.sent.size()));
                report_.answer = flags;
                conn_.note(t, fmt::format("{} drew a RST: no TIME-WAIT on this 4-tuple", to_string(*e.kind)), out);
                conclude(t, TwOutcome::NoTimeWait, out);
                return;
            }
            d->tried(*e.kind, true, since_tw(e.sent.front()), static_cast<unsigned>(e.sent.size()));
            report_.last_alive = e.sent.front();
            d->series_alive(since_tw(e.sent.front()));
            conn_.note(t, fmt::format("the TIME-WAIT answers {}: probing every {:.0f} ms with it", to_string(*e.kind),
                                to_ms_f(cfg_.probe_interval)), out);
            step_ = Step::Series;
            next_at_ = e.sent.front() + cfg_.probe_interval;
            return;
        case Purpose::Series:
            if (rst) {
                report_.first_dead = e.sent.back();
                report_.end_confirmed = true;
                report_.answer = flags;
                d->series_ended(since_tw(report_.last_alive.value_or(*report_.tw_start)), since_tw(e.sent.back()), true);
                step_ = Step::Holding;
                next_at_ = t;
                return;
            }
            report_.last_alive = e.sent.front();
            d->series_alive(since_tw(e.sent.front()));
            return;  // the next probe at next_at_
        case Purpose::SeriesEnd:
            if (rst) {
                // The RST is the first evidence that TIME-WAIT is over: the series' silent
                // copies before it may all have been lost (or their answers), so the end
                // lies before the ACK probe, not before the first unanswered copy.
                report_.first_dead = e.sent.back();
                report_.end_confirmed = true;
                report_.answer = flags;
                d->series_ended(since_tw(report_.last_alive.value_or(*report_.tw_start)), since_tw(*report_.first_dead), true);
            } else {
                report_.answer = flags;
                conn_.anomaly(t, "the ACK probe was answered with an ACK: TIME-WAIT was still there (and restarted)", out);
                d->series_inconsistent();
            }
            step_ = Step::Holding;
            next_at_ = t;
            return;
        case Purpose::Member:
            member_done(t, rst ? Liveness::Gone : Liveness::Alive, since_tw(rst ? e.sent.back() : e.sent.front()), out);
            return;
        case Purpose::Reuse:
            report_.answer = flags;
            if (seg.has(flag::syn | flag::ack) && reuse_isn_ && seg.ack == *reuse_isn_ + 1) {
                report_.new_isn = seg.seq;
                report_.isn_distance = distance(report_.old_peer_nxt, seg.seq);
                conn_.note(t, fmt::format("accepted: the peer's new ISN is its old SND.NXT + {}", *report_.isn_distance), out);
                conn_.send(conn_.make_segment(t, flag::rst, *reuse_isn_ + 1, Seq{0}), out);  // cleanup
                conclude(t, TwOutcome::Accepted, out);
            } else if (rst) {
                conclude(t, TwOutcome::NoTimeWait, out);
            } else {
                conn_.note(t, fmt::format("refused: the TIME-WAIT socket answered with {} (ack {})", flags,
                                    static_cast<std::int64_t>(distance(report_.old_our_nxt, seg.ack))), out);
                report_.tw_alive_after = true;
                conclude(t, TwOutcome::Refused, out);
            }
            return;
        case Purpose::RstFollowUp:
            report_.answer = flags;
            report_.tw_alive_after = !rst;
            if (rst) {
                conclude(t, TwOutcome::Killed, out);
            } else if (report_.rounds < 1 + cfg_.retries) {
                // The RST may have been lost on the way: send it again before calling it ignored.
                rst_round(t, out);
            } else {
                conclude(t, TwOutcome::Ignored, out);
            }
            return;
        case Purpose::Fin:
            report_.answer = flags;
            conclude(t, rst ? TwOutcome::NoTimeWait : TwOutcome::ReAcked, out);
            return;
    }
}

void TimeWaitFlow::on_silence(Instant now, Outbox& out) {
    Exchange e = std::move(*ex_);
    ex_.reset();
    report_.unanswered += static_cast<unsigned>(e.sent.size());
    TwDuration* d = cfg_.duration.get();
    switch (e.purpose) {
        case Purpose::Learn:
            d->tried(*e.kind, false, since_tw(e.sent.front()), static_cast<unsigned>(e.sent.size()));
            if (learn_index_ + 1 < std::size(tw_probes)) {
                learn(now, learn_index_ + 1, out);
                return;
            }
            conn_.note(now, "the TIME-WAIT answered none of the probes", out);
            conclude(now, TwOutcome::NoAnswer, out);
            return;
        case Purpose::Series:
            report_.first_dead = e.sent.front();
            if (*e.kind == TwProbe::Ack) {
                d->series_ended(since_tw(report_.last_alive.value_or(*report_.tw_start)), since_tw(e.sent.front()), false);
                step_ = Step::Holding;
                next_at_ = now;
                return;
            }
            conn_.note(now, "the probe was not answered by a TIME-WAIT socket; confirming with an ACK probe", out);
            {
                const Segment a = probe_segment(now, TwProbe::Ack);
                start_exchange(now, Purpose::SeriesEnd, std::vector<Segment>(1 + cfg_.retries, a), cfg_.answer_wait, out);
            }
            return;
        case Purpose::SeriesEnd:
            // Silence to the ACK probe too: a stack that drops everything once its
            // TIME-WAIT is over (or every copy was lost): the end is not confirmed.
            d->series_ended(since_tw(report_.last_alive.value_or(*report_.tw_start)), since_tw(*report_.first_dead), false);
            step_ = Step::Holding;
            next_at_ = now;
            return;
        case Purpose::Member:
            member_done(now, Liveness::Silent, since_tw(e.sent.front()), out);
            return;
        case Purpose::Reuse:
        case Purpose::RstFollowUp:
        case Purpose::Fin:
            conclude(now, TwOutcome::NoAnswer, out);
            return;
    }
}

void TimeWaitFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    if (step_ == Step::Setup) {
        conn_.run_tcb_timers(now, out);
        if (setup_deadline_ && now >= *setup_deadline_) {
            // Loss can keep the close from completing: that is no evidence of a peer
            // without TIME-WAIT, only of a test that could not be set up.
            conn_.anomaly(now, report_.peer_closed_first
                             ? "the close did not complete within --max-wait (our FIN unacknowledged): TIME-WAIT not set up"
                             : "the peer did not close first within --max-wait: TIME-WAIT not set up", out);
            if (!tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait}))
                conn_.apply_with_cause(now, tcb_.abort(now), "cleanup after --max-wait (RST)", out);
            conclude(now, TwOutcome::Incomplete, out);
        }
        return;
    }
    if (ex_) {
        if (now < ex_->due) return;
        if (ex_->next < ex_->copies.size()) send_next_copy(now, out);
        else on_silence(now, out);
        return;
    }
    if (!next_at_ || now < *next_at_) return;
    switch (step_) {
        case Step::Settling:
            start_tests(now, out);
            return;
        case Step::Series:
            series_probe(now, out);
            return;
        case Step::Holding:
            if (is_member()) member_tick(now, out);
            else hold_tick(now, out);
            return;
        case Step::RstSettle: {
            // An out-of-window ACK: a TIME-WAIT socket answers it with an ACK, a closed
            // one with a RST.
            step_ = Step::Probing;
            next_at_.reset();
            const Segment a = probe_segment(now, TwProbe::Ack);
            start_exchange(now, Purpose::RstFollowUp, std::vector<Segment>(1 + cfg_.retries, a), cfg_.answer_wait, out);
            return;
        }
        case Step::Waiting:
        case Step::Setup:
        case Step::Learning:
        case Step::Probing:
        case Step::Done:
            return;
    }
}

std::optional<Instant> TimeWaitFlow::connected_deadline() const {
    if (concluded_) return std::nullopt;
    const std::optional<Instant> waiting = ex_ ? std::optional<Instant>(ex_->due) : next_at_;
    if (step_ == Step::Setup) return earliest({tcb_.next_deadline(), setup_deadline_, waiting});
    return waiting;
}

// The duration test's outcome, once the measurement is over.
void TimeWaitFlow::conclude_duration(Instant now, Outbox& out) {
    const TwDuration& d = *cfg_.duration;
    TwOutcome outcome = TwOutcome::Inconsistent;
    if (d.method() == TwMethod::Series) {
        if (d.check() == TwCheck::Inconsistent) outcome = TwOutcome::Inconsistent;
        else if (d.series_reached_max()) outcome = TwOutcome::LongerThanMax;
        else if (d.series_end_confirmed()) outcome = TwOutcome::Observed;
        else outcome = TwOutcome::SilentEnd;
    } else if (d.method() == TwMethod::Lifetime) {
        const LifetimeBracket b = d.engine().bracket();
        const Duration max = d.engine().config().max;
        if (!b.consistent()) outcome = TwOutcome::Inconsistent;
        else if (b.closed()) outcome = b.end_confirmed() ? TwOutcome::Observed : TwOutcome::SilentEnd;
        else if (b.alive && !b.upper() && *b.alive + d.config().slack >= max) outcome = TwOutcome::LongerThanMax;
    }
    // The answer column: what ended the measurement (a RST, still an ACK, or silence).
    report_.end_confirmed = outcome == TwOutcome::Observed;
    if (outcome == TwOutcome::Observed) report_.answer = "R";
    else if (outcome == TwOutcome::LongerThanMax) report_.answer = ".";
    else if (outcome == TwOutcome::SilentEnd) report_.answer.reset();
    conclude(now, outcome, out);
}

void TimeWaitFlow::conclude(Instant now, TwOutcome outcome, Outbox& out) {
    if (!concluded_.conclude()) return;
    step_ = Step::Done;
    ex_.reset();
    next_at_.reset();
    if (is_member()) {
        // Not a test of its own: the measurement leaves this slot out.
        const auto [round, slot] = *cfg_.slot;
        cfg_.duration->member_failed(round, slot);
        conn_.finish(now, Verdict::Open, out);
        return;
    }
    if (cfg_.duration && !cfg_.duration->done()) cfg_.duration->abandon();
    report_.outcome = outcome;
    conn_.finish(now, Verdict::Open, out);
}

void TimeWaitFlow::interrupt(Instant now, Outbox& out) {
    conn_.interrupt(now, out);
    if (concluded_) return;
    if (step_ == Step::Setup && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait}))
        conn_.apply_with_cause(now, tcb_.abort(now), "interrupted: RST", out);
    if (!concluded_.conclude()) return;
    if (cfg_.duration) cfg_.duration->interrupt();
    if (!is_member()) report_.outcome = TwOutcome::Interrupted;
}

std::string TimeWaitFlow::progress(Instant now) const {
    if (is_member()) return {};
    if (!report_.tw_start) return "waiting for the peer to close first";
    return fmt::format("peer TIME-WAIT for {:.1f} s, {} probe(s)", to_ms_f(now - *report_.tw_start) / 1000, report_.probes);
}

}  // namespace tcpprobe::probe
