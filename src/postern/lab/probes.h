// Active probing (Alice et al., IMC 2020; docs/censorship.md): the probes a censor sends to a
// suspected server after seeing a client's first flight, and how their reactions are compared
// with what an ordinary web server (the lab's stock nginx baseline) does with the same bytes.
// Sans-I/O: the middlebox's prober sends the probes and records the reactions.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "postern/util/bytes.h"

namespace postern::lab {

struct Probe {
  std::string name;  // "R1", "R2", ..., "NR1-8", "NR2"
  Bytes payload;
};

// R1 the flight replayed; R2 byte 0 changed; R3 bytes 0-7 and 62-63 changed; R4 byte 16 changed;
// R5 bytes 6 and 16 changed (bytes past the end are left out; a changed byte is XORed with a
// non-zero random value); NR1 one random payload of each length band 7-9, 11-13, 15-17, 21-23,
// 32-34, 40-42, 48-50 (the length drawn in the band); NR2 221 random bytes. A replay probe none of
// whose positions lies inside the flight would be R1 again and is not made (an empty flight gives
// none at all).
std::vector<Probe> replay_probes(ByteView first_flight, std::mt19937_64& rng);
std::vector<Probe> random_probes(std::mt19937_64& rng);

// What a prober sees of a reaction.
struct Reaction {
  Bytes data;  // what the server sent back before it closed or the window ended (first 16 KiB)
  enum class End : std::uint8_t { fin, rst, open, connect_failed } end = End::open;
  std::chrono::milliseconds after{0};  // from the probe's last byte to the end (open: the window)
};

// The class of a reaction a prober compares, "<data>;<end>;<timing>":
//   data    "none"; "tls:<record type>" when the data starts with a TLS record header, an alert
//           written "tls:21-alert" (plus ":<description>" for a 2-byte plaintext alert); "http:"
//           and the status line (first 64 bytes, non-printable as '?') for data starting with
//           "HTTP/"; else "data".
//   end     "fin", "rst", "open", "connect_failed".
//   timing  "open" when open; else "<1s" under 1000 ms, "~Ns" with N the whole seconds rounded
//           half up while N <= 60, then "~60s+".
// e.g. "http:HTTP/1.1 400 Bad Request;fin;<1s", "none;open;open", "tls:21-alert:50;fin;<1s".
std::string reaction_class(const Reaction& r);
// Two reactions differ when their classes differ.
bool same_reaction(const Reaction& a, const Reaction& b);

}  // namespace postern::lab
