// The Noise Protocol Framework, revision 34 (see noise.h for what is supported).
//
// Design: the spec's three objects map one to one. CipherState is public (the transport keeps
// the pair Split() returns); SymmetricState and the handshake's token machine live in Impl. The
// hash is chosen at run time (SHA256 or BLAKE2b) through a small tagged Hasher; HMAC and HKDF are
// written on top of it exactly as section 4.3 defines them (HMAC with the hash's own block
// length), so both hashes share one code path and BLAKE2b is not used in its keyed mode.
//
// Patterns are kept in the spec's own notation ("e, es, s, ss") and parsed once in start(), so
// the table below can be checked against section 7 by eye.
//
// Hostile input: every read checks lengths before it slices, every failure is an error value, and
// an error in read_message poisons the state (the spec says to discard it; we make sure nobody
// can carry on by mistake). write_message checks the final size before it changes anything.
// The ephemeral key pair is drawn in start() rather than when the "e" token is written, so the
// state never keeps a reference to the caller's Rng.
#include "postern/transport/noise.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <vector>

#include "postern/transport/errors.h"

namespace postern::transport::noise {
namespace {

constexpr std::size_t kMaxHashLen = 64;
constexpr std::size_t kMaxBlockLen = 128;
constexpr std::size_t kNonceSize = crypto_aead_chacha20poly1305_ietf_NPUBBYTES;
constexpr std::uint64_t kReservedNonce = std::numeric_limits<std::uint64_t>::max();

static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == kKeySize);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == kTagSize);
static_assert(crypto_scalarmult_curve25519_BYTES == kDhSize);
static_assert(crypto_scalarmult_curve25519_SCALARBYTES == kDhSize);
static_assert(kNonceSize == 12);

using HashBuf = crypto::SecretArray<kMaxHashLen>;

// libsodium reads nothing through a pointer whose length is zero, but an empty span's data() may
// be null; a real address keeps sanitizers and the C API's preconditions quiet.
const std::uint8_t kEmpty[1] = {0};
const std::uint8_t* ptr(ByteView v) {
  return v.empty() ? kEmpty : v.data();
}

// ---- hash ----------------------------------------------------------------------------------

enum class HashKind { sha256, blake2b };

constexpr std::size_t hash_len(HashKind k) {
  return k == HashKind::sha256 ? 32 : 64;
}
constexpr std::size_t block_len(HashKind k) {
  return k == HashKind::sha256 ? 64 : 128;
}

