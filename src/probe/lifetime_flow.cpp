// The connections of a fin-wait-2 or idle measurement (see lifetime_flow.hpp).
#include "tcpprobe/probe/lifetime_flow.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

std::string_view to_string(LifetimeSubject s) { return s == LifetimeSubject::FinWait2 ? "fin-wait-2" : "idle"; }
std::string_view to_string(IdleProbe p) { return p == IdleProbe::Ack ? "ack" : "data"; }
std::string_view to_string(RstFrom f) {
    switch (f) {
        case RstFrom::Peer: return "peer";
        case RstFrom::Middlebox: return "middlebox";
        case RstFrom::Unknown: return "unknown";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------
// Who sent a RST.

void PeerIpTrace::observe(const Segment& seg) {
    ttl = seg.ip.ttl;
    ip_id = seg.ip.id;
    if (auto ts = find_option<opt::Timestamps>(seg.options)) {
        timestamps = true;
        tsval = ts->tsval;
    }
}

namespace {
// Linux numbers the IP IDs of a connection's DF segments from a per-socket counter;
// other stacks from a global one. Either way the next ones follow closely, where a
// stack answering without the connection (or a middlebox) starts elsewhere (Linux: 0).
constexpr std::uint16_t id_window = 4096;
}  // namespace

RstOrigin attribute_rst(const Segment& rst, const PeerIpTrace& peer) {
    RstOrigin o;
    o.ttl = rst.ip.ttl;
    o.peer_ttl = peer.ttl;
    if (peer.ip_id) {
        const auto ahead = static_cast<std::uint16_t>(rst.ip.id - *peer.ip_id);
        o.id_match = rst.ip.id != 0 && ahead > 0 && ahead < id_window;
    }
    if (peer.timestamps) {
        auto ts = find_option<opt::Timestamps>(rst.options);
        o.ts_match = ts && peer.tsval && static_cast<std::int32_t>(ts->tsval - *peer.tsval) >= 0;
    }
    if (!peer.ttl) {
        o.why = "no segment of the peer to compare with";
        return o;
    }
    if (rst.ip.ttl != *peer.ttl) {
        o.from = RstFrom::Middlebox;
        o.why = fmt::format("its TTL is {}, the peer's segments arrived with {}", rst.ip.ttl, *peer.ttl);
        if (o.ts_match == false) o.why += "; it lacks the connection's timestamps";
        return o;
    }
    if (o.ts_match == true || o.id_match) {
        o.from = RstFrom::Peer;
        o.why = fmt::format("its TTL {} is the peer's{}{}", rst.ip.ttl, o.ts_match == true ? ", its TSval follows the peer's" : "",
                            o.id_match ? ", its IP ID continues the peer's sequence" : "");
        return o;
    }
    o.why = fmt::format("its TTL {} is the peer's, but it carries neither the peer's timestamps nor the next IP ID "
                        "(the peer's stack without the connection, or a middlebox as far away)",
                        rst.ip.ttl);
    return o;
}

// ---------------------------------------------------------------------------------------
// The measurement.

LifetimeRun::LifetimeRun(LifetimeSubject subject, LifetimeConfig cfg) : subject_(subject), engine_(cfg) {
    // The state begins when the connection enters it: alive at offset 0.
    engine_.observe(Duration::zero(), Liveness::Alive);
}

void LifetimeRun::result(const LifetimeMember& m) {
    members_.push_back(m);
    engine_.record(m.round, m.slot, m.offset, m.result);
}

void LifetimeRun::failed(Round r, unsigned slot, std::string why) {
    if (std::find(failures_.begin(), failures_.end(), why) == failures_.end()) failures_.push_back(std::move(why));
    engine_.drop(r, slot);
}

void LifetimeRun::anomaly(std::string text) {
    if (std::find(anomalies_.begin(), anomalies_.end(), text) == anomalies_.end()) anomalies_.push_back(std::move(text));
}

const LifetimeMember* LifetimeRun::first_gone() const {
    const auto gone = engine_.bracket().gone;
    if (!gone) return nullptr;
    for (const auto& m : members_)
        if (m.result == Liveness::Gone && m.offset == *gone) return &m;
    return nullptr;
}

std::optional<LifetimeEngine::SlotAction> take_slot_action(LifetimeEngine::SlotAction a, Connection& conn, Conclusion& ended,
                                                           std::optional<Instant>& next_at, Duration poll, Instant now,
                                                           Outbox& out) {
    switch (a) {
        case LifetimeEngine::SlotAction::Wait:
            next_at = now + poll;
            break;
        case LifetimeEngine::SlotAction::Connect:
            next_at.reset();
            conn.start(now);  // --timeout counts from our SYN, not from the run's start
            conn.connect(now, out);
            break;
        case LifetimeEngine::SlotAction::Skip:
            if (!ended.conclude()) return std::nullopt;
            next_at.reset();
            conn.finish(now, Verdict::Pending, out);
            break;
    }
    return a;
}

// ---------------------------------------------------------------------------------------
// One connection.

LifetimeFlow::LifetimeFlow(LifetimeFlowConfig config) : cfg_(std::move(config)) {}

void LifetimeFlow::start(Instant now, Outbox&) {
    conn_.start(now);
    next_at_ = now;  // the engine says when this connection opens (tick)
}

std::optional<Instant> LifetimeFlow::next_deadline() const {
    if (step_ == Step::Waiting) return next_at_;
    return conn_.next_deadline(conn_.phase() == ConnectPhase::Connected ? connected_deadline() : std::nullopt);
}

void LifetimeFlow::on_timer(Instant now, Outbox& out) {
    if (step_ == Step::Waiting) {
        if (next_at_ && now >= *next_at_) tick(now, out);
        return;
    }
    if (conn_.on_timer(now, out)) on_connected_timer(now, out);
}

void LifetimeFlow::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    // What the peer's own segments look like (the SYN-ACK on): a later RST is compared with it.
    if (!outgoing && !seg.has(flag::rst) && step_ != Step::Probing) peer_.observe(seg);
    if (conn_.on_segment(t, seg, outgoing, out)) on_connected_segment(t, seg, out);
}

void LifetimeFlow::on_connect_failed(Instant now, Outbox& out) {
    fail(now, fmt::format("connect: {}", to_string(conn_.result().verdict)), out);
}

void LifetimeFlow::on_established(Instant t, Outbox& out) {
    if (!cfg_.request.empty()) conn_.apply(t, tcb_.send(t, cfg_.request), out);
    if (subject() == LifetimeSubject::FinWait2) {
        setup_deadline_ = t + cfg_.max_wait;
        return;
    }
    // Idle from now; every later segment of the connection moves the start.
    step_ = Step::Holding;
    state_start_ = t;
    next_at_ = t;
}

void LifetimeFlow::observe_outgoing(Instant t, const Segment& seg, bool ours, Outbox&) {
    if (!ours) return;
    if (step_ == Step::Probing && !sent_.empty() && seg.flags == probe_.flags && seg.seq == probe_.seq &&
        seg.ack == probe_.ack) {
        sent_.back() = t;  // a probe's capture time is its send time
        return;
    }
    if (subject() == LifetimeSubject::FinWait2) {
        // FIN-WAIT-2 begins when the peer gets our ACK of its FIN: its capture here.
        if (fin_seen_ && !state_start_ && step_ != Step::Probing && seg.has(flag::ack) && seg.ack == peer_fin_end_)
            state_start_ = t;
        return;
    }
    if (step_ == Step::Holding) state_start_ = t;
}

void LifetimeFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_) return;
    if (step_ == Step::Probing) {
        if (seg.has(flag::rst)) {
            const auto origin = attribute_rst(seg, peer_);
            report(t, Liveness::Gone, sent_.back() - *state_start_, origin, out);
        } else if (seg.has(flag::ack) && !seg.has(flag::syn)) {
            report(t, Liveness::Alive, sent_.front() - *state_start_, std::nullopt, out);
        }
        return;
    }
    if (seg.has(flag::rst)) {
        conn_.feed(t, seg, out);
        fail(t, step_ == Step::Setup ? "the peer reset the connection before the state began"
                                     : "a RST before the probe (the state ended on its own)", out);
        return;
    }
    const bool fin_wait_2 = subject() == LifetimeSubject::FinWait2;
    if (fin_wait_2 && fin_seen_) {
        // Nothing may follow the peer's FIN (RFC 9293 §3.10.7.4, eighth step).
        if (!seg.payload.empty() && !before(seg.seq + static_cast<std::uint32_t>(seg.payload.size()), peer_fin_end_)) {
            if (!data_after_fin_) {
                data_after_fin_ = true;
                const std::string text = fmt::format("the peer sent {} bytes after its FIN", seg.payload.size());
                conn_.anomaly(t, text, out);
                cfg_.run->anomaly(text);
            }
            return;
        }
        if (seg.has(flag::fin) && step_ == Step::Holding) {
            // Its FIN again: our ACK was lost, FIN-WAIT-2 begins with the next one.
            state_start_.reset();
            undated_since_ = t;
            conn_.send(conn_.make_segment(t, flag::ack, tcb_.snd.nxt, tcb_.rcv.nxt), out);
            return;
        }
        if (step_ == Step::Holding) return;  // a FIN-WAIT-2 peer has nothing more to say
    }
    if (fin_wait_2 && seg.has(flag::fin)) fin_seen_ = true;
    if (conn_.feed(t, seg, out)) {
        fail(t, "the peer reset the connection", out);
        return;
    }
    if (fin_wait_2 && step_ == Step::Setup && tcb_.state() == State::CloseWait) {
        peer_fin_end_ = tcb_.rcv.nxt;
        step_ = Step::Holding;
        undated_since_ = t;
        next_at_ = t;
        conn_.peer_state(t, "FIN-WAIT-1", "FIN-WAIT-2", "our ACK of its FIN (we never send ours)", out);
    }
    if (!fin_wait_2 && step_ == Step::Holding) state_start_ = t;
}

void LifetimeFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    if (step_ == Step::Setup || step_ == Step::Holding) conn_.run_tcb_timers(now, out);
    if (concluded_) return;
    switch (step_) {
        case Step::Setup:
            if (setup_deadline_ && now >= *setup_deadline_) {
                fail(now, fin_seen_ ? "our ACK of the peer's FIN was never captured"
                                    : "the peer did not close first within --max-wait", out);
            }
            return;
        case Step::Holding:
            if (next_at_ && now >= *next_at_) tick(now, out);
            return;
        case Step::Probing:
            if (now < due_) return;
            if (sent_.size() < 1 + cfg_.retries) {
                sent_.push_back(now);
                conn_.send(probe_, out);
                due_ = now + (sent_.size() == 1 + cfg_.retries ? std::max(cfg_.retry_gap, cfg_.answer_wait) : cfg_.retry_gap);
            } else {
                report(now, Liveness::Silent, sent_.front() - *state_start_, std::nullopt, out);
            }
            return;
        case Step::Waiting:
        case Step::Done:
            return;
    }
}

std::optional<Instant> LifetimeFlow::connected_deadline() const {
    if (concluded_) return std::nullopt;
    switch (step_) {
        case Step::Setup:
            return earliest({tcb_.next_deadline(), setup_deadline_});
        case Step::Holding:
            return earliest({tcb_.next_deadline(), next_at_});
        case Step::Probing:
            return due_;
        case Step::Waiting:
        case Step::Done:
            break;
    }
    return std::nullopt;
}

