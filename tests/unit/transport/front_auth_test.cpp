// Tests for postern/transport/front_auth.h: the token against an independent computation with
// OpenSSL's EVP HKDF and HMAC and its own base64, every way verify() refuses, and the replay
// filter's persistence, expiry, compaction, capacity and thread safety.
#include "postern/transport/front_auth.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "postern/transport/errors.h"
#include "store/temp_dir.h"

namespace postern::transport {
namespace {

using store::store_test::TempDir;

Errc code(const std::error_code& e) {
  EXPECT_EQ(&e.category(), &transport_category());
  return static_cast<Errc>(e.value());
}

Bytes secret_bytes() {
  Bytes s(kFrontSecretSize);
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::uint8_t>(0xa0 + i);
  return s;
}

FrontAuthenticator make_auth() {
  auto a = FrontAuthenticator::create(secret_bytes());
  EXPECT_TRUE(a.ok());
  return std::move(a).value();
}

FrontNonce nonce_of(std::uint8_t seed) {
  FrontNonce n{};
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(seed * 17 + i);
  return n;
}

// The token from the specification, with OpenSSL only (EVP_KDF HKDF, HMAC(), EVP_EncodeBlock).
std::string reference_token(ByteView secret, std::int64_t ts, const FrontNonce& nonce,
                            std::string_view binding) {
  std::array<std::uint8_t, 32> key{};
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(kdf);
  std::string info = "postern front auth v1";
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(secret.data()), secret.size()),
                         OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
                         OSSL_PARAM_construct_end()};
  EXPECT_EQ(EVP_KDF_derive(kctx, key.data(), key.size(), params), 1);
  EVP_KDF_CTX_free(kctx);
  EVP_KDF_free(kdf);

  Bytes raw(8);
  for (int i = 0; i < 8; ++i)
    raw[static_cast<std::size_t>(i)] =
        static_cast<std::uint8_t>(static_cast<std::uint64_t>(ts) >> (56 - 8 * i));
  raw.insert(raw.end(), nonce.begin(), nonce.end());
  std::string mac_input = "postern front v1";
  mac_input.append(as_chars(raw));
  mac_input.append(binding);
  std::array<std::uint8_t, 32> tag{};
  unsigned int tag_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(mac_input.data()), mac_input.size(), tag.data(), &tag_len);
  EXPECT_EQ(tag_len, 32u);
  raw.insert(raw.end(), tag.begin(), tag.begin() + 16);

  std::string b64(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), raw.data(), static_cast<int>(raw.size()));
  b64.resize(static_cast<std::size_t>(n));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return b64;
}

constexpr std::int64_t kNow = 1'790'000'000;
constexpr std::int64_t kWindow = 300;
const std::string kBinding = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455's sample Sec-WebSocket-Key

TEST(FrontAuth, KnownAnswerToken) {
  const FrontAuthenticator auth = make_auth();
  const FrontNonce nonce = nonce_of(1);
  const std::string token = auth.make_token(kNow, nonce, kBinding);
  EXPECT_EQ(token.size(), kFrontTokenChars);
  EXPECT_EQ(token, reference_token(secret_bytes(), kNow, nonce, kBinding));
  // Pinned as well, so that a change to both computations does not go unnoticed
  // ("AAAAAGqxO4A" is the timestamp 0x6ab13b80, "ERITFBUW..." the nonce 11 12 13 ...).
  EXPECT_EQ(token, "AAAAAGqxO4AREhMUFRYXGBkaGxwdHh8gKxyMNu9vIKqWqmPXmS-uYg");
  // Other timestamps (negative, huge) and an empty binding agree too.
  for (std::int64_t ts : {std::int64_t{0}, std::int64_t{-5}, std::int64_t{1} << 62}) {
    EXPECT_EQ(auth.make_token(ts, nonce_of(2), ""), reference_token(secret_bytes(), ts, nonce_of(2), ""));
  }
}

TEST(FrontAuth, CreateRefusesWrongSecretSize) {
  EXPECT_EQ(code(FrontAuthenticator::create(Bytes(31)).error()), Errc::bad_key);
  EXPECT_EQ(code(FrontAuthenticator::create(Bytes(33)).error()), Errc::bad_key);
  EXPECT_EQ(code(FrontAuthenticator::create(Bytes{}).error()), Errc::bad_key);
}