// Incremental HASH() of either kind. The state holds data derived from keys (HMAC's inner and
// outer pads), so it is wiped when the object dies.
class Hasher {
 public:
  explicit Hasher(HashKind kind) : kind_(kind) {
    if (kind_ == HashKind::sha256) {
      crypto_hash_sha256_init(&state_.sha);
    } else {
      crypto_generichash_blake2b_init(&state_.blake, nullptr, 0, hash_len(kind_));
    }
  }
  ~Hasher() { crypto::wipe(&state_, sizeof state_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  Hasher& update(ByteView data) {
    if (kind_ == HashKind::sha256) {
      crypto_hash_sha256_update(&state_.sha, ptr(data), data.size());
    } else {
      crypto_generichash_blake2b_update(&state_.blake, ptr(data), data.size());
    }
    return *this;
  }
  // Writes hash_len(kind) bytes.
  void finish(std::uint8_t* out) {
    if (kind_ == HashKind::sha256) {
      crypto_hash_sha256_final(&state_.sha, out);
    } else {
      crypto_generichash_blake2b_final(&state_.blake, out, hash_len(kind_));
    }
  }

 private:
  HashKind kind_;
  union State {
    crypto_hash_sha256_state sha;
    crypto_generichash_blake2b_state blake;
  } state_{};
};

// HMAC-HASH(key, data...) per RFC 2104 with the hash's block length (Noise section 4.3). Keys
// here are at most HASHLEN bytes, never longer than a block, but longer keys are hashed first as
// the RFC says, so the function is complete.
void hmac(HashKind kind, ByteView key, std::initializer_list<ByteView> data, std::uint8_t* out) {
  const std::size_t block = block_len(kind);
  crypto::SecretArray<kMaxBlockLen> pad;  // the key, zero-padded to a block
  if (key.size() > block) {
    Hasher(kind).update(key).finish(pad.data());
  } else {
    std::copy(key.begin(), key.end(), pad.data());
  }
  crypto::SecretArray<kMaxBlockLen> xored;
  for (std::size_t i = 0; i < block; ++i) xored[i] = static_cast<std::uint8_t>(pad[i] ^ 0x36);
  HashBuf inner;
  {
    Hasher h(kind);
    h.update(ByteView(xored.data(), block));
    for (ByteView d : data) h.update(d);
    h.finish(inner.data());
  }
  for (std::size_t i = 0; i < block; ++i) xored[i] = static_cast<std::uint8_t>(pad[i] ^ 0x5c);
  Hasher(kind)
      .update(ByteView(xored.data(), block))
      .update(ByteView(inner.data(), hash_len(kind)))
      .finish(out);
}

// HKDF(chaining_key, input_key_material, 2) of section 4.3: two HASHLEN outputs.
void hkdf2(HashKind kind, ByteView chaining_key, ByteView ikm, HashBuf& out1, HashBuf& out2) {
  const std::size_t n = hash_len(kind);
  HashBuf temp_key;
  hmac(kind, chaining_key, {ikm}, temp_key.data());
  const ByteView tk(temp_key.data(), n);
  const std::uint8_t one = 0x01;
  const std::uint8_t two = 0x02;
  hmac(kind, tk, {ByteView(&one, 1)}, out1.data());
  hmac(kind, tk, {ByteView(out1.data(), n), ByteView(&two, 1)}, out2.data());
}

// ---- DH ----------------------------------------------------------------------------------

PublicKey public_of(const crypto::SecretArray<kDhSize>& private_key) {
  PublicKey pub{};
  // Cannot fail: X25519 clamps the scalar, so the product with the base point is never zero.
  crypto_scalarmult_curve25519_base(pub.data(), private_key.data());
  return pub;
}

// DH(key_pair, public_key). A low-order public key gives the all-zero result, which the spec lets
// an implementation refuse; we do, so a peer cannot force a known shared secret.
Status dh(const KeyPair& local, const PublicKey& remote, crypto::SecretArray<kDhSize>& out) {
  const int rc = crypto_scalarmult_curve25519(out.data(), local.private_key.data(), remote.data());
  if (rc != 0 || sodium_is_zero(out.data(), kDhSize) == 1) {
    crypto::wipe(out.data(), kDhSize);
    return Errc::bad_key;
  }
  return {};
}

// ---- SymmetricState ---------------------------------------------------------------------

class SymmetricState {
 public:
  SymmetricState(HashKind kind, std::string_view protocol_name) : kind_(kind), len_(hash_len(kind)) {
    // InitializeSymmetric: h = the name zero-padded to HASHLEN, or HASH(name) when longer.
    const ByteView name = as_bytes(protocol_name);
    if (name.size() <= len_) {
      std::copy(name.begin(), name.end(), h_.begin());
    } else {
      Hasher(kind_).update(name).finish(h_.data());
    }
    std::copy_n(h_.begin(), len_, ck_.data());
  }

  ByteView h() const { return {h_.data(), len_}; }
  bool has_key() const { return cipher_.has_key(); }

  void mix_hash(ByteView data) { Hasher(kind_).update(h()).update(data).finish(h_.data()); }

  void mix_key(ByteView ikm) {
    HashBuf next_ck;
    HashBuf temp_k;
    hkdf2(kind_, ByteView(ck_.data(), len_), ikm, next_ck, temp_k);
    ck_ = next_ck;
    // With HASHLEN 64 temp_k is truncated to the cipher's 32-byte key.
    cipher_.initialize_key(
        crypto::SecretArray<kKeySize>(std::span<const std::uint8_t, kKeySize>(temp_k.data(), kKeySize)));
  }

  // Appends EncryptAndHash(plaintext) to out.
  Status encrypt_and_hash(ByteView plaintext, Bytes& out) {
    const std::size_t start = out.size();
    out.resize(start + plaintext.size() + (has_key() ? kTagSize : 0));
    const MutableByteView dst(out.data() + start, out.size() - start);
    Status st = cipher_.encrypt_with_ad(h(), plaintext, dst);
    if (!st) {
      out.resize(start);
      return st;
    }
    mix_hash(dst);
    return {};
  }

  // DecryptAndHash(ciphertext) into out (ciphertext.size() - tag bytes once a key is set).
  Status decrypt_and_hash(ByteView ciphertext, MutableByteView out) {
    Status st = cipher_.decrypt_with_ad(h(), ciphertext, out);
    if (!st) return st;
    mix_hash(ciphertext);
    return {};
  }

  std::size_t overhead() const { return has_key() ? kTagSize : 0; }

  void split(CipherState& c1, CipherState& c2) {
    HashBuf k1;
    HashBuf k2;
    hkdf2(kind_, ByteView(ck_.data(), len_), ByteView(), k1, k2);
    c1.initialize_key(
        crypto::SecretArray<kKeySize>(std::span<const std::uint8_t, kKeySize>(k1.data(), kKeySize)));
    c2.initialize_key(
        crypto::SecretArray<kKeySize>(std::span<const std::uint8_t, kKeySize>(k2.data(), kKeySize)));
    // The chaining key has done its work; nothing may derive from it again.
    crypto::wipe(ck_.data(), ck_.size());
    cipher_.clear_key();
  }

 private:
  HashKind kind_;
  std::size_t len_;
  HashBuf ck_;
  std::array<std::uint8_t, kMaxHashLen> h_{};  // public (a transcript hash), so not wiped
  CipherState cipher_;
};

// ---- patterns ---------------------------------------------------------------------------

enum class Token : std::uint8_t { e, s, ee, es, se, ss };

struct PatternDef {
  std::string_view name;
  bool initiator_pre_s;                      // "-> s" before "..."
  bool responder_pre_s;                      // "<- s" before "..."
  std::array<std::string_view, 3> messages;  // "->" first, alternating; "" past the last
};

// Section 7.4 / 7.5 (revision 34), interactive patterns only.
constexpr PatternDef kPatterns[] = {
    {"NN", false, false, {"e", "e, ee", ""}},
    {"NK", false, true, {"e, es", "e, ee", ""}},
    {"NX", false, false, {"e", "e, ee, s, es", ""}},
    {"KN", true, false, {"e", "e, ee, se", ""}},
    {"KK", true, true, {"e, es, ss", "e, ee, se", ""}},
    {"KX", true, false, {"e", "e, ee, se, s, es", ""}},
    {"XN", false, false, {"e", "e, ee", "s, se"}},
    {"XK", false, true, {"e, es", "e, ee", "s, se"}},
    {"XX", false, false, {"e", "e, ee, s, es", "s, se"}},
    {"IN", false, false, {"e, s", "e, ee, se", ""}},
    {"IK", false, true, {"e, es, s, ss", "e, ee, se", ""}},
    {"IX", false, false, {"e, s", "e, ee, se, s, es", ""}},
};

std::vector<Token> parse_tokens(std::string_view text) {
  std::vector<Token> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view tok = text.substr(0, comma);
    while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
    if (tok == "e")
      out.push_back(Token::e);
    else if (tok == "s")
      out.push_back(Token::s);
    else if (tok == "ee")
      out.push_back(Token::ee);
    else if (tok == "es")
      out.push_back(Token::es);
    else if (tok == "se")
      out.push_back(Token::se);
    else if (tok == "ss")
      out.push_back(Token::ss);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return out;
}

struct ParsedName {
  const PatternDef* pattern = nullptr;
  HashKind hash = HashKind::sha256;
};

std::optional<ParsedName> parse_name(std::string_view name) {
  constexpr std::string_view kPrefix = "Noise_";
  constexpr std::string_view kMiddle = "_25519_ChaChaPoly_";
  if (name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  const std::size_t mid = name.find(kMiddle);
  if (mid == std::string_view::npos) return std::nullopt;
  const std::string_view pattern = name.substr(0, mid);
  const std::string_view hash = name.substr(mid + kMiddle.size());
  ParsedName out;
  if (hash == "SHA256")
    out.hash = HashKind::sha256;
  else if (hash == "BLAKE2b")
    out.hash = HashKind::blake2b;
  else
    return std::nullopt;
  for (const PatternDef& p : kPatterns) {
    if (p.name == pattern) out.pattern = &p;
  }
  if (out.pattern == nullptr) return std::nullopt;
  return out;
}

}  // namespace

// ---- KeyPair ------------------------------------------------------------------------------

KeyPair KeyPair::generate(crypto::Rng& rng) {
  crypto::ensure_sodium();
  KeyPair kp;
  rng.fill(MutableByteView(kp.private_key.data(), kDhSize));
  kp.public_key = public_of(kp.private_key);
  return kp;
}

Result<KeyPair> KeyPair::from_private(ByteView private_key) {
  if (private_key.size() != kDhSize) return Errc::bad_key;
  crypto::ensure_sodium();
  KeyPair kp;
  std::copy(private_key.begin(), private_key.end(), kp.private_key.data());
  kp.public_key = public_of(kp.private_key);
  return kp;
}

// ---- CipherState --------------------------------------------------------------------------

namespace {
std::array<std::uint8_t, kNonceSize> make_nonce(std::uint64_t n) {
  std::array<std::uint8_t, kNonceSize> nonce{};
  for (std::size_t i = 0; i < 8; ++i) nonce[4 + i] = static_cast<std::uint8_t>(n >> (8 * i));
  return nonce;
}
}  // namespace

void CipherState::initialize_key(const crypto::SecretArray<kKeySize>& key) {
  key_ = key;
  has_key_ = true;
  nonce_ = 0;
}

void CipherState::clear_key() {
  crypto::wipe(key_.data(), kKeySize);
  has_key_ = false;
  nonce_ = 0;
}

Status CipherState::encrypt_with_ad(ByteView ad, ByteView plaintext, MutableByteView out) {
  if (!has_key_) {
    if (plaintext.size() > kMaxMessage) return Errc::too_large;
    if (out.size() != plaintext.size()) return Errc::bad_config;
    if (!plaintext.empty() && out.data() != plaintext.data()) {
      std::memmove(out.data(), plaintext.data(), plaintext.size());
    }
    return {};
  }
  if (plaintext.size() > kMaxMessage - kTagSize) return Errc::too_large;
  if (out.size() != plaintext.size() + kTagSize) return Errc::bad_config;
  if (nonce_ == kReservedNonce) return Errc::wrong_state;
  const auto nonce = make_nonce(nonce_);
  // Detached mode writes the ciphertext over the plaintext when they alias, then the tag after it.
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(out.data(), out.data() + plaintext.size(), nullptr,
                                                     ptr(plaintext), plaintext.size(), ptr(ad), ad.size(),
                                                     nullptr, nonce.data(), key_.data());
  ++nonce_;
  return {};
}

Status CipherState::decrypt_with_ad(ByteView ad, ByteView ciphertext, MutableByteView out) {
  if (ciphertext.size() > kMaxMessage) return Errc::too_large;
  if (!has_key_) {
    if (out.size() != ciphertext.size()) return Errc::bad_config;
    if (!ciphertext.empty() && out.data() != ciphertext.data()) {
      std::memmove(out.data(), ciphertext.data(), ciphertext.size());
    }
    return {};
  }
  if (ciphertext.size() < kTagSize) return Errc::decrypt_failed;
  const std::size_t n = ciphertext.size() - kTagSize;
  if (out.size() != n) return Errc::bad_config;
  if (nonce_ == kReservedNonce) return Errc::wrong_state;
  const auto nonce = make_nonce(nonce_);
  // libsodium verifies the tag before it decrypts anything, and on failure zeroes `out` (so with
  // aliasing buffers a refused message is gone; nothing unauthenticated is ever exposed).
  std::uint8_t dummy = 0;
  std::uint8_t* dst = n == 0 ? &dummy : out.data();
  if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(dst, nullptr, ciphertext.data(), n,
                                                         ciphertext.data() + n, ptr(ad), ad.size(),
                                                         nonce.data(), key_.data()) != 0) {
    return Errc::decrypt_failed;
  }
  ++nonce_;
  return {};
}

Result<Bytes> CipherState::encrypt_with_ad(ByteView ad, ByteView plaintext) {
  Bytes out(plaintext.size() + (has_key_ ? kTagSize : 0));
  POSTERN_CHECK(encrypt_with_ad(ad, plaintext, MutableByteView(out)));
  return out;
}

Result<Bytes> CipherState::decrypt_with_ad(ByteView ad, ByteView ciphertext) {
  if (has_key_ && ciphertext.size() < kTagSize) return Errc::decrypt_failed;
  Bytes out(ciphertext.size() - (has_key_ ? kTagSize : 0));
  POSTERN_CHECK(decrypt_with_ad(ad, ciphertext, MutableByteView(out)));
  return out;
}

void CipherState::rekey() {
  if (!has_key_) return;
  // REKEY(k) of section 5.1 / 11.3: the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros).
  crypto::SecretArray<kKeySize> fresh;
  std::array<std::uint8_t, kTagSize> tag{};
  const auto nonce = make_nonce(kReservedNonce);
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(fresh.data(), tag.data(), nullptr, fresh.data(),
                                                     kKeySize, kEmpty, 0, nullptr, nonce.data(), key_.data());
  key_ = fresh;
}

// ---- HandshakeState -----------------------------------------------------------------------

struct HandshakeState::Impl {
  Impl(HashKind kind, std::string_view name) : sym(kind, name) {}

