// Capabilities, the identity after setup, dropping privileges, the descriptor limit.
#pragma once

#include <cstddef>
#include <string_view>

namespace tcpprobe::io {

/// Throws PrivilegeError naming the missing capability and the setcap command.
void require_capabilities(bool need_net_admin);
/// Who the process runs as after setup. A user running a file-capability copy stays
/// who it is; root (or sudo) becomes the invoking user named by SUDO_UID/SUDO_GID, or
/// nobody (65534) when there is none or it names root. Pure.
struct RunIdentity {
    unsigned uid = 0, gid = 0;
    bool switch_ids = false;
};
inline constexpr unsigned nobody_id = 65534;
RunIdentity identity_after_setup(unsigned ruid, unsigned euid, unsigned rgid, const char* sudo_uid, const char* sudo_gid);

struct DropReport {
    unsigned uid = 0, gid = 0;
    bool bounding_set_emptied = false;  ///< false: CAP_SETPCAP was not held (setcap without it)
};
/// After setup, for good: the bounding and ambient sets emptied, uid/gid switched from
/// root (identity_after_setup), every other capability set emptied, no_new_privs, and a
/// seccomp allow-list (anything else fails with EPERM). Open handles keep working; the
/// nft table goes when its netlink socket closes (`flags owner`), which needs no privilege.
DropReport drop_privileges();
/// Makes room for `needed` open descriptors (one reserved socket per source port, plus
/// the run's own): raises the soft RLIMIT_NOFILE, up to the hard limit, when it is lower.
/// Throws EnvironmentError naming both limits and what to do when the hard limit is lower.
void ensure_fd_limit(std::size_t needed, std::string_view what);

}  // namespace tcpprobe::io
