#include "server/http/log.h"

#include "server/log/log.h"

namespace quire::http {

void Log(const std::string& line) {
  log::Error("http", line);
}

}  // namespace quire::http
