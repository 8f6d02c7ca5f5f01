// Known-answer tests for signal_c_support: the OpenSSL provider against published vectors (RFC 4231
// HMAC-SHA256, FIPS 180-2 SHA-512, NIST SP 800-38A AES), libsignal's fingerprint through the provider
// against the safety-number vector of the wire notes, and a short in-process session between two
// SignalCContexts. A c_vs_c interop run cannot catch a provider that is wrong the same way on both
// sides; this can. Exit status 0 when every check holds; failures are listed on stderr.
#include "libsignal_c/signal_c_support.h"

#include <signal_protocol.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "curve.h"
#include "fingerprint.h"

namespace {

namespace sc = postern::interop::signal_c;

int failures = 0;

void check(bool ok, std::string_view what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "FAIL %.*s\n", static_cast<int>(what.size()), what.data());
  }
}

sc::Bytes from_hex(std::string_view s) {
  sc::Bytes out;
  for (std::size_t k = 0; k + 1 < s.size(); k += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoul(std::string(s.substr(k, 2)), nullptr, 16)));
  }
  return out;
}

sc::Bytes bytes_of(std::string_view s) {
  return sc::Bytes(s.begin(), s.end());
}

// Takes ownership of a libsignal buffer and returns its bytes (empty if null).
sc::Bytes take(signal_buffer* b) {
  if (b == nullptr) return {};
  sc::Bytes out(signal_buffer_data(b), signal_buffer_data(b) + signal_buffer_len(b));
  signal_buffer_free(b);
  return out;
}

sc::Bytes hmac(const signal_crypto_provider& p, const sc::Bytes& key, const sc::Bytes& data,
               std::size_t split) {
  void* ctx = nullptr;
  signal_buffer* out = nullptr;
  if (p.hmac_sha256_init_func(&ctx, key.data(), key.size(), p.user_data) < 0) return {};
  int rc = p.hmac_sha256_update_func(ctx, data.data(), split, p.user_data);
  if (rc >= 0) rc = p.hmac_sha256_update_func(ctx, data.data() + split, data.size() - split, p.user_data);
  if (rc >= 0) rc = p.hmac_sha256_final_func(ctx, &out, p.user_data);
  p.hmac_sha256_cleanup_func(ctx, p.user_data);
  return rc < 0 ? sc::Bytes{} : take(out);
}

