// Capabilities: checked up front (a clear error instead of a failing socket call), and
// all dropped, with no_new_privs, once the raw socket, capture and nft table are open.
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <string>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/system.hpp"

namespace tcpprobe::io {

namespace {
constexpr const char* setcap_hint = "run as root or `setcap cap_net_raw,cap_net_admin+ep $(command -v tcpprobe)`";

void need(cap_t caps, cap_value_t cap, const char* name) {
    cap_flag_value_t eff = CAP_CLEAR, perm = CAP_CLEAR;
    cap_get_flag(caps, cap, CAP_EFFECTIVE, &eff);
    cap_get_flag(caps, cap, CAP_PERMITTED, &perm);
    if (eff == CAP_SET) return;
    if (perm == CAP_SET) {  // file capabilities granted with +p only: raise it
        cap_set_flag(caps, CAP_EFFECTIVE, 1, &cap, CAP_SET);
        if (cap_set_proc(caps) == 0) return;
    }
    throw PrivilegeError(fmt::format("missing capability {}: {}", name, setcap_hint));
}
}  // namespace

void require_capabilities(bool need_net_admin) {
    cap_t caps = cap_get_proc();
    if (!caps) throw EnvironmentError("cannot read process capabilities");
    try {
        need(caps, CAP_NET_RAW, "CAP_NET_RAW");
        if (need_net_admin) need(caps, CAP_NET_ADMIN, "CAP_NET_ADMIN");
    } catch (...) {
        cap_free(caps);
        throw;
    }
    cap_free(caps);
}

void ensure_fd_limit(std::size_t needed, std::string_view what) {
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= needed) return;
    if (r.rlim_max == RLIM_INFINITY || r.rlim_max >= needed) {
        r.rlim_cur = needed;
        if (setrlimit(RLIMIT_NOFILE, &r) == 0) return;
    }
    throw EnvironmentError(fmt::format(
        "{} need about {} open files, but RLIMIT_NOFILE allows {} (hard limit {}): probe fewer ports per run, "
        "or raise the limit (ulimit -n {})",
        what, needed, r.rlim_cur, r.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(r.rlim_max), needed));
}

void drop_privileges() {
    cap_t none = cap_init();
    if (!none || cap_set_proc(none) != 0) {
        if (none) cap_free(none);
        throw EnvironmentError("cannot drop capabilities");
    }
    cap_free(none);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw EnvironmentError("cannot set no_new_privs");
}

}  // namespace tcpprobe::io
