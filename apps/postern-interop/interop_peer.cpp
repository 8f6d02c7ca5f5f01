#include "interop_peer.h"

#include <charconv>
#include <optional>
#include <vector>

#include "postern/protocol/errors.h"
#include "postern/protocol/fingerprint.h"
#include "postern/protocol/group_cipher.h"
#include "postern/protocol/session_builder.h"
#include "postern/protocol/session_cipher.h"
#include "postern/util/bytes.h"

namespace postern::interop {
namespace {

using protocol::Errc;

// Codes for malformed commands (libsignal-protocol-c's SG_ERR_INVAL and SG_ERR_UNKNOWN).
constexpr int kErrInvalidArgument = -22;
constexpr int kErrUnknown = -1000;

std::string err(int code, std::string_view text) {
  return "err " + std::to_string(code) + " " + std::string(text);
}

std::string err(std::error_code e) {
  if (e.category() == protocol::protocol_category()) return err(-e.value(), e.message());
  return err(kErrUnknown, e.message());
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    std::size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    out.push_back(line.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

class Args {
 public:
  explicit Args(std::vector<std::string_view> f) : f_(std::move(f)) {}
  std::size_t size() const { return f_.size(); }
  std::string_view operator[](std::size_t i) const { return f_[i]; }

  std::optional<std::uint32_t> u32(std::size_t i) const {
    std::uint32_t v = 0;
    auto s = f_[i];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
  }
  std::optional<int> small_int(std::size_t i) const {
    int v = 0;
    auto s = f_[i];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
  }
  // Hex bytes; "-" is empty.
  std::optional<Bytes> bytes(std::size_t i) const {
    if (f_[i] == "-") return Bytes{};
    auto b = from_hex(f_[i]);
    if (!b) return std::nullopt;
    return std::move(b).value();
  }
  std::optional<crypto::PublicKey> key(std::size_t i) const {
    auto b = bytes(i);
    if (!b) return std::nullopt;
    auto k = crypto::PublicKey::deserialize(*b);
    if (!k) return std::nullopt;
    return *k;
  }

 private:
  std::vector<std::string_view> f_;
};

std::string hex_or_dash(ByteView b) {
  return b.empty() ? "-" : to_hex(b);
}

}  // namespace

struct InteropPeer::Party {
  std::string name;
  std::uint32_t device_id;
  protocol::InMemoryProtocolStore store;
  Party(std::string n, std::uint32_t d, protocol::IdentityKeyPair id, std::uint32_t reg)
      : name(std::move(n)), device_id(d), store(std::move(id), reg) {}
};

std::string InteropPeer::handle(std::string_view line, bool& quit) {
  quit = false;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  Args a(split(line));
  if (a.size() == 0) return err(kErrInvalidArgument, "empty command");
  const std::string_view cmd = a[0];
  auto want = [&](std::size_t n) { return a.size() == n + 1; };
  const std::string bad_args = "malformed arguments for " + std::string(cmd);

  if (cmd == "quit") {
    quit = true;
    return {};
  }
  if (cmd == "init") {
    if (!want(2)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(2);
    if (!device || a[1].empty()) return err(kErrInvalidArgument, bad_args);
    auto identity = protocol::IdentityKeyPair::generate(rng_);
    const std::uint32_t reg = protocol::generate_registration_id(rng_);
    const std::string pub = to_hex(identity.public_key.serialize());
    party_ = std::make_shared<Party>(std::string(a[1]), *device, std::move(identity), reg);
    return "ok " + std::to_string(reg) + " " + pub;
  }
  if (cmd == "verify") {  // needs no local party
    if (!want(3)) return err(kErrInvalidArgument, bad_args);
    auto key = a.key(1);
    auto msg = a.bytes(2);
    auto sig = a.bytes(3);
    if (!key || !msg || !sig || sig->size() != crypto::kSignatureSize)
      return err(kErrInvalidArgument, bad_args);
    return crypto::xeddsa_verify(*key, *msg, *sig) ? "ok 1" : "ok 0";
  }
  if (!party_) return err(kErrInvalidArgument, "no local party: send init first");
  Party& p = *party_;
  auto& store = p.store;
  auto identity = store.identity_key_pair();
  if (!identity) return err(identity.error());

  if (cmd == "identity") {
    if (!want(0)) return err(kErrInvalidArgument, bad_args);
    return "ok " + to_hex(identity->public_key.serialize());
  }
  if (cmd == "bundle") {
    if (!want(2)) return err(kErrInvalidArgument, bad_args);
    auto spk_id = a.u32(1);
    std::optional<std::uint32_t> pk_id;
    if (a[2] != "-1") {
      pk_id = a.u32(2);
      if (!pk_id) return err(kErrInvalidArgument, bad_args);
    }
    if (!spk_id) return err(kErrInvalidArgument, bad_args);
    auto spk = protocol::SignedPreKeyRecord::generate(*spk_id, *identity, 0, rng_);
    if (auto s = store.store_signed_pre_key(*spk_id, spk.serialize()); !s) return err(s.error());
    std::string out = "ok " + std::to_string(*store.local_registration_id()) + " " +
                      std::to_string(p.device_id) + " " + to_hex(identity->public_key.serialize()) + " " +
                      std::to_string(*spk_id) + " " + to_hex(spk.key_pair.public_key.serialize()) + " " +
                      to_hex(spk.signature);
    if (pk_id) {
      auto pk = protocol::PreKeyRecord::generate(*pk_id, rng_);
      if (auto s = store.store_pre_key(*pk_id, pk.serialize()); !s) return err(s.error());
      out += " " + std::to_string(*pk_id) + " " + to_hex(pk.key_pair.public_key.serialize());
    } else {
      out += " -1 -";
    }
    return out;
  }
  if (cmd == "process_bundle") {
    if (!want(9)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(2);
    auto reg = a.u32(3);
    auto ik = a.key(4);
    auto spk_id = a.u32(5);
    auto spk = a.key(6);
    auto sig = a.bytes(7);
    if (!device || !reg || !ik || !spk_id || !spk || !sig || sig->size() != crypto::kSignatureSize) {
      return err(kErrInvalidArgument, bad_args);
    }
    protocol::PreKeyBundle bundle;
    bundle.registration_id = *reg;
    bundle.device_id = *device;
    bundle.identity_key = *ik;
    bundle.signed_pre_key_id = *spk_id;
    bundle.signed_pre_key = *spk;
    std::copy(sig->begin(), sig->end(), bundle.signed_pre_key_signature.begin());
    if (a[8] != "-1") {
      auto pk_id = a.u32(8);
      auto pk = a.key(9);
      if (!pk_id || !pk) return err(kErrInvalidArgument, bad_args);
      bundle.pre_key_id = *pk_id;
      bundle.pre_key = *pk;
    } else if (a[9] != "-") {
      return err(kErrInvalidArgument, bad_args);
    }
    auto s =
        protocol::process_pre_key_bundle(store.session_stores(), {std::string(a[1]), *device}, bundle, rng_);
    return s ? "ok" : err(s.error());
  }
  if (cmd == "encrypt") {
    if (!want(3)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(2);
    auto pt = a.bytes(3);
    if (!device || !pt) return err(kErrInvalidArgument, bad_args);
    protocol::SessionCipher cipher(store.session_stores(), {std::string(a[1]), *device}, rng_);
    auto c = cipher.encrypt(*pt);
    if (!c) return err(c.error());
    return "ok " + std::to_string(static_cast<std::uint32_t>(c->type)) + " " + to_hex(c->serialized);
  }
  if (cmd == "decrypt") {
    if (!want(4)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(2);
    auto type = a.u32(3);
    auto wire = a.bytes(4);
    if (!device || !type || !wire || (*type != 2 && *type != 3)) return err(kErrInvalidArgument, bad_args);
    protocol::SessionCipher cipher(store.session_stores(), {std::string(a[1]), *device}, rng_);
    auto pt = cipher.decrypt(static_cast<protocol::CiphertextType>(*type), *wire);
    if (!pt) return err(pt.error());
    return "ok " + hex_or_dash(*pt);
  }
  if (cmd == "skdm_create") {
    if (!want(1)) return err(kErrInvalidArgument, bad_args);
    auto m =
        protocol::create_sender_key_distribution(store, {std::string(a[1]), {p.name, p.device_id}}, rng_);
    if (!m) return err(m.error());
    return "ok " + to_hex(m->serialized());
  }
  if (cmd == "skdm_process") {
    if (!want(4)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(3);
    auto wire = a.bytes(4);
    if (!device || !wire) return err(kErrInvalidArgument, bad_args);
    auto m = protocol::SenderKeyDistributionMessage::parse(*wire);
    if (!m) return err(m.error());
    auto s = protocol::process_sender_key_distribution(store,
                                                       {std::string(a[1]), {std::string(a[2]), *device}}, *m);
    return s ? "ok" : err(s.error());
  }
  if (cmd == "group_encrypt") {
    if (!want(2)) return err(kErrInvalidArgument, bad_args);
    auto pt = a.bytes(2);
    if (!pt) return err(kErrInvalidArgument, bad_args);
    protocol::GroupCipher cipher(store, {std::string(a[1]), {p.name, p.device_id}}, rng_);
    auto c = cipher.encrypt(*pt);
    if (!c) return err(c.error());
    return "ok " + to_hex(*c);
  }
  if (cmd == "group_decrypt") {
    if (!want(4)) return err(kErrInvalidArgument, bad_args);
    auto device = a.u32(3);
    auto wire = a.bytes(4);
    if (!device || !wire) return err(kErrInvalidArgument, bad_args);
    protocol::GroupCipher cipher(store, {std::string(a[1]), {std::string(a[2]), *device}}, rng_);
    auto pt = cipher.decrypt(*wire);
    if (!pt) return err(pt.error());
    return "ok " + hex_or_dash(*pt);
  }
  if (cmd == "sign") {
    if (!want(1)) return err(kErrInvalidArgument, bad_args);
    auto msg = a.bytes(1);
    if (!msg) return err(kErrInvalidArgument, bad_args);
    return "ok " + to_hex(crypto::xeddsa_sign(identity->private_key, *msg, rng_));
  }
  if (cmd == "fingerprint") {
    if (!want(5)) return err(kErrInvalidArgument, bad_args);
    auto iterations = a.small_int(1);
    auto version = a.small_int(2);
    auto remote_key = a.key(5);
    if (!iterations || !version || !remote_key) return err(kErrInvalidArgument, bad_args);
    auto f =
        protocol::create_fingerprint(*iterations, *version, a[3], identity->public_key, a[4], *remote_key);
    if (!f) return err(f.error());
    return "ok " + f->displayable + " " + to_hex(f->scannable);
  }
  return err(kErrInvalidArgument, "unknown command");
}

}  // namespace postern::interop
