#include "server/http/log.h"

#include <iostream>
#include <sstream>

namespace quire::http {

void Log(const std::string& line) {
  std::ostringstream os;
  os << "quire http: " << line << '\n';
  std::cerr << os.str() << std::flush;
}

}  // namespace quire::http
