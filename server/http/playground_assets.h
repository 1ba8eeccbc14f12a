// The playground page (server/http/playground/: HTML, CSS, plain JavaScript; no build step,
// nothing from a CDN), compiled into the binary by embed_assets.cmake so the server needs no
// files at run time. Served by the HTTP front-end at their paths.
#pragma once

#include <string_view>
#include <vector>

namespace retain::server {

struct PlaygroundAsset {
  const char* path;          // "/", "/playground.js", ...
  const char* content_type;  // "text/html; charset=utf-8", ...
  std::string_view body;
};

const std::vector<PlaygroundAsset>& PlaygroundAssets();

}  // namespace retain::server