TEST(FrontAuth, VerifyAcceptsAndReturnsFields) {
  const FrontAuthenticator auth = make_auth();
  crypto::DeterministicRng rng(1);
  const std::string token = auth.make_token(rng, kNow, kBinding);
  auto v = auth.verify(token, kBinding, kNow, kWindow);
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->timestamp, kNow);
  EXPECT_EQ(auth.make_token(kNow, v->nonce, kBinding), token);
  // Fresh nonces each time.
  EXPECT_NE(auth.make_token(rng, kNow, kBinding), token);
}

TEST(FrontAuth, EveryFlippedCharacterIsRefused) {
  const FrontAuthenticator auth = make_auth();
  const std::string token = auth.make_token(kNow, nonce_of(3), kBinding);
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (std::size_t i = 0; i < token.size(); ++i) {
    for (char replacement : {'A', 'z', '-', '_', '0'}) {
      if (token[i] == replacement) continue;
      std::string bad = token;
      bad[i] = replacement;
      EXPECT_EQ(code(auth.verify(bad, kBinding, kNow, kWindow).error()), Errc::bad_token) << i;
    }
    // The neighbouring letter of the alphabet (flips the low bit of the 6-bit group).
    std::string bad = token;
    const std::size_t pos = alphabet.find(token[i]);
    bad[i] = alphabet[pos ^ 1];
    EXPECT_EQ(code(auth.verify(bad, kBinding, kNow, kWindow).error()), Errc::bad_token) << i;
  }
}

TEST(FrontAuth, WrongBindingOrSecret) {
  const FrontAuthenticator auth = make_auth();
  const std::string token = auth.make_token(kNow, nonce_of(4), kBinding);
  EXPECT_EQ(code(auth.verify(token, "other key==", kNow, kWindow).error()), Errc::bad_token);
  EXPECT_EQ(code(auth.verify(token, "", kNow, kWindow).error()), Errc::bad_token);
  EXPECT_EQ(code(auth.verify(token, kBinding + "x", kNow, kWindow).error()), Errc::bad_token);
  Bytes other = secret_bytes();
  other[0] ^= 1;
  auto other_auth = FrontAuthenticator::create(other);
  ASSERT_TRUE(other_auth.ok());
  EXPECT_EQ(code(other_auth->verify(token, kBinding, kNow, kWindow).error()), Errc::bad_token);
}

TEST(FrontAuth, TimeWindowBothWays) {
  const FrontAuthenticator auth = make_auth();
  for (std::int64_t skew : std::initializer_list<std::int64_t>{-kWindow, -1, 0, 1, kWindow}) {
    const std::string token = auth.make_token(kNow + skew, nonce_of(5), kBinding);
    EXPECT_TRUE(auth.verify(token, kBinding, kNow, kWindow).ok()) << skew;
  }
  for (std::int64_t skew :
       std::initializer_list<std::int64_t>{-kWindow - 1, kWindow + 1, -100'000, 100'000}) {
    const std::string token = auth.make_token(kNow + skew, nonce_of(5), kBinding);
    EXPECT_EQ(code(auth.verify(token, kBinding, kNow, kWindow).error()), Errc::bad_token) << skew;
  }
  // Extreme timestamps do not overflow the comparison.
  for (std::int64_t ts : {INT64_MIN, INT64_MAX, std::int64_t{-1}}) {
    const std::string token = auth.make_token(ts, nonce_of(6), kBinding);
    EXPECT_EQ(code(auth.verify(token, kBinding, kNow, kWindow).error()), Errc::bad_token);
    EXPECT_TRUE(auth.verify(token, kBinding, ts, kWindow).ok());
  }
  const std::string token = auth.make_token(kNow, nonce_of(7), kBinding);
  EXPECT_EQ(code(auth.verify(token, kBinding, kNow, -1).error()), Errc::bad_token);
  EXPECT_TRUE(auth.verify(token, kBinding, kNow, 0).ok());
}

