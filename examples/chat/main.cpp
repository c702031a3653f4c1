// chat: chat rooms in the browser, over WebSocket, on every loop.
//   GET /                          the chat page (HTML, CSS and JS built into the binary)
//   GET /chat/:room?nick=NAME      JSON: may NAME join :room? (the page asks first)
//   ws  /chat/:room?nick=NAME      the room: JSON messages, see README.md
// Origin check on by default: only this server's own pages may open a socket;
// --allow-origin adds more.

#include <string>
#include <vector>

#include "../common/server_cli.h"
#include "chat_app.h"

int main(int argc, char** argv) {
  CLI::App cli{"spry chat example: chat rooms in the browser"};
  examples::ServerFlags flags;
  examples::addServerFlags(cli, flags);
  chat::Options options;
  cli.add_option("--allow-origin", options.allowedOrigins,
                 "another origin whose pages may use the chat (e.g. https://chat.example.com); "
                 "repeatable; '*' allows any")
      ->take_all();
  if (int status = examples::parseFlags(cli, argc, argv); status >= 0) return status;

  spry::App app;
  options.host = flags.listen.host;
  chat::install(app, options);
  return examples::serve(app, flags);
}
