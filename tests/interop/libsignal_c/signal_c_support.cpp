// Implementation of signal_c_support.h: OpenSSL 3 provider, serialized in-memory stores, SignalCContext.
//
// libsignal-protocol-c calls back into C function pointers; every callback here catches everything
// (an exception must never unwind through C frames) and reports failures as negative SG_ERR_* codes.
#include "libsignal_c/signal_c_support.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal_protocol.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "curve.h"
#include "fingerprint.h"
#include "group_cipher.h"
#include "group_session_builder.h"
#include "key_helper.h"
#include "protocol.h"
#include "session_builder.h"
#include "session_cipher.h"
#include "session_pre_key.h"

namespace postern::interop::signal_c {
namespace {

// ---------------------------------------------------------------------------------------------------
// Ownership of libsignal objects.

template <class T>
struct Unref {
  void operator()(T* p) const {
    if (p != nullptr) signal_type_unref(reinterpret_cast<signal_type_base*>(p));
  }
};
template <class T>
using Ref = std::unique_ptr<T, Unref<T>>;

struct BufferFree {
  void operator()(signal_buffer* b) const { signal_buffer_free(b); }
};
struct SecretBufferFree {
  void operator()(signal_buffer* b) const { signal_buffer_bzero_free(b); }
};
using Buffer = std::unique_ptr<signal_buffer, BufferFree>;
using SecretBuffer = std::unique_ptr<signal_buffer, SecretBufferFree>;

template <class T, void (*Free)(T*)>
struct FreeWith {
  void operator()(T* p) const {
    if (p != nullptr) Free(p);
  }
};
using SessionBuilderPtr = std::unique_ptr<session_builder, FreeWith<session_builder, session_builder_free>>;
using SessionCipherPtr = std::unique_ptr<session_cipher, FreeWith<session_cipher, session_cipher_free>>;
using GroupBuilderPtr =
    std::unique_ptr<group_session_builder, FreeWith<group_session_builder, group_session_builder_free>>;
using GroupCipherPtr = std::unique_ptr<group_cipher, FreeWith<group_cipher, group_cipher_free>>;
using FingerprintGeneratorPtr =
    std::unique_ptr<fingerprint_generator, FreeWith<fingerprint_generator, fingerprint_generator_free>>;

Bytes to_bytes(const signal_buffer* b) {
  const std::uint8_t* p = signal_buffer_const_data(b);
  return Bytes(p, p + signal_buffer_len(b));
}

void wipe(Bytes& b) {
  if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
}

// Runs a callback body, turning any exception (bad_alloc from the containers) into SG_ERR_NOMEM.
template <class F>
int guarded(F&& body) noexcept {
  try {
    return body();
  } catch (...) {
    return SG_ERR_NOMEM;
  }
}

// Copies bytes into a fresh signal_buffer owned by libsignal; SG_ERR_NOMEM if allocation fails.
int hand_out(signal_buffer** out, const Bytes& b) {
  static const std::uint8_t kNothing = 0;
  *out = signal_buffer_create(b.empty() ? &kNothing : b.data(), b.size());
  return *out != nullptr ? 0 : SG_ERR_NOMEM;
}

// ---------------------------------------------------------------------------------------------------
// OpenSSL 3 crypto provider.

// A small free list of OpenSSL contexts, so that steady-state operations allocate nothing in OpenSSL.
template <class T, void (*Free)(T*)>
class ContextPool {
 public:
  ContextPool() { free_.reserve(kMax); }
  ~ContextPool() {
    for (T* p : free_) Free(p);
  }
  ContextPool(const ContextPool&) = delete;
  ContextPool& operator=(const ContextPool&) = delete;

  T* take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return nullptr;
    T* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give(T* p) {
    {
      std::lock_guard lock(mutex_);
      if (free_.size() < kMax) {  // capacity reserved: push_back cannot allocate
        free_.push_back(p);
        return;
      }
    }
    Free(p);
  }

 private:
  static constexpr std::size_t kMax = 64;
  std::mutex mutex_;
  std::vector<T*> free_;
};

class OpenSslCrypto {
 public:
  OpenSslCrypto() {
    hmac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    sha512_ = EVP_MD_fetch(nullptr, "SHA512", nullptr);
    static constexpr const char* kCbc[3] = {"AES-128-CBC", "AES-192-CBC", "AES-256-CBC"};
    static constexpr const char* kCtr[3] = {"AES-128-CTR", "AES-192-CTR", "AES-256-CTR"};
    ok_ = hmac_ != nullptr && sha512_ != nullptr;
    for (int i = 0; i < 3; ++i) {
      cbc_[i] = EVP_CIPHER_fetch(nullptr, kCbc[i], nullptr);
      ctr_[i] = EVP_CIPHER_fetch(nullptr, kCtr[i], nullptr);
      ok_ = ok_ && cbc_[i] != nullptr && ctr_[i] != nullptr;
    }
    // Prime the DRBG now so that the first message does not pay for its instantiation.
    std::uint8_t probe[16];
    ok_ = ok_ && RAND_bytes(probe, sizeof probe) == 1;

    provider_ = signal_crypto_provider{};
    provider_.random_func = &OpenSslCrypto::random;
    provider_.hmac_sha256_init_func = &OpenSslCrypto::hmac_init;
    provider_.hmac_sha256_update_func = &OpenSslCrypto::hmac_update;
    provider_.hmac_sha256_final_func = &OpenSslCrypto::hmac_final;
    provider_.hmac_sha256_cleanup_func = &OpenSslCrypto::hmac_cleanup;
    provider_.sha512_digest_init_func = &OpenSslCrypto::sha512_init;
    provider_.sha512_digest_update_func = &OpenSslCrypto::sha512_update;
    provider_.sha512_digest_final_func = &OpenSslCrypto::sha512_final;
    provider_.sha512_digest_cleanup_func = &OpenSslCrypto::sha512_cleanup;
    provider_.encrypt_func = &OpenSslCrypto::encrypt;
    provider_.decrypt_func = &OpenSslCrypto::decrypt;
    provider_.user_data = this;
  }
  ~OpenSslCrypto() {
    EVP_MAC_free(hmac_);
    EVP_MD_free(sha512_);
    for (int i = 0; i < 3; ++i) {
      EVP_CIPHER_free(cbc_[i]);
      EVP_CIPHER_free(ctr_[i]);
    }
  }
  OpenSslCrypto(const OpenSslCrypto&) = delete;
  OpenSslCrypto& operator=(const OpenSslCrypto&) = delete;

