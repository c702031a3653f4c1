#include "spry/redis_bridge.h"

#include <utility>

#include "redis/redis_url.h"

namespace spry {

RedisBridge::RedisBridge(std::string url, RedisBridgeOptions options)
    : url_(std::move(url)), options_(std::move(options)) {
  detail::RedisUrl::parse(url_);  // throws for a bad URL, at registration
}

}  // namespace spry
