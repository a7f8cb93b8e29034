// Text and JSON Lines renderers. Both print events as they happen; times are relative
// to the run's first captured packet, so events produced before it (our first state
// change) are held back until it is known and then shown at 0.
#include "tcpprobe/app/output.hpp"

#include <fmt/color.h>
#include <fmt/format.h>

#include <string_view>

#include "tcpprobe/wire/format.hpp"

namespace tcpprobe::app {

using probe::Event;

namespace {
bool is_capture(const Event& e) {
    return std::holds_alternative<probe::SegmentEvent>(e.body) || std::holds_alternative<probe::IcmpEvent>(e.body);
}

struct OptionJson {
    nlohmann::json operator()(const wire::opt::Eol&) const { return {{"kind", "eol"}}; }
    nlohmann::json operator()(const wire::opt::Nop&) const { return {{"kind", "nop"}}; }
    nlohmann::json operator()(const wire::opt::Mss& m) const { return {{"kind", "mss"}, {"value", m.value}}; }
    nlohmann::json operator()(const wire::opt::WindowScale& w) const { return {{"kind", "wscale"}, {"value", w.shift}}; }
    nlohmann::json operator()(const wire::opt::SackPermitted&) const { return {{"kind", "sackOK"}}; }
    nlohmann::json operator()(const wire::opt::Sack& s) const {
        auto blocks = nlohmann::json::array();
        for (auto [l, r] : s.blocks) blocks.push_back({l.raw(), r.raw()});
        return {{"kind", "sack"}, {"blocks", blocks}};
    }
    nlohmann::json operator()(const wire::opt::Timestamps& t) const {
        return {{"kind", "ts"}, {"tsval", t.tsval}, {"tsecr", t.tsecr}};
    }
    nlohmann::json operator()(const wire::opt::FastOpen& f) const { return {{"kind", "tfo"}, {"cookie", wire::to_hex(f.cookie)}}; }
    nlohmann::json operator()(const wire::opt::Md5& m) const { return {{"kind", "md5"}, {"digest", wire::to_hex(m.digest)}}; }
    nlohmann::json operator()(const wire::opt::Unknown& u) const {
        return {{"kind", u.kind}, {"data", wire::to_hex(u.data)}};
    }
};
}  // namespace

nlohmann::json options_json(const wire::OptionList& options) {
    auto a = nlohmann::json::array();
    for (const auto& o : options) a.push_back(std::visit(OptionJson{}, o));
    return a;
}

void Renderer::events(const std::vector<Event>& evs) {
    for (const auto& e : evs) {
        if (!origin_) {
            if (!is_capture(e)) {
                pending_.push_back(e);
                continue;
            }
            origin_ = e.t;
            flush_pending();
        }
        if (show_events_) render(e, std::max<std::int64_t>(0, to_us(e.t - *origin_)));
    }
}

void Renderer::captured(Instant t) {
    if (origin_) return;
    origin_ = t;
    flush_pending();
}

void Renderer::flush_pending() {
    if (show_events_)
        for (const auto& p : pending_) render(p, origin_ ? std::max<std::int64_t>(0, to_us(p.t - *origin_)) : 0);
    pending_.clear();
}

namespace {

class TextRenderer final : public Renderer {
public:
    TextRenderer(std::FILE* out, TextStyle style) : out_(out), style_(style) {}

    void summary(const std::string& text, nlohmann::json, const JsonList&) override {
        flush_pending();
        fmt::print(out_, "{}", text);
        std::fflush(out_);
    }

protected:
    void render(const Event& e, std::int64_t t_us) override {
        std::string when = fmt::format("{}.{:06}", t_us / 1'000'000, t_us % 1'000'000);
        std::string flow = multi_flow_ ? fmt::format("[{}] ", e.flow) : "";
        std::string pad(when.size() + 1, ' ');
        if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body)) {
            std::string line = s->line;
            if (!s->ours) line += "  (local kernel)";
            fmt::print(out_, "{} {}{}\n", when, flow, paint(line, s->dir == wire::Direction::Out ? cyan : green));
        } else if (const auto* st = std::get_if<probe::StateEvent>(&e.body)) {
            fmt::print(out_, "{}{}{}\n", pad, flow,
                       paint(fmt::format("{} {} -> {} ({})", st->side, st->from, st->to, st->cause), bold));
        } else if (const auto* ic = std::get_if<probe::IcmpEvent>(&e.body)) {
            fmt::print(out_, "{} {}{}\n", when, flow,
                       paint(fmt::format("< ICMP {} (type {} code {}) from {} quoting {}:{} > {}:{} seq {}", ic->name,
                                         ic->error.type, ic->error.code, wire::to_string(ic->error.reporter),
                                         wire::to_string(ic->error.quoted_src.addr), ic->error.quoted_src.port,
                                         wire::to_string(ic->error.quoted_dst.addr), ic->error.quoted_dst.port,
                                         ic->error.quoted_seq.raw()),
                             red));
        } else if (const auto* pr = std::get_if<probe::ProbeEvent>(&e.body)) {
            std::string line = fmt::format("{} seq={} {}", pr->target, pr->seq, pr->result);
            if (pr->rtt) line += fmt::format(" rtt={:.3f} ms", to_ms_f(*pr->rtt));
            fmt::print(out_, "{} {}{}\n", when, flow, paint(line, pr->result == "no answer" ? yellow : green));
        } else if (const auto* n = std::get_if<probe::NoteEvent>(&e.body)) {
            if (n->severity == probe::Severity::Anomaly)
                fmt::print(out_, "{}{}{}\n", pad, flow, paint("! " + n->text, yellow));
            else
                fmt::print(out_, "{}{}# {}\n", pad, flow, n->text);
        }
        std::fflush(out_);
    }

private:
    static constexpr fmt::text_style cyan = fmt::fg(fmt::terminal_color::cyan);
    static constexpr fmt::text_style green = fmt::fg(fmt::terminal_color::green);
    static constexpr fmt::text_style red = fmt::fg(fmt::terminal_color::red);
    static constexpr fmt::text_style yellow = fmt::fg(fmt::terminal_color::yellow);
    static constexpr fmt::text_style bold = fmt::emphasis::bold;

