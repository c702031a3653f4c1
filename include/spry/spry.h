#pragma once
/// spry: a C++20 web framework with first-class WebSocket routes.

#include "spry/app.h"
#include "spry/error.h"
#include "spry/headers.h"
#include "spry/log.h"
#include "spry/loop.h"
#include "spry/message.h"
#include "spry/options.h"
#include "spry/redis_bridge.h"
#include "spry/request.h"
#include "spry/response.h"
#include "spry/task.h"
#include "spry/websocket.h"
