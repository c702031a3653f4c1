#include "chat_app.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "chat_assets.h"  // generated from web/ by embed.py (see examples/meson.build)

namespace chat {

namespace {

using json = nlohmann::json;

std::int64_t nowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Characters (code points) of valid UTF-8: every byte that does not continue one.
std::size_t countChars(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

bool isName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isNameChar);
}

// nlohmann's dump() throws on invalid UTF-8; received text is valid already,
// but replacing keeps a serializer error from ever reaching a socket.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string topicOf(std::string_view room) {
  return "chat:" + std::string(room);
}

// ------------------------------------------------------------- shared state

struct Member {
  std::string nick;  // as the user spelled it
  std::uint64_t socket = 0;
};

struct Room {
  std::map<std::string, Member> members;  // by lower-case nick: sorted, unique
  std::deque<json> history;               // the last Options::historySize messages
  std::uint64_t seq = 0;                  // numbers every event of the room
  std::uint64_t lastActivity = 0;         // ChatState::tick at the last event
};

// Rooms of every loop: callbacks run on different loop threads, so every
// access holds `mutex`. Nothing that may call back into user code (add,
// publish, close) runs while it is held.
struct ChatState {
  explicit ChatState(Options o) : options(std::move(o)) {
    std::random_device rd;
    std::uniform_int_distribution<std::uint64_t> dist;
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(dist(rd)));
    instance = buf;
  }

  const Options options;
  std::string instance;  // tells a client whether the server restarted

  std::mutex mutex;
  std::map<std::string, Room> rooms;
  std::uint64_t tick = 0;

  json membersOf(const Room& room) const {
    json list = json::array();
    for (const auto& [key, m] : room.members) list.push_back(m.nick);
    return list;
  }

  bool taken(const std::string& room, std::string_view nick) {
    std::lock_guard lock(mutex);
    auto it = rooms.find(room);
    return it != rooms.end() && it->second.members.count(lower(nick)) != 0;
  }

  // Finds or makes `name`; nullptr when the room table is full of busy rooms.
  Room* roomFor(const std::string& name) {
    auto it = rooms.find(name);
    if (it != rooms.end()) return &it->second;
    if (rooms.size() >= options.maxRooms) {
      auto victim = rooms.end();
      for (auto r = rooms.begin(); r != rooms.end(); ++r) {
        if (r->second.members.empty() &&
            (victim == rooms.end() || r->second.lastActivity < victim->second.lastActivity)) {
          victim = r;
        }
      }
      if (victim == rooms.end()) return nullptr;
      rooms.erase(victim);
    }
    return &rooms[name];
  }
};

// What the middleware checked, for the ws handler.
struct Joining {
  std::string room;
  std::string nick;
};

// Per-socket data (ws.setData): the rate limiter's bucket.
struct Session {
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled{};
};

spry::Response refusal(int status, std::string_view reason, std::string message) {
  auto r = spry::Response::json(
      {{"ok", false}, {"reason", reason}, {"message", std::move(message)}}, status);
  r.header("Cache-Control", "no-store");
  return r;
}

void send(const spry::WebSocket& ws, const json& j) {
  ws.add(spry::Message::text(dump(j)));
}

void sendError(const spry::WebSocket& ws, std::string_view code, std::string message) {
  send(ws, {{"type", "error"}, {"code", code}, {"message", std::move(message)}});
}

// ---------------------------------------------------------------- origins

// The app's own origins (App::isOwnOrigin: the bound host and port, with the
// loopback names for a loopback or wildcard bind), plus --allow-origin.
bool originAllowed(std::string_view origin, const ChatState& state, const spry::App& app) {
  auto same = [origin](const std::string& allowed) {
    return allowed == "*" || lower(allowed) == lower(origin);
  };
  const auto& extra = state.options.allowedOrigins;
  return std::any_of(extra.begin(), extra.end(), same) || app.isOwnOrigin(origin);
}

// --------------------------------------------------------------- the page

