// The profile: the experiments built into one session, and their reports read into one
// table (see profile.hpp).
#include "tcpprobe/probe/profile.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace std::chrono_literals;

std::string_view to_string(Experiment e) {
    switch (e) {
        case Experiment::HandshakeFull: return "handshake-full";
        case Experiment::HandshakeBare: return "handshake-bare";
        case Experiment::Isn: return "isn";
        case Experiment::CloseActive: return "close-active";
        case Experiment::CloseSimultaneous: return "close-simultaneous";
        case Experiment::CloseAbort: return "close-abort";
        case Experiment::HalfClose: return "half-close";
        case Experiment::SynAckSchedule: return "synack-schedule";
        case Experiment::FinSchedule: return "fin-schedule";
        case Experiment::TimeWaitDuration: return "time-wait-duration";
        case Experiment::TimeWaitReuse: return "time-wait-reuse";
        case Experiment::TimeWaitRst: return "time-wait-rst";
        case Experiment::TimeWaitFin: return "time-wait-fin";
        case Experiment::FinWait2: return "fin-wait-2";
        case Experiment::Keepalive: return "keepalive";
        case Experiment::Idle: return "idle";
    }
    return "?";
}

const ProfileRow* ProfileResult::row(std::string_view key) const {
    for (const auto& r : rows)
        if (r.key == key) return &r;
    return nullptr;
}

