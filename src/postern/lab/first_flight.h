// What an on-path censor learns from a connection's first client-to-server payload (the lab's
// middlebox, docs/censorship.md): the fully-encrypted-traffic verdict of Wu et al. (USENIX
// Security 2023), the TLS ClientHello's server name, ALPN and JA3/JA4 fingerprints, and an HTTP
// request's Host. Sans-I/O and fuzzed: every input is hostile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "postern/util/bytes.h"

namespace postern::lab {

// Wu et al.'s rule on the first payload: which exemption applies, if any. `none` means the
// payload looks fully encrypted (and may be blocked).
enum class FetExemption : std::uint8_t {
  none,
  ex1_popcount,        // average set bits per byte <= 3.4 or >= 4.6
  ex2_printable_head,  // the first 6 bytes are printable ASCII (0x20-0x7e)
  ex3_printable_half,  // more than 50 % of the bytes are printable
  ex4_printable_run,   // a run of more than 20 contiguous printable bytes
  ex5_protocol  // starts like TLS ([\x16-\x17]\x03[\x00-\x09]) or HTTP ("GET ", "PUT ", "POST ", "HEAD ")
};
// The first exemption that holds, checked in the order Ex1..Ex5; `none` for an empty payload too
// (nothing to exempt; the middlebox never calls it with one). Ex1 is compared in integers
// (10 * bits <= 34 * n), so the boundaries are exact; a payload shorter than 6 bytes never meets
// Ex2. Real TLS hellos usually pass already on Ex1 (their many zero bytes).
FetExemption fet_exemption(ByteView first_payload);
const char* to_string(FetExemption e);

// A parsed TLS ClientHello (from the first TLS record(s) of the payload).
struct ClientHello {
  std::uint16_t record_version = 0;                 // the record layer's
  std::uint16_t legacy_version = 0;                 // client_version
  std::vector<std::uint16_t> ciphers;               // in order, GREASE included
  std::vector<std::uint16_t> extensions;            // types in order, GREASE included
  std::vector<std::uint16_t> groups;                // supported_groups (10)
  std::vector<std::uint8_t> ec_point_formats;       // (11)
  std::vector<std::uint16_t> signature_algorithms;  // (13), in order
  std::vector<std::uint16_t> supported_versions;    // (43)
  std::vector<std::string> alpn;                    // (16)
  std::string server_name;  // (0) host_name lower-cased, no trailing dot; empty if none
  bool has_ech = false;     // 0xfe0d present
  bool has_esni = false;    // 0xffce present
};
enum class HelloParse : std::uint8_t {
  not_tls,     // the payload does not start with a TLS handshake record
  incomplete,  // a TLS handshake record, but the ClientHello is not complete yet (read more)
  malformed,   // a TLS handshake record that is not a valid ClientHello
  ok
};
struct HelloResult {
  HelloParse status = HelloParse::not_tls;
  ClientHello hello;  // ok
};
// Parses a ClientHello that may span several handshake records (up to 16 KiB of handshake data).
// `not_tls` as soon as the first record header's fixed bytes (0x16, 0x03, 0x00-0x04) differ;
// `incomplete` for every proper prefix of a valid hello (the empty payload included);
// `malformed` for any length that does not fit, an empty or over-long (> 2^14) record, another
// record type or handshake message before the hello is complete, bytes after the hello in its
// last record, a duplicate extension, a server name that is not 1-255 hostname characters
// (letters, digits, '-', '.', '_'), an empty ALPN name. Records after the hello's are ignored.
HelloResult parse_client_hello(ByteView payload);

// JA3 (Salesforce): "version,ciphers,extensions,groups,point_formats" in decimal, '-'-joined,
// GREASE values left out; and its MD5 in lower-case hex.
std::string ja3_string(const ClientHello& h);
std::string ja3_hash(const ClientHello& h);
// JA4 (FoxIO, JA4 TLS client, v1): e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1" for TCP; a = "t",
// the highest supported_versions value (else legacy_version) as 13/12/..., 'd' with an SNI, 'i'
// without, two-digit cipher and extension counts (GREASE excluded, capped at 99), the first and
// last characters of the first ALPN value ("00" without; the first and last hex digits of the
// value when either end byte is not alphanumeric), then the truncated SHA-256 (12 hex) of the
// sorted ciphers and of the sorted extensions (without SNI and ALPN) "_" signature algorithms in
// order (no "_" without signature algorithms); "000000000000" for an empty cipher or extension
// list, as the spec says. 'd' means the SNI extension is present.
std::string ja4(const ClientHello& h);

// The Host of a plain HTTP request at the start of the payload (a request line with a method
// of upper-case letters, then headers); nullopt when it is not HTTP or has no Host (yet). Lower
// case, without the port.
std::optional<std::string> http_host(ByteView payload);

// Whether `name` is `pattern` or a subdomain of it (both lower case, no trailing dot):
// "chat.example" matches "example" and "chat.example".
bool name_matches(const std::string& name, const std::string& pattern);

}  // namespace postern::lab
