#include <uv.h>

#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <thread>

#include "app_state.h"
#include "connection.h"
#include "http/handshake.h"
#include "http/http_writer.h"
#include "loop_context.h"
#include "redis/pubsub_bridge.h"
#include "server.h"
#include "spry/log.h"
#include "tls/tls_context.h"
#include "ws/permessage_deflate.h"
#include "ws/websocket_session.h"

namespace spry {

namespace detail {

namespace {
HttpLimits limitsOf(const HttpOptions& o) {
  HttpLimits l;
  l.maxHeaderBytes = o.maxHeaderBytes;
  l.maxUrlBytes = o.maxUrlBytes;
  l.maxHeaderCount = o.maxHeaderCount;
  l.maxBodyBytes = o.maxBodyBytes;
  return l;
}

detail::RouterOptions routerOptionsOf(const spry::RouterOptions& o) {
  return {.caseSensitive = o.caseSensitive, .strictTrailingSlash = o.strictTrailingSlash};
}

// The terminal of a ws route's onion: the handshake checks. A 101 from here
// tells the connection to upgrade once the middleware has unwound.
Handler upgradeTerminal(const RouteEntry* route, const AppState* app) {
  return [route, app](Request& req) -> Response {
    const WebSocketOptions& o = route->wsOptions;
    HandshakeResult hs =
        req.method() == "GET" ? checkHandshake(req.headers(), o.protocols) : HandshakeResult{};
    switch (hs.kind) {
      case HandshakeResult::Kind::kNotUpgrade: {
        if (o.fallback) return o.fallback(req);
        auto r = Response::text("Upgrade Required: this is a WebSocket endpoint", 426);
        r.header("Upgrade", "websocket");
        return r;
      }
      case HandshakeResult::Kind::kBadVersion: {
        auto r = Response::text("Unsupported WebSocket version (only 13)", 426);
        r.header("Sec-WebSocket-Version", "13");
        r.header("Upgrade", "websocket");
        return r;
      }
      case HandshakeResult::Kind::kBadKey:
        return Response::text("Missing or malformed Sec-WebSocket-Key", 400);
      case HandshakeResult::Kind::kAccept:
        break;
    }
    // Browsers always send Origin; a missing one is a non-browser client,
    // which cross-site hijacking cannot involve.
    std::string_view origin = req.header("Origin");
    const bool originOk =
        origin.empty() ||
        (o.allowOwnOrigin ? app->isOwnOrigin(origin) || (!o.allowedOrigins.empty() &&
                                                         originAllowed(origin, o.allowedOrigins))
                          : originAllowed(origin, o.allowedOrigins));
    if (!originOk) {
      return Response::text("Origin not allowed", 403);
    }
    Response r(101);
    r.header("Sec-WebSocket-Accept", std::move(hs.accept));
    if (!hs.protocol.empty()) r.header("Sec-WebSocket-Protocol", std::move(hs.protocol));
    return r;
  };
}
}  // namespace

AppState::AppState(spry::RouterOptions r, HttpOptions h)
    : routing(r),
      http(h),
      limits(limitsOf(h)),
      router(routerOptionsOf(r)),
      root{nullptr, "/", {}} {}

bool AppState::isOwnOrigin(std::string_view origin) const noexcept {
  for (const auto& l : listeners) {
    if (detail::isOwnOrigin(origin, l.host, l.port, l.tls != nullptr)) return true;
  }
  return false;
}

void AppState::checkNotFrozen() const {
  if (frozen) {
    throw std::logic_error("spry: routes and middleware must be registered before listen()");
  }
}

void AppState::freeze() {
  if (frozen) return;
  frozen = true;
  for (const auto& mw : root.middleware) globalChain.push_back(&mw);
  for (auto& route : routes) {
    std::vector<const GroupNode*> nodes;
    for (const GroupNode* g = route.group; g; g = g->parent) nodes.push_back(g);
    route.chain.clear();
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
      for (const auto& mw : (*it)->middleware) route.chain.push_back(&mw);
    }
    if (route.isWebSocket) route.handler = upgradeTerminal(&route, this);
  }
}

Response Chain::runAt(const std::vector<const Middleware*>* middleware,
                      const std::function<Response(Request&)>* terminal, Request* req,
                      std::size_t index) {
  if (index < middleware->size()) {
    return (*(*middleware)[index])(*req, Next(middleware, terminal, req, index + 1));
  }
  return (*terminal)(*req);
}

Response AppState::handle(Request& req, const RouteEntry* route, const RouteMatch& match) noexcept {
  try {
    if (route) {
      Chain chain{&route->chain, &route->handler, &req};
      return chain.run(0);
    }
    // No route: the answer is returned, not thrown, so middleware reads it
    // from next() like any other; filters still shape the 400/404/405. What
    // the chain points at lives on the heap when there is middleware: a
    // coroutine middleware may call next() after this returns.
    struct Miss {
      RouteMatch match;
      std::vector<const Middleware*> shared;
      Handler answer;
    };
    auto miss = std::make_shared<Miss>();
    miss->match = match;
    miss->answer = [this, m = miss.get()](Request& r) -> Response {
      const RouteMatch& match = m->match;
      switch (match.kind) {
        case RouteMatch::Kind::kAsterisk: {
          Response res(200);  // Content-Length: 0, as RFC 9110 9.3.7 asks
          res.header("Allow", match.allow);
          return res;
        }
        case RouteMatch::Kind::kMethodNotAllowed: {
          if (r.method() == "OPTIONS") {
            Response res(204);
            res.header("Allow", match.allow + ", OPTIONS");
            return res;
          }
          Response res =
              applyFilters(std::make_exception_ptr(HttpError(405, "Method Not Allowed")), r);
          // RFC 9110 15.5.6: a 405 must say what is allowed, whoever wrote it.
          if (res.status() == 405 && !res.headers().has("Allow")) res.header("Allow", match.allow);
          return res;
        }
        case RouteMatch::Kind::kBadPath:
          return applyFilters(std::make_exception_ptr(HttpError(400, "Bad Request")), r);
        case RouteMatch::Kind::kNotFound:
        case RouteMatch::Kind::kFound:
          break;
      }
      return applyFilters(std::make_exception_ptr(HttpError(404, "Not Found")), r);
    };
    // A path that exists under other methods runs the middleware that all its
    // routes share (a group's CORS answers its preflights); a 404 has no
    // route, so only the app's own middleware runs.
    const std::vector<const Middleware*>* middleware = &globalChain;
    if (match.kind == RouteMatch::Kind::kMethodNotAllowed && !match.allowedRoutes.empty()) {
      auto& shared = miss->shared;
      shared = routes[match.allowedRoutes.front()].chain;
      for (std::size_t id : match.allowedRoutes) {
        const auto& other = routes[id].chain;
        auto end = std::mismatch(shared.begin(), shared.end(), other.begin(), other.end()).first;
        shared.erase(end, shared.end());
      }
      middleware = &shared;
    }
    // A coroutine owned the request (ownRequest): it may still run the chain
    // after this returns (or throws).
    struct Keep {
      Request& req;
      std::shared_ptr<Miss>& miss;
      ~Keep() {
        if (RequestData& d = RequestData::of(req); d.owned) d.keepAlive = std::move(miss);
      }
    } keep{req, miss};
    Chain chain{middleware, &miss->answer, &req};
    return chain.run(0);
  } catch (...) {
    return applyFilters(std::current_exception(), req);
  }
}

AppState::~AppState() = default;

bool AppState::publish(std::string_view topic, const Message& message,
                       const std::shared_ptr<WebSocketEndpoint>& skip) {
  if (!publishLocally(topic, message, skip)) return false;
  if (bridge) bridge->publish(topic, message);
  return true;
}

bool AppState::publishLocally(std::string_view topic, const Message& message,
                              const std::shared_ptr<WebSocketEndpoint>& skip) {
  SharedFrame frame =
      makeSharedFrame(message.isText() ? WsOpcode::kText : WsOpcode::kBinary, message.data());
  std::vector<std::shared_ptr<Server>> targets;
  {
    std::lock_guard lock(serveMutex);
    targets = servers;
  }
  if (targets.empty()) return false;
  // A socket publishing from off its loop (another thread) must still be
  // skipped on its own loop: the post names it weakly, as its address may be
  // reused by then. (`skip` is the caller's locked handle: reading the
  // connection's own reference from this thread would race its release.)
  std::weak_ptr<const WebSocketEndpoint> weakSkip = skip;
  const LoopContext* skipLoop = skip ? &skip->loopContext() : nullptr;
  for (const auto& server : targets) {
    LoopContext& loop = server->loopContext();
    if (loop.isCurrentThread()) {
      server->topics().deliver(topic, frame, skip.get());
      continue;
    }
    // One post per loop, not per subscriber; the loop's queue keeps this
    // publisher's messages in order.
    std::weak_ptr<Server> weak = server;
    std::weak_ptr<const WebSocketEndpoint> ownSkip;
    if (&loop == skipLoop) ownSkip = weakSkip;
    loop.post([weak, t = std::string(topic), frame, ownSkip] {
      auto s = weak.lock();
      if (!s) return;
      auto publisher = ownSkip.lock();
      s->topics().deliver(t, frame, publisher.get());
    });
  }
  return true;
}

Response AppState::applyFilters(std::exception_ptr error, Request& req) noexcept {
  for (const auto& filter : filters) {
    try {
      if (auto r = filter(error, req)) return std::move(*r);
    } catch (...) {
      // A failing filter must not hide the original error; report it and go on.
      log(LogLevel::kError, "spry: an exception filter threw while handling " +
                                std::string(req.method()) + " " + std::string(req.path()));
    }
  }
  try {
    std::rethrow_exception(error);
  } catch (const HttpError& e) {
    std::string_view msg = e.what();
    return Response::text(std::string(msg.empty() ? reasonPhrase(e.status()) : msg), e.status());
  } catch (const std::exception& e) {
    log(LogLevel::kError, "spry: " + std::string(req.method()) + " " + std::string(req.path()) +
                              ": unhandled exception: " + e.what());
  } catch (...) {
    log(LogLevel::kError, "spry: " + std::string(req.method()) + " " + std::string(req.path()) +
                              ": unhandled non-standard exception");
  }
  try {
    return Response::text("Internal Server Error", 500);
  } catch (...) {
    return Response(500);
  }
}

namespace {
// Writes to a reset peer must fail with EPIPE, not kill the process.
void ignoreSigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    signal(SIGPIPE, SIG_IGN);
  }
}