  bool ok() const { return ok_; }
  const signal_crypto_provider* provider() const { return &provider_; }

 private:
  static OpenSslCrypto& self(void* user_data) { return *static_cast<OpenSslCrypto*>(user_data); }

  static int random(std::uint8_t* data, std::size_t len, void* /*user_data*/) {
    while (len > 0) {
      const int chunk = len > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(len);
      if (RAND_bytes(data, chunk) != 1) return SG_ERR_UNKNOWN;
      data += chunk;
      len -= static_cast<std::size_t>(chunk);
    }
    return 0;
  }

  // HMAC-SHA256. A pooled EVP_MAC_CTX keeps its digest setting, so EVP_MAC_init only re-keys it.
  static int hmac_init(void** hmac_context, const std::uint8_t* key, std::size_t key_len, void* user_data) {
    OpenSslCrypto& c = self(user_data);
    *hmac_context = nullptr;
    EVP_MAC_CTX* ctx = c.mac_pool_.take();
    if (ctx == nullptr) {
      ctx = EVP_MAC_CTX_new(c.hmac_);
      if (ctx == nullptr) return SG_ERR_NOMEM;
      static char kDigest[] = "SHA256";  // OSSL_PARAM wants a mutable buffer; never written
      const OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string("digest", kDigest, 0),
          OSSL_PARAM_construct_end(),
      };
      if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return SG_ERR_UNKNOWN;
      }
    }
    static const std::uint8_t kEmptyKey = 0;  // a NULL key would mean "keep the previous key"
    if (EVP_MAC_init(ctx, key_len > 0 ? key : &kEmptyKey, key_len, nullptr) != 1) {
      EVP_MAC_CTX_free(ctx);
      return SG_ERR_UNKNOWN;
    }
    *hmac_context = ctx;
    return 0;
  }
  static int hmac_update(void* hmac_context, const std::uint8_t* data, std::size_t len, void*) {
    if (len == 0) return 0;
    return EVP_MAC_update(static_cast<EVP_MAC_CTX*>(hmac_context), data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
  }
  static int hmac_final(void* hmac_context, signal_buffer** output, void*) {
    std::uint8_t mac[EVP_MAX_MD_SIZE];
    std::size_t mac_len = 0;
    if (EVP_MAC_final(static_cast<EVP_MAC_CTX*>(hmac_context), mac, &mac_len, sizeof mac) != 1) {
      return SG_ERR_UNKNOWN;
    }
    *output = signal_buffer_create(mac, mac_len);
    OPENSSL_cleanse(mac, sizeof mac);
    return *output != nullptr ? 0 : SG_ERR_NOMEM;
  }
  static void hmac_cleanup(void* hmac_context, void* user_data) {
    if (hmac_context != nullptr) self(user_data).mac_pool_.give(static_cast<EVP_MAC_CTX*>(hmac_context));
  }

  // SHA-512. libsignal reuses one context across several final() calls (fingerprint iterations), so
  // final() re-initializes the context.
  static int sha512_init(void** digest_context, void* user_data) {
    OpenSslCrypto& c = self(user_data);
    *digest_context = nullptr;
    EVP_MD_CTX* ctx = c.md_pool_.take();
    if (ctx == nullptr) {
      ctx = EVP_MD_CTX_new();
      if (ctx == nullptr) return SG_ERR_NOMEM;
    }
    if (EVP_DigestInit_ex2(ctx, c.sha512_, nullptr) != 1) {
      EVP_MD_CTX_free(ctx);
      return SG_ERR_UNKNOWN;
    }
    *digest_context = ctx;
    return 0;
  }
  static int sha512_update(void* digest_context, const std::uint8_t* data, std::size_t len, void*) {
    if (len == 0) return 0;
    return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(digest_context), data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
  }
  static int sha512_final(void* digest_context, signal_buffer** output, void* user_data) {
    auto* ctx = static_cast<EVP_MD_CTX*>(digest_context);
    std::uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1) return SG_ERR_UNKNOWN;
    if (EVP_DigestInit_ex2(ctx, self(user_data).sha512_, nullptr) != 1) return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(md, md_len);
    return *output != nullptr ? 0 : SG_ERR_NOMEM;
  }
  static void sha512_cleanup(void* digest_context, void* user_data) {
    if (digest_context != nullptr) self(user_data).md_pool_.give(static_cast<EVP_MD_CTX*>(digest_context));
  }

  const EVP_CIPHER* cipher_for(int cipher, std::size_t key_len) const {
    int index = -1;
    if (key_len == 16) index = 0;
    if (key_len == 24) index = 1;
    if (key_len == 32) index = 2;
    if (index < 0) return nullptr;
    if (cipher == SG_CIPHER_AES_CBC_PKCS5) return cbc_[index];
    if (cipher == SG_CIPHER_AES_CTR_NOPADDING) return ctr_[index];
    return nullptr;
  }

