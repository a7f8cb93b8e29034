// The lifetime engine: how long does a remote state last (the peer's TIME-WAIT or
// FIN-WAIT-2, a middlebox's idle timeout for a path) when the probe that tells whether
// it is still there may also restart it (DESIGN §3b)?
//
// Such a probe can be trusted once per connection. So the measurement uses several
// connections that entered the state at known instants (each its own), probes each one
// exactly once, at its own offset since it entered the state, and reads the lifetime
// from which of them were still there:
//
//   coarse round  K1 connections, probed at offsets spread over [0, max]: 2 s apart
//                 at first, then 20 % of the offset apart (2, 4, 6, 8, 10, 12, 14.4,
//                 17.3, 20.7, ... s). The round ends at the first connection found gone
//                 (or the second silent one in a row): the later ones are never probed.
//   fine round    if the bracket [longest alive, shortest gone] is wider than the
//                 resolution, fresh connections (they enter the state once the coarse
//                 round has ended) are probed at offsets spread evenly inside it, as many
//                 as it takes to cut it to the resolution.
//
// The defaults and why: with a resolution of 2 s, a 2 s floor on the coarse spacing
// gives the 2 s bracket outright below 12 s; above, a spacing of 20 % of the offset
// needs only 20 coarse connections up to 150 s (a fixed 2 s spacing would need 75), and
// the widest coarse bracket (21.6 s, just under 150 s) is cut below 2 s by 11 fine
// connections. Time: the coarse round ends at its first gone offset, at most 1.2 × L
// for a lifetime L >= 10 s; the fine round starts then and ends at its first gone
// offset, a fine step above L. Simulated for L = 10 to 120 s with a 1 s set-up of the
// fine connections (lifetime_test.cpp), the run takes at most 2.37 × L (at L ≈ 12 s),
// and never more than 27 connections; lifetimes just under a coarse offset need no fine
// round at all. A growth of 25 % leaves almost no room for a slow set-up (2.46 × L), 30 %
// breaks the budget, 15 % costs four more coarse connections. `max` is 150 s: a 2MSL of
// two minutes (DESIGN §3b) and room for timer slack.
//
// A probe's answer is one of alive / gone / silent. Silence is what the caller reports
// after its own retries (loss) and any confirming probe; it is not taken for gone: the
// bracket's upper end is the shortest confirmed gone offset, and only when none exists
// the first silence after the longest alive offset, flagged as unconfirmed.
//
// Offsets are what the caller measured (capture times), not what was planned: a
// connection may be probed later than asked, and retries move a "gone" later. The
// engine is pure: no clock, no I/O; the caller feeds results and asks for plans.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "tcpprobe/time.hpp"

namespace tcpprobe::probe {

enum class Liveness : std::uint8_t { Alive, Gone, Silent };
std::string_view to_string(Liveness l);

enum class Round : std::uint8_t { Coarse, Fine };
std::string_view to_string(Round r);

struct LifetimeConfig {
    Duration max = std::chrono::seconds{150};       ///< the longest lifetime looked for
    Duration first = std::chrono::seconds{2};       ///< offset of the first coarse probe
    Duration min_step = std::chrono::seconds{2};    ///< floor of the coarse spacing
    unsigned growth_pct = 20;                       ///< coarse spacing: this share of the offset
    Duration resolution = std::chrono::seconds{2};  ///< widest bracket the fine round leaves
    unsigned max_fine = 16;                         ///< cap on fine-round connections
};

/// One observation: the state was alive / gone / silent `offset` after it began.
struct LifetimeSample {
    std::optional<Round> round;  ///< nullopt: evidence from outside the rounds
    unsigned slot = 0;
    Duration offset{};
    Liveness result = Liveness::Silent;
};

struct LifetimeBracket {
    std::optional<Duration> alive;   ///< longest offset at which it was alive
    std::optional<Duration> gone;    ///< shortest offset at which it was confirmed gone
    std::optional<Duration> silent;  ///< shortest silent offset above `alive` (none if unknown)
    /// The upper end: the shortest confirmed gone, else the first silence above `alive`.
    std::optional<Duration> upper() const { return gone ? gone : silent; }
    bool end_confirmed() const { return gone.has_value(); }
    /// Every alive offset lies below every gone offset.
    bool consistent() const { return !alive || !gone || *alive < *gone; }
    /// Both ends known and in order.
    bool closed() const { return alive && upper() && *alive < *upper(); }
    std::optional<Duration> width() const;
    /// The midpoint of a closed bracket.
    std::optional<Duration> estimate() const;
};

class LifetimeEngine {
public:
    enum class Stage { Coarse, Fine, Done };
    enum class Action { Wait, Probe, Skip };
    struct SlotPlan {
        Action action = Action::Wait;
        Duration offset{};  ///< with Probe: when, since the slot's connection entered the state
    };

    explicit LifetimeEngine(LifetimeConfig cfg = {});

    /// The coarse offsets for `cfg` (the coarse round's slots, in order).
    static std::vector<Duration> coarse_offsets(const LifetimeConfig& cfg);
    /// The most fine slots any coarse bracket of `cfg` can need (connections to set aside).
    static unsigned fine_capacity(const LifetimeConfig& cfg);

    const LifetimeConfig& config() const { return cfg_; }
    Stage stage() const { return stage_; }
    /// Slots of a round: the coarse plan's size; the fine round's once it is planned.
    unsigned slots(Round r) const;
    /// What slot `slot` of round `r` should do now: wait (the round is not planned yet),
    /// probe at an offset, or skip (not needed, or the measurement is over).
    SlotPlan plan(Round r, unsigned slot) const;
    /// The same for the connection of a slot: wait, connect (a probe is planned), or skip.
    enum class SlotAction { Wait, Connect, Skip };
    SlotAction slot_action(Round r, unsigned slot) const;

    /// The result of a slot's one probe, at the offset it was measured.
    void record(Round r, unsigned slot, Duration offset, Liveness result);
    /// A slot that produced no measurement (its connection never entered the state).
    void drop(Round r, unsigned slot);
    /// Evidence from elsewhere (e.g. a connection's first probe): counts for the bracket.
    void observe(Duration offset, Liveness result);
    /// No more probes wanted (the caller has its answer): every pending slot skips.
    void stop();

    LifetimeBracket bracket() const;
    const std::vector<LifetimeSample>& samples() const { return samples_; }
    /// Slots probed (each once) and slots given a connection (probed or dropped).
    unsigned probes() const;
    unsigned connections() const;

private:
    enum class SlotState : std::uint8_t { Pending, Recorded, Dropped, Skipped };
    struct Slot {
        Duration planned{};
        SlotState state = SlotState::Pending;
        Liveness result = Liveness::Silent;
    };
    std::vector<Slot>& round(Round r) { return r == Round::Coarse ? coarse_ : fine_; }
    const std::vector<Slot>& round(Round r) const { return r == Round::Coarse ? coarse_ : fine_; }
    /// Ends the current round when its answer is in, then plans the next stage.
    void advance();
    bool round_complete(std::vector<Slot>& slots) const;
    void plan_fine();

    LifetimeConfig cfg_;
    Stage stage_ = Stage::Coarse;
    std::vector<Slot> coarse_, fine_;
    std::vector<LifetimeSample> samples_;
};

}  // namespace tcpprobe::probe