void LifetimeFlow::tick(Instant now, Outbox& out) {
    LifetimeRun& run = *cfg_.run;
    if (step_ == Step::Waiting) {
        const auto taken = take_slot_action(run.action(cfg_.round, cfg_.slot), conn_, concluded_, next_at_, cfg_.poll, now, out);
        if (taken == LifetimeRun::Action::Connect) step_ = Step::Setup;
        if (taken == LifetimeRun::Action::Skip) step_ = Step::Done;
        return;
    }
    // Holding: in the state, until this connection's offset comes.
    const auto plan = run.plan(cfg_.round, cfg_.slot);
    if (plan.action == LifetimeEngine::Action::Skip) {
        // Not needed any more: the peer's state is cleaned up with a RST.
        if (!concluded_.conclude()) return;
        step_ = Step::Done;
        conn_.send(conn_.make_segment(now, flag::rst, tcb_.snd.nxt, Seq{0}), out);
        conn_.finish(now, Verdict::Open, out);
        return;
    }
    // FIN-WAIT-2 is dated by the capture of our ACK of the peer's FIN. A capture that never
    // shows it (dropped by the kernel, or the ACK of a repeated FIN) would hold this slot,
    // and the whole measurement, for ever (fuzz_session): --max-wait bounds it, as in setup.
    if (!state_start_ && undated_since_ && now >= *undated_since_ + cfg_.max_wait) {
        fail(now, "our ACK of the peer's FIN was never captured", out);
        return;
    }
    if (!state_start_ || plan.action != LifetimeEngine::Action::Probe) {
        next_at_ = now + cfg_.poll;
        return;
    }
    const Instant at = *state_start_ + plan.offset;
    if (now >= at) {
        probe(now, out);
        return;
    }
    next_at_ = std::min(at, now + cfg_.poll);
}