TEST(FrontAuth, MalformedTokens) {
  const FrontAuthenticator auth = make_auth();
  const std::string token = auth.make_token(kNow, nonce_of(8), kBinding);
  auto refused = [&](const std::string& t) {
    return code(auth.verify(t, kBinding, kNow, kWindow).error()) == Errc::bad_token;
  };
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused(token.substr(0, 53)));
  EXPECT_TRUE(refused(token + "A"));
  EXPECT_TRUE(refused(token + "=="));
  EXPECT_TRUE(refused("/" + token.substr(1)));
  for (char c : {'+', '/', '=', ' ', '.', '\0', '\x80', '%'}) {
    std::string bad = token;
    bad[10] = c;
    EXPECT_TRUE(refused(bad)) << int{c};
  }
  // The last character carries 2 data bits and 4 unused ones, which must be zero: a non-canonical
  // spelling of the same bytes is refused.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const std::size_t last = alphabet.find(token.back());
  ASSERT_EQ(last & 0x0F, 0u);
  for (std::size_t low = 1; low < 16; ++low) {
    std::string bad = token;
    bad.back() = alphabet[last | low];
    EXPECT_TRUE(refused(bad)) << low;
  }
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<ReplayFilter> open_filter(const std::string& path, std::int64_t window = kWindow,
                                          std::size_t max = 1'000'000) {
  auto f = ReplayFilter::open(path, window, max);
  EXPECT_TRUE(f.ok()) << f.error().message();
  return f.ok() ? std::move(f).value() : nullptr;
}

bool check(ReplayFilter& f, const FrontNonce& n, std::int64_t ts, std::int64_t now) {
  auto r = f.check_and_record(n, ts, now);
  EXPECT_TRUE(r.ok()) << r.error().message();
  return r.ok() && *r;
}

TEST(ReplayFilter, SecondSightIsRefused) {
  auto f = open_filter("");
  ASSERT_TRUE(f);
  EXPECT_TRUE(check(*f, nonce_of(1), kNow, kNow));
  EXPECT_FALSE(check(*f, nonce_of(1), kNow, kNow));
  EXPECT_FALSE(check(*f, nonce_of(1), kNow - 10, kNow + 5));  // another timestamp: same nonce
  EXPECT_TRUE(check(*f, nonce_of(2), kNow, kNow));
  EXPECT_EQ(f->size(), 2u);
}

TEST(ReplayFilter, OpenRefusesBadConfig) {
  EXPECT_EQ(code(ReplayFilter::open("", 0).error()), Errc::bad_config);
  EXPECT_EQ(code(ReplayFilter::open("", -5).error()), Errc::bad_config);
  EXPECT_EQ(code(ReplayFilter::open("", 10, 0).error()), Errc::bad_config);
  EXPECT_EQ(code(ReplayFilter::open("/nonexistent-dir/x/replay", 10).error()), Errc::io_error);
}

TEST(ReplayFilter, PersistsAcrossRestart) {
  TempDir dir;
  const std::string path = dir.file("replay.bin");
  {
    auto f = open_filter(path);
    ASSERT_TRUE(f);
    EXPECT_TRUE(check(*f, nonce_of(1), kNow, kNow));
    EXPECT_TRUE(check(*f, nonce_of(2), kNow + 3, kNow));
    // A second filter on the same file is refused while the first holds it.
    EXPECT_EQ(code(ReplayFilter::open(path, kWindow).error()), Errc::io_error);
  }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 48);
  auto f = open_filter(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->size(), 2u);
  EXPECT_FALSE(check(*f, nonce_of(1), kNow, kNow + 1));  // the replay after the restart
  EXPECT_FALSE(check(*f, nonce_of(2), kNow + 3, kNow + 1));
  EXPECT_TRUE(check(*f, nonce_of(3), kNow, kNow + 1));
}

TEST(ReplayFilter, ExpiredEntriesArePruned) {
  auto f = open_filter("", 100);
  ASSERT_TRUE(f);
  EXPECT_TRUE(check(*f, nonce_of(1), kNow, kNow));
  EXPECT_TRUE(check(*f, nonce_of(2), kNow + 50, kNow));
  EXPECT_EQ(f->size(), 2u);
  // Still inside nonce 1's window: kept and refused.
  EXPECT_FALSE(check(*f, nonce_of(1), kNow, kNow + 100));
  // Past kNow + 100 nonce 1's token cannot verify any more: dropped (at the next prune, every
  // quarter window), nonce 2 kept.
  EXPECT_TRUE(check(*f, nonce_of(3), kNow + 126, kNow + 126));
  EXPECT_EQ(f->size(), 2u);
  // An expired token's nonce is refused without being recorded.
  EXPECT_FALSE(check(*f, nonce_of(4), kNow, kNow + 500));
  EXPECT_EQ(f->size(), 0u);  // pruned at kNow + 500 (nonce 2 expired at kNow + 150, 3 at + 226)
}

