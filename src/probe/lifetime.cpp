// The lifetime engine (see lifetime.hpp): plans one probe per connection in a coarse
// and a fine round and reads the bracket from their results.
#include "tcpprobe/probe/lifetime.hpp"

#include <algorithm>

namespace tcpprobe::probe {

std::string_view to_string(Liveness l) {
    switch (l) {
        case Liveness::Alive: return "alive";
        case Liveness::Gone: return "gone";
        case Liveness::Silent: return "silent";
    }
    return "?";
}

std::string_view to_string(Round r) {
    switch (r) {
        case Round::Coarse: return "coarse";
        case Round::Fine: return "fine";
    }
    return "?";
}

std::optional<Duration> LifetimeBracket::width() const {
    if (!closed()) return std::nullopt;
    return *upper() - *alive;
}

std::optional<Duration> LifetimeBracket::estimate() const {
    if (!closed()) return std::nullopt;
    return *alive + (*upper() - *alive) / 2;
}

namespace {

// The fine round aims a little under the resolution: its probes go out a few
// milliseconds after their planned offsets, which widens the bracket they leave.
Duration fine_target(const LifetimeConfig& cfg) { return cfg.resolution * 95 / 100; }

unsigned fine_slots_for(const LifetimeConfig& cfg, Duration width) {
    const Duration target = fine_target(cfg);
    if (width <= cfg.resolution || target <= Duration::zero()) return 0;
    const auto parts = static_cast<unsigned>((width + target - Duration{1}) / target);  // ceil
    return std::min(cfg.max_fine, parts > 0 ? parts - 1 : 0u);
}

}  // namespace

std::vector<Duration> LifetimeEngine::coarse_offsets(const LifetimeConfig& cfg) {
    std::vector<Duration> out;
    // Bounded: every step is at least min_step (or 1 ms), and the offsets stop at max.
    const Duration floor = std::max(cfg.min_step, Duration{std::chrono::milliseconds{1}});
    for (Duration o = std::min(cfg.first, cfg.max); o > Duration::zero();) {
        out.push_back(o);
        if (o >= cfg.max) break;
        const Duration step = std::max(floor, o * cfg.growth_pct / 100);
        o = std::min(o + step, cfg.max);
    }
    return out;
}

unsigned LifetimeEngine::fine_capacity(const LifetimeConfig& cfg) {
    const auto offsets = coarse_offsets(cfg);
    unsigned most = 0;
    Duration lower = Duration::zero();
    for (Duration o : offsets) {
        most = std::max(most, fine_slots_for(cfg, o - lower));
        lower = o;
    }
    return most;
}

LifetimeEngine::LifetimeEngine(LifetimeConfig cfg) : cfg_(cfg) {
    for (Duration o : coarse_offsets(cfg_)) coarse_.push_back({o});
    if (coarse_.empty()) stage_ = Stage::Done;
}

unsigned LifetimeEngine::slots(Round r) const { return static_cast<unsigned>(round(r).size()); }

LifetimeEngine::SlotPlan LifetimeEngine::plan(Round r, unsigned slot) const {
    const auto& slots = round(r);
    if (r == Round::Fine && stage_ == Stage::Coarse) return {Action::Wait, {}};
    if (slot >= slots.size() || slots[slot].state != SlotState::Pending || stage_ == Stage::Done)
        return {Action::Skip, {}};
    return {Action::Probe, slots[slot].planned};
}

LifetimeEngine::SlotAction LifetimeEngine::slot_action(Round r, unsigned slot) const {
    switch (plan(r, slot).action) {
        case Action::Wait: return SlotAction::Wait;
        case Action::Probe: return SlotAction::Connect;
        case Action::Skip: return SlotAction::Skip;
    }
    return SlotAction::Skip;
}

void LifetimeEngine::record(Round r, unsigned slot, Duration offset, Liveness result) {
    auto& slots = round(r);
    if (slot >= slots.size() || slots[slot].state == SlotState::Recorded || slots[slot].state == SlotState::Dropped)
        return;  // each slot is probed once; a second answer is ignored
    slots[slot].state = SlotState::Recorded;
    slots[slot].result = result;
    samples_.push_back({r, slot, offset, result});
    advance();
}

void LifetimeEngine::drop(Round r, unsigned slot) {
    auto& slots = round(r);
    if (slot >= slots.size() || slots[slot].state == SlotState::Recorded) return;
    slots[slot].state = SlotState::Dropped;
    advance();
}

void LifetimeEngine::observe(Duration offset, Liveness result) { samples_.push_back({std::nullopt, 0, offset, result}); }

void LifetimeEngine::stop() {
    for (auto* slots : {&coarse_, &fine_})
        for (auto& s : *slots)
            if (s.state == SlotState::Pending) s.state = SlotState::Skipped;
    stage_ = Stage::Done;
}

// A round has its answer when, walking its slots in offset order, one was found gone
// (or two in a row were silent after the last alive one) and every slot before it has
// reported; the slots after it are then not needed. Or when every slot has reported.
bool LifetimeEngine::round_complete(std::vector<Slot>& slots) const {
    unsigned silent_run = 0;
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const Slot& s = slots[i];
        if (s.state == SlotState::Pending) return false;
        if (s.state != SlotState::Recorded) continue;
        bool end = false;
        switch (s.result) {
            case Liveness::Alive: silent_run = 0; break;
            case Liveness::Gone: end = true; break;
            case Liveness::Silent: end = ++silent_run >= 2; break;
        }
        if (end) {
            for (std::size_t j = i + 1; j < slots.size(); ++j)
                if (slots[j].state == SlotState::Pending) slots[j].state = SlotState::Skipped;
            return true;
        }
    }
    return true;
}