// A server holds one descriptor per client: use all the hard limit allows.
// Returns the connection cap: `requested`, or the limit less a reserve for
// listeners, loops, the thread pool and the user's own files.
std::size_t raiseFileLimit(std::size_t requested) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return requested ? requested : 1024;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (requested) return requested;
  constexpr rlim_t kReserve = 64;
  return lim.rlim_cur > kReserve * 2 ? static_cast<std::size_t>(lim.rlim_cur - kReserve) : 64;
}
}  // namespace

}  // namespace detail

Response Next::operator()() const {
  return detail::Chain::runAt(middleware_, terminal_, req_, index_);
}

// ---------------------------------------------------------------- Routes

Routes& Routes::add(std::string_view method, std::string_view path, Handler handler) {
  app_->checkNotFrozen();
  if (!handler) throw std::invalid_argument("spry: empty handler for " + std::string(path));
  std::string pattern = detail::joinPaths(node_->path, path);
  auto& route = app_->routes.emplace_back();
  route.method = std::string(method);
  route.pattern = pattern;
  route.group = node_;
  route.handler = std::move(handler);
  try {
    app_->router.add(method, pattern, app_->routes.size() - 1);
  } catch (...) {
    app_->routes.pop_back();
    throw;
  }
  return *this;
}

Routes& Routes::addWebSocket(std::string_view path, WebSocketHandler handler,
                             WebSocketOptions options) {
  app_->checkNotFrozen();
  if (!handler) throw std::invalid_argument("spry: empty ws handler for " + std::string(path));
  if (options.maxMessageBytes == 0) {
    throw std::invalid_argument("spry: ws " + std::string(path) + ": maxMessageBytes must be > 0");
  }
  const CompressionOptions& z = options.compression;
  auto badCompression = [&](const char* field, int value, const char* range) {
    throw std::invalid_argument("spry: ws " + std::string(path) + ": compression." + field + " = " +
                                std::to_string(value) + " is outside " + range);
  };
  if (z.windowBits < 9 || z.windowBits > 15) badCompression("windowBits", z.windowBits, "9..15");
  if (z.level < 1 || z.level > 9) badCompression("level", z.level, "1..9");
  if (z.memLevel < 1 || z.memLevel > 9) badCompression("memLevel", z.memLevel, "1..9");
  add("GET", path, [](Request&) { return Response(500); });  // terminal set at freeze
  auto& route = app_->routes.back();
  route.isWebSocket = true;
  route.wsHandler = std::move(handler);
  route.wsOptions = std::move(options);
  return *this;
}

