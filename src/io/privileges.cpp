// Capabilities: checked up front (a clear error instead of a failing socket call), and
// once the raw socket, capture and nft table are open, everything given up for good:
// every capability set emptied (the bounding set too, when CAP_SETPCAP allows it),
// user and group ids switched away from root, no_new_privs, and a seccomp allow-list of
// the system calls the event loop and the teardown make.
#include <grp.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/privileges.hpp"

namespace tcpprobe::io {

namespace {
constexpr const char* setcap_hint = "run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep $(command -v tcpprobe)`";

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

namespace {
std::optional<unsigned> parse_id(const char* text) {
    if (!text || !*text) return std::nullopt;
    unsigned v = 0;
    const char* end = text + std::strlen(text);
    auto [p, ec] = std::from_chars(text, end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    return v;
}
}  // namespace

RunIdentity identity_after_setup(unsigned ruid, unsigned euid, unsigned rgid, const char* sudo_uid, const char* sudo_gid) {
    if (ruid != 0 && euid != 0) return {ruid, rgid, false};  // a user with file capabilities: stays who it is
    // Root, or sudo: the invoking user when sudo names one (never root again), else nobody.
    auto u = parse_id(sudo_uid);
    auto g = parse_id(sudo_gid);
    if (u && g && *u != 0 && *g != 0) return {*u, *g, true};
    return {nobody_id, nobody_id, true};
}

namespace {
/// The allow-list: what the runner's loop (ppoll, pcap's ring or the raw sockets'
/// recvmmsg, libnet's sendto, the -w writes, stdout/stderr), the teardown (closing the capture and the nft socket from two
/// threads, freeing memory) and the stop signals need. `listen` on every interface looks
/// up the route to each new client (a UDP socket and getifaddrs' netlink socket), so
/// those two socket kinds are allowed too; both are open to any user anyway. Anything
/// else fails with EPERM: a call we did not foresee becomes an error message, not a
/// SIGSYS, and it still does not happen.
void load_seccomp() {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) throw EnvironmentError("seccomp: cannot create a filter");
    static constexpr int allowed[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64), SCMP_SYS(pwrite64),
        SCMP_SYS(close), SCMP_SYS(lseek), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(fcntl), SCMP_SYS(ioctl),
        SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(sendto), SCMP_SYS(sendmsg), SCMP_SYS(recvfrom), SCMP_SYS(recvmsg),
        SCMP_SYS(recvmmsg),  // the raw-socket capture: answers and transmit timestamps (MSG_ERRQUEUE), in batches
        SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(connect), SCMP_SYS(bind),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(brk),
        SCMP_SYS(futex), SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(set_robust_list), SCMP_SYS(rseq),
        SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(exit), SCMP_SYS(exit_group),
        SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack),
        SCMP_SYS(restart_syscall), SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(tgkill), SCMP_SYS(getrandom),
        SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(gettimeofday),
        SCMP_SYS(getrusage), SCMP_SYS(prlimit64), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
        SCMP_SYS(getegid),
    };
    bool ok = true;
    for (int nr : allowed) ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0;
    // socket(AF_INET, SOCK_DGRAM, ...) and socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) only;
    // the type may carry SOCK_CLOEXEC / SOCK_NONBLOCK.
    constexpr scmp_datum_t type_mask = 0xf;
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ, AF_INET),
                                SCMP_A1(SCMP_CMP_MASKED_EQ, type_mask, SOCK_DGRAM)) == 0;
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
                                SCMP_A1(SCMP_CMP_MASKED_EQ, type_mask, SOCK_RAW), SCMP_A2(SCMP_CMP_EQ, 0)) == 0;
    int rc = ok ? seccomp_load(ctx) : -1;
    seccomp_release(ctx);
    if (rc != 0) throw EnvironmentError(fmt::format("seccomp: cannot load the filter: {}", std::strerror(rc < 0 ? -rc : EINVAL)));
}

/// Empties the bounding set; needs CAP_SETPCAP (root has it; a setcap install grants it
/// with the README's command). Returns false when it is not held.
bool drop_bounding_set() {
    cap_t caps = cap_get_proc();
    if (!caps) return false;
    cap_value_t setpcap = CAP_SETPCAP;
    cap_flag_value_t perm = CAP_CLEAR;
    cap_get_flag(caps, setpcap, CAP_PERMITTED, &perm);
    bool ok = perm == CAP_SET && cap_set_flag(caps, CAP_EFFECTIVE, 1, &setpcap, CAP_SET) == 0 && cap_set_proc(caps) == 0;
    cap_free(caps);
    if (!ok) return false;
    for (int c = 0; c <= CAP_LAST_CAP; ++c)
        if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return false;
    // Capabilities newer than the headers we were built with.
    for (int c = CAP_LAST_CAP + 1; c < 64 && ::prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; ++c)
        if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) return false;
    return true;
}
}  // namespace

DropReport drop_privileges() {
    DropReport report;
    report.bounding_set_emptied = drop_bounding_set();
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        throw EnvironmentError("cannot clear the ambient capabilities");
    const RunIdentity id = identity_after_setup(::getuid(), ::geteuid(), ::getgid(), std::getenv("SUDO_UID"), std::getenv("SUDO_GID"));
    if (id.switch_ids) {
        // Groups first: once the user id is not 0 we may no longer change them.
        if (::setgroups(0, nullptr) != 0 || ::setresgid(id.gid, id.gid, id.gid) != 0 ||
            ::setresuid(id.uid, id.uid, id.uid) != 0)
            throw EnvironmentError(fmt::format("cannot switch to uid {} gid {}: {}", id.uid, id.gid, std::strerror(errno)));
    }
    report.uid = id.uid;
    report.gid = id.gid;
    cap_t none = cap_init();
    if (!none || cap_set_proc(none) != 0) {
        if (none) cap_free(none);
        throw EnvironmentError("cannot drop capabilities");
    }
    cap_free(none);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw EnvironmentError("cannot set no_new_privs");
    load_seccomp();
    return report;
}

}  // namespace tcpprobe::io
