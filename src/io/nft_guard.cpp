// The scoped RST guard. One atomic command buffer creates a table with `flags owner`:
// the kernel deletes an owned table when the netlink socket that created it closes, so
// nothing is left behind after a normal exit, an error, Ctrl-C or SIGKILL.
#include <nftables/libnftables.h>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/nft_guard.hpp"

namespace tcpprobe::io {

std::string rst_guard_ruleset(const std::string& table, wire::Ipv4Addr local,
                              const std::vector<std::uint16_t>& local_ports, const std::vector<wire::Ipv4Addr>& remotes,
                              std::uint32_t mark) {
    std::string ports, daddrs;
    for (auto p : local_ports) ports += fmt::format("{}{}", ports.empty() ? "" : ", ", p);
    for (auto r : remotes) daddrs += fmt::format("{}{}", daddrs.empty() ? "" : ", ", wire::to_string(r));
    // Priority raw (-300) runs before conntrack and any filter chain a user may have.
    return fmt::format(
        "table ip {table} {{\n"
        "  flags owner\n"
        "  chain rst_guard {{\n"
        "    type filter hook output priority raw; policy accept;\n"
        "    ip saddr {local} ip daddr {{ {remotes} }} tcp sport {{ {ports} }} tcp flags & rst == rst meta mark != {mark:#x} drop\n"
        "  }}\n"
        "}}\n",
        fmt::arg("table", table), fmt::arg("local", wire::to_string(local)), fmt::arg("remotes", daddrs),
        fmt::arg("ports", ports), fmt::arg("mark", mark));
}

std::string listen_ruleset(const std::string& table, std::optional<wire::Ipv4Addr> local, std::uint16_t port,
                           std::uint32_t mark) {
    std::string daddr = local ? fmt::format("ip daddr {} ", wire::to_string(*local)) : "";
    std::string saddr = local ? fmt::format("ip saddr {} ", wire::to_string(*local)) : "";
    return fmt::format(
        "table ip {table} {{\n"
        "  flags owner\n"
        "  chain syn_drop {{\n"
        "    type filter hook prerouting priority raw; policy accept;\n"
        "    {daddr}tcp dport {port} tcp flags & (syn | ack | rst) == syn drop\n"
        "  }}\n"
        "  chain rst_guard {{\n"
        "    type filter hook output priority raw; policy accept;\n"
        "    {saddr}tcp sport {port} tcp flags & rst == rst meta mark != {mark:#x} drop\n"
        "  }}\n"
        "}}\n",
        fmt::arg("table", table), fmt::arg("daddr", daddr), fmt::arg("saddr", saddr), fmt::arg("port", port),
        fmt::arg("mark", mark));
}

std::string guard_table_name(long pid, std::uint32_t suffix) { return fmt::format("tcpprobe_{}_{:08x}", pid, suffix); }

NftFailure classify_nft_failure(std::string_view nft_error, bool table_exists) {
    if (nft_error.find("File exists") != std::string_view::npos) return NftFailure::TableExists;
    if (nft_error.find("Operation not permitted") != std::string_view::npos)
        return table_exists ? NftFailure::TableExists : NftFailure::MissingCapability;
    return NftFailure::Other;
}

namespace {
/// Whether `table` exists in this network namespace (whoever owns it).
bool table_exists(nft_ctx* ctx, const std::string& table) {
    const std::string cmd = fmt::format("list table ip {}", table);
    return nft_run_cmd_from_buffer(ctx, cmd.c_str()) == 0;
}
}  // namespace

NftGuard::NftGuard(const std::string& table, const std::string& ruleset) : table_(table) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx_) throw EnvironmentError("nftables: cannot create a context");
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
    if (nft_run_cmd_from_buffer(ctx_, ruleset.c_str()) != 0) {
        std::string why = nft_ctx_get_error_buffer(ctx_);
        const NftFailure kind = classify_nft_failure(why, table_exists(ctx_, table));
        nft_ctx_free(ctx_);
        ctx_ = nullptr;
        while (!why.empty() && (why.back() == '\n' || why.back() == '^' || why.back() == ' ')) why.pop_back();
        switch (kind) {
            case NftFailure::MissingCapability:
                throw PrivilegeError("CAP_NET_ADMIN is required for the nftables RST guard: run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe` (or use --no-rst-guard)");
            case NftFailure::TableExists:
                throw EnvironmentError(fmt::format("nftables RST guard: a table named ip {} already exists (another process's); run again", table));
            case NftFailure::Other:
                break;
        }
        auto nl = why.find('\n');
        throw EnvironmentError(fmt::format("nftables RST guard: {}", why.substr(0, nl)));
    }
}

NftGuard::~NftGuard() {
    if (ctx_) nft_ctx_free(ctx_);
}

}  // namespace tcpprobe::io
