// The interop peer: the project's protocol library behind the line protocol of
// shared/reference/interop-peer-protocol.md, so that any independent implementation with a peer
// of its own can be paired with ours by the driver in tests/interop/. One command line in, one
// answer line out; bad input of any kind gets `err <code> <text>`, never a crash.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "postern/crypto/random.h"
#include "postern/protocol/in_memory_store.h"

namespace postern::interop {

class InteropPeer {
 public:
  explicit InteropPeer(crypto::Rng& rng) : rng_(rng) {}

  // Handles one line (without its newline) and returns the answer line (without newline).
  // Sets `quit` for the `quit` command, whose answer is empty and must not be printed.
  std::string handle(std::string_view line, bool& quit);

 private:
  struct Party;
  crypto::Rng& rng_;
  std::shared_ptr<Party> party_;
};

}  // namespace postern::interop
