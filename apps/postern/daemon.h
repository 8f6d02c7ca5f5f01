// `postern daemon`: the Messenger behind JSON-RPC 2.0 (docs/client-api.md), for a GUI or a bot.
// One thread stays connected (Messenger::receive, reconnecting with backoff) and turns each event
// into a "receive" notification for every client; one worker thread runs the calls in the order
// they arrived (the Messenger serialises them anyway); the calling thread owns every descriptor
// and runs a poll() loop over the listening Unix socket and its clients (or stdin/stdout), so no
// descriptor is touched by two threads and a client that stops reading never blocks the others.
#pragma once

#include <atomic>
#include <string>

#include "postern/client/messenger.h"

namespace postern::cli {

struct DaemonOptions {
  std::string socket_path;  // the Unix socket (mode 0600); ignored with use_stdio
  bool use_stdio = false;   // one client on stdin/stdout instead of the socket
  // Set by the program's SIGINT/SIGTERM handler: the daemon stops cleanly (exit code 0).
  const std::atomic<bool>* stop = nullptr;
};

// Serves until `shutdown`, a signal (options.stop), the end of stdin (stdio mode), or this device
// being logged out or removed by another device (exit code 1). Returns the process exit code:
// 0 clean stop, 1 device removed, 4 the socket could not be set up.
int run_daemon(client::Messenger& m, const DaemonOptions& options);

}  // namespace postern::cli
