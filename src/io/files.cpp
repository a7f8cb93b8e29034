// Opening the files the user named, with the user's rights (see files.hpp).
#include "tcpprobe/io/files.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"

namespace tcpprobe::io {

namespace {

std::optional<unsigned long> env_id(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    unsigned long id = 0;
    auto [end, ec] = std::from_chars(v, v + std::strlen(v), id);
    if (ec != std::errc{} || *end != '\0') return std::nullopt;
    return id;
}

/// The invoking user's groups (primary first), as the kernel should see them while we
/// open their file; just the primary group when the user has no passwd entry.
std::vector<gid_t> groups_of(const Invoker& who) {
    std::vector<gid_t> groups{who.gid};
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(who.uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return groups;
    int n = 64;
    for (int attempt = 0; attempt < 4; ++attempt) {
        groups.assign(static_cast<std::size_t>(n), 0);
        int want = n;
        if (getgrouplist(found->pw_name, who.gid, groups.data(), &want) >= 0) {
            groups.resize(static_cast<std::size_t>(want));
            return groups;
        }
        n = want > n ? want : n * 2;  // too small: getgrouplist said how many
    }
    return {who.gid};
}

/// For its lifetime, file-system accesses are checked as the invoking user (nothing
/// changes when there is none). The effective ids stay root's: only the file-system ids
/// and the supplementary groups move, and both are restored.
class AsInvoker {
public:
    explicit AsInvoker(const std::optional<Invoker>& who) {
        if (!who) return;
        int n = ::getgroups(0, nullptr);
        saved_groups_.resize(static_cast<std::size_t>(n > 0 ? n : 0));
        if (n > 0 && ::getgroups(n, saved_groups_.data()) < 0) saved_groups_.clear();
        auto groups = groups_of(*who);
        if (::setgroups(groups.size(), groups.data()) != 0)
            throw EnvironmentError(fmt::format("cannot take the groups of uid {} to open a file: {}", who->uid, std::strerror(errno)));
        active_ = true;
        ::setfsgid(who->gid);
        ::setfsuid(who->uid);
        // setfsuid reports no error: an invalid id returns the current one unchanged.
        if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != who->uid ||
            static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != who->gid) {
            restore();
            throw EnvironmentError(fmt::format("cannot switch to uid {} gid {} to open a file", who->uid, who->gid));
        }
    }
    ~AsInvoker() { restore(); }
    AsInvoker(const AsInvoker&) = delete;
    AsInvoker& operator=(const AsInvoker&) = delete;

private:
    void restore() {
        if (!active_) return;
        active_ = false;
        ::setfsuid(::geteuid());
        ::setfsgid(::getegid());
        ::setgroups(saved_groups_.size(), saved_groups_.data());
    }
    std::vector<gid_t> saved_groups_;
    bool active_ = false;
};

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    int release() { return std::exchange(fd, -1); }
};

}  // namespace

std::optional<Invoker> invoking_user() {
    if (::geteuid() != 0) return std::nullopt;
    auto uid = env_id("SUDO_UID");
    if (!uid || *uid == 0 || *uid > 0xFFFFFFFEul) return std::nullopt;
    Invoker who{static_cast<uid_t>(*uid), 0};
    if (auto gid = env_id("SUDO_GID"); gid && *gid <= 0xFFFFFFFEul) {
        who.gid = static_cast<gid_t>(*gid);
    } else {
        passwd pw{};
        passwd* found = nullptr;
        std::vector<char> buf(16384);
        if (getpwuid_r(who.uid, &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
        who.gid = found->pw_gid;
    }
    return who;
}

std::vector<std::uint8_t> read_user_file(const std::string& path, std::size_t max_bytes, std::string_view shown) {
    Fd f;
    {
        AsInvoker as(invoking_user());
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    }
    if (f.fd < 0) throw UsageError(fmt::format("{}: cannot read {}: {}", shown, path, std::strerror(errno)));
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw UsageError(fmt::format("{}: cannot read {}: {}", shown, path, std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) throw UsageError(fmt::format("{}: {} is not a regular file", shown, path));
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
        throw UsageError(fmt::format("{}: {} has {} bytes, more than the {} accepted", shown, path, st.st_size, max_bytes));
    // Read one byte more than allowed, so a file that grows meanwhile is caught too.
    std::vector<std::uint8_t> out(max_bytes + 1);
    std::size_t have = 0;
    while (have < out.size()) {
        ssize_t n = ::read(f.fd, out.data() + have, out.size() - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw UsageError(fmt::format("{}: cannot read {}: {}", shown, path, std::strerror(errno)));
        if (n == 0) break;
        have += static_cast<std::size_t>(n);
    }
    if (have > max_bytes) throw UsageError(fmt::format("{}: {} has more than the {} bytes accepted", shown, path, max_bytes));
    out.resize(have);
    return out;
}

int create_user_file(const std::string& path, std::string_view shown) {
    Fd f;
    int open_errno = 0;
    {
        AsInvoker as(invoking_user());
        // No O_TRUNC yet: what is there is checked first. O_NONBLOCK: a FIFO without a
        // reader fails at once (ENXIO) instead of hanging the run.
        f.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
        open_errno = errno;
    }
    if (f.fd < 0) {
        if (open_errno == ELOOP)
            throw UsageError(fmt::format("{}: {} is a symbolic link; refused (name the file itself)", shown, path));
        if (open_errno == ENXIO)
            throw UsageError(fmt::format("{}: {} is a FIFO with no reader", shown, path));
        throw UsageError(fmt::format("{}: cannot write {}: {}", shown, path, std::strerror(open_errno)));
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw UsageError(fmt::format("{}: cannot write {}: {}", shown, path, std::strerror(errno)));
    if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1)
            throw UsageError(fmt::format("{}: {} has other hard links; refused (remove it or name another file)", shown, path));
        if (::ftruncate(f.fd, 0) != 0)
            throw UsageError(fmt::format("{}: cannot truncate {}: {}", shown, path, std::strerror(errno)));
    } else if (!S_ISFIFO(st.st_mode)) {
        throw UsageError(fmt::format("{}: {} is not a regular file or a FIFO", shown, path));
    }
    int flags = ::fcntl(f.fd, F_GETFL);
    if (flags < 0 || ::fcntl(f.fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        throw UsageError(fmt::format("{}: cannot write {}: {}", shown, path, std::strerror(errno)));
    return f.release();
}

}  // namespace tcpprobe::io
