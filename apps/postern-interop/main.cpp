// postern-interop: reads commands on stdin, answers on stdout (see interop_peer.h).
#include <iostream>
#include <string>

#include "interop_peer.h"

int main() {
  std::ios::sync_with_stdio(false);
  postern::crypto::SystemRng rng;
  postern::interop::InteropPeer peer(rng);
  constexpr std::size_t kMaxLine = 16u << 20;
  std::string line;
  while (std::getline(std::cin, line)) {
    bool quit = false;
    std::string answer = line.size() > kMaxLine ? "err -22 line too long" : peer.handle(line, quit);
    if (quit) return 0;
    std::cout << answer << '\n' << std::flush;
  }
  return 0;
}