Segment LifetimeFlow::probe_segment(Instant now) {
    if (subject() == LifetimeSubject::FinWait2) return conn_.make_segment(now, flag::fin | flag::ack, tcb_.snd.nxt, tcb_.rcv.nxt);
    if (cfg_.idle_probe == IdleProbe::Data)
        return conn_.make_segment(now, flag::psh | flag::ack, tcb_.snd.nxt, tcb_.rcv.nxt, ByteVec{'\n'});
    // A keepalive: one below SND.NXT, no data (RFC 1122 §4.2.3.6).
    return conn_.make_segment(now, flag::ack, tcb_.snd.nxt - 1, tcb_.rcv.nxt);
}

void LifetimeFlow::probe(Instant now, Outbox& out) {
    step_ = Step::Probing;
    next_at_.reset();
    probe_ = probe_segment(now);
    sent_ = {now};
    conn_.send(probe_, out);
    due_ = now + (cfg_.retries == 0 ? std::max(cfg_.retry_gap, cfg_.answer_wait) : cfg_.retry_gap);
}

void LifetimeFlow::report(Instant now, Liveness l, Duration offset, std::optional<RstOrigin> rst, Outbox& out) {
    LifetimeMember m{cfg_.round, cfg_.slot, conn_.port(), offset, l, static_cast<unsigned>(sent_.size()), rst};
    std::string text = fmt::format("{} probe at {:.3f} s: {}", to_string(subject()), to_ms_f(offset) / 1000, to_string(l));
    if (rst) text += fmt::format(" (RST, origin {}: {})", to_string(rst->from), rst->why);
    conn_.note(now, std::move(text), out);
    if (!concluded_.conclude()) return;
    step_ = Step::Done;
    cfg_.run->result(m);
    // Clean up what the peer may still hold: an idle connection the path still carries,
    // or one whose probe went unanswered (the RST may still reach the peer).
    // A peer that took the data probe's byte expects the next one (Linux resets only at RCV.NXT).
    if (subject() == LifetimeSubject::Idle && l != Liveness::Gone) {
        const auto taken = l == Liveness::Alive ? static_cast<std::uint32_t>(probe_.payload.size()) : 0u;
        conn_.send(conn_.make_segment(now, flag::rst, tcb_.snd.nxt + taken, Seq{0}), out);
    }
    conn_.finish(now, Verdict::Open, out);
}

void LifetimeFlow::fail(Instant now, std::string why, Outbox& out) {
    if (!concluded_.conclude()) return;
    step_ = Step::Done;
    conn_.note(now, fmt::format("this connection measures nothing: {}", why), out);
    cfg_.run->failed(cfg_.round, cfg_.slot, std::move(why));
    if (tcb::in_state(tcb_.state(), {State::Established, State::CloseWait, State::FinWait1, State::FinWait2}))
        conn_.apply_with_cause(now, tcb_.abort(now), "cleanup (RST)", out);
    conn_.finish(now, Verdict::Open, out);
}

void LifetimeFlow::interrupt(Instant now, Outbox& out) {
    conn_.interrupt(now, out);
    if (!concluded_.conclude()) return;
    if (step_ != Step::Waiting && tcb::in_state(tcb_.state(), {State::Established, State::CloseWait}))
        conn_.apply_with_cause(now, tcb_.abort(now), "interrupted: RST", out);
    cfg_.run->interrupt();
}

std::string LifetimeFlow::progress(Instant now) const {
    if (step_ != Step::Holding || !state_start_) return {};
    const auto& e = cfg_.run->engine();
    return fmt::format("{} for {:.1f} s, {} connection(s) probed", to_string(subject()), to_ms_f(now - *state_start_) / 1000,
                       e.probes());
}

}  // namespace tcpprobe::probe