  // One AES pass; `out` must hold in_len + 16 bytes. Returns the output length or a negative code.
  int aes(bool encrypting, int cipher, const std::uint8_t* key, std::size_t key_len, const std::uint8_t* iv,
          std::size_t iv_len, const std::uint8_t* in, std::size_t in_len, std::uint8_t* out) {
    const EVP_CIPHER* alg = cipher_for(cipher, key_len);
    if (alg == nullptr || iv_len != 16 || in_len > static_cast<std::size_t>(INT_MAX) - 32)
      return SG_ERR_INVAL;
    EVP_CIPHER_CTX* ctx = cipher_pool_.take();
    if (ctx == nullptr) {
      ctx = EVP_CIPHER_CTX_new();
      if (ctx == nullptr) return SG_ERR_NOMEM;
    }
    int n1 = 0;
    int n2 = 0;
    bool ok = EVP_CipherInit_ex2(ctx, alg, key, iv, encrypting ? 1 : 0, nullptr) == 1;
    if (ok && in_len > 0) ok = EVP_CipherUpdate(ctx, out, &n1, in, static_cast<int>(in_len)) == 1;
    if (ok) ok = EVP_CipherFinal_ex(ctx, out + n1, &n2) == 1;
    if (ok) {
      cipher_pool_.give(ctx);
      return n1 + n2;
    }
    EVP_CIPHER_CTX_free(ctx);  // state after a failure is not worth reasoning about
    return SG_ERR_UNKNOWN;
  }

  static int encrypt(signal_buffer** output, int cipher, const std::uint8_t* key, std::size_t key_len,
                     const std::uint8_t* iv, std::size_t iv_len, const std::uint8_t* plaintext,
                     std::size_t plaintext_len, void* user_data) {
    // The output size is known exactly, so encrypt straight into the buffer handed to libsignal.
    const std::size_t out_len =
        cipher == SG_CIPHER_AES_CBC_PKCS5 ? (plaintext_len / 16 + 1) * 16 : plaintext_len;
    signal_buffer* buffer = signal_buffer_alloc(out_len + 16);
    if (buffer == nullptr) return SG_ERR_NOMEM;
    Buffer scratch(buffer);
    const int n = self(user_data).aes(true, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len,
                                      signal_buffer_data(buffer));
    if (n < 0) return n;
    if (static_cast<std::size_t>(n) != out_len) return SG_ERR_UNKNOWN;
    *output = signal_buffer_n_copy(buffer, out_len);
    return *output != nullptr ? 0 : SG_ERR_NOMEM;
  }

  static int decrypt(signal_buffer** output, int cipher, const std::uint8_t* key, std::size_t key_len,
                     const std::uint8_t* iv, std::size_t iv_len, const std::uint8_t* ciphertext,
                     std::size_t ciphertext_len, void* user_data) {
    signal_buffer* buffer = signal_buffer_alloc(ciphertext_len + 16);
    if (buffer == nullptr) return SG_ERR_NOMEM;
    SecretBuffer scratch(buffer);
    const int n = self(user_data).aes(false, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len,
                                      signal_buffer_data(buffer));
    if (n < 0) return n;
    *output = signal_buffer_n_copy(buffer, static_cast<std::size_t>(n));
    return *output != nullptr ? 0 : SG_ERR_NOMEM;
  }

  EVP_MAC* hmac_ = nullptr;
  EVP_MD* sha512_ = nullptr;
  EVP_CIPHER* cbc_[3] = {};
  EVP_CIPHER* ctr_[3] = {};
  bool ok_ = false;
  signal_crypto_provider provider_{};
  ContextPool<EVP_MAC_CTX, EVP_MAC_CTX_free> mac_pool_;
  ContextPool<EVP_MD_CTX, EVP_MD_CTX_free> md_pool_;
  ContextPool<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free> cipher_pool_;
};

OpenSslCrypto& crypto() {
  static OpenSslCrypto instance;  // destroyed before OpenSSL's own atexit cleanup (registered earlier)
  return instance;
}

}  // namespace

const signal_crypto_provider* openssl_crypto_provider() {
  OpenSslCrypto& c = crypto();
  return c.ok() ? c.provider() : nullptr;
}

std::string_view error_name(int code) {
  switch (code) {
    case SG_SUCCESS:
      return "SG_SUCCESS";
    case SG_ERR_NOMEM:
      return "SG_ERR_NOMEM";
    case SG_ERR_INVAL:
      return "SG_ERR_INVAL";
    case SG_ERR_UNKNOWN:
      return "SG_ERR_UNKNOWN";
    case SG_ERR_DUPLICATE_MESSAGE:
      return "SG_ERR_DUPLICATE_MESSAGE";
    case SG_ERR_INVALID_KEY:
      return "SG_ERR_INVALID_KEY";
    case SG_ERR_INVALID_KEY_ID:
      return "SG_ERR_INVALID_KEY_ID";
    case SG_ERR_INVALID_MAC:
      return "SG_ERR_INVALID_MAC";
    case SG_ERR_INVALID_MESSAGE:
      return "SG_ERR_INVALID_MESSAGE";
    case SG_ERR_INVALID_VERSION:
      return "SG_ERR_INVALID_VERSION";
    case SG_ERR_LEGACY_MESSAGE:
      return "SG_ERR_LEGACY_MESSAGE";
    case SG_ERR_NO_SESSION:
      return "SG_ERR_NO_SESSION";
    case SG_ERR_STALE_KEY_EXCHANGE:
      return "SG_ERR_STALE_KEY_EXCHANGE";
    case SG_ERR_UNTRUSTED_IDENTITY:
      return "SG_ERR_UNTRUSTED_IDENTITY";
    case SG_ERR_VRF_SIG_VERIF_FAILED:
      return "SG_ERR_VRF_SIG_VERIF_FAILED";
    case SG_ERR_INVALID_PROTO_BUF:
      return "SG_ERR_INVALID_PROTO_BUF";
    case SG_ERR_FP_VERSION_MISMATCH:
      return "SG_ERR_FP_VERSION_MISMATCH";
    case SG_ERR_FP_IDENT_MISMATCH:
      return "SG_ERR_FP_IDENT_MISMATCH";
    default:
      return "error";
  }
}

