// The TLS-in-TLS heuristic (Xue et al., USENIX Security 2024; nDPI's burst distance): a proxy that
// carries a client's own TLS handshake inside an outer TLS connection shows the inner handshake
// in the sizes of the first application-data bursts after the outer handshake: a client burst
// the size of a ClientHello plus the outer record's overhead, a large server burst (the inner
// ServerHello, certificate and Finished), then a small client burst (the inner Finished).
// The client's bursts are judged by their first record, as record-level classifiers do (Xue et
// al. work on record sizes): a client that writes its first request right behind the inner
// Finished makes one ~600-byte burst, but the proxy still forwards the Finished in a record of
// its own. The server's burst is judged whole (its flight spans records).
// Sans-I/O: the middlebox feeds it the TLS records it forwards, in order, from both directions.
//
// Only record headers are read. The outer handshake ends per direction with that direction's
// Finished: in TLS 1.2 the handshake record after its ChangeCipherSpec; in TLS 1.3, whose
// encrypted handshake travels in application_data records (after a middlebox-compat
// ChangeCipherSpec or not), the client's first application_data record is its Finished. Bursts
// begin with the client's first application data after that: the server's application_data
// before it is its encrypted handshake flight and the TLS 1.3 session tickets it sends on the
// client's Finished (both seen on loopback with OpenSSL); counted, they would put a server burst
// first and hide the inner handshake's c/s/c shape. Then consecutive application_data payload
// bytes (record lengths) in one direction form a burst; a burst is complete when a record of the
// other direction starts the next one. Other record types (alerts, TLS 1.2 handshake records)
// neither count nor end a burst; empty records are ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "postern/util/bytes.h"

namespace postern::lab {

struct TlsInTlsSettings {
  std::size_t bursts = 4;  // how many application-data bursts after the outer handshake are looked at
  // Template of an inner TLS 1.3 handshake as seen in outer record payload sizes (bytes).
  std::size_t hello_min = 250, hello_max = 700;       // inner ClientHello burst, client -> server
  // A TLS 1.3 server flight with one P-256 certificate is under 1000 bytes (Postern's server:
  // ~870 with trojan's framing, measured in the lab); RSA chains run to several kilobytes.
  std::size_t server_min = 600, server_max = 8000;    // inner server flight, server -> client
  std::size_t finished_min = 64, finished_max = 160;  // inner Finished burst, client -> server
};

enum class Direction : std::uint8_t { client_to_server, server_to_client };

class TlsInTlsDetector {
 public:
  explicit TlsInTlsDetector(TlsInTlsSettings settings = {}) : settings_(settings) {}
  // Feeds bytes seen on the wire in one direction (any chunking); parses the TLS record headers.
  void feed(Direction d, ByteView bytes);
  // True once the first three complete bursts match the template; decided() once `bursts`
  // (at least 3) bursts are complete or the stream is not TLS (then suspicious() is false). After
  // the decision further input is ignored.
  bool suspicious() const noexcept { return suspicious_; }
  bool decided() const noexcept { return decided_; }
  // The application-data bursts seen so far (payload bytes, with their direction), for the log.
  struct Burst {
    Direction direction;
    std::size_t bytes;         // payload bytes of all its records
    std::size_t first_record;  // payload bytes of its first record
    std::size_t records;
  };
  const std::vector<Burst>& bursts() const noexcept { return bursts_; }  // the last may be open
  // "c534 s1466 c97" (for the censor's log); a client burst of several records also gives its
  // first record's size: "c600/97".
  std::string describe() const;

 private:
  // Where a direction is in the outer handshake.
  enum class Phase : std::uint8_t {
    handshake,  // before its ChangeCipherSpec or first application_data record
    after_ccs,  // ChangeCipherSpec seen, its Finished not yet
    data        // its handshake is over; application_data counts (the server's once the client's did)
  };
  struct Side {
    std::uint8_t header[5] = {};  // an incomplete record header
    std::size_t have = 0;         // bytes of it
    std::size_t skip = 0;         // record payload bytes still to pass over
    Phase phase = Phase::handshake;
  };
  void record(Direction d, std::uint8_t type, std::size_t length);
  void application_data(Direction d, std::size_t length);
  void not_tls();
  TlsInTlsSettings settings_;
  Side sides_[2];  // indexed by Direction
  std::vector<Burst> bursts_;
  bool suspicious_ = false;
  bool decided_ = false;
};

}  // namespace postern::lab
