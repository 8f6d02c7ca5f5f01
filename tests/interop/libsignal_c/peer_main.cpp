// postern-interop-libsignal-c: libsignal-protocol-c 2.3.3 behind the interop peer line protocol.
//
// One command per stdin line, one answer line per command on stdout (flushed), until `quit` or EOF.
// Fields are separated by single spaces, binary fields are hex ("-" = empty), answers are `ok ...` or
// `err <negative code> <text>`. The peer never exits on bad input. The protocol is described in
// tests/interop/README.md; tests/interop/driver.py pairs two peers.
//
// Error codes: libsignal's own (SG_ERR_*, e.g. -1001 duplicate, -1002 invalid key, -1005 invalid message,
// -1008 no session, -22 invalid argument) when the library reports them, and these for the line itself:
//   -1  unknown command
//   -2  wrong number of arguments
//   -3  malformed field (bad hex, bad or out-of-range integer, inconsistent pre key id/key)
//   -4  no local party yet (send `init` first)
//   -5  internal error (an exception escaped a handler; should not happen)
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libsignal_c/signal_c_support.h"

namespace {

using postern::interop::signal_c::Bytes;
using postern::interop::signal_c::ByteView;
using postern::interop::signal_c::Ciphertext;
using postern::interop::signal_c::error_name;
using postern::interop::signal_c::Fingerprint;
using postern::interop::signal_c::PreKeyBundle;
using postern::interop::signal_c::SignalCContext;

constexpr int kErrUnknownCommand = -1;
constexpr int kErrArgumentCount = -2;
constexpr int kErrMalformed = -3;
constexpr int kErrNoParty = -4;
constexpr int kErrInternal = -5;

using Args = std::vector<std::string_view>;

// ---------------------------------------------------------------------------------------------------
// Field codecs.

std::string hex(ByteView bytes) {
  if (bytes.empty()) return "-";
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "-" is the empty byte string.
std::optional<Bytes> parse_hex(std::string_view s) {
  if (s == "-") return Bytes{};
  if (s.empty() || s.size() % 2 != 0) return std::nullopt;
  Bytes out(s.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(s[2 * i]);
    const int lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return out;
}

template <class Int>
std::optional<Int> parse_int(std::string_view s) {
  Int value{};
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, value);
  if (ec != std::errc() || ptr != end || s.empty()) return std::nullopt;
  return value;
}

// A one-time pre key id: "-1" means none. Returns false if malformed.
bool parse_prekey_id(std::string_view s, std::optional<std::uint32_t>& id) {
  id.reset();
  if (s == "-1") return true;
  id = parse_int<std::uint32_t>(s);
  return id.has_value();
}

// Keeps user-supplied text in an error message to one short printable ASCII line.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) out.push_back(c >= 0x21 && c <= 0x7e ? c : '?');
  return out;
}

std::string err(int code, std::string_view text) {
  return "err " + std::to_string(code) + " " + std::string(text);
}
std::string library_err(int code, std::string_view what) {
  return err(code, std::string(error_name(code)) + " (" + std::string(what) + ")");
}
std::string malformed(std::string_view field) {
  return err(kErrMalformed, "malformed " + std::string(field));
}

// ---------------------------------------------------------------------------------------------------
// Commands.

class Peer {
 public:
  // The answer line (without newline) to `line`; `quit` is set by the quit command, which has none.
  std::string handle(std::string_view line, bool& quit) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Args fields;
    std::size_t start = 0;
    while (true) {
      const std::size_t space = line.find(' ', start);
      fields.push_back(
          line.substr(start, space == std::string_view::npos ? std::string_view::npos : space - start));
      if (space == std::string_view::npos) break;
      start = space + 1;
    }
    const std::string_view command = fields.front();
    const Args args(fields.begin() + 1, fields.end());