// ---------------------------------------------------------------------------------------------------
// Party state and stores.

namespace {

using AddressKey = std::pair<std::string, std::int32_t>;
using SenderKeyKey = std::tuple<std::string, std::string, std::int32_t>;  // group, sender name, device

struct StoredRecord {
  Bytes record;
  Bytes user_record;
};

AddressKey key_of(const signal_protocol_address* a) {
  return {std::string(a->name, a->name_len), a->device_id};
}
SenderKeyKey key_of(const signal_protocol_sender_key_name* n) {
  return {std::string(n->group_id, n->group_id_len), std::string(n->sender.name, n->sender.name_len),
          n->sender.device_id};
}

}  // namespace

struct SignalCContext::State {
  std::recursive_mutex mutex;
  std::string name;
  std::int32_t device_id = 0;
  std::uint32_t registration_id = 0;
  Bytes identity_public;   // serialized, 33 bytes
  Bytes identity_private;  // serialized, 32 bytes
  ratchet_identity_key_pair* identity = nullptr;
  signal_context* global = nullptr;
  signal_protocol_store_context* store = nullptr;

  std::map<AddressKey, StoredRecord> sessions;
  std::unordered_map<std::uint32_t, Bytes> pre_keys;
  std::unordered_map<std::uint32_t, Bytes> signed_pre_keys;
  std::map<AddressKey, Bytes> identities;
  std::map<SenderKeyKey, StoredRecord> sender_keys;

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
    if (store != nullptr) signal_protocol_store_context_destroy(store);
    if (identity != nullptr) signal_type_unref(reinterpret_cast<signal_type_base*>(identity));
    if (global != nullptr) signal_context_destroy(global);
    wipe(identity_private);
    for (auto& [k, v] : sessions) wipe(v.record);
    for (auto& [k, v] : pre_keys) wipe(v);
    for (auto& [k, v] : signed_pre_keys) wipe(v);
    for (auto& [k, v] : sender_keys) wipe(v.record);
  }
};