TEST(ReplayFilter, TornLastRecordIsIgnored) {
  TempDir dir;
  const std::string path = dir.file("replay.bin");
  {
    auto f = open_filter(path);
    ASSERT_TRUE(f);
    EXPECT_TRUE(check(*f, nonce_of(1), kNow, kNow));
    EXPECT_TRUE(check(*f, nonce_of(2), kNow, kNow));
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out.write("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 10);  // a crash mid-write
  }
  {
    auto f = open_filter(path);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->size(), 2u);
    EXPECT_FALSE(check(*f, nonce_of(2), kNow, kNow));
    EXPECT_TRUE(check(*f, nonce_of(3), kNow, kNow));  // appended aligned after the cut
  }
  auto f = open_filter(path);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->size(), 3u);
  EXPECT_FALSE(check(*f, nonce_of(3), kNow, kNow));
  EXPECT_EQ(std::filesystem::file_size(path), 72u);
}

TEST(ReplayFilter, CompactionKeepsLiveEntries) {
  TempDir dir;
  const std::string path = dir.file("replay.bin");
  constexpr std::int64_t kW = 10;
  std::int64_t now = kNow;
  auto nonce = [](std::uint32_t i) {
    FrontNonce n{};
    for (std::size_t k = 0; k < 4; ++k) n[k] = static_cast<std::uint8_t>(i >> (8 * k));
    n[15] = 0x5a;
    return n;
  };
  {
    auto f = open_filter(path, kW);
    ASSERT_TRUE(f);
    // Many short-lived nonces: each second's nonces expire kW seconds later, so the file grows
    // far beyond twice the live set and must be compacted.
    std::uint32_t i = 0;
    for (int second = 0; second < 40; ++second, ++now) {
      for (int k = 0; k < 500; ++k) ASSERT_TRUE(check(*f, nonce(i++), now, now));
    }
    EXPECT_LE(f->size(), 500u * (kW + 3));  // pruned every kW / 4 seconds
    // File: at most twice the live entries plus the slack.
    EXPECT_LT(std::filesystem::file_size(path), 24u * (2 * f->size() + 4096 + 1));
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    // The most recent nonces are still refused.
    EXPECT_FALSE(check(*f, nonce(i - 1), now - 1, now));
    EXPECT_FALSE(check(*f, nonce(i - 500 * kW), now - kW, now));
  }
  auto f = open_filter(path, kW);
  ASSERT_TRUE(f);
  EXPECT_FALSE(check(*f, nonce(40 * 500 - 1), now - 1, now));
  EXPECT_FALSE(check(*f, nonce(40 * 500 - 500 * kW), now - kW, now));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ReplayFilter, FullRefusesNewNonces) {
  auto f = open_filter("", 100, 3);
  ASSERT_TRUE(f);
  EXPECT_TRUE(check(*f, nonce_of(1), kNow, kNow));
  EXPECT_TRUE(check(*f, nonce_of(2), kNow, kNow));
  EXPECT_TRUE(check(*f, nonce_of(3), kNow + 50, kNow));
  EXPECT_FALSE(check(*f, nonce_of(4), kNow, kNow));  // full: fail closed
  EXPECT_FALSE(check(*f, nonce_of(4), kNow, kNow + 100));
  // Once the first two expire there is room again.
  EXPECT_TRUE(check(*f, nonce_of(4), kNow + 101, kNow + 101));
  EXPECT_EQ(f->size(), 2u);
}

TEST(ReplayFilter, ConcurrentSameNonceOnlyOnce) {
  TempDir dir;
  auto f = open_filter(dir.file("replay.bin"));
  ASSERT_TRUE(f);
  for (int round = 0; round < 50; ++round) {
    std::atomic<int> accepted{0};
    std::atomic<int> errors{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const FrontNonce n = nonce_of(static_cast<std::uint8_t>(round));
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        auto r = f->check_and_record(n, kNow, kNow);
        if (!r.ok())
          ++errors;
        else if (*r)
          ++accepted;
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(accepted.load(), 1) << round;
    EXPECT_EQ(errors.load(), 0);
  }
  EXPECT_EQ(f->size(), 50u);
}

}  // namespace
}  // namespace postern::transport
