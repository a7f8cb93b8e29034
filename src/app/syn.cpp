// SYN planning (see syn.hpp). Options the user typed come first in Linux's order
// (mss, sackOK, TS, nop, wscale); raw --option values follow in the order given.
#include "tcpprobe/app/syn.hpp"

#include <fmt/format.h>

#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/route.hpp"

namespace tcpprobe::app {

SynPlan plan_syn(const SynOptions& o) {
    SynPlan p;
    if (o.mss) {
        if (*o.mss > 65535) throw io::UsageError(fmt::format("--mss: {} is not in 0..65535", *o.mss));
        p.mss = static_cast<std::uint16_t>(*o.mss);
    }
    p.no_mss = o.no_mss;
    if (o.mss && o.no_mss) throw io::UsageError("--mss and --no-mss cannot be combined");
    if (o.wscale) {
        if (*o.wscale > 14) throw io::UsageError(fmt::format("--wscale: {} is above 14, the largest shift RFC 7323 allows", *o.wscale));
        p.wscale = static_cast<std::uint8_t>(*o.wscale);
    }
    p.sack = o.sack;
    p.ts = o.ts;
    for (const auto& r : o.raw_options) p.raw.push_back(parse_raw_option(r));
    if (o.window) {
        if (*o.window > 65535) throw io::UsageError(fmt::format("--window: {} is not in 0..65535", *o.window));
        p.window = static_cast<std::uint16_t>(*o.window);
    }
    if (o.ttl < 1 || o.ttl > 255) throw io::UsageError(fmt::format("--ttl: {} is not in 1..255", o.ttl));
    if (o.tos > 255) throw io::UsageError(fmt::format("--tos: {} is not in 0..255", o.tos));
    p.ip.ttl = static_cast<std::uint8_t>(o.ttl);
    p.ip.tos = static_cast<std::uint8_t>(o.tos);
    p.ip.df = o.df;
    if (o.ip_id) {
        p.ip.id = static_cast<std::uint16_t>(parse_number(*o.ip_id, "--ip-id", 0, 65535));
        p.ip_id_set = true;
    }
    if (o.isn) p.isn = wire::Seq{static_cast<std::uint32_t>(parse_number(*o.isn, "--isn", 0, 0xFFFFFFFFu))};
    if (o.sport) {
        if (*o.sport < 1 || *o.sport > 65535) throw io::UsageError(fmt::format("--sport: {} is not in 1..65535", *o.sport));
        p.sport = static_cast<std::uint16_t>(*o.sport);
    }
    if (!o.flags.empty()) p.extra_flags = parse_flags(o.flags);
    // The whole list must fit; check with the largest MSS value (its size does not vary).
    auto size = wire::encoded_size(syn_option_list(p, 1460));
    if (size > wire::max_option_bytes)
        throw io::UsageError(fmt::format("TCP options: {} bytes requested, at most 40 fit in a TCP header", size));
    return p;
}

wire::OptionList syn_option_list(const SynPlan& p, std::uint16_t default_mss) {
    std::optional<std::uint16_t> mss = p.no_mss ? std::nullopt : std::optional<std::uint16_t>(p.mss.value_or(default_mss));
    wire::OptionList l = tcb::default_syn_options(mss, p.wscale, p.sack, p.ts);
    l.insert(l.end(), p.raw.begin(), p.raw.end());
    return l;
}

tcb::TcbConfig make_tcb_config(const SynPlan& p, wire::FourTuple tuple, const std::string& interface,
                               io::Random& rng) {
    tcb::TcbConfig c;
    c.tuple = tuple;
    c.iss = p.isn.value_or(wire::Seq{static_cast<std::uint32_t>(rng())});
    int mtu = io::interface_mtu(interface).value_or(1500);
    auto default_mss = static_cast<std::uint16_t>(std::clamp(mtu - 40, 88, 65495));
    c.syn_options = syn_option_list(p, default_mss);
    c.mtu = static_cast<std::uint32_t>(std::max(mtu, 68));  // no segment of ours is larger
    // Linux's initial receive window for a 1460-byte MSS; scaled receive windows grow it.
    c.rcv_wnd = p.window.value_or(64240);
    if (p.wscale) c.rcv_wnd = std::uint32_t{p.window.value_or(64240)} << *p.wscale;
    c.syn_window = p.window.value_or(64240);
    c.ip = p.ip;
    if (!p.ip_id_set) c.ip.id = static_cast<std::uint16_t>(rng());
    c.extra_syn_flags = p.extra_flags;
    c.ts_offset = static_cast<std::uint32_t>(rng());
    // Our FIN and data are retried as a real TCP would: from the RTT the handshake measured.
    c.rto.from_rtt = true;
    // Our SYN as Linux 6.7+ sends its own (tcp_syn_linear_timeouts = 4): 1 s apart, so that
    // the default 5 s --timeout holds five SYNs (0, 1, 2, 3, 4 s with --retries 4), not
    // three (0, 1, 3 s). At 10 % loss each way all of them fail with 0.19^5 = 0.025 %
    // instead of 0.7 %.
    c.rto.syn_linear = 4;
    return c;
}

}  // namespace tcpprobe::app