Routes& Routes::use(Middleware middleware) {
  app_->checkNotFrozen();
  if (!middleware) throw std::invalid_argument("spry: empty middleware");
  node_->middleware.push_back(std::move(middleware));
  return *this;
}

Group Routes::group(std::string_view prefix, std::vector<Middleware> middleware) {
  app_->checkNotFrozen();
  auto& g = app_->groups.emplace_back();
  g.parent = node_;
  g.path = detail::joinPaths(node_->path, prefix);
  for (auto& mw : middleware) {
    if (!mw) throw std::invalid_argument("spry: empty middleware in group " + g.path);
    g.middleware.push_back(std::move(mw));
  }
  return Group(app_, &g);
}

// ---------------------------------------------------------------- App

App::App(RouterOptions routing, HttpOptions http)
    : Routes(nullptr, nullptr), state_(std::make_unique<detail::AppState>(routing, http)) {
  app_ = state_.get();
  node_ = &state_->root;
}

App::~App() = default;

void App::addFilter(std::function<std::optional<Response>(std::exception_ptr, Request&)> filter) {
  state_->checkNotFrozen();
  state_->filters.push_back(std::move(filter));
}

std::uint16_t App::port() const noexcept {
  return state_->port.load();
}

bool App::isOwnOrigin(std::string_view origin) const noexcept {
  return state_->listening.load() && state_->isOwnOrigin(origin);
}

