// Messenger: linked devices. The existing device D1 creates a one-time link on the server and
// shows CODE = the invite + "&link=" + link id + "." + a 128-bit secret S (base64url). The new
// device D2 generates an ephemeral X25519 key E and its own session token T, and posts to the link
// a request {E, its registration id, its name, HMAC-SHA256(S, context)} plus SHA-256(T). D1 checks
// the MAC with S (so the server, which never sees S, cannot inject its own device), asks the user,
// and approves: the server registers D2 with T's hash, and D1 leaves for D2 a provisioning blob,
// the account's identity key pair encrypted to E (X25519 with a fresh key, HKDF-SHA256 salted
// with S, XChaCha20-Poly1305). D2 picks it up with T, installs the identity, uploads prekeys.
#include <sodium.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "postern/account/token.h"
#include "postern/client/detail/messenger_impl.h"
#include "postern/crypto/curve.h"
#include "postern/crypto/hash.h"
#include "postern/crypto/hkdf.h"
#include "postern/util/bytes.h"

namespace postern::client {
namespace {

using nlohmann::json;
namespace pb = content::v1;

constexpr std::string_view kRequestContext = "postern-link-request-v1";
constexpr std::string_view kProvisionContext = "postern-link-provision-v1";
constexpr std::size_t kSecretSize = 16;

ByteView view_of(std::string_view s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

std::string b64url(ByteView b) {
  std::string out(sodium_base64_ENCODED_LEN(b.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), b.data(), b.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::char_traits<char>::length(out.c_str()));
  return out;
}

Result<Bytes> from_b64url(std::string_view text, std::size_t expected) {
  Bytes out(expected);
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      len != expected || end != text.data() + text.size())
    return make_error_code(Errc::invalid_argument);
  return out;
}

crypto::Hmac256Tag request_mac(ByteView secret, const std::string& link_id, ByteView ephemeral, std::uint32_t registration_id,
                               const std::string& name) {
  crypto::HmacSha256 mac(secret);
  mac.update(view_of(kRequestContext));
  mac.update(view_of(link_id));
  mac.update(ephemeral);
  const std::uint8_t reg[4] = {static_cast<std::uint8_t>(registration_id >> 24), static_cast<std::uint8_t>(registration_id >> 16),
                               static_cast<std::uint8_t>(registration_id >> 8), static_cast<std::uint8_t>(registration_id)};
  mac.update(ByteView(reg, 4));
  mac.update(view_of(name));
  return mac.finish();
}

Result<crypto::SecretArray<32>> provision_key(const crypto::SecretArray<32>& shared, ByteView secret, const std::string& link_id) {
  crypto::SecretArray<32> key;
  std::string info(kProvisionContext);
  info += link_id;
  POSTERN_CHECK(crypto::hkdf_sha256(shared.view(), secret, view_of(info), MutableByteView(key.data(), 32)));
  return key;
}

struct ParsedCode {
  std::string invite;
  std::string link_id;
  Bytes secret;
};

Result<ParsedCode> parse_code(const std::string& code) {
  auto invite = parse_invite(code);
  if (!invite.ok()) return make_error_code(Errc::bad_invite);
  ParsedCode out;
  Invite plain = *invite;
  plain.extra.clear();
  for (const auto& [k, v] : invite->extra) {
    if (k != "link") {
      plain.extra.emplace_back(k, v);
      continue;
    }
    const auto dot = v.find('.');
    if (dot == std::string::npos) return make_error_code(Errc::bad_invite);
    out.link_id = v.substr(0, dot);
    auto secret = from_b64url(std::string_view(v).substr(dot + 1), kSecretSize);
    if (!secret.ok() || out.link_id.empty() || out.link_id.size() > 64) return make_error_code(Errc::bad_invite);
    out.secret = std::move(*secret);
  }
  if (out.link_id.empty()) return make_error_code(Errc::bad_invite);
  out.invite = plain.to_string();
  return out;
}

std::optional<json> parse_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

}  // namespace

// The secrets of offers made by this process (never stored: an offer dies with the process).
struct OfferSecrets {
  static std::map<std::string, crypto::SecretBytes>& map() {
    static std::map<std::string, crypto::SecretBytes> m;
    return m;
  }
};

Outcome<LinkOffer> Messenger::offer_link() {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  HttpRequest request;
  request.method = "POST";
  request.target = "/v1/devices/links";
  request.bearer = *impl_->api->token();
  auto answer = impl_->link->send(request);
  if (!answer.ok()) return Failure::from(answer.error());
  if (answer->status != 201) return ServerApi::failure_from(*answer);
  const auto j = parse_json(answer->body);
  if (!j || !(*j)["link_id"].is_string()) return Failure::from(make_error_code(Errc::protocol_error), "the server's link answer does not parse");
  LinkOffer offer;
  offer.link_id = (*j)["link_id"].get<std::string>();
  offer.expires_ms = j->value("expires_ms", std::int64_t{0});
  Bytes secret(kSecretSize);
  impl_->rng.fill(secret);
  offer.code = impl_->invite->to_string() + "&link=" + offer.link_id + "." + b64url(secret);
  OfferSecrets::map()[offer.link_id] = crypto::SecretBytes(std::move(secret));
  return offer;
}

Outcome<std::optional<LinkRequest>> Messenger::poll_link(const LinkOffer& offer) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  const auto secret = OfferSecrets::map().find(offer.link_id);
  if (secret == OfferSecrets::map().end()) return Failure::from(make_error_code(Errc::invalid_argument), "unknown link");
  HttpRequest request;
  request.method = "GET";
  request.target = "/v1/devices/links/" + offer.link_id;
  request.bearer = *impl_->api->token();
  auto answer = impl_->link->send(request);
  if (!answer.ok()) return Failure::from(answer.error());
  if (answer->status == 404) return Failure::from(make_error_code(Errc::timeout), "the link expired; start again");
  if (answer->status != 200) return ServerApi::failure_from(*answer);
  const auto j = parse_json(answer->body);
  if (!j) return Failure::from(make_error_code(Errc::protocol_error));
  if (j->value("state", "") == "open") return std::optional<LinkRequest>{};
  auto blob = base64_decode(j->value("request", ""));
  if (!blob.ok()) return Failure::from(make_error_code(Errc::protocol_error));
  const auto req = parse_json(std::string(blob->begin(), blob->end()));
  if (!req) return Failure::from(make_error_code(Errc::not_allowed), "the new device's request does not parse: refused");
  LinkRequest out;
  out.device_name = req->value("name", "");
  out.registration_id = req->value("registration_id", 0u);
  auto eph = base64_decode(req->value("ephemeral_key", ""));
  auto mac = base64_decode(req->value("mac", ""));
  if (!eph.ok() || eph->size() != crypto::kPublicKeySize || !mac.ok() || out.device_name.size() > 256)
    return Failure::from(make_error_code(Errc::not_allowed), "the new device's request is malformed: refused");
  const auto expected = request_mac(secret->second.view(), offer.link_id, *eph, out.registration_id, out.device_name);
  if (!crypto::constant_time_equal(ByteView(expected.data(), expected.size()), *mac))
    return Failure::from(make_error_code(Errc::not_allowed),
                         "a device answered the link without its secret (not the code you showed): refused");
  out.ephemeral_key = std::move(*eph);
  return std::optional<LinkRequest>(std::move(out));
}

