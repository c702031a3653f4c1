// echo: the Spry WebSocket page in C++.
//   ws://HOST:PORT/echo   echoes every text message as text and every binary
//                         message as binary, unchanged (up to 16 MiB each).

#include "../common/server_cli.h"

int main(int argc, char** argv) {
  CLI::App cli{"spry echo example"};
  examples::ServerFlags flags;
  examples::addServerFlags(cli, flags);
  std::size_t maxMessageBytes = 16u << 20;
  cli.add_option("--max-message-bytes", maxMessageBytes, "largest message accepted")
      ->capture_default_str();
  CLI11_PARSE(cli, argc, argv);

  spry::App app;
  app.get("/", [](spry::Request&) { return "WebSocket echo at /echo\n"; });

  app.ws(
      "/echo",
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
       .backpressure = spry::BackpressurePolicy::kPauseReading});

  return examples::serve(app, flags);
}