namespace {

using State = SignalCContext::State;
State& state_of(void* user_data) {
  return *static_cast<State*>(user_data);
}

void lock_party(void* user_data) {
  state_of(user_data).mutex.lock();
}
void unlock_party(void* user_data) {
  state_of(user_data).mutex.unlock();
}

// Session store.
int load_session(signal_buffer** record, signal_buffer** user_record, const signal_protocol_address* address,
                 void* user_data) {
  return guarded([&] {
    const State& s = state_of(user_data);
    auto it = s.sessions.find(key_of(address));
    if (it == s.sessions.end()) return 0;
    if (int rc = hand_out(record, it->second.record); rc < 0) return rc;
    if (!it->second.user_record.empty()) {
      if (int rc = hand_out(user_record, it->second.user_record); rc < 0) {
        signal_buffer_free(*record);
        *record = nullptr;
        return rc;
      }
    }
    return 1;
  });
}
int get_sub_device_sessions(signal_int_list** sessions, const char* name, std::size_t name_len,
                            void* user_data) {
  return guarded([&] {
    const State& s = state_of(user_data);
    signal_int_list* list = signal_int_list_alloc();
    if (list == nullptr) return SG_ERR_NOMEM;
    const std::string_view wanted(name, name_len);
    for (const auto& [key, value] : s.sessions) {
      if (key.first == wanted && signal_int_list_push_back(list, key.second) < 0) {
        signal_int_list_free(list);
        return SG_ERR_NOMEM;
      }
    }
    *sessions = list;
    return static_cast<int>(signal_int_list_size(list));
  });
}
int store_session(const signal_protocol_address* address, std::uint8_t* record, std::size_t record_len,
                  std::uint8_t* user_record, std::size_t user_record_len, void* user_data) {
  return guarded([&] {
    StoredRecord& r = state_of(user_data).sessions[key_of(address)];
    wipe(r.record);
    r.record.assign(record, record + record_len);
    if (user_record != nullptr) {
      r.user_record.assign(user_record, user_record + user_record_len);
    } else {
      r.user_record.clear();
    }
    return 0;
  });
}
int contains_session(const signal_protocol_address* address, void* user_data) {
  return guarded([&] { return state_of(user_data).sessions.contains(key_of(address)) ? 1 : 0; });
}
int delete_session(const signal_protocol_address* address, void* user_data) {
  return guarded([&] {
    auto& sessions = state_of(user_data).sessions;
    auto it = sessions.find(key_of(address));
    if (it == sessions.end()) return 0;
    wipe(it->second.record);
    sessions.erase(it);
    return 1;
  });
}
int delete_all_sessions(const char* name, std::size_t name_len, void* user_data) {
  return guarded([&] {
    auto& sessions = state_of(user_data).sessions;
    const std::string_view wanted(name, name_len);
    int deleted = 0;
    for (auto it = sessions.begin(); it != sessions.end();) {
      if (it->first.first == wanted) {
        wipe(it->second.record);
        it = sessions.erase(it);
        ++deleted;
      } else {
        ++it;
      }
    }
    return deleted;
  });
}

// Pre key and signed pre key stores: same shape, different maps.
int load_key(std::unordered_map<std::uint32_t, Bytes>& keys, signal_buffer** record, std::uint32_t id) {
  auto it = keys.find(id);
  if (it == keys.end()) return SG_ERR_INVALID_KEY_ID;
  return hand_out(record, it->second);
}
int store_key(std::unordered_map<std::uint32_t, Bytes>& keys, std::uint32_t id, const std::uint8_t* record,
              std::size_t len) {
  Bytes& slot = keys[id];
  wipe(slot);
  slot.assign(record, record + len);
  return 0;
}
int remove_key(std::unordered_map<std::uint32_t, Bytes>& keys, std::uint32_t id) {
  auto it = keys.find(id);
  if (it != keys.end()) {
    wipe(it->second);
    keys.erase(it);
  }
  return 0;
}

int load_pre_key(signal_buffer** record, std::uint32_t id, void* user_data) {
  return guarded([&] { return load_key(state_of(user_data).pre_keys, record, id); });
}
int store_pre_key(std::uint32_t id, std::uint8_t* record, std::size_t len, void* user_data) {
  return guarded([&] { return store_key(state_of(user_data).pre_keys, id, record, len); });
}
int contains_pre_key(std::uint32_t id, void* user_data) {
  return guarded([&] { return state_of(user_data).pre_keys.contains(id) ? 1 : 0; });
}
int remove_pre_key(std::uint32_t id, void* user_data) {
  return guarded([&] { return remove_key(state_of(user_data).pre_keys, id); });
}
int load_signed_pre_key(signal_buffer** record, std::uint32_t id, void* user_data) {
  return guarded([&] { return load_key(state_of(user_data).signed_pre_keys, record, id); });
}
int store_signed_pre_key(std::uint32_t id, std::uint8_t* record, std::size_t len, void* user_data) {
  return guarded([&] { return store_key(state_of(user_data).signed_pre_keys, id, record, len); });
}
int contains_signed_pre_key(std::uint32_t id, void* user_data) {
  return guarded([&] { return state_of(user_data).signed_pre_keys.contains(id) ? 1 : 0; });
}
int remove_signed_pre_key(std::uint32_t id, void* user_data) {
  return guarded([&] { return remove_key(state_of(user_data).signed_pre_keys, id); });
}

// Identity store: trust on first use.
int get_identity_key_pair(signal_buffer** public_data, signal_buffer** private_data, void* user_data) {
  return guarded([&] {
    const State& s = state_of(user_data);
    if (int rc = hand_out(public_data, s.identity_public); rc < 0) return rc;
    if (int rc = hand_out(private_data, s.identity_private); rc < 0) {
      signal_buffer_free(*public_data);
      *public_data = nullptr;
      return rc;
    }
    return 0;
  });
}
int get_local_registration_id(void* user_data, std::uint32_t* registration_id) {
  *registration_id = state_of(user_data).registration_id;
  return 0;
}
int save_identity(const signal_protocol_address* address, std::uint8_t* key_data, std::size_t key_len,
                  void* user_data) {
  return guarded([&] {
    auto& identities = state_of(user_data).identities;
    if (key_data == nullptr) {
      identities.erase(key_of(address));
    } else {
      identities[key_of(address)].assign(key_data, key_data + key_len);
    }
    return 0;
  });
}
int is_trusted_identity(const signal_protocol_address* address, std::uint8_t* key_data, std::size_t key_len,
                        void* user_data) {
  return guarded([&] {
    const auto& identities = state_of(user_data).identities;
    auto it = identities.find(key_of(address));
    if (it == identities.end()) return 1;
    return it->second.size() == key_len && std::memcmp(it->second.data(), key_data, key_len) == 0 ? 1 : 0;
  });
}

// Sender key store.
int store_sender_key(const signal_protocol_sender_key_name* name, std::uint8_t* record,
                     std::size_t record_len, std::uint8_t* user_record, std::size_t user_record_len,
                     void* user_data) {
  return guarded([&] {
    StoredRecord& r = state_of(user_data).sender_keys[key_of(name)];
    wipe(r.record);
    r.record.assign(record, record + record_len);
    if (user_record != nullptr) {
      r.user_record.assign(user_record, user_record + user_record_len);
    } else {
      r.user_record.clear();
    }
    return 0;
  });
}
int load_sender_key(signal_buffer** record, signal_buffer** user_record,
                    const signal_protocol_sender_key_name* name, void* user_data) {
  return guarded([&] {
    const State& s = state_of(user_data);
    auto it = s.sender_keys.find(key_of(name));
    if (it == s.sender_keys.end()) return 0;
    if (int rc = hand_out(record, it->second.record); rc < 0) return rc;
    if (!it->second.user_record.empty()) {
      if (int rc = hand_out(user_record, it->second.user_record); rc < 0) {
        signal_buffer_free(*record);
        *record = nullptr;
        return rc;
      }
    }
    return 1;
  });
}

int install_stores(State& s) {
  int rc = signal_protocol_store_context_create(&s.store, s.global);
  if (rc < 0) return rc;

  signal_protocol_session_store sessions{};
  sessions.load_session_func = &load_session;
  sessions.get_sub_device_sessions_func = &get_sub_device_sessions;
  sessions.store_session_func = &store_session;
  sessions.contains_session_func = &contains_session;
  sessions.delete_session_func = &delete_session;
  sessions.delete_all_sessions_func = &delete_all_sessions;
  sessions.user_data = &s;
  if ((rc = signal_protocol_store_context_set_session_store(s.store, &sessions)) < 0) return rc;

  signal_protocol_pre_key_store pre_keys{};
  pre_keys.load_pre_key = &load_pre_key;
  pre_keys.store_pre_key = &store_pre_key;
  pre_keys.contains_pre_key = &contains_pre_key;
  pre_keys.remove_pre_key = &remove_pre_key;
  pre_keys.user_data = &s;
  if ((rc = signal_protocol_store_context_set_pre_key_store(s.store, &pre_keys)) < 0) return rc;

  signal_protocol_signed_pre_key_store signed_pre_keys{};
  signed_pre_keys.load_signed_pre_key = &load_signed_pre_key;
  signed_pre_keys.store_signed_pre_key = &store_signed_pre_key;
  signed_pre_keys.contains_signed_pre_key = &contains_signed_pre_key;
  signed_pre_keys.remove_signed_pre_key = &remove_signed_pre_key;
  signed_pre_keys.user_data = &s;
  if ((rc = signal_protocol_store_context_set_signed_pre_key_store(s.store, &signed_pre_keys)) < 0) return rc;

  signal_protocol_identity_key_store identities{};
  identities.get_identity_key_pair = &get_identity_key_pair;
  identities.get_local_registration_id = &get_local_registration_id;
  identities.save_identity = &save_identity;
  identities.is_trusted_identity = &is_trusted_identity;
  identities.user_data = &s;
  if ((rc = signal_protocol_store_context_set_identity_key_store(s.store, &identities)) < 0) return rc;

  signal_protocol_sender_key_store sender_keys{};
  sender_keys.store_sender_key = &store_sender_key;
  sender_keys.load_sender_key = &load_sender_key;
  sender_keys.user_data = &s;
  return signal_protocol_store_context_set_sender_key_store(s.store, &sender_keys);
}

int serialize_public(const ec_public_key* key, Bytes& out) {
  signal_buffer* raw = nullptr;
  int rc = ec_public_key_serialize(&raw, key);
  if (rc < 0) return rc;
  Buffer owned(raw);
  out = to_bytes(raw);
  return 0;
}

int decode_public(ByteView bytes, signal_context* global, Ref<ec_public_key>& out) {
  ec_public_key* raw = nullptr;
  int rc = curve_decode_point(&raw, bytes.data(), bytes.size(), global);
  out.reset(raw);
  return rc < 0 ? rc : 0;
}

signal_protocol_address address_of(std::string_view name, std::int32_t device) {
  return signal_protocol_address{name.data(), name.size(), device};
}

// Points into `group` and `sender`, which must outlive the result.
signal_protocol_sender_key_name sender_key_name_of(std::string_view group, std::string_view sender,
                                                   std::int32_t device) {
  return signal_protocol_sender_key_name{group.data(), group.size(), address_of(sender, device)};
}

// libsignal keeps an empty view's data pointer; give it a valid one.
const std::uint8_t* data_or_empty(ByteView v) {
  static const std::uint8_t kNothing = 0;
  return v.empty() ? &kNothing : v.data();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// SignalCContext.

SignalCContext::SignalCContext(std::unique_ptr<State> state) : state_(std::move(state)) {}
SignalCContext::~SignalCContext() = default;

int SignalCContext::create(std::string_view name, std::int32_t device_id,
                           std::unique_ptr<SignalCContext>& out) {
  return guarded([&] {
    const signal_crypto_provider* provider = openssl_crypto_provider();
    if (provider == nullptr) return SG_ERR_UNKNOWN;
    auto s = std::make_unique<State>();
    s->name = std::string(name);
    s->device_id = device_id;
    int rc = signal_context_create(&s->global, s.get());
    if (rc < 0) return rc;
    if ((rc = signal_context_set_crypto_provider(s->global, provider)) < 0) return rc;
    if ((rc = signal_context_set_locking_functions(s->global, &lock_party, &unlock_party)) < 0) return rc;
    if ((rc = install_stores(*s)) < 0) return rc;

    if ((rc = signal_protocol_key_helper_generate_identity_key_pair(&s->identity, s->global)) < 0) return rc;
    if ((rc = signal_protocol_key_helper_generate_registration_id(&s->registration_id, 0, s->global)) < 0) {
      return rc;
    }
    if ((rc = serialize_public(ratchet_identity_key_pair_get_public(s->identity), s->identity_public)) < 0) {
      return rc;
    }
    signal_buffer* priv = nullptr;
    if ((rc = ec_private_key_serialize(&priv, ratchet_identity_key_pair_get_private(s->identity))) < 0) {
      return rc;
    }
    SecretBuffer owned_priv(priv);
    s->identity_private = to_bytes(priv);

    out.reset(new SignalCContext(std::move(s)));
    return 0;
  });
}

const std::string& SignalCContext::name() const {
  return state_->name;
}
std::int32_t SignalCContext::device_id() const {
  return state_->device_id;
}
std::uint32_t SignalCContext::registration_id() const {
  return state_->registration_id;
}
const Bytes& SignalCContext::identity_public() const {
  return state_->identity_public;
}
signal_context* SignalCContext::global_context() const {
  return state_->global;
}
signal_protocol_store_context* SignalCContext::store_context() const {
  return state_->store;
}

int SignalCContext::generate_bundle(std::uint32_t signed_prekey_id, std::optional<std::uint32_t> prekey_id,
                                    PreKeyBundle& out) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch());