namespace {

/// Passes everything to the experiment's flow and notes, on the way, the TTL of the
/// peer's segments (SYN-ACK, data/ACK, RST) and the size of its largest data segment,
/// for the middlebox signs.
class TtlTap final : public Flow {
public:
    TtlTap(std::unique_ptr<Flow> inner, std::shared_ptr<std::vector<TtlMark>> marks,
           std::shared_ptr<std::vector<PeerSegments>> sizes)
        : inner_(std::move(inner)), marks_(std::move(marks)), sizes_(std::move(sizes)) {}
    wire::FourTuple tuple() const override { return inner_->tuple(); }
    void start(Instant now, Outbox& out) override { inner_->start(now, out); }
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override {
        if (!outgoing) {
            const auto kind = seg.has(wire::flag::rst)   ? TtlMark::Kind::Rst
                              : seg.has(wire::flag::syn) ? TtlMark::Kind::SynAck
                                                         : TtlMark::Kind::Data;
            // One mark per kind and TTL is enough; keep memory flat on long runs.
            const std::uint16_t port = inner_->tuple().local.port;
            if (std::none_of(seen_.begin(), seen_.end(), [&](const auto& s) { return s.first == kind && s.second == seg.ip.ttl; })) {
                seen_.emplace_back(kind, seg.ip.ttl);
                marks_->push_back({port, t, seg.ip.ttl, kind});
            }
            if (!seg.payload.empty()) sized(t, seg, port);
        }
        inner_->on_segment(t, seg, outgoing, out);
    }
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { inner_->on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override { inner_->on_timer(now, out); }
    void interrupt(Instant now, Outbox& out) override { inner_->interrupt(now, out); }
    void stop(Instant now, Outbox& out) override { inner_->stop(now, out); }
    std::optional<Instant> next_deadline() const override { return inner_->next_deadline(); }
    bool done() const override { return inner_->done(); }
    std::string progress(Instant now) const override { return inner_->progress(now); }

private:
    void sized(Instant t, const wire::Segment& seg, std::uint16_t port) {
        const auto end = seg.seq.raw() + static_cast<std::uint32_t>(seg.payload.size());
        // The option bytes as captured; a segment built here (no capture) has its list only.
        const std::size_t options = seg.raw_options.empty() ? wire::encoded_size(seg.options) : seg.raw_options.size();
        if (!slot_) {
            slot_ = sizes_->size();
            sizes_->push_back({port, t, seg.payload.size(), options, end, end});
            return;
        }
        auto& s = (*sizes_)[*slot_];
        if (static_cast<std::int32_t>(end - s.highest) > 0) s.highest = end;
        if (seg.payload.size() > s.payload) {
            s.at = t;
            s.payload = seg.payload.size();
            s.options = options;
            s.end = end;
        }
    }

    std::unique_ptr<Flow> inner_;
    std::shared_ptr<std::vector<TtlMark>> marks_;
    std::shared_ptr<std::vector<PeerSegments>> sizes_;
    std::optional<std::size_t> slot_;  ///< this connection's entry in sizes_
    std::vector<std::pair<TtlMark::Kind, std::uint8_t>> seen_;
};

std::string secs(Duration d) { return fmt::format("{:.3f} s", to_ms_f(d) / 1000.0); }

// Any scenario with a connect_result() (each holds its Connection).
template <class F>
bool opened(const F* f) { return f && f->connect_result().verdict == Verdict::Open; }

template <class F>
std::string not_measured(const F* f) {
    if (!f) return "not run";
    const auto& c = f->connect_result();
    if (c.verdict == Verdict::Open) return "not measured";
    return fmt::format("not measured (connect: {})", to_string(c.verdict));
}

/// Linux stamps its timer-driven events on a 4 ms jiffy (HZ=250) and may fire late by
/// up to 512 jiffies on a long timer: durations compare within this much.
Duration duration_tolerance(Duration d) {
    return std::max<Duration>(std::chrono::milliseconds{500}, Duration{d.count() / 20});
}

}  // namespace

Profile::Profile(ProfileConfig cfg) : cfg_(std::move(cfg)) {
    if (!cfg_.quick) {
        TwDurationConfig dc;
        dc.lifetime.max = cfg_.time_wait_max;
        tw_ = std::make_shared<TwDuration>(dc);
        LifetimeConfig fc;
        fc.max = cfg_.fin_wait_2_max;
        fc.resolution = 500ms;  // as `fin-wait-2`: tcp_fin_timeout is read to the second
        fw2_ = std::make_shared<LifetimeRun>(LifetimeSubject::FinWait2, fc);
    }
    if (cfg_.idle_max) {
        LifetimeConfig ic;
        ic.max = *cfg_.idle_max;
        idle_ = std::make_shared<LifetimeRun>(LifetimeSubject::Idle, ic);
    }
}

std::vector<Experiment> Profile::experiments() const {
    // The longest first: they set the run's length; the short ones fit beside them.
    std::vector<Experiment> e;
    if (tw_) e.push_back(Experiment::TimeWaitDuration);
    if (fw2_) e.push_back(Experiment::FinWait2);
    if (cfg_.keepalive) e.push_back(Experiment::Keepalive);
    if (idle_) e.push_back(Experiment::Idle);
    for (auto x : {Experiment::SynAckSchedule, Experiment::FinSchedule, Experiment::HandshakeFull, Experiment::HandshakeBare,
                   Experiment::Isn, Experiment::CloseActive, Experiment::CloseSimultaneous, Experiment::CloseAbort,
                   Experiment::HalfClose, Experiment::TimeWaitReuse, Experiment::TimeWaitRst, Experiment::TimeWaitFin})
        e.push_back(x);
    return e;
}

std::size_t Profile::lifetime_slots(const LifetimeConfig& c) const {
    return LifetimeEngine(c).slots(Round::Coarse) + LifetimeEngine::fine_capacity(c);
}

std::size_t Profile::connections() const {
    std::size_t n = 0;
    for (auto e : experiments()) {
        switch (e) {
            case Experiment::Isn: n += cfg_.isn_syns; break;
            case Experiment::SynAckSchedule:
            case Experiment::FinSchedule: n += cfg_.schedule_runs; break;
            case Experiment::TimeWaitDuration: n += 1 + lifetime_slots(tw_->config().lifetime); break;
            case Experiment::FinWait2: n += lifetime_slots(fw2_->engine().config()); break;
            case Experiment::Idle: n += lifetime_slots(idle_->engine().config()); break;
            case Experiment::HandshakeFull:
            case Experiment::HandshakeBare:
            case Experiment::CloseActive:
            case Experiment::CloseSimultaneous:
            case Experiment::CloseAbort:
            case Experiment::HalfClose:
            case Experiment::TimeWaitReuse:
            case Experiment::TimeWaitRst:
            case Experiment::TimeWaitFin:
            case Experiment::Keepalive: n += 1; break;
        }
    }
    return n;
}

Profile::Part& Profile::part(Experiment e) {
    for (auto& p : parts_)
        if (p.experiment == e) return p;
    parts_.push_back({e, {}});
    return parts_.back();
}

const Profile::Part* Profile::find(Experiment e) const {
    for (const auto& p : parts_)
        if (p.experiment == e) return &p;
    return nullptr;
}

void Profile::add(Session& s, Instant at, Experiment e, std::unique_ptr<Flow> flow) {
    part(e).flows.push_back(flow.get());
    s.add(at, std::make_unique<TtlTap>(std::move(flow), ttls_, sizes_));
}

void Profile::build(Session& session, Instant start, const ConnectFor& connect_for) {
    start_ = start;
    session.set_pace(cfg_.pace.starts, cfg_.pace.per);
    std::size_t next = 0;
    auto conn = [&] {
        ConnectConfig c = connect_for(next++);
        if (auto m = wire::find_option<wire::opt::Mss>(c.tcb.syn_options)) our_mss_ = m->value;
        return c;
    };
    const Duration schedule_wait = cfg_.quick ? std::min(cfg_.quick_limit, cfg_.schedule_max_wait) : cfg_.schedule_max_wait;

    auto handshake = [&](ConnectConfig c) {
        HandshakeConfig hc;
        hc.connect = std::move(c);
        hc.half_open = true;  // the SYN-ACK is all it asks for; our RST clears the peer's state
        return std::make_unique<HandshakeFlow>(std::move(hc));
    };
    auto close = [&](CloseMode mode, bool with_request) {
        CloseConfig cc;
        cc.connect = conn();
        cc.connect.tcb.time_wait = 2s;  // our own TIME-WAIT after an active close, as teardown's default
        cc.mode = mode;
        if (with_request) cc.request = cfg_.request;
        return std::make_unique<CloseFlow>(std::move(cc));
    };
    auto time_wait = [&](TwTest test) {
        TimeWaitConfig tc;
        tc.connect = conn();
        tc.retries = tc.connect.tcb.rto.max_retries;  // --retries, as `time-wait` passes it
        tc.test = test;
        tc.request = cfg_.request;
        tc.max_duration = cfg_.time_wait_max;
        return tc;
    };
    auto lifetime = [&](Experiment e, const std::shared_ptr<LifetimeRun>& run, std::vector<const LifetimeFlow*>& keep) {
        const auto& lc = run->engine().config();
        for (auto [round, count] : {std::pair{Round::Coarse, run->engine().slots(Round::Coarse)},
                                    std::pair{Round::Fine, LifetimeEngine::fine_capacity(lc)}})
            for (unsigned slot = 0; slot < count; ++slot) {
                LifetimeFlowConfig fc;
                fc.connect = conn();
                if (run->subject() == LifetimeSubject::FinWait2) {
                    fc.request = cfg_.request;
                    fc.retry_gap = 300ms;  // FINs are answered at once, never rate-limited
                }
                fc.run = run;
                fc.round = round;
                fc.slot = slot;
                auto f = std::make_unique<LifetimeFlow>(std::move(fc));
                keep.push_back(f.get());
                add(session, start, e, std::move(f));
            }
    };

    // Adds a flow of experiment e, `after` the start, and keeps a typed view of it.
    auto put = [&](Experiment e, auto flow, Duration after = Duration::zero()) {
        const auto* kept = flow.get();
        add(session, start + after, e, std::move(flow));
        return kept;
    };

    for (auto e : experiments()) {
        switch (e) {
            case Experiment::TimeWaitDuration: {
                TimeWaitConfig tc = time_wait(TwTest::Duration);
                tc.duration = tw_;
                tw_duration_ = put(e, std::make_unique<TimeWaitFlow>(std::move(tc)));
                const auto& lc = tw_->config().lifetime;
                for (auto [round, count] : {std::pair{Round::Coarse, tw_->engine().slots(Round::Coarse)},
                                            std::pair{Round::Fine, LifetimeEngine::fine_capacity(lc)}})
                    for (unsigned slot = 0; slot < count; ++slot) {
                        TimeWaitConfig mc = time_wait(TwTest::Duration);
                        mc.duration = tw_;
                        mc.slot = std::pair{round, slot};
                        add(session, start, e, std::make_unique<TimeWaitFlow>(std::move(mc)));
                    }
                break;
            }
            case Experiment::FinWait2: lifetime(e, fw2_, fw2_flows_); break;
            case Experiment::Idle: lifetime(e, idle_, idle_flows_); break;
            case Experiment::Keepalive: {
                KeepaliveConfig kc;
                kc.connect = conn();
                kc.max_wait = cfg_.keepalive_max;
                keepalive_ = put(e, std::make_unique<KeepaliveFlow>(std::move(kc)));
                break;
            }
            case Experiment::SynAckSchedule:
            case Experiment::FinSchedule:
                for (unsigned i = 0; i < cfg_.schedule_runs; ++i) {
                    RetransmitConfig rc;
                    rc.connect = conn();
                    rc.segment = e == Experiment::SynAckSchedule ? RetxSegment::SynAck : RetxSegment::Fin;
                    rc.max_wait = schedule_wait;
                    rc.tolerance = cfg_.tolerance;
                    if (rc.segment == RetxSegment::Fin) {
                        // The request makes the peer close first; its FIN, never ACKed,
                        // is retransmitted from FIN-WAIT-1 by an orphaned socket (Linux:
                        // tcp_orphan_retries). A server that answers a request and closes
                        // would otherwise send data after our FIN and muddle the schedule.
                        rc.peer_closes_first = true;
                        rc.request = cfg_.request;
                    }
                    // As `retransmit`: our SYN is repeated only after a long silence, since a
                    // repeated SYN makes many stacks resend their SYN-ACK and restart its timer.
                    if (rc.segment == RetxSegment::SynAck)
                        rc.connect.tcb.rto.initial_rto = std::max(rc.connect.tcb.rto.initial_rto, Duration{2500ms});
                    (e == Experiment::SynAckSchedule ? synack_ : fin_).push_back(put(e, std::make_unique<RetransmitFlow>(std::move(rc))));
                }
                break;
            case Experiment::HandshakeFull: full_ = put(e, handshake(conn())); break;
            case Experiment::HandshakeBare: {
                ConnectConfig c = conn();
                c.tcb.syn_options.clear();
                c.tcb.rcv_wnd = c.tcb.syn_window;  // no window scaling offered
                bare_ = put(e, handshake(std::move(c)));
                break;
            }
            case Experiment::Isn:
                for (unsigned i = 0; i < cfg_.isn_syns; ++i)
                    isn_.push_back(put(e, handshake(conn()), cfg_.isn_interval * static_cast<std::int64_t>(i)));
                break;
            case Experiment::CloseActive: active_ = put(e, close(CloseMode::Active, false)); break;
            case Experiment::CloseSimultaneous: simultaneous_ = put(e, close(CloseMode::Simultaneous, true)); break;
            case Experiment::CloseAbort: abort_ = put(e, close(CloseMode::Abort, false)); break;
            // Our FIN before any request: whatever the peer then sends (an HTTP server's
            // answer at EOF) comes after our FIN. With a request first, a fast peer's answer
            // races our FIN and the row would depend on timing.
            case Experiment::HalfClose: half_close_ = put(e, close(CloseMode::HalfClose, false)); break;
            case Experiment::TimeWaitReuse:
            case Experiment::TimeWaitRst:
            case Experiment::TimeWaitFin: {
                const TwTest test = e == Experiment::TimeWaitReuse ? TwTest::Reuse : e == Experiment::TimeWaitRst ? TwTest::Rst : TwTest::Fin;
                (e == Experiment::TimeWaitReuse ? tw_reuse_ : e == Experiment::TimeWaitRst ? tw_rst_ : tw_fin_) =
                    put(e, std::make_unique<TimeWaitFlow>(time_wait(test)));
                break;
            }
        }
    }
}

std::vector<ExperimentStatus> Profile::status(Instant now) const {
    std::vector<ExperimentStatus> out;
    for (const auto& p : parts_) {
        ExperimentStatus s{p.experiment, true, {}, p.flows.size()};
        for (const auto* f : p.flows)
            if (!f->done()) {
                s.done = false;
                if (s.progress.empty()) s.progress = f->progress(now);
            }
        out.push_back(std::move(s));
    }
    return out;
}

std::string Profile::progress(Instant now) const {
    std::string text;
    for (const auto& s : status(now)) {
        if (!text.empty()) text += '\n';
        text += fmt::format("{:<19} {}", to_string(s.experiment),
                            s.done ? std::string("done") : s.progress.empty() ? std::string("running") : s.progress);
    }
    return text;
}

Verdict Profile::connect_verdict() const {
    Verdict v = Verdict::Pending;
    for (const auto* f : {full_, bare_})
        if (f) v = combine(v, f->connect_result().verdict);
    return v;
}

std::string isn_pattern(const std::vector<std::uint32_t>& isns) {
    if (isns.size() < 2) return "unknown";
    std::vector<std::uint32_t> steps;
    for (std::size_t i = 1; i < isns.size(); ++i) steps.push_back(isns[i] - isns[i - 1]);  // modulo 2^32
    if (std::all_of(steps.begin(), steps.end(), [](auto s) { return s == 0; })) return "repeated";
    if (std::all_of(steps.begin(), steps.end(), [&](auto s) { return s == steps.front(); })) return "step";
    // A clock-driven ISN (RFC 793's 4 us tick) moves forward by small amounts between
    // SYNs a fraction of a second apart; a random ISN lands below 2^24 ahead with odds
    // of 1 in 256 per step.
    if (std::all_of(steps.begin(), steps.end(), [](auto s) { return s > 0 && s < (1u << 24); })) return "increasing";
    return "random";
}

std::pair<unsigned, unsigned> initial_ttl(std::uint8_t seen) {
    for (unsigned init : {32u, 64u, 128u, 255u})
        if (seen <= init) return {init, init - seen};
    return {255u, 0u};
}

ProfileResult Profile::result() const {
    ProfileResult r;
    r.experiments = experiments();
    // Rows are filled through references while later ones are added: no reallocation.
    constexpr std::size_t max_rows = 64;
    r.rows.reserve(max_rows);
    auto rel = [&](Instant t) { return t - start_; };
    auto mark = [&](const Flow* f, Instant t, std::string what) {
        return EvidenceMark{f->tuple().local.port, rel(t), std::move(what)};
    };
    auto row = [&](std::string key, Experiment e, std::string behaviour) -> ProfileRow& {
        if (r.rows.size() == max_rows) throw std::logic_error("profile: more rows than reserved");
        r.rows.push_back(ProfileRow{std::move(key), e, std::move(behaviour), {}, {}, {}, {}, {}, {}});
        return r.rows.back();
    };
    auto unmeasured = [&](ProfileRow& w, const auto* f) { w.text = not_measured(f); };
    // The capture of a connection's first SYN-ACK (the TTL tap saw it).
    auto synack_mark = [&](const Flow* f) {
        EvidenceMark m{f->tuple().local.port, {}, "SYN-ACK"};
        for (const auto& t : *ttls_)
            if (t.port == m.port && t.kind == TtlMark::Kind::SynAck) {
                m.at = rel(t.t);
                break;
            }
        return m;
    };

    // --- the handshake with every option, and with none --------------------------------
    const wire::Segment* synack = opened(full_) && full_->connect_result().answer ? &*full_->connect_result().answer : nullptr;
    {
        auto& mss = row("handshake.mss", Experiment::HandshakeFull, "MSS offered back (ours: full option set)");
        auto& sack = row("handshake.sack", Experiment::HandshakeFull, "SACK permitted");
        auto& ts = row("handshake.timestamps", Experiment::HandshakeFull, "timestamps");
        auto& ws = row("handshake.wscale", Experiment::HandshakeFull, "window scale offered back");
        auto& win = row("handshake.window", Experiment::HandshakeFull, "SYN-ACK window");
        auto& ttl = row("handshake.ttl", Experiment::HandshakeFull, "initial TTL of the SYN-ACK");
        if (!synack) {
            for (auto* w : {&mss, &sack, &ts, &ws, &win, &ttl}) unmeasured(*w, full_);
        } else {
            const auto& opts = full_->connect_result().peer_options;
            const auto m = wire::find_option<wire::opt::Mss>(opts);
            const bool has_sack = wire::find_option<wire::opt::SackPermitted>(opts).has_value();
            const bool has_ts = wire::find_option<wire::opt::Timestamps>(opts).has_value();
            const auto w = wire::find_option<wire::opt::WindowScale>(opts);
            const auto ev = fmt::format("SYN-ACK <{}>", wire::format_options(opts));
            for (auto* x : {&mss, &sack, &ts, &ws, &win, &ttl}) x->evidence = ev;
            const EvidenceMark at = synack_mark(full_);
            if (m) {
                mss.value = std::int64_t{m->value};
                mss.text = fmt::format("{}", m->value);
            } else {
                mss.value = std::string("none");
                mss.text = "none";
            }
            sack.value = has_sack;
            sack.text = has_sack ? "yes" : "no";
            sack.linux = LinuxSetting{"tcp_sack", has_sack ? 1 : 0};
            ts.value = has_ts;
            ts.text = has_ts ? "yes" : "no";
            ts.linux = LinuxSetting{"tcp_timestamps", has_ts ? 1 : 0};
            if (w) {
                ws.value = std::int64_t{w->shift};
                ws.text = fmt::format("{}", w->shift);
            } else {
                ws.value = std::string("none");
                ws.text = "none (window scaling off)";
            }
            ws.linux = LinuxSetting{"tcp_window_scaling", w ? 1 : 0};
            win.value = std::int64_t{synack->window};
            win.text = fmt::format("{}", synack->window);
            auto [init, hops] = initial_ttl(synack->ip.ttl);
            ttl.value = std::int64_t{init};
            ttl.text = fmt::format("{} (seen {}, {} hop(s))", init, synack->ip.ttl, hops);
            for (auto* x : {&mss, &sack, &ts, &ws, &win, &ttl}) x->marks.push_back(at);
        }
        auto& bare = row("handshake.bare_options", Experiment::HandshakeBare, "options offered back to a SYN with none");
        if (opened(bare_) && bare_->connect_result().answer) {
            std::string kinds;
            for (const auto& o : bare_->connect_result().peer_options) {
                std::string k = wire::format_options({o});
                if (k == "nop" || k == "eol") continue;
                if (auto sp = k.find(' '); sp != std::string::npos && k.rfind("mss", 0) != 0) k = k.substr(0, sp);
                kinds += (kinds.empty() ? "" : ",") + k;
            }
            bare.value = kinds.empty() ? std::string("none") : kinds;
            bare.text = kinds.empty() ? "none" : kinds;
            bare.evidence = fmt::format("SYN-ACK <{}>", wire::format_options(bare_->connect_result().peer_options));
            bare.marks.push_back(synack_mark(bare_));
        } else {
            unmeasured(bare, bare_);
        }
    }

    // --- the MSS the peer sends with: is it the one our SYN offered? ----------------------
    // Not in the SYN-ACK: Linux offers its own MSS whatever ours was (min() is applied to
    // what it sends, not to what it offers). Seen in the peer's data: a segment cut at its
    // send MSS, with more data after it, is its MSS less nothing but that segment's option
    // bytes. Below ours while the peer's own MSS (its SYN-ACK) is above it: our SYN reached
    // the peer with a lower MSS than we sent, a middlebox rewrote it (MSS clamping).
    std::optional<std::string> clamp;
    {
        auto& w = row("path.peer_mss", Experiment::HandshakeFull, "MSS the peer sends with (ours lowered on the way: clamping)");
        const PeerSegments* cut = nullptr;   // the largest segment cut at the peer's MSS
        const PeerSegments* biggest = nullptr;
        for (const auto& p : *sizes_) {
            if (!biggest || p.payload + p.options > biggest->payload + biggest->options) biggest = &p;
            if (p.segmented() && (!cut || p.payload + p.options > cut->payload + cut->options)) cut = &p;
        }
        std::uint32_t peer_own = 0;  // the peer's own MSS (its SYN-ACK); 0: none seen
        if (synack)
            if (auto m = wire::find_option<wire::opt::Mss>(full_->connect_result().peer_options)) peer_own = m->value;
        const std::string own = peer_own ? fmt::format("{}", peer_own) : std::string("none");
        const std::string ours = our_mss_ ? fmt::format("{}", *our_mss_) : std::string("none (536 by default)");
        const std::size_t offered = our_mss_.value_or(536);
        if (biggest && biggest->payload + biggest->options >= offered) {
            // A segment as large as our MSS allows: it got ours (a clamp only lowers).
            w.value = std::int64_t(biggest->payload + biggest->options);
            w.text = fmt::format("{} (ours, unchanged)", biggest->payload + biggest->options);
            w.evidence = fmt::format("a {}-byte segment with {} option bytes: full-sized for our MSS {}", biggest->payload,
                                     biggest->options, ours);
            w.marks.push_back({biggest->port, rel(biggest->at), "largest data segment"});
        } else if (cut) {
            const std::size_t mss = cut->payload + cut->options;
            w.value = std::int64_t(mss);
            w.marks.push_back({cut->port, rel(cut->at), "largest data segment, more data after it"});
            const std::string ev = fmt::format("segments of at most {} bytes + {} option bytes with more data after them; our SYN "
                                               "offered MSS {}, the peer's SYN-ACK {}",
                                               cut->payload, cut->options, ours, own);
            w.evidence = ev;
            if (peer_own > mss) {
                w.text = fmt::format("{} (clamped: we offered {})", mss, ours);
                clamp = fmt::format("MSS clamping on the path: the peer sends at most {}-byte segments (MSS {}) where our SYN offered "
                                    "{} and its own SYN-ACK offered {}; our SYN reached it with a lower MSS (port {}, +{})",
                                    cut->payload, mss, ours, own, cut->port, secs(rel(cut->at)));
            } else {
                w.text = fmt::format("{} (below ours, {}; the peer's own MSS {} may be the cap: a clamp cannot be told)", mss, ours, own);
            }
        } else {
            w.text = biggest ? fmt::format("not observable (no answer larger than one segment; the largest carried {} bytes)",
                                           biggest->payload)
                             : std::string("not observable (the peer sent no data)");
            w.evidence = "only a segment cut at the peer's MSS shows it: profile a port whose answer is larger than our MSS";
        }
    }

    // --- ISNs ----------------------------------------------------------------------------
    {
        auto& isn = row("isn.pattern", Experiment::Isn, fmt::format("ISNs of {} SYNs from separate ports", isn_.size()));
        std::vector<std::uint32_t> irs;
        std::string seen;
        for (const auto* f : isn_)
            if (opened(f) && f->connect_result().irs) {
                irs.push_back(f->connect_result().irs->raw());
                seen += fmt::format("{}[{}] {:#010x}", seen.empty() ? "" : ", ", f->tuple().local.port, f->connect_result().irs->raw());
                isn.marks.push_back(synack_mark(f));
            }
        if (irs.size() >= 2) {
            const std::string p = isn_pattern(irs);
            isn.value = p;
            isn.text = p == "step" ? fmt::format("step {}", irs[1] - irs[0]) : p;
            isn.evidence = seen;
        } else {
            isn.text = "not measured (fewer than two SYN-ACKs)";
        }
    }

    // --- closes --------------------------------------------------------------------------
    {
        auto& a = row("close.active", Experiment::CloseActive, "close when we FIN first");
        if (opened(active_) && active_->report().outcome != CloseOutcome::Pending) {
            const auto& rep = active_->report();
            a.value = std::string(to_string(rep.pattern));
            a.text = std::string(to_string(rep.pattern));
            if (rep.our_fin) a.marks.push_back(mark(active_, *rep.our_fin, "our FIN"));
            if (rep.peer_ack_of_fin) a.marks.push_back(mark(active_, *rep.peer_ack_of_fin, "peer ACK of our FIN"));
            if (rep.peer_fin) a.marks.push_back(mark(active_, *rep.peer_fin, "peer FIN"));
            a.evidence = rep.combined_fin_ack ? "the peer's FIN acknowledged ours (FIN/ACK combined)"
                         : rep.pattern == ClosePattern::FourWay ? "the peer ACKed our FIN, then sent its FIN"
                                                                : fmt::format("{}", to_string(rep.outcome));
        } else {
            unmeasured(a, active_);
        }
        auto& s = row("close.simultaneous", Experiment::CloseSimultaneous, "simultaneous close: the peer passes through CLOSING");
        if (opened(simultaneous_) && simultaneous_->report().outcome != CloseOutcome::Pending) {
            const auto& rep = simultaneous_->report();
            const bool clean = rep.pattern == ClosePattern::Simultaneous;
            s.value = clean ? ProfileValue{rep.peer_passed_closing} : ProfileValue{std::string(to_string(rep.pattern))};
            s.text = clean ? (rep.peer_passed_closing ? "yes" : "no") : std::string(to_string(rep.pattern));
            if (rep.peer_fin) s.marks.push_back(mark(simultaneous_, *rep.peer_fin, "peer FIN"));
            if (rep.our_fin) s.marks.push_back(mark(simultaneous_, *rep.our_fin, "our FIN (before our ACK)"));
            if (rep.peer_ack_of_fin) s.marks.push_back(mark(simultaneous_, *rep.peer_ack_of_fin, "peer ACK of our FIN"));
            s.evidence = rep.peer_passed_closing ? "it acknowledged our FIN before it had our ACK of its FIN"
                                                 : fmt::format("pattern {}", to_string(rep.pattern));
        } else {
            unmeasured(s, simultaneous_);
        }
        auto& ab = row("close.abort", Experiment::CloseAbort, "an in-window RST drops the connection");
        if (opened(abort_) && abort_->report().abort_confirmed) {
            const auto& rep = abort_->report();
            ab.value = *rep.abort_confirmed;
            ab.text = *rep.abort_confirmed ? "yes" : "no (it still answered in state)";
            ab.evidence = fmt::format("{} RST(s), {} probe(s); a probe after them drew {}", rep.abort_rsts_sent, rep.abort_probes_sent,
                                      *rep.abort_confirmed ? "a RST" : "an in-state answer");
            if (rep.end) ab.marks.push_back(mark(abort_, *rep.end, "end"));
        } else {
            unmeasured(ab, abort_);
        }
        auto& h = row("half_close.data_after_fin", Experiment::HalfClose, "keeps sending after our FIN (half-close)");
        if (opened(half_close_) && half_close_->report().outcome != CloseOutcome::Pending) {
            const auto& rep = half_close_->report();
            const bool sends = rep.bytes_after_our_fin > 0;
            h.value = sends;
            h.text = sends ? fmt::format("yes ({} bytes in {} segment(s))", rep.bytes_after_our_fin, rep.segments_after_our_fin) : "no";
            h.evidence = fmt::format("{} bytes before our FIN, {} after; then {}", rep.bytes_before_our_fin, rep.bytes_after_our_fin,
                                     to_string(rep.pattern));
            if (rep.our_fin) h.marks.push_back(mark(half_close_, *rep.our_fin, "our FIN"));
            if (rep.peer_fin) h.marks.push_back(mark(half_close_, *rep.peer_fin, "peer FIN"));
        } else {
            unmeasured(h, half_close_);
        }
    }

    // --- retransmission schedules ------------------------------------------------------
    std::optional<RetransmitRuns> synack_runs, fin_runs;
    auto schedule_rows = [&](const std::vector<const RetransmitFlow*>& flows, Experiment e, const std::string& prefix,
                             const std::string& what, const std::string& sysctl, std::optional<RetransmitRuns>& keep) {
        auto& count = row(prefix + ".retransmissions", e, fmt::format("{} retransmissions before giving up", what));
        auto& rto = row(prefix + ".initial_rto", e, fmt::format("{} initial retransmission timeout", what));
        if (flows.empty()) return;
        keep = judge_runs(flows, e == Experiment::SynAckSchedule ? RetxSegment::SynAck : RetxSegment::Fin, cfg_.tolerance);
        const auto& runs = *keep;
        if (!runs.judged || !runs.evidence) {
            count.text = rto.text = fmt::format("not measured (connect: {})", to_string(runs.connect));
            return;
        }
        const auto& fit = runs.fit;
        std::string times;
        for (auto c : runs.evidence->copies) times += fmt::format("{}{:.3f}", times.empty() ? "" : ", ", to_ms_f(c) / 1000.0);
        const std::string ev = fmt::format("{} copies at {} s ({} run(s) on ports{}); end {}; {}", runs.evidence->copies.size(), times,
                                           runs.measured.size(),
                                           [&] {
                                               std::string p;
                                               for (const auto* f : runs.measured) p += fmt::format(" {}", f->tuple().local.port);
                                               return p;
                                           }(),
                                           to_string(fit.end), to_string(*runs.judged));
        count.evidence = rto.evidence = ev;
        for (const auto* f : runs.measured)
            for (auto t : f->report().times) count.marks.push_back(mark(f, t, what));
        if (*runs.judged == ScheduleVerdict::Inconclusive) {
            // No value: what an inconclusive schedule shows changes from run to run (a
            // wrong figure is worse than none, and --compare must not list noise).
            count.text = fmt::format("inconclusive ({} retransmission(s) seen, end {})", fit.retransmissions, to_string(fit.end));
            rto.text = "inconclusive";
            return;
        }
        if (*runs.judged == ScheduleVerdict::NoRetransmission) {
            count.value = std::int64_t{0};
            count.text = "0 (no retransmission)";
        } else if (fit.copies_sent) {
            count.value = std::int64_t{*fit.copies_sent};
            count.text = fmt::format("{}", *fit.copies_sent);
        } else {
            count.text = fmt::format("at least {} (the end was not pinned: {})", fit.retransmissions, to_string(fit.end));
            count.value = fmt::format(">={}", fit.retransmissions);
        }
        if (fit.inferred_retries) count.linux = LinuxSetting{sysctl, *fit.inferred_retries};
        if (fit.initial_rto) {
            rto.value = *fit.initial_rto;
            rto.text = secs(*fit.initial_rto);
            rto.tolerance = cfg_.tolerance.for_gap(*fit.initial_rto);
        } else {
            rto.text = runs.evidence->copies.size() < 2 ? "not measured (one copy only)" : "not measured (no backoff model fits the gaps)";
        }
    };
    schedule_rows(synack_, Experiment::SynAckSchedule, "synack", "SYN-ACK", "tcp_synack_retries", synack_runs);
    schedule_rows(fin_, Experiment::FinSchedule, "fin", "FIN (peer closed first)", "tcp_orphan_retries", fin_runs);
    const bool cookies = synack_runs && synack_runs->judged == ScheduleVerdict::NoRetransmission;
    if (synack_runs && synack_runs->judged) {
        auto& sc = row("synack.syncookies", Experiment::SynAckSchedule, "SYN cookies suspected (no SYN-ACK retransmission)");
        if (*synack_runs->judged == ScheduleVerdict::Inconclusive) {
            // Neither: a schedule that could not be read says nothing about cookies.
            sc.text = "inconclusive (the SYN-ACK schedule was)";
        } else {
            sc.value = cookies;
            sc.text = cookies ? "yes" : "no";
            sc.evidence = cookies ? "one SYN-ACK, never retransmitted, the request gone before any RTO" : "the SYN-ACK was retransmitted";
            if (cookies) sc.linux = LinuxSetting{"tcp_syncookies", 2, true};
        }
    }

    // --- TIME-WAIT ------------------------------------------------------------------------
    if (find(Experiment::TimeWaitDuration)) {
        auto& d = row("time_wait.duration", Experiment::TimeWaitDuration, "TIME-WAIT duration");
        if (tw_duration_ && tw_duration_->duration()) {
            const auto dur = *tw_duration_->duration();
            d.value = dur;
            d.tolerance = std::max(duration_tolerance(dur), tw_->config().slack);
            const auto b = tw_duration_->bracket();
            d.text = secs(dur);
            if (b) d.evidence = fmt::format("alive at {}, gone by {} after its start ({}, {})", secs(b->first), secs(b->second),
                                            to_string(tw_->method()), to_string(tw_->check()));
            if (tw_duration_->report().tw_start) d.marks.push_back(mark(tw_duration_, *tw_duration_->report().tw_start, "TIME-WAIT start"));
        } else if (tw_duration_) {
            d.text = opened(tw_duration_) ? fmt::format("not measured ({})", to_string(tw_duration_->report().outcome)) : not_measured(tw_duration_);
        }
    }
    auto tw_row = [&](const TimeWaitFlow* f, Experiment e, std::string key, std::string behaviour) -> ProfileRow& {
        auto& w = row(std::move(key), e, std::move(behaviour));
        if (!opened(f)) {
            unmeasured(w, f);
            return w;
        }
        w.evidence = fmt::format("outcome {}{}", to_string(f->report().outcome),
                                 f->report().answer ? fmt::format(", answered {}", *f->report().answer) : "");
        if (f->report().tw_start) w.marks.push_back(mark(f, *f->report().tw_start, "TIME-WAIT start"));
        return w;
    };
    {
        auto& reuse = tw_row(tw_reuse_, Experiment::TimeWaitReuse, "time_wait.reuse", "a new SYN (higher ISN, newer TSval) reuses the 4-tuple");
        auto& isn = tw_row(tw_reuse_, Experiment::TimeWaitReuse, "time_wait.reuse_isn", "ISN of the reused connection: old SND.NXT + N");
        if (opened(tw_reuse_)) {
            const auto o = tw_reuse_->report().outcome;
            if (o == TwOutcome::Accepted || o == TwOutcome::Refused) {
                reuse.value = o == TwOutcome::Accepted;
                reuse.text = o == TwOutcome::Accepted ? "accepted" : "refused (ACK: TIME-WAIT kept)";
            } else {
                reuse.text = fmt::format("not measured ({})", to_string(o));
            }
            if (auto d = tw_reuse_->report().isn_distance) {
                isn.value = std::int64_t{*d};
                isn.text = fmt::format("{}{}", *d, *d == 65537 ? " (Linux: old SND.NXT + 65537)" : "");
            } else {
                isn.text = "not measured (no new connection)";
            }
        }
        auto& rst = tw_row(tw_rst_, Experiment::TimeWaitRst, "time_wait.rfc1337", "TIME-WAIT survives an in-window RST (RFC 1337)");
        if (opened(tw_rst_)) {
            const auto o = tw_rst_->report().outcome;
            if (o == TwOutcome::Killed || o == TwOutcome::Ignored) {
                const bool kept = o == TwOutcome::Ignored;
                rst.value = kept;
                rst.text = kept ? "yes (RST ignored)" : "no (the RST ended it)";
                rst.linux = LinuxSetting{"tcp_rfc1337", kept ? 1 : 0};
            } else {
                rst.text = fmt::format("not measured ({})", to_string(o));
            }
        }
        auto& fin = tw_row(tw_fin_, Experiment::TimeWaitFin, "time_wait.fin_reack", "TIME-WAIT re-ACKs our FIN sent again");
        if (opened(tw_fin_)) {
            const auto o = tw_fin_->report().outcome;
            if (o == TwOutcome::ReAcked || o == TwOutcome::NoAnswer || o == TwOutcome::NoTimeWait) {
                fin.value = o == TwOutcome::ReAcked;
                fin.text = o == TwOutcome::ReAcked ? "yes" : fmt::format("no ({})", to_string(o));
            } else {
                fin.text = fmt::format("not measured ({})", to_string(o));
            }
        }
    }

    // --- FIN-WAIT-2 ------------------------------------------------------------------------
    if (fw2_) {
        auto& w = row("fin_wait_2.lifetime", Experiment::FinWait2, "FIN-WAIT-2 lifetime (we never FIN)");
        const auto b = fw2_->engine().bracket();
        std::optional<Duration> rtt;
        for (const auto* f : fw2_flows_)
            if (!rtt && f->connect_result().rtt) rtt = f->connect_result().rtt;
        if (b.closed() && b.consistent()) {
            const auto est = *b.estimate();
            w.value = est;
            w.text = fmt::format("{} (between {} and {})", secs(est), secs(*b.alive), secs(*b.upper()));
            w.tolerance = std::max(duration_tolerance(est), *b.width());
            w.evidence = fmt::format("alive at {}, {} at {} ({} connections)", secs(*b.alive), b.end_confirmed() ? "gone (RST)" : "silent",
                                     secs(*b.upper()), fw2_->engine().connections());
            if (b.end_confirmed())
                if (auto n = infer_linux_seconds_in(*b.alive, *b.upper(), 2 * rtt.value_or(Duration::zero()) + 10ms))
                    w.linux = LinuxSetting{"tcp_fin_timeout", *n};
            // A mark is a capture time since the profile's start (the report adds the trace's
            // offset once): the probe that drew the RST went out `offset` after that
            // connection entered FIN-WAIT-2, not `offset` after the start.
            if (const auto* g = fw2_->first_gone())
                for (const auto* f : fw2_flows_)
                    if (f->tuple().local.port == g->port && f->state_start())
                        w.marks.push_back(mark(f, *f->state_start() + g->offset,
                                               fmt::format("probe answered by a RST, {} into FIN-WAIT-2", secs(g->offset))));
        } else if (b.alive && !b.upper() && *b.alive + 1s >= fw2_->engine().config().max) {
            w.value = std::string("no bound");
            w.text = fmt::format("no bound seen (alive at {})", secs(*b.alive));
            w.evidence = "the peer kept FIN-WAIT-2 to the end (shutdown() rather than close()?)";
        } else {
            w.text = fw2_->members().empty() ? "not measured (no connection reached FIN-WAIT-2)" : "inconclusive";
            for (const auto& f : fw2_->failures()) w.evidence += (w.evidence.empty() ? "" : "; ") + f;
        }
    }

    // --- keepalive and idle (only when asked) -----------------------------------------------
    if (keepalive_) {
        auto& k = row("keepalive.idle", Experiment::Keepalive, "keepalive: idle time before the first probe");
        auto& ki = row("keepalive.interval", Experiment::Keepalive, "keepalive: interval between probes");
        auto& kn = row("keepalive.probes", Experiment::Keepalive, "keepalive: unanswered probes before giving up");
        if (!opened(keepalive_)) {
            for (auto* x : {&k, &ki, &kn}) unmeasured(*x, keepalive_);
        } else {
            const auto fig = keepalive_->figures();
            const Duration tol = 2 * keepalive_->connect_result().rtt.value_or(Duration::zero()) + 10ms;
            const auto& rep = keepalive_->report();
            const std::string ev = fmt::format("{} probe(s), end {}", rep.probes.size(), to_string(rep.end));
            for (auto* x : {&k, &ki, &kn}) x->evidence = ev;
            for (const auto& p : rep.probes) k.marks.push_back(mark(keepalive_, p.t, "keepalive probe"));
            if (fig.idle) {
                k.value = *fig.idle;
                k.text = secs(*fig.idle);
                k.tolerance = duration_tolerance(*fig.idle);
                if (auto n = infer_linux_seconds(*fig.idle, tol)) k.linux = LinuxSetting{"tcp_keepalive_time", *n};
            } else {
                k.value = std::string("none");
                k.text = fmt::format("no probe within {}", secs(cfg_.keepalive_max));
            }
            if (fig.interval) {
                ki.value = *fig.interval;
                ki.text = secs(*fig.interval);
                ki.tolerance = duration_tolerance(*fig.interval);
                if (auto n = infer_linux_seconds(*fig.interval, tol)) ki.linux = LinuxSetting{"tcp_keepalive_intvl", *n};
            } else {
                ki.text = "not measured";
            }
            if (rep.end == KeepaliveEnd::Rst || rep.end == KeepaliveEnd::Silence) {
                kn.value = std::int64_t{fig.unanswered};
                kn.text = fmt::format("{}", fig.unanswered);
                if (rep.end == KeepaliveEnd::Rst) kn.linux = LinuxSetting{"tcp_keepalive_probes", fig.unanswered};
            } else {
                kn.text = fmt::format("not measured (end {})", to_string(rep.end));
            }
        }
    }
    if (idle_) {
        auto& w = row("path.idle_timeout", Experiment::Idle, "the path's idle timeout (NAT, firewall)");
        const auto b = idle_->engine().bracket();
        if (b.closed() && b.consistent()) {
            w.value = *b.estimate();
            w.text = fmt::format("{} (between {} and {})", secs(*b.estimate()), secs(*b.alive), secs(*b.upper()));
            w.tolerance = std::max(duration_tolerance(*b.estimate()), *b.width());
            w.evidence = fmt::format("{} connections probed once each", idle_->engine().probes());
        } else if (b.alive && !b.upper()) {
            w.value = std::string("none");
            w.text = fmt::format("none up to {}", secs(*b.alive));
        } else {
            w.text = "inconclusive";
        }
    }

    // --- middlebox signs --------------------------------------------------------------------
    {
        // Per connection: the SYN-ACK's TTL against its data's. A RST against the TTLs of
        // the peer's data on every connection (or, with no data anywhere, its SYN-ACKs'):
        // behind a SYN proxy the server's own RST has the data's TTL, not the proxy's.
        std::vector<std::uint16_t> ports;
        std::vector<std::uint8_t> data_ttls, synack_ttls;
        for (const auto& m : *ttls_) {
            if (std::find(ports.begin(), ports.end(), m.port) == ports.end()) ports.push_back(m.port);
            auto& set = m.kind == TtlMark::Kind::Data ? data_ttls : synack_ttls;
            if (m.kind != TtlMark::Kind::Rst && std::find(set.begin(), set.end(), m.ttl) == set.end()) set.push_back(m.ttl);
        }
        const auto& peer_ttls = data_ttls.empty() ? synack_ttls : data_ttls;
        std::optional<std::string> syn_vs_data, rst_foreign;
        for (auto p : ports) {
            std::optional<std::uint8_t> syn, data;
            for (const auto& m : *ttls_)
                if (m.port == p) {
                    if (m.kind == TtlMark::Kind::SynAck && !syn) syn = m.ttl;
                    if (m.kind == TtlMark::Kind::Data && !data) data = m.ttl;
                }
            for (const auto& m : *ttls_) {
                if (m.port != p) continue;
                if (m.kind == TtlMark::Kind::Data && syn && m.ttl != *syn && !syn_vs_data)
                    syn_vs_data = fmt::format("SYN-ACK TTL {} but data TTL {} on port {} (+{}): something in front answers the "
                                              "handshake (SYN proxy, load balancer)",
                                              *syn, m.ttl, p, secs(rel(m.t)));
                if (m.kind == TtlMark::Kind::Rst && !peer_ttls.empty() &&
                    std::find(peer_ttls.begin(), peer_ttls.end(), m.ttl) == peer_ttls.end() && !rst_foreign)
                    rst_foreign = fmt::format("RST with TTL {} where the peer's segments have TTL {} on port {} (+{}): a firewall "
                                              "or load balancer resets on the peer's behalf",
                                              m.ttl, data ? *data : syn ? *syn : peer_ttls.front(), p, secs(rel(m.t)));
            }
        }
        if (syn_vs_data) r.middlebox.push_back(*syn_vs_data);
        // No host offers a zero window in its SYN-ACK (it could not be sent to); Linux's
        // SYN proxy (nf_synproxy) does, and opens the window once the server has answered.
        if (synack && synack->window == 0)
            r.middlebox.push_back(fmt::format("SYN-ACK with window 0 on port {} (+{}): a SYN proxy answers the handshake and opens "
                                              "the window once the server behind it has (Linux nf_synproxy)",
                                              full_->tuple().local.port, secs(synack_mark(full_).at)));
        if (clamp) r.middlebox.push_back(*clamp);
        if (rst_foreign) r.middlebox.push_back(*rst_foreign);
        if (cookies)
            r.middlebox.push_back("the SYN-ACK was never retransmitted: SYN cookies (tcp_syncookies=2, or a SYN flood) or a SYN proxy in front");
    }

    // --- stack family -----------------------------------------------------------------------
    {
        FamilyMatch& fam = r.family;
        const ScheduleFit* sa = synack_runs && synack_runs->judged ? &synack_runs->fit : nullptr;
        const ScheduleFit* fi = fin_runs && fin_runs->judged ? &fin_runs->fit : nullptr;
        if (sa && !sa->family.empty()) fam.family = sa->family;
        else if (fi && !fi->family.empty()) fam.family = fi->family;
        auto schedule = [&](const ScheduleFit* f, const std::string& what) {
            if (!f) return;
            if (f->family == fam.family && !fam.family.empty()) {
                for (const auto& m : f->family_matched) fam.matched.push_back(what + ": " + m);
            } else if (!f->family.empty()) {
                fam.mismatched.push_back(fmt::format("{} schedule fits {}", what, f->family));
            } else {
                for (const auto& m : f->linux_mismatch) fam.mismatched.push_back(what + ": " + m);
            }
        };
        schedule(sa, "SYN-ACK");
        schedule(fi, "FIN");
        if (fam.family == "Linux") {
            if (const auto* d = r.row("time_wait.duration"); d && std::holds_alternative<Duration>(d->value)) {
                const auto v = std::get<Duration>(d->value);
                // 60 s, fired up to 512 jiffies late (2.048 s at HZ=250), within the bracket's width.
                if (v >= 60s - d->tolerance && v <= 62048ms + d->tolerance)
                    fam.matched.push_back(fmt::format("TIME-WAIT {} (Linux: 60 s)", secs(v)));
                else
                    fam.mismatched.push_back(fmt::format("TIME-WAIT {} (Linux: 60 s)", secs(v)));
            }
            if (const auto* i = r.row("time_wait.reuse_isn"); i && std::holds_alternative<std::int64_t>(i->value)) {
                if (std::get<std::int64_t>(i->value) == 65537) fam.matched.push_back("reused 4-tuple's ISN = old SND.NXT + 65537");
                else fam.mismatched.push_back(fmt::format("reused 4-tuple's ISN = old SND.NXT + {} (Linux: 65537)", std::get<std::int64_t>(i->value)));
            }
            if (const auto* w = r.row("fin_wait_2.lifetime"); w && w->linux) fam.matched.push_back(fmt::format("FIN-WAIT-2 ends by a RST at tcp_fin_timeout={}", w->linux->value));
        }
        if (fam.family.empty() && !sa && !fi) fam.mismatched.push_back("no retransmission schedule was measured");
    }
    // A sysctl names a Linux knob: only where the answers are Linux's (DESIGN §3b: a wrong
    // inference is a failure). Signs (syncookies suspected) stay, marked as such.
    if (r.family.family != "Linux") {
        bool stripped = false;
        for (auto& w : r.rows)
            if (w.linux && !w.linux->suspected) {
                w.linux.reset();
                stripped = true;
            }
        if (stripped) r.notes.push_back("no Linux setting is named: the retransmission schedules are not Linux's");
    }
    return r;
}

}  // namespace tcpprobe::probe
