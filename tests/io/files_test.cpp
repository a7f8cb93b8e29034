// Files the user names (io/files.hpp): -w FILE is never reached through a symbolic link,
// never a device, created 0600; --request @FILE reads regular files only; under sudo both
// are opened with the rights of the user who ran sudo. The sudo cases run only as root.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "app/usage_error.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/files.hpp"

using namespace tcpprobe;
using test::usage_error;

namespace {

struct TempDir {
    std::string path;
    explicit TempDir(mode_t mode = 0700) {
        char name[] = "/tmp/tcpprobe_files_XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path = name;
        REQUIRE(::chmod(path.c_str(), mode) == 0);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string at(std::string_view name) const { return path + "/" + std::string(name); }
    std::string file(std::string_view name, std::string_view contents, mode_t mode = 0644) const {
        std::string p = at(name);
        std::ofstream(p, std::ios::binary) << contents;
        REQUIRE(::chmod(p.c_str(), mode) == 0);
        return p;
    }
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

/// Writes through a descriptor create_user_file returned, then closes it.
void write_and_close(int fd, std::string_view text) {
    REQUIRE(fd >= 0);
    CHECK(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
}

/// Sets (or clears) SUDO_UID / SUDO_GID for its lifetime.
struct SudoEnv {
    explicit SudoEnv(std::optional<std::string> uid, std::optional<std::string> gid = std::nullopt) {
        set("SUDO_UID", uid);
        set("SUDO_GID", gid);
    }
    ~SudoEnv() {
        ::unsetenv("SUDO_UID");
        ::unsetenv("SUDO_GID");
    }
    static void set(const char* name, const std::optional<std::string>& v) {
        if (v) ::setenv(name, v->c_str(), 1);
        else ::unsetenv(name);
    }
};

constexpr uid_t nobody = 65534;

}  // namespace

TEST_SUITE_BEGIN("io");

TEST_CASE("files: create_user_file: a new file gets mode 0600") {
    TempDir dir;
    const mode_t old_umask = ::umask(0);
    int fd = io::create_user_file(dir.at("new.pcap"), "-w");
    ::umask(old_umask);
    write_and_close(fd, "abc");
    struct stat st {};
    REQUIRE(::stat(dir.at("new.pcap").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(slurp(dir.at("new.pcap")) == "abc");
}

TEST_CASE("files: create_user_file: an existing regular file is truncated, its mode kept") {
    TempDir dir;
    std::string p = dir.file("old.pcap", "old contents, longer", 0640);
    write_and_close(io::create_user_file(p, "-w"), "new");
    CHECK(slurp(p) == "new");
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("files: create_user_file: a symbolic link is refused and its target left alone") {
    // The review's case: a symlink to a root-only file was followed and the file overwritten.
    TempDir dir;
    std::string target = dir.file("shadow", "secret", 0600);
    std::string link = dir.at("run.pcap");
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    std::string what = usage_error([&] { io::create_user_file(link, "-w run.pcap"); });
    CHECK(contains(what, "-w run.pcap"));
    CHECK(contains(what, "symbolic link"));
    CHECK(slurp(target) == "secret");
    SUBCASE("a dangling link is not followed to create its target") {
        std::string dangling = dir.at("dangling.pcap");
        REQUIRE(::symlink(dir.at("created-through-link").c_str(), dangling.c_str()) == 0);
        CHECK(contains(usage_error([&] { io::create_user_file(dangling, "-w"); }), "symbolic link"));
        CHECK_FALSE(std::filesystem::exists(dir.at("created-through-link")));
    }
}

TEST_CASE("files: create_user_file: hard links, directories, devices and FIFOs without a reader are refused") {
    TempDir dir;
    std::string target = dir.file("precious", "keep", 0600);
    REQUIRE(::link(target.c_str(), dir.at("linked.pcap").c_str()) == 0);
    CHECK(contains(usage_error([&] { io::create_user_file(dir.at("linked.pcap"), "-w"); }), "hard links"));
    CHECK(slurp(target) == "keep");
    CHECK(contains(usage_error([&] { io::create_user_file(dir.path, "-w"); }), dir.path));
    CHECK(contains(usage_error([&] { io::create_user_file("/dev/null", "-w"); }), "not a regular file or a FIFO"));
    REQUIRE(::mkfifo(dir.at("fifo").c_str(), 0600) == 0);
    CHECK(contains(usage_error([&] { io::create_user_file(dir.at("fifo"), "-w"); }), "no reader"));
    CHECK(contains(usage_error([&] { io::create_user_file(dir.at("missing/dir.pcap"), "-w"); }), "No such file"));
}

TEST_CASE("files: create_user_file: a FIFO with a reader is written to") {
    TempDir dir;
    std::string fifo = dir.at("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    REQUIRE(reader >= 0);
    write_and_close(io::create_user_file(fifo, "-w"), "pcap");
    char buf[8] = {};
    CHECK(::read(reader, buf, sizeof buf) == 4);
    ::close(reader);
}

TEST_CASE("files: read_user_file: regular files up to the limit") {
    TempDir dir;
    CHECK(io::read_user_file(dir.file("r", "hello"), 5, "--request") == std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o'});
    CHECK(contains(usage_error([&] { io::read_user_file(dir.file("r6", "hello!"), 5, "--request"); }), "6 bytes"));
    CHECK(contains(usage_error([] { io::read_user_file("/dev/zero", 5, "--request"); }), "not a regular file"));
    CHECK(io::read_user_file(dir.file("empty", ""), 5, "--request").empty());
}

TEST_CASE("files: invoking_user: SUDO_UID/SUDO_GID only when running as root for another user") {
    SUBCASE("no sudo: the process's own ids") {
        SudoEnv env(std::nullopt);
        CHECK_FALSE(io::invoking_user().has_value());
    }
    SUBCASE("sudo by root itself, or a malformed SUDO_UID: nothing to switch") {
        SudoEnv root("0", "0");
        CHECK_FALSE(io::invoking_user().has_value());
        SudoEnv::set("SUDO_UID", std::string("12ab"));
        CHECK_FALSE(io::invoking_user().has_value());
    }
    SUBCASE("sudo by another user") {
        SudoEnv env("65534", "65533");
        auto who = io::invoking_user();
        CHECK(who.has_value() == (::geteuid() == 0));
        if (who) {
            CHECK(who->uid == 65534);
            CHECK(who->gid == 65533);
        }
    }
}

TEST_CASE("files: under sudo, files are opened with the invoking user's rights and the new file is theirs") {
    if (::geteuid() != 0) {
        MESSAGE("not root: the sudo cases cannot run");
        return;
    }
    TempDir open_dir(01777);  // like /tmp: anyone may create files
    TempDir root_dir(0700);   // only root may enter
    std::string secret = root_dir.file("secret", "root only", 0600);
    std::string root_owned = open_dir.file("root.pcap", "root's", 0644);
    {
        SudoEnv env(std::to_string(nobody), std::to_string(nobody));
        int fd = io::create_user_file(open_dir.at("mine.pcap"), "-w");
        write_and_close(fd, "x");
        struct stat st {};
        REQUIRE(::stat(open_dir.at("mine.pcap").c_str(), &st) == 0);
        CHECK(st.st_uid == nobody);
        CHECK(st.st_gid == nobody);
        CHECK(contains(usage_error([&] { io::create_user_file(root_dir.at("x.pcap"), "-w"); }), "Permission denied"));
        CHECK(contains(usage_error([&] { io::create_user_file(root_owned, "-w"); }), "Permission denied"));
        CHECK(slurp(root_owned) == "root's");
        CHECK(contains(usage_error([&] { io::read_user_file(secret, 100, "--request"); }), "Permission denied"));
    }
    // The file-system ids are root's again afterwards.
    CHECK(static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) == 0);
    CHECK(static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) == 0);
    CHECK(io::read_user_file(secret, 100, "--request").size() == 9);
}

TEST_SUITE_END();