    session_signed_pre_key* raw_spk = nullptr;
    int rc = signal_protocol_key_helper_generate_signed_pre_key(
        &raw_spk, s.identity, signed_prekey_id, static_cast<std::uint64_t>(now_ms.count()), s.global);
    if (rc < 0) return rc;
    Ref<session_signed_pre_key> spk(raw_spk);
    if ((rc = signal_protocol_signed_pre_key_store_key(s.store, spk.get())) < 0) return rc;

    PreKeyBundle bundle;
    bundle.registration_id = s.registration_id;
    bundle.device_id = s.device_id;
    bundle.identity_public = s.identity_public;
    bundle.signed_prekey_id = signed_prekey_id;
    rc = serialize_public(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk.get())),
                          bundle.signed_prekey_public);
    if (rc < 0) return rc;
    const std::uint8_t* sig = session_signed_pre_key_get_signature(spk.get());
    bundle.signed_prekey_signature.assign(sig, sig + session_signed_pre_key_get_signature_len(spk.get()));

    if (prekey_id) {
      ec_key_pair* raw_pair = nullptr;
      if ((rc = curve_generate_key_pair(s.global, &raw_pair)) < 0) return rc;
      Ref<ec_key_pair> pair(raw_pair);
      session_pre_key* raw_pk = nullptr;
      if ((rc = session_pre_key_create(&raw_pk, *prekey_id, pair.get())) < 0) return rc;
      Ref<session_pre_key> pk(raw_pk);
      if ((rc = signal_protocol_pre_key_store_key(s.store, pk.get())) < 0) return rc;
      bundle.prekey_id = *prekey_id;
      if ((rc = serialize_public(ec_key_pair_get_public(pair.get()), bundle.prekey_public)) < 0) return rc;
    }
    out = std::move(bundle);
    return 0;
  });
}

