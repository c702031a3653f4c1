// echo: the Spry WebSocket page in C++.
//   ws://HOST:PORT/echo   echoes every text message as text and every binary
//                         message as binary, unchanged (up to 16 MiB each).
//   ws://HOST:PORT/echo-co  the same echo written as a coroutine: it pulls
//                         each message with `co_await ws.next()` (Spry's
//                         `await for`), so a client it has not read from
//                         yet waits instead of filling the server's memory.
//   ws://HOST:PORT/broadcast  publishes every message, unchanged, to every other
//                         client of /broadcast, on every loop (--threads N),
//                         and with --redis URL in every process on that Redis
//                         (topic "broadcast", channel "spry:broadcast").
//   --compression off|shared|dedicated  permessage-deflate on both routes
//                         (default off, so the plain echo figures stay comparable).

#include <map>

#include "../common/server_cli.h"

int main(int argc, char** argv) {
  CLI::App cli{"spry echo example"};
  examples::ServerFlags flags;
  examples::addServerFlags(cli, flags);
  std::size_t maxMessageBytes = 16u << 20;
  cli.add_option("--max-message-bytes", maxMessageBytes, "largest message accepted")
      ->capture_default_str();
  std::string redis;
  cli.add_option("--redis", redis,
                 "bridge /broadcast through Redis: redis://[user:password@]host:port");
  spry::Compression compression = spry::Compression::kOff;
  cli.add_option("--compression", compression, "permessage-deflate: off, shared or dedicated")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, spry::Compression>{{"off", spry::Compression::kOff},
                                                   {"shared", spry::Compression::kShared},
                                                   {"dedicated", spry::Compression::kDedicated}},
          CLI::ignore_case))
      ->default_str("off");
  if (int status = examples::parseFlags(cli, argc, argv); status >= 0) return status;

  spry::App app;
  if (!redis.empty()) {
    try {
      app.bridge(spry::RedisBridge{redis});
    } catch (const std::exception& e) {
      std::cerr << "--redis: " << e.what() << "\n";
      return 2;
    }
  }
  app.get("/", [](spry::Request&) { return "WebSocket echo at /echo\n"; });

  app.ws("/echo",
         [](spry::WebSocket ws, spry::Request&) {
           ws.listen([ws](const spry::Message& message) {
             if (message.isText() && message.data() == "close") {
               ws.close(1000, "bye");
               return;
             }
             ws.add(message);  // the same type back: text as text, binary as binary
           });
         },
         {.maxMessageBytes = maxMessageBytes,
          .backpressure = spry::BackpressurePolicy::kPauseReading,
          .compression = {.mode = compression}});

  app.ws("/echo-co",
         [](spry::WebSocket ws, spry::Request&) -> spry::Task<> {
           while (auto message = co_await ws.next()) {
             if (message->isText() && message->data() == "close") {
               ws.close(1000, "bye");
               continue;  // next() ends with nullopt once the close is done
             }
             ws.add(*message);
             co_await ws.drain();  // at once unless half the send buffer is full
           }
         },
         {.maxMessageBytes = maxMessageBytes, .compression = {.mode = compression}});

  app.ws("/broadcast",
         [](spry::WebSocket ws, spry::Request&) {
           ws.subscribe("broadcast");
           ws.listen([ws](const spry::Message& message) { ws.publish("broadcast", message); });
         },
         {.maxMessageBytes = maxMessageBytes,
          .maxBackpressureBytes = 4u << 20,
          .backpressure = spry::BackpressurePolicy::kPauseReading,
          .compression = {.mode = compression}});

  return examples::serve(app, flags);
}