    if (command == "quit") {
      quit = true;
      return {};
    }
    struct Entry {
      std::string_view name;
      std::size_t argc;
      std::string (Peer::*run)(const Args&);
      bool needs_party;
    };
    static constexpr Entry kCommands[] = {
        {"init", 2, &Peer::init, false},
        {"identity", 0, &Peer::identity, true},
        {"bundle", 2, &Peer::bundle, true},
        {"process_bundle", 9, &Peer::process_bundle, true},
        {"encrypt", 3, &Peer::encrypt, true},
        {"decrypt", 4, &Peer::decrypt, true},
        {"skdm_create", 1, &Peer::skdm_create, true},
        {"skdm_process", 4, &Peer::skdm_process, true},
        {"group_encrypt", 2, &Peer::group_encrypt, true},
        {"group_decrypt", 4, &Peer::group_decrypt, true},
        {"sign", 1, &Peer::sign, true},
        {"verify", 3, &Peer::verify, true},
        {"fingerprint", 5, &Peer::fingerprint, true},
    };
    for (const Entry& e : kCommands) {
      if (e.name != command) continue;
      if (args.size() != e.argc) {
        return err(kErrArgumentCount,
                   std::string(command) + " takes " + std::to_string(e.argc) + " arguments");
      }
      if (e.needs_party && !party_) return err(kErrNoParty, "no local party: send init first");
      try {
        return (this->*e.run)(args);
      } catch (...) {
        return err(kErrInternal, "internal error");
      }
    }
    return err(kErrUnknownCommand, "unknown command " + printable(command));
  }

 private:
  std::string init(const Args& a) {
    auto device = parse_int<std::int32_t>(a[1]);
    if (a[0].empty()) return malformed("name");
    if (!device) return malformed("device_id");
    party_.reset();  // `init` replaces the whole local party, even if creating the new one fails
    std::unique_ptr<SignalCContext> fresh;
    if (int rc = SignalCContext::create(a[0], *device, fresh); rc < 0) return library_err(rc, "init");
    party_ = std::move(fresh);
    return "ok " + std::to_string(party_->registration_id()) + " " + hex(party_->identity_public());
  }

  std::string identity(const Args&) { return "ok " + hex(party_->identity_public()); }

  std::string bundle(const Args& a) {
    auto spk_id = parse_int<std::uint32_t>(a[0]);
    std::optional<std::uint32_t> pk_id;
    if (!spk_id) return malformed("signed_prekey_id");
    if (!parse_prekey_id(a[1], pk_id)) return malformed("prekey_id");
    PreKeyBundle b;
    if (int rc = party_->generate_bundle(*spk_id, pk_id, b); rc < 0) return library_err(rc, "bundle");
    return "ok " + std::to_string(b.registration_id) + " " + std::to_string(b.device_id) + " " +
           hex(b.identity_public) + " " + std::to_string(b.signed_prekey_id) + " " +
           hex(b.signed_prekey_public) + " " + hex(b.signed_prekey_signature) + " " +
           (b.prekey_id ? std::to_string(*b.prekey_id) : "-1") + " " + hex(b.prekey_public);
  }

  std::string process_bundle(const Args& a) {
    auto device = parse_int<std::int32_t>(a[1]);
    auto registration_id = parse_int<std::uint32_t>(a[2]);
    auto identity_pub = parse_hex(a[3]);
    auto spk_id = parse_int<std::uint32_t>(a[4]);
    auto spk_pub = parse_hex(a[5]);
    auto signature = parse_hex(a[6]);
    std::optional<std::uint32_t> pk_id;
    const bool pk_id_ok = parse_prekey_id(a[7], pk_id);
    auto pk_pub = parse_hex(a[8]);
    if (!device) return malformed("peer_device");
    if (!registration_id) return malformed("registration_id");
    if (!identity_pub) return malformed("identity_pub");
    if (!spk_id) return malformed("signed_prekey_id");
    if (!spk_pub) return malformed("signed_prekey_pub");
    if (!signature) return malformed("signature");
    if (!pk_id_ok) return malformed("prekey_id");
    if (!pk_pub || pk_id.has_value() == pk_pub->empty()) {
      return malformed("prekey_pub (must be - iff prekey_id is -1)");
    }
    PreKeyBundle b;
    b.registration_id = *registration_id;
    b.device_id = *device;
    b.identity_public = std::move(*identity_pub);
    b.signed_prekey_id = *spk_id;
    b.signed_prekey_public = std::move(*spk_pub);
    b.signed_prekey_signature = std::move(*signature);
    b.prekey_id = pk_id;
    b.prekey_public = std::move(*pk_pub);
    if (int rc = party_->process_bundle(a[0], *device, b); rc < 0) return library_err(rc, "process_bundle");
    return "ok";
  }