void test_hmac(const signal_crypto_provider& p) {
  const sc::Bytes key1(20, 0x0b);
  const auto mac1 = from_hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  const auto mac2 = from_hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  const auto mac_empty = from_hex("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  // Alternate keys so that pooled contexts are re-keyed, never reused with a stale key.
  for (int round = 0; round < 3; ++round) {
    check(hmac(p, key1, bytes_of("Hi There"), 3) == mac1, "HMAC-SHA256 RFC 4231 case 1");
    check(hmac(p, bytes_of("Jefe"), bytes_of("what do ya want for nothing?"), 10) == mac2,
          "HMAC-SHA256 RFC 4231 case 2");
    check(hmac(p, {}, {}, 0) == mac_empty, "HMAC-SHA256 empty key, empty message");
  }
}

void test_sha512(const signal_crypto_provider& p) {
  const auto abc = from_hex(
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d44"
      "23"
      "643ce80e2a9ac94fa54ca49f");
  const auto empty = from_hex(
      "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931"
      "bd"
      "47417a81a538327af927da3e");
  void* ctx = nullptr;
  check(p.sha512_digest_init_func(&ctx, p.user_data) == 0, "SHA-512 init");
  // libsignal reuses a context after final(): each final must leave it ready for a new message.
  for (int round = 0; round < 3; ++round) {
    signal_buffer* out = nullptr;
    const auto* m = reinterpret_cast<const std::uint8_t*>("abc");
    check(p.sha512_digest_update_func(ctx, m, 1, p.user_data) == 0 &&
              p.sha512_digest_update_func(ctx, m + 1, 2, p.user_data) == 0 &&
              p.sha512_digest_final_func(ctx, &out, p.user_data) == 0 && take(out) == abc,
          "SHA-512 \"abc\" (context reused after final)");
    out = nullptr;
    check(p.sha512_digest_final_func(ctx, &out, p.user_data) == 0 && take(out) == empty, "SHA-512 \"\"");
  }
  p.sha512_digest_cleanup_func(ctx, p.user_data);
}

sc::Bytes aes(const signal_crypto_provider& p, bool encrypt, int cipher, const sc::Bytes& key,
              const sc::Bytes& iv, const sc::Bytes& in, int* rc_out = nullptr) {
  signal_buffer* out = nullptr;
  const int rc = (encrypt ? p.encrypt_func : p.decrypt_func)(&out, cipher, key.data(), key.size(), iv.data(),
                                                             iv.size(), in.data(), in.size(), p.user_data);
  if (rc_out != nullptr) *rc_out = rc;
  return rc < 0 ? sc::Bytes{} : take(out);
}

void test_aes(const signal_crypto_provider& p) {
  const auto iv = from_hex("000102030405060708090a0b0c0d0e0f");
  const auto block = from_hex("6bc1bee22e409f96e93d7e117393172a");
  struct Vector {
    const char* name;
    int cipher;
    const char* key;
    const char* iv;
    const char* first_block;
  };
  const Vector vectors[] = {
      {"AES-128-CBC F.2.1", SG_CIPHER_AES_CBC_PKCS5, "2b7e151628aed2a6abf7158809cf4f3c", nullptr,
       "7649abac8119b246cee98e9b12e9197d"},
      {"AES-192-CBC F.2.3", SG_CIPHER_AES_CBC_PKCS5, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
       nullptr, "4f021db243bc633d7178183a9fa071e8"},
      {"AES-256-CBC F.2.5", SG_CIPHER_AES_CBC_PKCS5,
       "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", nullptr,
       "f58c4c04d6e5f1ba779eabfb5f7bfbd6"},
      {"AES-128-CTR F.5.1", SG_CIPHER_AES_CTR_NOPADDING, "2b7e151628aed2a6abf7158809cf4f3c",
       "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", "874d6191b620e3261bef6864990db6ce"},
      {"AES-256-CTR F.5.5", SG_CIPHER_AES_CTR_NOPADDING,
       "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
       "601ec313775789a5b7a7f504bbf3d228"},
  };
  for (const Vector& v : vectors) {
    const auto key = from_hex(v.key);
    const auto nonce = v.iv != nullptr ? from_hex(v.iv) : iv;
    const auto ct = aes(p, true, v.cipher, key, nonce, block);
    const bool cbc = v.cipher == SG_CIPHER_AES_CBC_PKCS5;
    check(ct.size() == (cbc ? 32U : 16U) && sc::Bytes(ct.begin(), ct.begin() + 16) == from_hex(v.first_block),
          v.name);
    check(aes(p, false, v.cipher, key, nonce, ct) == block, std::string(v.name) + " decrypt");
  }
  const auto key = from_hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
  const auto empty_ct = aes(p, true, SG_CIPHER_AES_CBC_PKCS5, key, iv, {});
  check(empty_ct.size() == 16, "AES-CBC of the empty message is one padding block");
  int rc = 0;
  check(aes(p, false, SG_CIPHER_AES_CBC_PKCS5, key, iv, empty_ct, &rc).empty() && rc == 0,
        "AES-CBC decrypts to the empty message");
  auto bad = aes(p, true, SG_CIPHER_AES_CBC_PKCS5, key, iv, block);
  bad.back() ^= 0x01;  // corrupts the padding block
  aes(p, false, SG_CIPHER_AES_CBC_PKCS5, key, iv, bad, &rc);
  check(rc < 0, "AES-CBC rejects bad padding");
  aes(p, true, SG_CIPHER_AES_CBC_PKCS5, sc::Bytes(17, 0), iv, block, &rc);
  check(rc < 0, "AES rejects a 17-byte key");
  aes(p, true, SG_CIPHER_AES_CBC_PKCS5, key, sc::Bytes(8, 0), block, &rc);
  check(rc < 0, "AES rejects an 8-byte IV");
}

// Safety-number vector from the project's wire notes (matches libsignal's Java/Rust tests).
void test_fingerprint_vector(sc::SignalCContext& party) {
  const auto alice = from_hex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
  const auto bob = from_hex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
  ec_public_key* a = nullptr;
  ec_public_key* b = nullptr;
  fingerprint_generator* generator = nullptr;
  fingerprint* fp = nullptr;
  signal_buffer* scannable = nullptr;
  bool ok = curve_decode_point(&a, alice.data(), alice.size(), party.global_context()) == 0 &&
            curve_decode_point(&b, bob.data(), bob.size(), party.global_context()) == 0 &&
            fingerprint_generator_create(&generator, 5200, 1, party.global_context()) == 0 &&
            fingerprint_generator_create_for(generator, "+14152222222", a, "+14153333333", b, &fp) == 0 &&
            scannable_fingerprint_serialize(&scannable, fingerprint_get_scannable(fp)) == 0;
  check(ok, "fingerprint vector: libsignal calls");
  if (ok) {
    check(std::string_view(displayable_fingerprint_text(fingerprint_get_displayable(fp))) ==
              "300354477692869396892869876765458257569162576843440918079131",
          "fingerprint vector: safety number");
    check(take(scannable) ==
              from_hex("080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
                       "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"),
          "fingerprint vector: scannable v1");
  }
  if (fp != nullptr) signal_type_unref(reinterpret_cast<signal_type_base*>(fp));
  if (generator != nullptr) fingerprint_generator_free(generator);
  if (a != nullptr) signal_type_unref(reinterpret_cast<signal_type_base*>(a));
  if (b != nullptr) signal_type_unref(reinterpret_cast<signal_type_base*>(b));
}

// The calls a benchmark makes, in process: X3DH, a few messages each way, Sender Keys, signatures.
void test_session(sc::SignalCContext& alice, sc::SignalCContext& bob) {
  sc::PreKeyBundle bundle;
  check(bob.generate_bundle(1, 2, bundle) == 0, "session: bundle");
  check(alice.process_bundle(bob.name(), bob.device_id(), bundle) == 0, "session: process_bundle");
  for (int k = 0; k < 6; ++k) {
    sc::SignalCContext& from = k % 2 == 0 ? alice : bob;
    sc::SignalCContext& to = k % 2 == 0 ? bob : alice;
    const sc::Bytes text = bytes_of("message " + std::to_string(k));
    sc::Ciphertext c;
    sc::Bytes plain;
    check(from.encrypt(to.name(), to.device_id(), text, c) == 0, "session: encrypt");
    check(c.type == (k == 0 ? sc::kPreKeySignalMessageType : sc::kSignalMessageType),
          "session: message type");
    check(to.decrypt(from.name(), from.device_id(), c.type, c.wire, plain) == 0 && plain == text,
          "session: decrypt");
    check(to.decrypt(from.name(), from.device_id(), c.type, c.wire, plain) == SG_ERR_DUPLICATE_MESSAGE,
          "session: duplicate");
  }
  check(alice.session_record_size(bob.name(), bob.device_id()) > 0, "session: record stored");

  sc::Bytes skdm;
  sc::Bytes wire;
  sc::Bytes plain;
  check(alice.create_skdm("g", skdm) == 0, "group: skdm_create");
  check(bob.process_skdm("g", alice.name(), alice.device_id(), skdm) == 0, "group: skdm_process");
  check(alice.group_encrypt("g", bytes_of("to the group"), wire) == 0, "group: encrypt");
  check(bob.group_decrypt("g", alice.name(), alice.device_id(), wire, plain) == 0 &&
            plain == bytes_of("to the group"),
        "group: decrypt");

  sc::Bytes sig;
  check(alice.sign(bytes_of("signed"), sig) == 0 && sig.size() == 64, "sign");
  check(bob.verify(alice.identity_public(), bytes_of("signed"), sig) == 1, "verify valid");
  check(bob.verify(alice.identity_public(), bytes_of("signeD"), sig) == 0, "verify tampered");
}

}  // namespace

int main() {
  const signal_crypto_provider* provider = sc::openssl_crypto_provider();
  check(provider != nullptr, "OpenSSL provider available");
  if (provider == nullptr) return 1;
  test_hmac(*provider);
  test_sha512(*provider);
  test_aes(*provider);

  std::unique_ptr<sc::SignalCContext> alice;
  std::unique_ptr<sc::SignalCContext> bob;
  check(sc::SignalCContext::create("alice", 1, alice) == 0, "create alice");
  check(sc::SignalCContext::create("bob", 2, bob) == 0, "create bob");
  if (alice && bob) {
    test_fingerprint_vector(*alice);
    test_session(*alice, *bob);
  }
  std::printf("%s\n",
              failures == 0 ? "all signal_c_support checks passed" : "signal_c_support checks FAILED");
  return failures == 0 ? 0 : 1;
}
