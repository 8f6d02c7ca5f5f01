// The client's parsers of outside bytes: invite links (typed or scanned), decrypted content
// (unpadding and the Content protobuf), and every JSON answer of the server (ServerApi over a
// link that answers with the fuzz input). None may crash; all must come back as values or errors.
#include <cstddef>
#include <cstdint>
#include <string>

#include "postern/client/content.h"
#include "postern/client/invite.h"
#include "postern/client/server_api.h"

namespace {

using namespace postern;
using namespace postern::client;

class FuzzLink final : public ServerLink {
 public:
  unsigned status = 200;
  std::string body;
  Result<HttpResponse> send(const HttpRequest&) override {
    HttpResponse r;
    r.status = status;
    r.body = body;
    r.headers.push_back({"Retry-After", body.substr(0, 8)});
    return r;
  }
  Result<std::unique_ptr<DeliverySocket>> open_delivery(std::string_view) override {
    return make_error_code(Errc::unreachable);
  }
  std::string describe() const override { return "fuzz"; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      (void)parse_invite(text);
      (void)explain_invite_error(text);
      break;
    case 1:
      (void)parse_padded(ByteView(data + 1, size - 1));
      break;
    default: {
      FuzzLink link;
      link.status = data[0] % 4 == 2 ? 200 : 409;
      link.body = text;
      ServerApi api(link);
      api.set_token("t");
      (void)api.challenge();
      (void)api.devices();
      (void)api.key_count();
      (void)api.fetch_bundles(1);
      (void)api.lookup("a@b.c");
      ServerApi::Mismatch mismatch;
      (void)api.send(1, {}, &mismatch);
      (void)api.fetch_queue(0, 10);
      (void)api.login("a@b.c", "p", "d", crypto::PublicKey{}, 1);
      break;
    }
  }
  return 0;
}
