// Turning the SYN options of the command line into a TCB configuration. Validation
// happens here, before anything is opened or sent.
#pragma once

#include <optional>
#include <string>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/io/random.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::app {

struct SynPlan {
    std::optional<std::uint16_t> mss;     ///< unset: from the interface MTU (unless --no-mss)
    bool no_mss = false;
    std::optional<std::uint8_t> wscale;
    bool sack = false;
    bool ts = false;
    wire::OptionList raw;                 ///< --option values, in order, after the typed ones
    std::optional<std::uint16_t> window;
    wire::IpFields ip;
    bool ip_id_set = false;
    std::optional<wire::Seq> isn;
    std::optional<std::uint16_t> sport;
    std::uint16_t extra_flags = 0;
};

/// Validates and converts; throws io::UsageError (exit 64).
SynPlan plan_syn(const SynOptions& o);

/// The option list the SYN will carry, given the MSS to use when none was set.
wire::OptionList syn_option_list(const SynPlan& p, std::uint16_t default_mss);

/// The TCB of one flow: ISN, first IP ID and timestamp offset drawn from `rng` unless the
/// plan fixes them (each flow draws its own), the MSS and MTU from the interface.
tcb::TcbConfig make_tcb_config(const SynPlan& p, wire::FourTuple tuple, const std::string& interface,
                               io::Random& rng);

}  // namespace tcpprobe::app
