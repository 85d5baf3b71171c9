// Chunk, MakeChunk and FinalChunk of http_server.h: the HTTP/1.1 framing of
// a streamed body.
#include <pistache/stream.h>

#include <cstdio>

#include "server/http/http_server.h"

namespace quire::http {

Chunk::Chunk(std::string framed) {
  const std::size_t size = framed.size();
  raw_ = std::make_unique<const Pistache::RawBuffer>(std::move(framed), size);
}

Chunk::~Chunk() = default;

std::string_view Chunk::bytes() const {
  return raw_->data();
}

ChunkPtr FinalChunk() {
  static const ChunkPtr final_chunk(new Chunk("0\r\n\r\n"));
  return final_chunk;
}

ChunkPtr MakeChunk(std::string_view payload) {
  // A zero-length chunk would end the response; an empty payload is no chunk.
  if (payload.empty()) return ChunkPtr(new Chunk(std::string()));
  char size[32];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  std::string chunk;
  chunk.reserve(static_cast<std::size_t>(n) + payload.size() + 2);
  chunk.append(size, static_cast<std::size_t>(n));
  chunk.append(payload);
  chunk.append("\r\n");
  return ChunkPtr(new Chunk(std::move(chunk)));
}

}  // namespace quire::http