std::vector<ListenerInfo> App::listeners() const {
  std::lock_guard lock(state_->serveMutex);
  std::vector<ListenerInfo> out;
  for (const auto& l : state_->listeners) out.push_back({l.host, l.port, l.tls != nullptr});
  return out;
}

bool App::reloadTls() {
  std::lock_guard reload(state_->tlsReloadMutex);
  std::vector<std::shared_ptr<detail::TlsServerConfig>> configs;
  {
    std::lock_guard lock(state_->serveMutex);
    for (const auto& l : state_->listeners) {
      if (l.tls) configs.push_back(l.tls);
    }
  }
  // Every file first, then every switch: all listeners change, or none.
  std::vector<std::shared_ptr<const detail::TlsContext>> next;
  for (const auto& c : configs) {
    std::string error;
    auto context = c->build(error);
    if (!context) {
      log(LogLevel::kError, "spry: TLS reload failed, the certificates in service stay: " + error);
      return false;
    }
    next.push_back(std::move(context));
  }
  for (std::size_t i = 0; i < configs.size(); ++i) configs[i]->install(std::move(next[i]));
  if (!configs.empty()) {
    log(LogLevel::kInfo,
        "spry: reloaded TLS certificates (" + std::to_string(configs.size()) + " listener(s))");
  }
  return true;
}
bool App::isListening() const noexcept {
  return state_->listening.load();
}

