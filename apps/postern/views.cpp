#include "views.h"

#include <cstdio>
#include <ctime>

namespace postern::cli {

using nlohmann::json;
using namespace postern::client;

std::string clock_text(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string human_size(std::uint64_t n) {
  char buf[32];
  if (n >= 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(n) / 1e6);
  } else if (n >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f kB", static_cast<double>(n) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

json attachment_json(const AttachmentView& a) {
  json j = {{"path", a.path}, {"size", a.size}, {"mime", a.mime}, {"sha256", a.sha256}, {"file_name", a.file_name},
            {"state", a.state}};
  if (a.width != 0) {
    j["width"] = a.width;
    j["height"] = a.height;
  }
  if (a.duration_ms != 0) j["duration_ms"] = a.duration_ms;
  if (!a.thumbnail_path.empty()) j["thumbnail"] = a.thumbnail_path;
  if (!a.caption.empty()) j["caption"] = a.caption;
  return j;
}

json message_json(const MessageView& m) {
  json j = {{"id", m.id},
            {"from", m.outgoing ? std::string() : m.sender_email},
            {"from_account", m.sender_account},
            {"from_device", m.sender_device},
            {"with", m.peer},
            {"outgoing", m.outgoing},
            {"timestamp", m.timestamp},
            {"received_ms", m.received_ms},
            {"type", m.kind},
            {"text", m.text},
            {"status", to_string(m.status)}};
  if (m.outgoing) j["from"] = m.sender_email;
  if (!m.group_id.empty()) j["group"] = {{"id", m.group_id}, {"name", m.group_name}};
  if (m.expire_timer_s != 0) j["expire_timer_s"] = m.expire_timer_s;
  if (m.expires_at_ms) j["expires_at_ms"] = *m.expires_at_ms;
  if (!m.attachments.empty()) {
    json list = json::array();
    for (const auto& a : m.attachments) list.push_back(attachment_json(a));
    j["attachments"] = list;
    // The first attachment's facts at the top level, for simple scripts.
    for (const char* key : {"path", "size", "mime", "sha256", "file_name", "width", "height", "duration_ms", "thumbnail"})
      if (list[0].contains(key)) j[key] = list[0][key];
  }
  return j;
}

std::string message_text(const MessageView& m) {
  std::string who = m.outgoing ? "me -> " + m.peer : (m.sender_email.empty() ? "account " + std::to_string(m.sender_account) : m.sender_email);
  if (!m.group_id.empty()) who += " in " + m.group_name;
  std::string out = "[" + clock_text(m.timestamp) + "] " + who + ": " + m.text;
  for (const auto& a : m.attachments) {
    out += (m.text.empty() ? "" : " ") + std::string("[") + m.kind + " " + a.file_name + ", " + human_size(a.size);
    if (a.width != 0) out += ", " + std::to_string(a.width) + "x" + std::to_string(a.height);
    out += a.state == "saved" ? ", saved to " + a.path + "]" : ", " + a.state + "]";
  }
  if (m.outgoing) out += "  (" + std::string(to_string(m.status)) + ")";
  if (m.expire_timer_s != 0) out += "  (disappears after " + std::to_string(m.expire_timer_s) + " s)";
  return out;
}


json event_json(const Event& e) {
  switch (e.kind) {
    case Event::Kind::message: {
      json j = message_json(e.message);
      j["event"] = "message";
      return j;
    }
    case Event::Kind::receipt:
      return {{"event", "receipt"}, {"type", "receipt"}, {"receipt", e.receipt_type}, {"from", e.from_email},
              {"from_account", e.from_account}, {"timestamps", e.timestamps}};
    case Event::Kind::typing:
      return {{"event", "typing"}, {"type", "typing"}, {"from", e.from_email}, {"from_account", e.from_account},
              {"started", e.typing_started}, {"group", e.group_id}};
    case Event::Kind::identity_changed:
      return {{"event", "identity_changed"}, {"type", "identity_changed"}, {"from", e.from_email}, {"from_account", e.from_account}};
    case Event::Kind::group_updated:
      return {{"event", "group_updated"}, {"type", "group"}, {"from", e.from_email}, {"from_account", e.from_account},
              {"group", {{"id", e.group_id}, {"name", e.group_name}}}};
    case Event::Kind::timer_changed:
      return {{"event", "timer_changed"}, {"type", "timer"}, {"from", e.from_email}, {"from_account", e.from_account},
              {"expire_timer_s", e.expire_timer_s}, {"conversation", e.message.conversation}};
    case Event::Kind::undecryptable:
      return {{"event", "undecryptable"}, {"type", "error"}, {"from", e.from_email}, {"from_account", e.from_account},
              {"detail", e.detail}};
  }
  return json::object();
}

std::string event_text(const Event& e) {
  const std::string who = e.from_email.empty() ? "account " + std::to_string(e.from_account) : e.from_email;
  switch (e.kind) {
    case Event::Kind::message:
      return message_text(e.message);
    case Event::Kind::receipt:
      return who + (e.receipt_type == "read" ? " read " : " received ") + std::to_string(e.timestamps.size()) +
             (e.timestamps.size() == 1 ? " of your messages" : " of your messages");
    case Event::Kind::typing:
      return who + (e.typing_started ? " is typing..." : " stopped typing");
    case Event::Kind::identity_changed:
      return "WARNING: the safety number with " + who +
             " changed (a new device or a reinstall, or someone in between). Compare it: postern verify " + who;
    case Event::Kind::group_updated:
      return who + " updated the group " + e.group_name;
    case Event::Kind::timer_changed:
      return who + (e.expire_timer_s ? " set disappearing messages to " + std::to_string(e.expire_timer_s) + " s"
                                     : " turned disappearing messages off");
    case Event::Kind::undecryptable:
      return "a message from " + who + " could not be decrypted: " + e.detail;
  }
  return {};
}

json group_json(const GroupView& v) {
  json mem = json::array();
  for (const auto& [id, mail] : v.members) mem.push_back({{"account_id", id}, {"email", mail}});
  return json{{"id", v.id}, {"name", v.name}, {"members", mem}, {"revision", v.revision}, {"active", v.active}};
}

std::string group_text(const GroupView& v) {
  std::string s = v.name + " (" + v.id + "): ";
  for (std::size_t i = 0; i < v.members.size(); ++i) s += (i ? ", " : "") + v.members[i].second;
  if (!v.active) s += "  [you are no longer a member]";
  return s;
}

int exit_code_for(const Failure& f) {
  if (f.code.category() == client_category()) {
    switch (static_cast<Errc>(f.code.value())) {
      case Errc::unreachable:
      case Errc::timeout:
      case Errc::connection_closed:
        return 3;
      case Errc::pin_mismatch:
      case Errc::untrusted_identity:
      case Errc::bad_attachment:
        return 5;
      case Errc::store_locked:
      case Errc::corrupt_record:
      case Errc::file_error:
        return 4;
      default:
        return 1;
    }
  }
  return 4;  // a lower layer (store, crypto): local
}

std::string failure_code(const Failure& f) {
  if (!f.server_code.empty()) return f.server_code;
  if (f.code.category() == client_category()) {
    switch (static_cast<Errc>(f.code.value())) {
      case Errc::ok: return "ok";
      case Errc::unreachable: return "unreachable";
      case Errc::pin_mismatch: return "pin_mismatch";
      case Errc::protocol_error: return "protocol_error";
      case Errc::timeout: return "timeout";
      case Errc::connection_closed: return "connection_closed";
      case Errc::not_registered: return "not_registered";
      case Errc::server_error: return "server_error";
      case Errc::bad_invite: return "bad_invite";
      case Errc::store_locked: return "store_locked";
      case Errc::corrupt_record: return "corrupt_record";
      case Errc::bad_attachment: return "bad_attachment";
      case Errc::file_error: return "file_error";
      case Errc::unknown_contact: return "unknown_contact";
      case Errc::untrusted_identity: return "untrusted_identity";
      case Errc::bad_content: return "bad_content";
      case Errc::unknown_group: return "unknown_group";
      case Errc::not_allowed: return "not_allowed";
      case Errc::invalid_argument: return "invalid_argument";
      case Errc::too_large: return "too_large";
      case Errc::device_removed: return "device_removed";
      case Errc::replaced: return "replaced";
      case Errc::cancelled: return "cancelled";
    }
  }
  return std::string(f.code.category().name()) + ":" + std::to_string(f.code.value());
}

json contact_json(const Contact& c) {
  return json{{"email", c.email},
              {"account_id", c.account_id},
              {"verified", c.verified},
              {"identity_changed", c.identity_blocked}};
}

json device_json(const DeviceInfo& d) {
  return json{{"id", d.id},
              {"name", d.name},
              {"created_ms", d.created_ms},
              {"last_seen_ms", d.last_seen_ms},
              {"current", d.current}};
}

}  // namespace postern::cli
