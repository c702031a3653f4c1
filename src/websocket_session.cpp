#include "websocket_session.h"
