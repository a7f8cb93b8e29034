// The nftables tables: the RST guard and listen's SYN drop, their rule texts and names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tcpprobe/io/ports.hpp"

struct nft_ctx;

namespace tcpprobe::io {

/// Rule text of the guard: a table with `flags owner`, an output chain at priority raw
/// dropping RSTs from our ports to the target unless they carry our mark. Pure.
std::string rst_guard_ruleset(const std::string& table, wire::Ipv4Addr local,
                              const std::vector<std::uint16_t>& local_ports, const std::vector<wire::Ipv4Addr>& remotes,
                              std::uint32_t mark);

/// The passive side's table: SYNs to `port` (on `local`, or any address) are dropped
/// before the local stack (the capture still sees them), and our kernel's RSTs from that
/// port are dropped unless they carry our mark. Pure.
std::string listen_ruleset(const std::string& table, std::optional<wire::Ipv4Addr> local, std::uint16_t port,
                           std::uint32_t mark);

/// The run's table name: "tcpprobe_<pid>_<8 hex digits>". The PID alone collides when
/// runs in different PID namespaces share a network namespace (both may be PID 1); the
/// random suffix (from getrandom) makes a collision a 1 in 2^32 event. Pure.
std::string guard_table_name(long pid, std::uint32_t suffix);

/// Why creating the table failed. nf_tables answers EPERM both to a process without
/// CAP_NET_ADMIN and to one adding to a table another process owns (`flags owner`), so
/// "Operation not permitted" is a missing capability only if no table of that name exists.
enum class NftFailure { MissingCapability, TableExists, Other };
NftFailure classify_nft_failure(std::string_view nft_error, bool table_exists);

class NftGuard final : public RstSuppressor {
public:
    /// Creates the table in one atomic command buffer. Throws PrivilegeError (missing
    /// CAP_NET_ADMIN) or EnvironmentError (nftables unavailable, the table exists).
    NftGuard(const std::string& table, const std::string& ruleset);
    /// Closing the netlink socket makes the kernel delete the owned table.
    ~NftGuard() override;
    const std::string& table() const { return table_; }

private:
    nft_ctx* ctx_ = nullptr;
    std::string table_;
};

}  // namespace tcpprobe::io