Outcome<std::uint32_t> Messenger::approve_link(const LinkOffer& offer, const LinkRequest& request) {
  std::lock_guard lock(impl_->mutex);
  POSTERN_OUTCOME_CHECK(impl_->require_login());
  const auto secret = OfferSecrets::map().find(offer.link_id);
  if (secret == OfferSecrets::map().end()) return Failure::from(make_error_code(Errc::invalid_argument), "unknown link");
  POSTERN_OUTCOME_TRY(auto their_key, crypto::PublicKey::deserialize(request.ephemeral_key));
  POSTERN_OUTCOME_TRY(auto identity, impl_->store->identity_key_pair());
  pb::ProvisionMessage message;
  const auto pub = identity.public_key.serialize();
  message.set_identity_public(pub.data(), pub.size());
  message.set_identity_private(identity.private_key.scalar().data(), 32);
  message.set_account_id(impl_->account_id);
  message.set_email(impl_->email);
  std::string plain = message.SerializeAsString();
  // The protobuf's copy of the private key goes before the message object does.
  sodium_memzero(message.mutable_identity_private()->data(), message.identity_private().size());
  const auto ours = crypto::KeyPair::generate(impl_->rng);
  POSTERN_OUTCOME_TRY(auto shared, crypto::agreement(ours.private_key, their_key));
  POSTERN_OUTCOME_TRY(auto key, provision_key(shared, secret->second.view(), offer.link_id));
  std::array<std::uint8_t, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce{};
  impl_->rng.fill(nonce);
  Bytes blob;
  const auto ours_pub = ours.public_key.serialize();
  blob.insert(blob.end(), ours_pub.begin(), ours_pub.end());
  blob.insert(blob.end(), nonce.begin(), nonce.end());
  const std::size_t head = blob.size();
  blob.resize(head + plain.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(blob.data() + head, &written, reinterpret_cast<const std::uint8_t*>(plain.data()),
                                             plain.size(), reinterpret_cast<const std::uint8_t*>(offer.link_id.data()),
                                             offer.link_id.size(), nullptr, nonce.data(), key.data());
  sodium_memzero(plain.data(), plain.size());
  blob.resize(head + written);
  json body = {{"device", {{"name", request.device_name}, {"identity_key", base64_encode(pub)}, {"registration_id", request.registration_id}}},
               {"provision", base64_encode(blob)}};
  HttpRequest approve;
  approve.method = "POST";
  approve.target = "/v1/devices/links/" + offer.link_id + "/approve";
  approve.bearer = *impl_->api->token();
  approve.body = body.dump();
  approve.headers.push_back({"Content-Type", "application/json"});
  auto answer = impl_->link->send(approve);
  if (!answer.ok()) return Failure::from(answer.error());
  if (answer->status != 201) return ServerApi::failure_from(*answer);
  const auto j = parse_json(answer->body);
  if (!j || !(*j)["device_id"].is_number_unsigned()) return Failure::from(make_error_code(Errc::protocol_error));
  const auto device = (*j)["device_id"].get<std::uint32_t>();
  auto others = impl_->own_other_devices();
  others.push_back(device);
  POSTERN_OUTCOME_CHECK(impl_->set_own_other_devices(others));
  OfferSecrets::map().erase(offer.link_id);
  return device;
}

Outcome<Done> Messenger::accept_link(const std::string& code, const std::string& device_name, std::chrono::milliseconds wait,
                                     const std::atomic<bool>* stop) {
  std::unique_lock lock(impl_->mutex);
  if (impl_->account_id != 0)
    return Failure::from(make_error_code(Errc::not_allowed), "this profile is already signed in; use a new --profile for the new device");
  auto parsed = parse_code(code);
  if (!parsed.ok()) return Failure::from(parsed.error(), "this is not a device link code (it comes from `postern devices link` on your other device)");
  lock.unlock();
  POSTERN_OUTCOME_CHECK(join(parsed->invite));
  lock.lock();
  POSTERN_OUTCOME_CHECK(impl_->connect_link());
  POSTERN_OUTCOME_TRY(bool has_identity, impl_->store->has_local_identity());
  (void)has_identity;
  const auto ephemeral = crypto::KeyPair::generate(impl_->rng);
  const std::uint32_t registration_id = protocol::generate_registration_id(impl_->rng);
  const std::string token = account::generate_token(impl_->rng);
  const auto token_hash = account::token_hash(token);
  const auto eph_pub = ephemeral.public_key.serialize();
  const auto mac = request_mac(parsed->secret, parsed->link_id, eph_pub, registration_id, device_name);
  const json request_blob = {{"v", 1}, {"name", device_name}, {"registration_id", registration_id},
                             {"ephemeral_key", base64_encode(eph_pub)}, {"mac", base64_encode(mac)}};
  const std::string blob_text = request_blob.dump();
  HttpRequest put;
  put.method = "PUT";
  put.target = "/v1/devices/links/" + parsed->link_id + "/request";
  put.body = json{{"request", base64_encode(view_of(blob_text))}, {"token_hash", to_hex(token_hash)}}.dump();
  put.headers.push_back({"Content-Type", "application/json"});
  auto answer = impl_->link->send(put);
  if (!answer.ok()) return Failure::from(answer.error());
  if (answer->status == 404) return Failure::from(make_error_code(Errc::invalid_argument), "the link expired or does not exist; make a new one");
  if (answer->status == 409) return Failure::from(make_error_code(Errc::not_allowed), "this link was already used; make a new one");
  if (answer->status != 202 && answer->status != 200) return ServerApi::failure_from(*answer);

  // Wait for the approval: the provision appears once the other device approved.
  const auto deadline = std::chrono::steady_clock::now() + wait;
  HttpRequest get;
  get.method = "GET";
  get.target = "/v1/devices/links/" + parsed->link_id + "/provision";
  get.bearer = token;
  json provision;
  while (true) {
    lock.unlock();
    auto got = impl_->link->send(get);
    lock.lock();
    if (!got.ok()) return Failure::from(got.error());
    if (got->status == 200) {
      const auto j = parse_json(got->body);
      if (!j) return Failure::from(make_error_code(Errc::protocol_error));
      provision = *j;
      break;
    }
    if (got->status != 401 && got->status != 404 && got->status != 409) return ServerApi::failure_from(*got);
    if (std::chrono::steady_clock::now() >= deadline || (stop != nullptr && stop->load()))
      return Failure::from(make_error_code(Errc::timeout), "the other device did not approve in time");
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    lock.lock();
  }
  auto blob = base64_decode(provision.value("provision", ""));
  constexpr std::size_t kHead = crypto::kPublicKeySize + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  if (!blob.ok() || blob->size() < kHead + crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return Failure::from(make_error_code(Errc::protocol_error), "the provisioning message is malformed");
  POSTERN_OUTCOME_TRY(auto their_key, crypto::PublicKey::deserialize(ByteView(blob->data(), crypto::kPublicKeySize)));
  POSTERN_OUTCOME_TRY(auto shared, crypto::agreement(ephemeral.private_key, their_key));
  POSTERN_OUTCOME_TRY(auto key, provision_key(shared, parsed->secret, parsed->link_id));
  crypto::SecretBytes plain(blob->size() - kHead - crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long opened = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &opened, nullptr, blob->data() + kHead, blob->size() - kHead,
                                                 reinterpret_cast<const std::uint8_t*>(parsed->link_id.data()),
                                                 parsed->link_id.size(), blob->data() + crypto::kPublicKeySize, key.data()) != 0)
    return Failure::from(make_error_code(Errc::not_allowed), "the provisioning message does not verify: refused");
  pb::ProvisionMessage message;
  if (!message.ParseFromArray(plain.data(), static_cast<int>(opened)))
    return Failure::from(make_error_code(Errc::protocol_error), "the provisioning message does not parse");
  POSTERN_OUTCOME_TRY(auto identity_public, crypto::PublicKey::deserialize(view_of(message.identity_public())));
  POSTERN_OUTCOME_TRY(auto identity_private, crypto::PrivateKey::deserialize(view_of(message.identity_private())));
  if (!(identity_private.public_key() == identity_public))
    return Failure::from(make_error_code(Errc::not_allowed), "the provisioned identity key pair does not match: refused");
  protocol::IdentityKeyPair pair{identity_public, std::move(identity_private)};
  POSTERN_OUTCOME_CHECK(impl_->store->set_local_identity(pair, registration_id));
  LoginInfo info;
  info.account_id = provision.value("account_id", std::int64_t{0});
  info.device_id = provision.value("device_id", 0u);
  info.token = token;
  if (info.account_id != message.account_id() || info.device_id == 0)
    return Failure::from(make_error_code(Errc::protocol_error), "the server's and the other device's account do not agree");
  POSTERN_OUTCOME_CHECK(impl_->finish_login(info, message.email()));
  lock.unlock();
  (void)devices();  // learn the account's other devices (sent-message sync)
  return Done{};
}

}  // namespace postern::client
