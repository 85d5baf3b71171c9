#include "server/http/client_address.h"

#include <algorithm>
#include <string_view>

#include "server/http/header_text.h"

namespace quire::http {

std::string ClientAddress(const Request& request, const std::vector<std::string>& trusted) {
  if (std::find(trusted.begin(), trusted.end(), request.remote_address) == trusted.end()) {
    return request.remote_address;
  }
  const std::string* forwarded = request.Header("x-forwarded-for");
  if (!forwarded) return request.remote_address;
  const std::size_t comma = forwarded->rfind(',');
  const std::string_view last =
      TrimSpace(comma == std::string::npos ? std::string_view(*forwarded)
                                           : std::string_view(*forwarded).substr(comma + 1));
  return last.empty() ? request.remote_address : std::string(last);
}

}  // namespace quire::http