  SymmetricState sym;
  bool initiator = true;
  std::optional<KeyPair> s;
  std::optional<KeyPair> e;
  std::optional<PublicKey> rs;
  std::optional<PublicKey> re;
  std::vector<std::vector<Token>> messages;
  std::size_t next = 0;  // index of the next message
  bool failed = false;   // a read failed: the state is dead
  bool split_done = false;

  bool finished() const { return next >= messages.size(); }
  bool my_turn() const { return !finished() && ((next % 2 == 0) == initiator); }

  // The DH a token asks for, mixed into the chaining key. The keys it needs exist: start()
  // checked the static ones, and the pattern table sends every e before it is used.
  Status mix_dh(Token t) {
    const KeyPair* local = nullptr;
    const std::optional<PublicKey>* remote = nullptr;
    const KeyPair* mine_e = e ? &*e : nullptr;
    const KeyPair* mine_s = s ? &*s : nullptr;
    // es: the initiator's e with the responder's s; se: the initiator's s with the responder's e.
    switch (t) {
      case Token::ee:
        local = mine_e;
        remote = &re;
        break;
      case Token::es:
        local = initiator ? mine_e : mine_s;
        remote = initiator ? &rs : &re;
        break;
      case Token::se:
        local = initiator ? mine_s : mine_e;
        remote = initiator ? &re : &rs;
        break;
      case Token::ss:
        local = mine_s;
        remote = &rs;
        break;
      case Token::e:
      case Token::s:
        return Errc::wrong_state;
    }
    if (local == nullptr || remote == nullptr || !remote->has_value()) return Errc::wrong_state;
    crypto::SecretArray<kDhSize> shared;
    POSTERN_CHECK(dh(*local, **remote, shared));
    sym.mix_key(shared.view());
    return {};
  }