int SignalCContext::process_bundle(std::string_view peer_name, std::int32_t peer_device,
                                   const PreKeyBundle& bundle) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    // libsignal dereferences a missing (empty) signature; any other length would fail verification.
    if (bundle.signed_prekey_signature.size() != 64) return SG_ERR_INVALID_KEY;
    Ref<ec_public_key> identity;
    Ref<ec_public_key> spk;
    Ref<ec_public_key> pk;
    int rc = decode_public(bundle.identity_public, s.global, identity);
    if (rc < 0) return rc;
    if ((rc = decode_public(bundle.signed_prekey_public, s.global, spk)) < 0) return rc;
    if (bundle.prekey_id && (rc = decode_public(bundle.prekey_public, s.global, pk)) < 0) return rc;

    session_pre_key_bundle* raw_bundle = nullptr;
    rc = session_pre_key_bundle_create(&raw_bundle, bundle.registration_id, bundle.device_id,
                                       bundle.prekey_id.value_or(0), pk.get(), bundle.signed_prekey_id,
                                       spk.get(), data_or_empty(bundle.signed_prekey_signature),
                                       bundle.signed_prekey_signature.size(), identity.get());
    if (rc < 0) return rc;
    Ref<session_pre_key_bundle> owned_bundle(raw_bundle);

    const signal_protocol_address address = address_of(peer_name, peer_device);
    session_builder* raw_builder = nullptr;
    if ((rc = session_builder_create(&raw_builder, s.store, &address, s.global)) < 0) return rc;
    SessionBuilderPtr builder(raw_builder);
    return session_builder_process_pre_key_bundle(builder.get(), owned_bundle.get());
  });
}

int SignalCContext::encrypt(std::string_view peer_name, std::int32_t peer_device, ByteView plaintext,
                            Ciphertext& out) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    const signal_protocol_address address = address_of(peer_name, peer_device);
    if (!s.sessions.contains(key_of(&address))) return SG_ERR_NO_SESSION;
    session_cipher* raw_cipher = nullptr;
    int rc = session_cipher_create(&raw_cipher, s.store, &address, s.global);
    if (rc < 0) return rc;
    SessionCipherPtr cipher(raw_cipher);
    ciphertext_message* raw_message = nullptr;
    rc = session_cipher_encrypt(cipher.get(), data_or_empty(plaintext), plaintext.size(), &raw_message);
    if (rc < 0) return rc;
    Ref<ciphertext_message> message(raw_message);
    out.type = ciphertext_message_get_type(message.get());
    out.wire = to_bytes(ciphertext_message_get_serialized(message.get()));
    return 0;
  });
}

int SignalCContext::decrypt(std::string_view peer_name, std::int32_t peer_device, int type, ByteView wire,
                            Bytes& plaintext) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    if (type != kSignalMessageType && type != kPreKeySignalMessageType) return SG_ERR_INVAL;
    const signal_protocol_address address = address_of(peer_name, peer_device);
    session_cipher* raw_cipher = nullptr;
    int rc = session_cipher_create(&raw_cipher, s.store, &address, s.global);
    if (rc < 0) return rc;
    SessionCipherPtr cipher(raw_cipher);

    signal_buffer* raw_plain = nullptr;
    if (type == kPreKeySignalMessageType) {
      pre_key_signal_message* raw_message = nullptr;
      rc = pre_key_signal_message_deserialize(&raw_message, data_or_empty(wire), wire.size(), s.global);
      if (rc < 0) return rc;
      Ref<pre_key_signal_message> message(raw_message);
      rc = session_cipher_decrypt_pre_key_signal_message(cipher.get(), message.get(), nullptr, &raw_plain);
    } else {
      signal_message* raw_message = nullptr;
      rc = signal_message_deserialize(&raw_message, data_or_empty(wire), wire.size(), s.global);
      if (rc < 0) return rc;
      Ref<signal_message> message(raw_message);
      rc = session_cipher_decrypt_signal_message(cipher.get(), message.get(), nullptr, &raw_plain);
    }
    if (rc < 0) return rc;
    SecretBuffer owned_plain(raw_plain);
    plaintext = to_bytes(raw_plain);
    return 0;
  });
}

int SignalCContext::create_skdm(std::string_view group, Bytes& skdm) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    const signal_protocol_sender_key_name name = sender_key_name_of(group, s.name, s.device_id);
    group_session_builder* raw_builder = nullptr;
    int rc = group_session_builder_create(&raw_builder, s.store, s.global);
    if (rc < 0) return rc;
    GroupBuilderPtr builder(raw_builder);
    sender_key_distribution_message* raw_message = nullptr;
    if ((rc = group_session_builder_create_session(builder.get(), &raw_message, &name)) < 0) return rc;
    Ref<sender_key_distribution_message> message(raw_message);
    // A sender_key_distribution_message starts with its ciphertext_message base (libsignal's C
    // "inheritance").
    skdm = to_bytes(ciphertext_message_get_serialized(reinterpret_cast<ciphertext_message*>(message.get())));
    return 0;
  });
}