std::string_view contentTypeOf(std::string_view name) {
  auto ends = [name](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

spry::Response asset(std::string_view name) {
  for (const auto& a : assets::kFiles) {
    if (a.name != name) continue;
    auto r = spry::Response::bytes(std::string(a.body), std::string(contentTypeOf(name)));
    // The page loads only its own script and style and talks only to its own
    // origin (ws: included): no inline script, so no injected one either.
    r.header("Content-Security-Policy",
             "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    r.header("X-Content-Type-Options", "nosniff");
    r.header("Referrer-Policy", "no-referrer");
    r.header("Cache-Control", "no-cache");
    return r;
  }
  throw spry::HttpError(404, "Not Found");
}

// Removes `who` (if still the member of socket `socket`) from its room and tells the rest of the
// room.
void leave(ChatState& state, spry::App& app, const Joining& who, std::uint64_t socket) {
  json left;
  {
    std::lock_guard lock(state.mutex);
    auto it = state.rooms.find(who.room);
    if (it == state.rooms.end()) return;
    Room& room = it->second;
    auto m = room.members.find(lower(who.nick));
    if (m == room.members.end() || m->second.socket != socket) return;
    room.members.erase(m);
    room.lastActivity = ++state.tick;
    left = {{"type", "leave"},
            {"seq", ++room.seq},
            {"ts", nowMs()},
            {"nick", who.nick},
            {"members", state.membersOf(room)}};
  }
  // The socket is closed: app.publish reaches the rest of the room.
  app.publish(topicOf(who.room), spry::Message::text(dump(left)));
}

}  // namespace

void install(spry::App& app, Options options) {
  auto state = std::make_shared<ChatState>(std::move(options));
  const Options& opt = state->options;

  app.get("/", [](spry::Request&) { return asset("index.html"); });
  app.get("/static/:file", [](spry::Request& req) {
    if (req.param("file") == "index.html") throw spry::HttpError(404, "Not Found");
    return asset(req.param("file"));
  });

  // Cross-site WebSocket hijacking: a page of another site could open a
  // socket here with the user's cookies. Browsers always send Origin; a
  // missing one is a non-browser client, which that attack cannot involve.
  auto checkOrigin = [state, &app](spry::Request& req, const spry::Next& next) -> spry::Response {
    std::string_view origin = req.header("Origin");
    if (!origin.empty() && !originAllowed(origin, *state, app)) {
      return refusal(403, "origin", "Origin " + std::string(origin) + " may not use this chat");
    }
    return next();
  };

  // The nickname rules, for the plain GET the page asks first and for the
  // upgrade alike: a browser cannot read why an upgrade was refused.
  auto requireNickname = [state](spry::Request& req, const spry::Next& next) -> spry::Response {
    std::string room(req.param("room"));
    if (room.size() > kMaxRoomChars || !isName(room)) {
      return refusal(
          400, "bad_room",
          "Room names are 1 to " + std::to_string(kMaxRoomChars) + " letters, digits, _ - or .");
    }
    auto nick = req.query("nick");
    if (!nick || nick->empty()) return refusal(400, "missing", "Please choose a nickname.");
    if (countChars(*nick) > kMaxNickChars) {
      return refusal(400, "too_long",
                     "Nicknames are at most " + std::to_string(kMaxNickChars) + " characters.");
    }
    if (!isName(*nick)) {
      return refusal(400, "invalid",
                     "Nicknames may use only letters, digits, _ - and . (no spaces).");
    }
    if (state->taken(room, *nick)) {
      return refusal(409, "taken",
                     "The nickname " + std::string(*nick) + " is already taken in #" + room + ".");
    }
    req.locals().set(Joining{room, std::string(*nick)});
    return next();
  };

  auto rooms = app.group("chat", {checkOrigin, requireNickname});

  spry::WebSocketOptions wsOptions{
      .maxMessageBytes = opt.maxMessageBytes,
      // Every browser offers permessage-deflate; chat JSON shrinks several-fold.
      // Shared mode: one deflate stream per loop, none held by an idle socket.
      .compression = {.mode = spry::Compression::kShared},
      // A plain GET of the socket's URL: the middleware passed, so the page may connect.
      .fallback =
          [](spry::Request& req) {
            const auto& j = req.locals().get<Joining>();
            auto r = spry::Response::json({{"ok", true}, {"room", j.room}, {"nick", j.nick}});
            r.header("Cache-Control", "no-store");
            return r;
          },
  };

  rooms.ws(
      ":room",
      [state, &app](spry::WebSocket ws, spry::Request& req) {
        const Joining j = req.locals().get<Joining>();
        const std::string topic = topicOf(j.room);
        const Options& opt = state->options;

        // Subscribe first: nothing can be delivered to this socket before this
        // callback returns, so every event numbered after the snapshot below
        // reaches it (and one numbered before may too: clients drop those).
        ws.subscribe(topic);

        json welcome;
        json joined;
        bool refused = false;
        bool full = false;
        {
          std::lock_guard lock(state->mutex);
          Room* room = state->roomFor(j.room);
          if (!room) {
            full = true;
          } else if (room->members.count(lower(j.nick))) {
            refused = true;  // taken between the middleware's check and now
          } else {
            room->members.emplace(lower(j.nick), Member{j.nick, ws.id()});
            room->lastActivity = ++state->tick;
            const auto seq = ++room->seq;
            const auto ts = nowMs();
            json members = state->membersOf(*room);
            json history = json::array();
            for (const auto& m : room->history) history.push_back(m);
            welcome = {{"type", "welcome"},
                       {"room", j.room},
                       {"nick", j.nick},
                       {"instance", state->instance},
                       {"seq", seq},
                       {"ts", ts},
                       {"members", members},
                       {"history", std::move(history)},
                       {"limits",
                        {{"maxChars", opt.maxTextChars},
                         {"maxBytes", opt.maxMessageBytes},
                         {"ratePerSecond", opt.ratePerSecond},
                         {"burst", opt.rateBurst}}}};
            joined = {{"type", "join"},
                      {"seq", seq},
                      {"ts", ts},
                      {"nick", j.nick},
                      {"members", std::move(members)}};
          }
        }
        if (full) {
          sendError(ws, "busy", "Too many rooms are in use; try again later.");
          ws.close(1013, "too many rooms");
          return;
        }
        if (refused) {
          sendError(ws, "taken",
                    "The nickname " + j.nick + " is already taken in #" + j.room + ".");
          ws.close(1008, "nickname taken");
          return;
        }

        // A member from here on: whatever happens next, its close leaves the room.
        const std::uint64_t id = ws.id();
        if (!ws.onClose([state, &app, j, id](std::uint16_t, std::string_view) {
              leave(*state, app, j, id);
            })) {
          leave(*state, app, j, id);  // closed meanwhile
          return;
        }

        ws.setData(Session{opt.rateBurst, std::chrono::steady_clock::now()});
        send(ws, welcome);
        ws.publish(topic, spry::Message::text(dump(joined)));  // everyone else

        ws.listen([state, &app, ws, j, topic](const spry::Message& message) {
          Session* s = ws.data<Session>();
          if (!s) return;
          const Options& opt = state->options;

          // Token bucket: every message counts, valid or not.
          auto now = std::chrono::steady_clock::now();
          double elapsed = std::chrono::duration<double>(now - s->refilled).count();
          s->refilled = now;
          s->tokens = std::min(opt.rateBurst, s->tokens + elapsed * opt.ratePerSecond);
          if (s->tokens < 1) {
            ws.close(1008, "rate limit");
            return;
          }
          s->tokens -= 1;

          if (message.isBinary()) {
            ws.close(1003, "text messages only");
            return;
          }
          json in = json::parse(message.data(), nullptr, /*allow_exceptions=*/false);
          if (!in.is_object() || !in.contains("type") || !in["type"].is_string()) {
            sendError(ws, "bad_request", "Expected a JSON object with a \"type\".");
            return;
          }
          if (in["type"] != "message") {
            sendError(ws, "bad_request", "Unknown message type.");
            return;
          }
          if (!in.contains("text") || !in["text"].is_string()) {
            sendError(ws, "bad_request", "A message needs a \"text\" string.");
            return;
          }
          const std::string& text = in["text"].get_ref<const std::string&>();
          if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
            sendError(ws, "empty", "Empty messages are not sent.");
            return;
          }
          if (countChars(text) > opt.maxTextChars) {
            sendError(ws, "too_long",
                      "Messages are at most " + std::to_string(opt.maxTextChars) + " characters.");
            return;
          }

          json out;
          {
            std::lock_guard lock(state->mutex);
            auto it = state->rooms.find(j.room);
            if (it == state->rooms.end()) return;
            Room& room = it->second;
            room.lastActivity = ++state->tick;
            out = {{"type", "message"},
                   {"seq", ++room.seq},
                   {"ts", nowMs()},
                   {"nick", j.nick},
                   {"text", text}};
            room.history.push_back(out);
            while (room.history.size() > opt.historySize) room.history.pop_front();
          }
          // To the whole room, the sender included: its copy carries the
          // server's timestamp and sequence number.
          app.publish(topic, spry::Message::text(dump(out)));
        });
      },
      std::move(wsOptions));
}

}  // namespace chat
