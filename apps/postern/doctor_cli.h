// `postern doctor [--json] [--dns-server HOST:PORT] [--doh URL [--doh-ca FILE]] [--step-timeout S]`:
// checks every path to the server (client/net/doctor.h) and prints what is blocked and how, as
// text or as one JSON object. Exit code 0 when a path works, 3 when none does.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "postern/client/invite.h"

namespace postern::app {

struct DoctorArgs {
  std::string dns_server;
  std::string doh_url;
  std::string doh_ca;
  double step_timeout_s = 5.0;
};

void add_doctor_options(CLI::App& command, DoctorArgs& args);
int run_doctor_command(const client::Invite& invite, const std::vector<client::Invite>& relays,
                       const DoctorArgs& args, bool json);

}  // namespace postern::app