void LifetimeEngine::plan_fine() {
    const LifetimeBracket b = bracket();
    const Duration lower = b.alive.value_or(Duration::zero());
    if (!b.upper() || *b.upper() <= lower) {
        stage_ = Stage::Done;  // longer than max, inconsistent, or nothing to cut
        return;
    }
    const Duration width = *b.upper() - lower;
    // No more slots than fine_capacity: callers provision that many connections. Coarse
    // slots lost in between (a connection that never got its TIME-WAIT) can leave a
    // bracket wider than one coarse gap; a slot with no connection would stay pending and
    // the round would never end. The bracket is then cut as finely as the slots allow.
    const unsigned n = std::min(fine_slots_for(cfg_, width), fine_capacity(cfg_));
    if (n == 0) {
        stage_ = Stage::Done;
        return;
    }
    for (unsigned j = 1; j <= n; ++j) fine_.push_back({lower + width * j / (n + 1)});
    stage_ = Stage::Fine;
}

void LifetimeEngine::advance() {
    if (stage_ == Stage::Coarse && round_complete(coarse_)) plan_fine();
    if (stage_ == Stage::Fine && round_complete(fine_)) stage_ = Stage::Done;
}

LifetimeBracket LifetimeEngine::bracket() const {
    LifetimeBracket b;
    for (const auto& s : samples_) {
        if (s.result == Liveness::Alive && (!b.alive || s.offset > *b.alive)) b.alive = s.offset;
        if (s.result == Liveness::Gone && (!b.gone || s.offset < *b.gone)) b.gone = s.offset;
    }
    for (const auto& s : samples_)
        if (s.result == Liveness::Silent && (!b.alive || s.offset > *b.alive) && (!b.silent || s.offset < *b.silent))
            b.silent = s.offset;
    return b;
}

unsigned LifetimeEngine::probes() const {
    unsigned n = 0;
    for (const auto* slots : {&coarse_, &fine_})
        for (const auto& s : *slots) n += s.state == SlotState::Recorded;
    return n;
}

unsigned LifetimeEngine::connections() const {
    unsigned n = 0;
    for (const auto* slots : {&coarse_, &fine_})
        for (const auto& s : *slots) n += s.state == SlotState::Recorded || s.state == SlotState::Dropped;
    return n;
}

}  // namespace tcpprobe::probe
