#pragma once
// Realistic JSON text of an exact size for --json: what a chat or a
// dashboard sends, so that compression sees the redundancy real messages
// have (field names, words, numbers, dates), not random bytes and not one
// repeated character. Deterministic from (size, index).
//
// Below 1 KiB a chat message; from 1 KiB a document (a page of an inventory:
// an array of product records). Either way the object starts with
// {"id":"<13 characters>", (kJsonIdOffset, kJsonIdLength), which fan-out
// overwrites with its publisher and sequence number, and ends with a text
// field filled with words to the exact size.

#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <string_view>

namespace load {

constexpr std::size_t kJsonIdOffset = 7;  // {"id":"
constexpr std::size_t kJsonIdLength = 13;
constexpr std::size_t kJsonMinSize = 32;

namespace json_detail {

constexpr std::string_view kFirst[] = {
    "Maria", "James",  "Aiko",  "Lukas", "Fatima", "Noah",  "Chloe", "Mateo", "Priya",  "Oliver",
    "Sofia", "Daniel", "Amara", "Ethan", "Lena",   "Kenji", "Zoe",   "Omar",  "Ingrid", "Lucas"};
constexpr std::string_view kLast[] = {"Lopez",   "Smith",     "Tanaka", "Schmidt", "Haddad",
                                      "Johnson", "Martin",    "Garcia", "Patel",   "Brown",
                                      "Rossi",   "Nguyen",    "Okafor", "Wilson",  "Novak",
                                      "Sato",    "Fernandes", "Ali",    "Larsen",  "Dubois"};
constexpr std::string_view kRooms[] = {"general",     "random",    "release-planning", "support",
                                       "design-team", "incidents", "backend",          "frontend"};
constexpr std::string_view kWords[] = {
    "the",     "we",      "I",        "it",        "is",      "to",         "and",      "for",
    "on",      "in",      "this",     "that",      "with",    "can",        "should",   "will",
    "just",    "now",     "today",    "tomorrow",  "meeting", "review",     "release",  "branch",
    "build",   "tests",   "deploy",   "fixed",     "pushed",  "merged",     "looks",    "good",
    "thanks",  "please",  "check",    "again",     "after",   "before",     "lunch",    "customer",
    "ticket",  "update",  "numbers",  "dashboard", "latency", "server",     "client",   "logs",
    "error",   "retry",   "timeout",  "config",    "staging", "production", "rollback", "ok",
    "sounds",  "great",   "let's",    "sync",      "later",   "about",      "the",      "new",
    "design",  "draft",   "document", "comments",  "slides",  "call",       "at",       "3pm",
    "minutes", "waiting", "for",      "CI",        "green",   "red",        "flaky",    "again?",
    "yes",     "no",      "maybe",    "tonight",   "weekend", "sprint",     "backlog",  "priority",
    "blocker", "owner",   "on-call"};
constexpr std::string_view kAdjectives[] = {"Stainless", "Compact", "Wireless", "Ergonomic",
                                            "Organic",   "Classic", "Foldable", "Insulated",
                                            "Recycled",  "Premium", "Portable", "Waterproof"};
constexpr std::string_view kMaterials[] = {"steel",  "bamboo", "cotton", "leather",
                                           "walnut", "glass",  "wool",   "aluminium"};
constexpr std::string_view kProducts[] = {
    "water bottle", "desk lamp",     "backpack", "notebook",    "coffee grinder", "headphones",
    "chair",        "cutting board", "jacket",   "phone stand", "kettle",         "umbrella"};
constexpr std::string_view kTags[] = {"outdoor", "kitchen", "office", "travel",    "gift",
                                      "sale",    "new",     "eco",    "bestseller"};
constexpr std::string_view kCities[] = {"Rotterdam", "Leipzig", "Lyon",
                                        "Porto",     "Gdansk",  "Tampere"};
constexpr std::string_view kIdChars = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";  // Crockford base32

template <std::size_t N>
std::string_view pick(std::mt19937& rng, const std::string_view (&list)[N]) {
  return list[rng() % N];
}

inline std::string id(std::mt19937& rng) {
  std::string s = "01J";
  while (s.size() < kJsonIdLength) s.push_back(kIdChars[rng() % kIdChars.size()]);
  return s;
}

inline std::string timestamp(std::mt19937& rng) {
  char b[40];
  const auto r = [&rng](unsigned n) { return static_cast<unsigned>(rng() % n); };
  std::snprintf(b, sizeof(b), "2026-%02u-%02uT%02u:%02u:%02u.%03uZ", 1 + r(12), 1 + r(28), r(24),
                r(60), r(60), r(1000));
  return b;
}

// Words, sentence-cased now and then, to exactly `n` characters.
inline std::string words(std::mt19937& rng, std::size_t n) {
  std::string s;
  bool sentence = true;
  while (s.size() < n) {
    if (!s.empty()) s.push_back(' ');
    std::string w(pick(rng, kWords));
    if (sentence && w[0] >= 'a' && w[0] <= 'z') w[0] = static_cast<char>(w[0] - 'a' + 'A');
    sentence = false;
    s += w;
    if (rng() % 9 == 0) {
      s.push_back(rng() % 3 == 0 ? '?' : '.');
      sentence = true;
    } else if (rng() % 11 == 0) {
      s.push_back(',');
    }
  }
  s.resize(n);
  return s;
}

inline std::string item(std::mt19937& rng) {
  const unsigned price = 299 + static_cast<unsigned>(rng() % 19700);
  std::string s = "{\"sku\":\"";
  s.push_back(static_cast<char>('A' + rng() % 26));
  s.push_back(static_cast<char>('A' + rng() % 26));
  s += "-" + std::to_string(10000 + rng() % 90000);
  s += "\",\"name\":\"";
  s += pick(rng, kAdjectives);
  s += " ";
  s += pick(rng, kMaterials);
  s += " ";
  s += pick(rng, kProducts);
  s += "\",\"price\":" + std::to_string(price / 100) + "." + std::to_string(10 + price % 90);
  s += ",\"currency\":\"EUR\",\"stock\":" + std::to_string(rng() % 500);
  s += ",\"warehouse\":\"";
  s += pick(rng, kCities);
  s += "\",\"tags\":[\"";
  s += pick(rng, kTags);
  s += "\",\"";
  s += pick(rng, kTags);
  s += "\"],\"rating\":" + std::to_string(1 + rng() % 4) + "." + std::to_string(rng() % 10);
  s += std::string(",\"active\":") + (rng() % 7 ? "true" : "false");
  s += ",\"updated\":\"" + timestamp(rng) + "\"}";
  return s;
}

}  // namespace json_detail

// One JSON object of exactly `size` bytes (size >= kJsonMinSize).
inline std::string jsonMessage(std::size_t size, std::uint32_t index) {
  using namespace json_detail;
  std::mt19937 rng(0x15a7u ^ (index * 2654435761u));
  std::string s = "{\"id\":\"" + id(rng) + "\",";
  std::string tail;  // the text field, filled last
  if (size < 1024) {
    const unsigned user = 1000 + rng() % 9000;
    std::string full = s + "\"type\":\"message\",\"room\":\"" + std::string(pick(rng, kRooms)) +
                       "\",\"user\":{\"id\":" + std::to_string(user) + ",\"name\":\"" +
                       std::string(pick(rng, kFirst)) + " " + std::string(pick(rng, kLast)) +
                       "\",\"avatar\":\"https://cdn.example.com/avatars/" + std::to_string(user) +
                       ".png\"},\"ts\":\"" + timestamp(rng) + "\",\"edited\":false,";
    // Shorter messages keep only what fits.
    if (full.size() + 12 <= size) s = full;
    s += "\"text\":\"";
  } else {
    s += "\"type\":\"inventory.page\",\"generated\":\"" + timestamp(rng) +
         "\",\"page\":" + std::to_string(1 + index % 40) + ",\"items\":[";
    bool first = true;
    for (;;) {
      std::string it = item(rng);
      if (s.size() + it.size() + 1 + 40 > size) break;
      if (!first) s.push_back(',');
      first = false;
      s += it;
    }
    s += "],\"note\":\"";
  }
  const std::size_t fill = size > s.size() + 2 ? size - s.size() - 2 : 0;
  s += words(rng, fill);
  s += "\"}";
  return s;
}

}  // namespace load
