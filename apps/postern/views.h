// How the postern program shows messenger objects: one-line texts for people and JSON objects
// for programs (the CLI's --json output and the daemon's JSON-RPC results use the same objects;
// docs/client-api.md lists their members).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "postern/client/messenger.h"

namespace postern::cli {

std::string clock_text(std::int64_t ms);
std::string human_size(std::uint64_t n);
nlohmann::json attachment_json(const client::AttachmentView& a);
nlohmann::json message_json(const client::MessageView& m);
std::string message_text(const client::MessageView& m);
nlohmann::json event_json(const client::Event& e);
std::string event_text(const client::Event& e);
nlohmann::json group_json(const client::GroupView& v);
std::string group_text(const client::GroupView& v);

// The exit code the CLI uses for a failure (main.cpp's table): 1 refused, 3 unreachable, 4 local,
// 5 security stop. The daemon derives its JSON-RPC error codes from it.
int exit_code_for(const client::Failure& f);
// A stable token for a failure: the server's error code when it gave one, else the client Errc's
// name ("unreachable", "untrusted_identity", ...), else "category:value".
std::string failure_code(const client::Failure& f);
nlohmann::json contact_json(const client::Contact& c);
nlohmann::json device_json(const client::DeviceInfo& d);

}  // namespace postern::cli