int SignalCContext::process_skdm(std::string_view group, std::string_view sender_name,
                                 std::int32_t sender_device, ByteView skdm) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    sender_key_distribution_message* raw_message = nullptr;
    int rc =
        sender_key_distribution_message_deserialize(&raw_message, data_or_empty(skdm), skdm.size(), s.global);
    if (rc < 0) return rc;
    Ref<sender_key_distribution_message> message(raw_message);
    const signal_protocol_sender_key_name name = sender_key_name_of(group, sender_name, sender_device);
    group_session_builder* raw_builder = nullptr;
    if ((rc = group_session_builder_create(&raw_builder, s.store, s.global)) < 0) return rc;
    GroupBuilderPtr builder(raw_builder);
    return group_session_builder_process_session(builder.get(), &name, message.get());
  });
}

int SignalCContext::group_encrypt(std::string_view group, ByteView plaintext, Bytes& wire) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    const signal_protocol_sender_key_name name = sender_key_name_of(group, s.name, s.device_id);
    group_cipher* raw_cipher = nullptr;
    int rc = group_cipher_create(&raw_cipher, s.store, &name, s.global);
    if (rc < 0) return rc;
    GroupCipherPtr cipher(raw_cipher);
    ciphertext_message* raw_message = nullptr;
    rc = group_cipher_encrypt(cipher.get(), data_or_empty(plaintext), plaintext.size(), &raw_message);
    if (rc < 0) return rc;
    Ref<ciphertext_message> message(raw_message);
    wire = to_bytes(ciphertext_message_get_serialized(message.get()));
    return 0;
  });
}

int SignalCContext::group_decrypt(std::string_view group, std::string_view sender_name,
                                  std::int32_t sender_device, ByteView wire, Bytes& plaintext) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    sender_key_message* raw_message = nullptr;
    int rc = sender_key_message_deserialize(&raw_message, data_or_empty(wire), wire.size(), s.global);
    if (rc < 0) return rc;
    Ref<sender_key_message> message(raw_message);
    const signal_protocol_sender_key_name name = sender_key_name_of(group, sender_name, sender_device);
    group_cipher* raw_cipher = nullptr;
    if ((rc = group_cipher_create(&raw_cipher, s.store, &name, s.global)) < 0) return rc;
    GroupCipherPtr cipher(raw_cipher);
    signal_buffer* raw_plain = nullptr;
    if ((rc = group_cipher_decrypt(cipher.get(), message.get(), nullptr, &raw_plain)) < 0) return rc;
    SecretBuffer owned_plain(raw_plain);
    plaintext = to_bytes(raw_plain);
    return 0;
  });
}

int SignalCContext::sign(ByteView message, Bytes& signature) {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    signal_buffer* raw = nullptr;
    int rc = curve_calculate_signature(s.global, &raw, ratchet_identity_key_pair_get_private(s.identity),
                                       data_or_empty(message), message.size());
    if (rc < 0) return rc;
    Buffer owned(raw);
    signature = to_bytes(raw);
    return 0;
  });
}

int SignalCContext::verify(ByteView public_key, ByteView message, ByteView signature) const {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    Ref<ec_public_key> key;
    int rc = decode_public(public_key, s.global, key);
    if (rc < 0) return rc;
    return curve_verify_signature(key.get(), data_or_empty(message), message.size(), data_or_empty(signature),
                                  signature.size());
  });
}

int SignalCContext::fingerprint(int iterations, int scannable_version, const std::string& local_id,
                                const std::string& remote_id, ByteView remote_identity_public,
                                Fingerprint& out) const {
  return guarded([&] {
    State& s = *state_;
    std::lock_guard lock(s.mutex);
    if (iterations < 1 || local_id.find('\0') != std::string::npos ||
        remote_id.find('\0') != std::string::npos) {
      return SG_ERR_INVAL;
    }
    Ref<ec_public_key> remote;
    int rc = decode_public(remote_identity_public, s.global, remote);
    if (rc < 0) return rc;
    fingerprint_generator* raw_generator = nullptr;
    if ((rc = fingerprint_generator_create(&raw_generator, iterations, scannable_version, s.global)) < 0) {
      return rc;
    }
    FingerprintGeneratorPtr generator(raw_generator);
    ::fingerprint* raw_fp = nullptr;
    rc = fingerprint_generator_create_for(generator.get(), local_id.c_str(),
                                          ratchet_identity_key_pair_get_public(s.identity), remote_id.c_str(),
                                          remote.get(), &raw_fp);
    if (rc < 0) return rc;
    Ref<::fingerprint> fp(raw_fp);
    signal_buffer* raw_scannable = nullptr;
    if ((rc = scannable_fingerprint_serialize(&raw_scannable, fingerprint_get_scannable(fp.get()))) < 0) {
      return rc;
    }
    Buffer scannable(raw_scannable);
    out.displayable = displayable_fingerprint_text(fingerprint_get_displayable(fp.get()));
    out.scannable = to_bytes(raw_scannable);
    return 0;
  });
}

std::size_t SignalCContext::session_record_size(std::string_view peer_name, std::int32_t peer_device) const {
  std::lock_guard lock(state_->mutex);
  auto it = state_->sessions.find(AddressKey(std::string(peer_name), peer_device));
  return it == state_->sessions.end() ? 0 : it->second.record.size();
}

}  // namespace postern::interop::signal_c