  // The size write_message will produce, worked out before anything changes.
  std::size_t message_size(const std::vector<Token>& tokens, std::size_t payload) const {
    bool keyed = sym.has_key();
    std::size_t size = 0;
    for (Token t : tokens) {
      if (t == Token::e)
        size += kDhSize;
      else if (t == Token::s)
        size += kDhSize + (keyed ? kTagSize : 0);
      else
        keyed = true;
    }
    return size + payload + (keyed ? kTagSize : 0);
  }
};

Result<HandshakeState> HandshakeState::start(const HandshakeOptions& options, crypto::Rng& rng) {
  const std::optional<ParsedName> parsed = parse_name(options.protocol_name);
  if (!parsed) return Errc::unsupported_protocol;
  crypto::ensure_sodium();
  const PatternDef& p = *parsed->pattern;
  auto impl = std::make_unique<Impl>(parsed->hash, options.protocol_name);
  impl->initiator = options.initiator;
  for (std::string_view m : p.messages) {
    if (!m.empty()) impl->messages.push_back(parse_tokens(m));
  }

  // Which keys this side needs: its static if it sends s or pre-shares it, the peer's static if
  // the peer pre-shares it.
  const bool i_pre_s = options.initiator ? p.initiator_pre_s : p.responder_pre_s;
  const bool peer_pre_s = options.initiator ? p.responder_pre_s : p.initiator_pre_s;
  bool i_send_s = false;
  for (std::size_t i = 0; i < impl->messages.size(); ++i) {
    if ((i % 2 == 0) != options.initiator) continue;
    for (Token t : impl->messages[i]) i_send_s = i_send_s || t == Token::s;
  }
  if ((i_pre_s || i_send_s) && options.local_static == nullptr) return Errc::bad_key;
  if (peer_pre_s && !options.remote_static) return Errc::bad_key;

  if (options.local_static != nullptr) impl->s = *options.local_static;
  if (options.remote_static) impl->rs = options.remote_static;
  if (options.remote_ephemeral) impl->re = options.remote_ephemeral;
  impl->e = options.local_ephemeral != nullptr ? *options.local_ephemeral : KeyPair::generate(rng);

  SymmetricState& sym = impl->sym;
  sym.mix_hash(options.prologue);
  // Pre-messages: the initiator's first, then the responder's (section 7.1).
  if (p.initiator_pre_s) sym.mix_hash(options.initiator ? impl->s->public_key : *impl->rs);
  if (p.responder_pre_s) sym.mix_hash(options.initiator ? *impl->rs : impl->s->public_key);
  return HandshakeState(std::move(impl));
}

HandshakeState::HandshakeState(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HandshakeState::HandshakeState(HandshakeState&&) noexcept = default;
HandshakeState& HandshakeState::operator=(HandshakeState&&) noexcept = default;
HandshakeState::~HandshakeState() = default;

Result<Bytes> HandshakeState::write_message(ByteView payload) {
  if (!impl_ || impl_->failed || !impl_->my_turn()) return Errc::wrong_state;
  Impl& st = *impl_;
  const std::vector<Token>& tokens = st.messages[st.next];
  const std::size_t size = st.message_size(tokens, payload.size());
  if (size > kMaxMessage) return Errc::too_large;

  Bytes out;
  out.reserve(size);
  for (Token t : tokens) {
    Status ok;
    switch (t) {
      case Token::e:
        append(out, st.e->public_key);
        st.sym.mix_hash(st.e->public_key);
        break;
      case Token::s:
        ok = st.sym.encrypt_and_hash(st.s->public_key, out);
        break;
      default:
        ok = st.mix_dh(t);
        break;
    }
    if (!ok) {
      // The transcript has moved on; this state cannot produce a valid message any more.
      st.failed = true;
      return ok.error();
    }
  }
  if (Status ok = st.sym.encrypt_and_hash(payload, out); !ok) {
    st.failed = true;
    return ok.error();
  }
  ++st.next;
  return out;
}

Result<Bytes> HandshakeState::read_message(ByteView message) {
  if (!impl_ || impl_->failed || impl_->finished() || impl_->my_turn()) return Errc::wrong_state;
  Impl& st = *impl_;
  // Any error below leaves the transcript half-mixed: the state is dead from here on.
  st.failed = true;
  if (message.size() > kMaxMessage) return Errc::too_large;

  ByteView rest = message;
  for (Token t : st.messages[st.next]) {
    switch (t) {
      case Token::e: {
        if (rest.size() < kDhSize) return Errc::handshake_failed;
        PublicKey re{};
        std::copy_n(rest.begin(), kDhSize, re.begin());
        rest = rest.subspan(kDhSize);
        st.re = re;
        st.sym.mix_hash(re);
        break;
      }
      case Token::s: {
        const std::size_t need = kDhSize + st.sym.overhead();
        if (rest.size() < need) return Errc::handshake_failed;
        PublicKey rs{};
        if (!st.sym.decrypt_and_hash(rest.first(need), rs)) return Errc::handshake_failed;
        rest = rest.subspan(need);
        st.rs = rs;
        break;
      }
      default:
        POSTERN_CHECK(st.mix_dh(t));
        break;
    }
  }
  if (rest.size() < st.sym.overhead()) return Errc::handshake_failed;
  Bytes payload(rest.size() - st.sym.overhead());
  if (!st.sym.decrypt_and_hash(rest, payload)) return Errc::handshake_failed;
  ++st.next;
  st.failed = false;
  return payload;
}

bool HandshakeState::is_finished() const noexcept {
  return impl_ && impl_->finished();
}
bool HandshakeState::is_initiator() const noexcept {
  return impl_ && impl_->initiator;
}
bool HandshakeState::my_turn() const noexcept {
  return impl_ && !impl_->failed && impl_->my_turn();
}

Bytes HandshakeState::handshake_hash() const {
  if (!impl_) return {};
  const ByteView h = impl_->sym.h();
  return Bytes(h.begin(), h.end());
}

std::optional<PublicKey> HandshakeState::remote_static() const {
  if (!impl_) return std::nullopt;
  return impl_->rs;
}

Result<TransportPair> HandshakeState::split() {
  if (!impl_ || impl_->failed || !impl_->finished() || impl_->split_done) return Errc::wrong_state;
  Impl& st = *impl_;
  CipherState c1;
  CipherState c2;
  st.sym.split(c1, c2);
  st.split_done = true;
  // The ephemeral private key is no longer needed (forward secrecy depends on its going).
  st.e.reset();
  TransportPair pair;
  pair.send = st.initiator ? c1 : c2;
  pair.receive = st.initiator ? c2 : c1;
  pair.handshake_hash = handshake_hash();
  return pair;
}

}  // namespace postern::transport::noise