  std::string encrypt(const Args& a) {
    auto device = parse_int<std::int32_t>(a[1]);
    auto plaintext = parse_hex(a[2]);
    if (!device) return malformed("peer_device");
    if (!plaintext) return malformed("plaintext");
    Ciphertext c;
    if (int rc = party_->encrypt(a[0], *device, *plaintext, c); rc < 0) return library_err(rc, "encrypt");
    return "ok " + std::to_string(c.type) + " " + hex(c.wire);
  }

  std::string decrypt(const Args& a) {
    auto device = parse_int<std::int32_t>(a[1]);
    auto type = parse_int<int>(a[2]);
    auto wire = parse_hex(a[3]);
    if (!device) return malformed("peer_device");
    if (!type) return malformed("type");
    if (!wire) return malformed("wire");
    Bytes plaintext;
    if (int rc = party_->decrypt(a[0], *device, *type, *wire, plaintext); rc < 0)
      return library_err(rc, "decrypt");
    return "ok " + hex(plaintext);
  }

  std::string skdm_create(const Args& a) {
    Bytes skdm;
    if (int rc = party_->create_skdm(a[0], skdm); rc < 0) return library_err(rc, "skdm_create");
    return "ok " + hex(skdm);
  }

  std::string skdm_process(const Args& a) {
    auto device = parse_int<std::int32_t>(a[2]);
    auto wire = parse_hex(a[3]);
    if (!device) return malformed("sender_device");
    if (!wire) return malformed("wire");
    if (int rc = party_->process_skdm(a[0], a[1], *device, *wire); rc < 0)
      return library_err(rc, "skdm_process");
    return "ok";
  }

  std::string group_encrypt(const Args& a) {
    auto plaintext = parse_hex(a[1]);
    if (!plaintext) return malformed("plaintext");
    Bytes wire;
    if (int rc = party_->group_encrypt(a[0], *plaintext, wire); rc < 0)
      return library_err(rc, "group_encrypt");
    return "ok " + hex(wire);
  }

  std::string group_decrypt(const Args& a) {
    auto device = parse_int<std::int32_t>(a[2]);
    auto wire = parse_hex(a[3]);
    if (!device) return malformed("sender_device");
    if (!wire) return malformed("wire");
    Bytes plaintext;
    if (int rc = party_->group_decrypt(a[0], a[1], *device, *wire, plaintext); rc < 0) {
      return library_err(rc, "group_decrypt");
    }
    return "ok " + hex(plaintext);
  }

  std::string sign(const Args& a) {
    auto message = parse_hex(a[0]);
    if (!message) return malformed("message");
    Bytes signature;
    if (int rc = party_->sign(*message, signature); rc < 0) return library_err(rc, "sign");
    return "ok " + hex(signature);
  }

  std::string verify(const Args& a) {
    auto pub = parse_hex(a[0]);
    auto message = parse_hex(a[1]);
    auto signature = parse_hex(a[2]);
    if (!pub) return malformed("pub");
    if (!message) return malformed("message");
    if (!signature) return malformed("signature");
    const int rc = party_->verify(*pub, *message, *signature);
    if (rc < 0) return library_err(rc, "verify");
    return rc == 1 ? "ok 1" : "ok 0";
  }

  std::string fingerprint(const Args& a) {
    auto iterations = parse_int<int>(a[0]);
    auto version = parse_int<int>(a[1]);
    auto remote_pub = parse_hex(a[4]);
    if (!iterations || *iterations < 1) return malformed("iterations");
    if (!version || (*version != 0 && *version != 1)) return malformed("scannable_version (0 or 1)");
    if (!remote_pub) return malformed("remote_identity_pub");
    Fingerprint fp;
    const int rc =
        party_->fingerprint(*iterations, *version, std::string(a[2]), std::string(a[3]), *remote_pub, fp);
    if (rc < 0) return library_err(rc, "fingerprint");
    return "ok " + fp.displayable + " " + hex(fp.scannable);
  }

  std::unique_ptr<SignalCContext> party_;
};

}  // namespace

int main() {
  std::ios::sync_with_stdio(false);
  Peer peer;
  std::string line;
  std::string answer;
  while (std::getline(std::cin, line)) {
    bool quit = false;
    try {
      answer = peer.handle(line, quit);
    } catch (...) {  // allocation failure while splitting or formatting: answer and keep going
      answer = err(kErrInternal, "internal error");
    }
    if (quit) return 0;
    answer.push_back('\n');
    std::fwrite(answer.data(), 1, answer.size(), stdout);
    std::fflush(stdout);
  }
  return 0;
}