    std::string paint(const std::string& s, fmt::text_style style) const {
        return style_.color ? fmt::format(style, "{}", s) : s;
    }

    std::FILE* out_;
    TextStyle style_;
};

class JsonRenderer final : public Renderer {
public:
    explicit JsonRenderer(std::FILE* out) : out_(out) { json_ = true; }

    void summary(const std::string&, nlohmann::json json, const JsonList& list) override {
        flush_pending();
        json["type"] = "summary";
        json["schema"] = json_schema_version;
        if (list.key.empty()) {
            line(json);
            return;
        }
        // The list's place holds a marker while the object is dumped; the line is then
        // written up to the marker, the list one item at a time, and the rest. The bytes are
        // those of the whole object, but only one item exists at a time.
        json[list.key] = list_marker;
        const std::string whole = dump(json), marker = dump(nlohmann::json(list_marker));
        const std::size_t at = whole.find(marker);
        fmt::print(out_, "{}[", std::string_view(whole).substr(0, at));
        for (std::size_t i = 0; i < list.size; ++i) fmt::print(out_, "{}{}", i ? "," : "", dump(list.item(i)));
        fmt::print(out_, "]{}\n", std::string_view(whole).substr(at + marker.size()));
        std::fflush(out_);
    }

protected:
    void render(const Event& e, std::int64_t t_us) override {
        nlohmann::json j;
        if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body)) {
            j = {{"type", "segment"},
                 {"dir", s->dir == wire::Direction::Out ? "out" : "in"},
                 {"flags", wire::format_flags(s->segment.flags)},
                 {"seq", s->segment.seq.raw()},
                 {"ack", s->segment.ack.raw()},
                 {"win", s->segment.window},
                 {"len", s->segment.payload.size()},
                 {"ttl", s->segment.ip.ttl},
                 {"options", options_json(s->segment.options)},
                 {"line", s->line}};
            // Only outgoing segments can be someone else's: the local kernel's.
            if (s->dir == wire::Direction::Out) j["ours"] = s->ours;
        } else if (const auto* st = std::get_if<probe::StateEvent>(&e.body)) {
            j = {{"type", "state"}, {"side", st->side}, {"from", st->from}, {"to", st->to}, {"cause", st->cause}};
        } else if (const auto* ic = std::get_if<probe::IcmpEvent>(&e.body)) {
            j = {{"type", "icmp"},
                 {"icmp_type", ic->error.type},
                 {"icmp_code", ic->error.code},
                 {"name", ic->name},
                 {"from", wire::to_string(ic->error.reporter)}};
        } else if (const auto* pr = std::get_if<probe::ProbeEvent>(&e.body)) {
            j = {{"type", "probe"},
                 {"target", pr->target},
                 {"seq", pr->seq},
                 {"result", pr->result},
                 {"rtt_us", pr->rtt ? nlohmann::json(to_us(*pr->rtt)) : nlohmann::json(nullptr)}};
        } else if (const auto* n = std::get_if<probe::NoteEvent>(&e.body)) {
            j = {{"type", "note"},
                 {"severity", n->severity == probe::Severity::Anomaly ? "anomaly" : "info"},
                 {"text", n->text}};
        }
        j["t_us"] = t_us;
        j["flow"] = e.flow;
        line(j);
    }

private:
    static constexpr const char* list_marker = "\x01tcpprobe streamed list\x01";
    static std::string dump(const nlohmann::json& j) {
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    void line(const nlohmann::json& j) {
        fmt::print(out_, "{}\n", dump(j));
        std::fflush(out_);
    }
    std::FILE* out_;
};

}  // namespace

std::unique_ptr<Renderer> make_text_renderer(std::FILE* out, TextStyle style) {
    return std::make_unique<TextRenderer>(out, style);
}
std::unique_ptr<Renderer> make_json_renderer(std::FILE* out) { return std::make_unique<JsonRenderer>(out); }

}  // namespace tcpprobe::app