bool App::publish(std::string_view topic, const Message& message) {
  return state_->publish(topic, message, nullptr);
}

std::size_t App::subscriberCount(std::string_view topic) const {
  return state_->subscribers.count(topic);
}

App& App::bridge(RedisBridge bridge) {
  state_->checkNotFrozen();
  if (state_->bridge) throw std::logic_error("spry: App::bridge called twice");
  detail::AppState* st = state_.get();
  detail::PubSubBridge::Hooks hooks;
  hooks.deliver = [st](std::string_view topic, const Message& message) {
    st->publishLocally(topic, message, nullptr);
  };
  hooks.liveTopics = [st] { return st->subscribers.names(); };
  hooks.isLive = [st](std::string_view topic) { return st->subscribers.count(topic) > 0; };
  state_->bridge = std::make_unique<detail::PubSubBridge>(bridge, std::move(hooks));
  detail::PubSubBridge* b = state_->bridge.get();
  state_->subscribers.onTopicChange([b](std::string_view topic) { b->topicChanged(topic); });
  return *this;
}

Stats App::stats() const {
  Stats out;
  {
    std::lock_guard lock(state_->serveMutex);
    for (const auto& s : state_->servers) {
      out.connections += s->connectionCount();
      out.webSockets += s->webSocketCount();
      out.writeQueueBytes += s->writeQueueBytes();
    }
  }
  out.wslayContexts = detail::WebSocketSession::liveContexts();
  out.subscribedTopics = state_->subscribers.topics();
  if (state_->bridge) out.bridge = state_->bridge->stats();
  {
    std::lock_guard lock(state_->serveMutex);
    for (const auto& s : state_->servers) {
      const auto t = s->tlsCounts();
      out.tlsHandshakes += t.handshakes;
      out.tlsResumed += t.resumed;
      out.tlsHandshakeFailures += t.handshakeFailures;
      out.tlsErrors += t.errors;
      out.tlsHandshakesDeferred += t.deferred;
      const auto& z = s->loopContext().compression().counters();
      constexpr auto kRelaxed = std::memory_order_relaxed;
      out.deflateMessages += z.deflated.load(kRelaxed);
      out.deflateBytesIn += z.deflateIn.load(kRelaxed);
      out.deflateBytesOut += z.deflateOut.load(kRelaxed);
      out.inflateMessages += z.inflated.load(kRelaxed);
      out.inflateBytesIn += z.inflateIn.load(kRelaxed);
      out.inflateBytesOut += z.inflateOut.load(kRelaxed);
      out.deflateContexts += z.dedicated.load(kRelaxed);
    }
  }
  out.zlibStreams = detail::liveZlibStreams();
  return out;
}

std::vector<Loop> App::loops() const {
  std::lock_guard lock(state_->serveMutex);
  std::vector<Loop> out;
  for (const auto& s : state_->servers) out.push_back(s->loopContext().handle());
  return out;
}

void App::stop(std::chrono::milliseconds deadline) {
  std::lock_guard lock(state_->serveMutex);
  for (const auto& s : state_->servers) {
    std::weak_ptr<detail::Server> weak = s;
    s->loopContext().post([weak, deadline] {
      if (auto server = weak.lock()) server->stop(deadline);
    });
  }
}

namespace {
struct SignalWatch {
  uv_signal_t sigint;
  uv_signal_t sigterm;
  App* app;
  std::chrono::milliseconds deadline;
  bool stopping = false;
};

// One event loop of listen(): its own libuv loop, listening socket and thread.
struct LoopSlot {
  uv_loop_t loop{};
  std::shared_ptr<detail::LoopContext> ctx;
  std::shared_ptr<detail::Server> server;
  std::thread thread;
};

// What listen() and attach() do before binding: routes freeze, SIGPIPE is
// ignored, the descriptor limit is raised for maxConnections.
void prepareToServe(detail::AppState& st, const ListenOptions& options) {
  st.freeze();
  detail::ignoreSigpipe();
  st.maxConnections = detail::raiseFileLimit(options.maxConnections);
}

// Every listener of `options`, the first first, with its TLS set up: the
// files are read here, so a bad one throws (naming it) before anything binds.
// One ticket key store for all of them: a ticket from one listener resumes
// on any other.
std::vector<detail::BoundListener> planListeners(const ListenOptions& options) {
  std::vector<detail::BoundListener> plan;
  std::shared_ptr<detail::TicketKeyStore> tickets;
  auto tlsOf =
      [&](const std::optional<TlsOptions>& tls) -> std::shared_ptr<detail::TlsServerConfig> {
    if (!tls) return nullptr;
    if (!tickets && tls->ticketKeyRotation.count() > 0) {
      tickets = std::make_shared<detail::TicketKeyStore>(tls->ticketKeyRotation);
    }
    return std::make_shared<detail::TlsServerConfig>(*tls, tickets);
  };
  plan.push_back({options.host, options.port, tlsOf(options.tls)});
  for (const auto& l : options.also) plan.push_back({l.host, l.port, tlsOf(l.tls)});
  return plan;
}

// Binds every planned listener on `server`; port 0 is replaced by the port
// the first bind picked, which the other loops then share.
void bindAll(detail::Server& server, std::vector<detail::BoundListener>& plan, bool reusePort) {
  for (auto& l : plan) l.port = server.bind(l.host, l.port, reusePort, l.tls);
}

// The servers are bound: the app is listening through them.
void startServing(detail::AppState& st, std::vector<std::shared_ptr<detail::Server>> servers,
                  std::vector<detail::BoundListener> listeners) {
  {
    std::lock_guard lock(st.serveMutex);
    st.servers = std::move(servers);
    st.listeners = std::move(listeners);
  }
  st.host = st.listeners.front().host;
  st.port = st.listeners.front().port;
  st.listening = true;
  // Redis unreachable is no reason not to serve: the bridge keeps trying.
  if (st.bridge) st.bridge->start();
}

// The servers have stopped.
void stopServing(detail::AppState& st) {
  if (st.bridge) st.bridge->stop();
  {
    std::lock_guard lock(st.serveMutex);
    st.servers.clear();
    st.listeners.clear();
  }
  st.listening = false;
  st.port = 0;
}

void closeLoop(uv_loop_t* loop) {
  if (uv_loop_close(loop) == 0) return;
  // A user handle (from Loop::raw) is still open: close it so we can return.
  uv_walk(
      loop,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
}
}  // namespace

void App::listen(const ListenOptions& options) {
  unsigned n = options.threads == 0 ? std::max(1u, uv_available_parallelism()) : options.threads;
  if (n > 1024) {
    throw std::invalid_argument("spry: ListenOptions.threads = " + std::to_string(n) +
                                " is more loops than any machine needs");
  }
  if (state_->listening.load()) throw std::logic_error("spry: App::listen called twice");
  prepareToServe(*state_, options);
  auto plan = planListeners(options);
  for (const auto& l : plan) detail::Server::probe(l.host, l.port);

  std::vector<std::unique_ptr<LoopSlot>> slots;
  try {
    for (unsigned i = 0; i < n; ++i) {
      auto slot = std::make_unique<LoopSlot>();
      if (int rc = uv_loop_init(&slot->loop); rc != 0) {
        throw std::runtime_error(std::string("spry: cannot create an event loop: ") +
                                 uv_strerror(rc));
      }
      slots.push_back(std::move(slot));
      auto& s = *slots.back();
      s.ctx = detail::LoopContext::create(&s.loop);
      s.server = std::make_shared<detail::Server>(*state_, s.ctx);
      // Port 0: the first bind picks the port, the other loops share it.
      bindAll(*s.server, plan, n > 1);
    }
  } catch (...) {
    for (auto& s : slots) {
      if (s->server)
        s->server->stop(std::chrono::milliseconds(0));
      else if (s->ctx)
        s->ctx->shutdown();
      uv_run(&s->loop, UV_RUN_DEFAULT);
      closeLoop(&s->loop);
    }
    throw;
  }

  auto& main = *slots.front();
  SignalWatch watch{{}, {}, this, options.shutdownTimeout};
  if (options.handleSignals) {
    uv_signal_init(&main.loop, &watch.sigint);
    uv_signal_init(&main.loop, &watch.sigterm);
    watch.sigint.data = watch.sigterm.data = &watch;
    auto onSignal = [](uv_signal_t* h, int signum) {
      auto* w = static_cast<SignalWatch*>(h->data);
      if (w->stopping) _exit(128 + signum);  // a second signal: out at once
      w->stopping = true;
      log(LogLevel::kInfo, std::string("spry: ") + (signum == SIGINT ? "SIGINT" : "SIGTERM") +
                               ": shutting down (again to force)");
      w->app->stop(w->deadline);
    };
    uv_signal_start(&watch.sigint, onSignal, SIGINT);
    uv_signal_start(&watch.sigterm, onSignal, SIGTERM);
    main.server->setOnStopped([&watch] {
      uv_close(reinterpret_cast<uv_handle_t*>(&watch.sigint), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&watch.sigterm), nullptr);
    });
  }
  std::vector<std::shared_ptr<detail::Server>> servers;
  for (auto& s : slots) servers.push_back(s->server);
  const std::uint16_t port = plan.front().port;
  startServing(*state_, std::move(servers), std::move(plan));
  for (std::size_t i = 1; i < slots.size(); ++i) {
    auto* s = slots[i].get();
    // Until its thread binds it, this loop is nobody's: not this thread's.
    s->ctx->unbindThread();
    s->thread = std::thread([s] {
      s->ctx->bindThread();
      uv_run(&s->loop, UV_RUN_DEFAULT);
    });
  }
  if (options.onListening) {
    try {
      options.onListening(options.host, port);
    } catch (...) {
      log(LogLevel::kError, "spry: the onListening callback threw; stopping");
      stop(std::chrono::milliseconds(0));
    }
  }
  uv_run(&main.loop, UV_RUN_DEFAULT);
  for (std::size_t i = 1; i < slots.size(); ++i) slots[i]->thread.join();
  stopServing(*state_);
  for (auto& s : slots) {
    s->server.reset();
    closeLoop(&s->loop);
  }
}

std::uint16_t App::attach(uv_loop_s* loop, const ListenOptions& options) {
  if (!loop) throw std::invalid_argument("spry: App::attach needs a libuv loop");
  if (state_->listening.load()) throw std::logic_error("spry: App is already listening");
  prepareToServe(*state_, options);
  auto plan = planListeners(options);
  auto ctx = detail::LoopContext::create(loop);
  auto server = std::make_shared<detail::Server>(*state_, ctx);
  try {
    bindAll(*server, plan, false);
  } catch (...) {
    server->stop(std::chrono::milliseconds(0));
    throw;
  }
  detail::AppState* st = state_.get();
  server->setOnStopped([st] { stopServing(*st); });
  const std::uint16_t port = plan.front().port;
  startServing(*state_, {server}, std::move(plan));
  if (options.onListening) options.onListening(options.host, port);
  return port;
}

}  // namespace spry
