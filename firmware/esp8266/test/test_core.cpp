// Host unit tests of TinyboardCore (g++ on a PC). Run by tests/test_firmware.py; exits 1 on
// the first failure, printing it.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "TinyboardCore.h"

using namespace tinyboard;

static int failures = 0;

#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                   \
    }                                                               \
  } while (0)

static bool same(const char* a, const char* b) { return std::strcmp(a, b) == 0; }

static void numbers() {
  char out[32];
  CHECK(format_number(21.5f, 1, out, sizeof out) == 4 && same(out, "21.5"));
  CHECK(format_number(-4.25f, 2, out, sizeof out) && same(out, "-4.25"));
  CHECK(format_number(40.0f, 0, out, sizeof out) && same(out, "40"));
  CHECK(format_number(0.05f, 1, out, sizeof out) && same(out, "0.1"));    // rounds half up
  CHECK(format_number(-0.01f, 1, out, sizeof out) && same(out, "0.0"));   // no "-0.0"
  CHECK(format_number(1023.0f, 0, out, sizeof out) && same(out, "1023"));
  CHECK(format_number(NAN, 1, out, sizeof out) == 0);   // a failed DHT read
  CHECK(format_number(INFINITY, 1, out, sizeof out) == 0);
  CHECK(format_number(12345.0f, 1, out, 7) == 0);        // "12345.0" needs 8 bytes
  CHECK(format_number(12345.0f, 1, out, 8) == 7);
  CHECK(format_number(5e9f, 0, out, sizeof out) && same(out, "5000000000"));  // > 32 bits
  CHECK(format_number(999999.9f, 6, out, sizeof out) && std::strncmp(out, "999999.", 7) == 0);
  CHECK(format_number(1e12f, 0, out, sizeof out) == 0);
}

static void payloads() {
  Field reading[] = {{"temperature", 21.5f, 1}, {"humidity", 40.0f, 0}};
  char out[64];
  CHECK(format_pairs(reading, 2, out, sizeof out) && same(out, "temperature=21.5 humidity=40"));
  CHECK(format_json(reading, 2, out, sizeof out) &&
        same(out, "{\"temperature\":21.5,\"humidity\":40}"));
  CHECK(format_json(reading, 0, out, sizeof out) == 2 && same(out, "{}"));
  CHECK(format_pairs(reading, 2, out, 10) == 0);  // does not fit: nothing half-written used
  Field broken[] = {{"temperature", NAN, 1}};
  CHECK(format_json(broken, 1, out, sizeof out) == 0);
  for (size_t cap = 0; cap < 36; ++cap) {  // every too-small buffer is refused, never overrun
    char small[36];
    std::memset(small, 'x', sizeof small);
    size_t n = format_json(reading, 2, small, cap);
    CHECK(n == 0 || n + 1 <= cap);
    for (size_t i = cap; i < sizeof small; ++i) CHECK(small[i] == 'x');
  }
}

static void replies() {
  CHECK(classify_reply("OK esp-kitchen") == ReplyKind::Ok);
  CHECK(classify_reply("ERROR unknown token: abc") == ReplyKind::Error);
  CHECK(classify_reply("TEMPERATURE=21.5") == ReplyKind::Echo);
  CHECK(classify_reply("OKAY") == ReplyKind::Echo);
  CHECK(classify_reply("TEMPERATURE=21.5 (NOT STORED: SEND TOKEN <ACCESS-TOKEN> FIRST)") ==
        ReplyKind::NotStored);
  CHECK(classify_reply("NOT STORED") == ReplyKind::Echo);
}

static void rpc() {
  CHECK(rpc_request_id("v1/devices/me/rpc/request/42") == 42);
  CHECK(rpc_request_id("v1/devices/me/rpc/request/") == -1);
  CHECK(rpc_request_id("v1/devices/me/rpc/request/4x") == -1);
  CHECK(rpc_request_id("v1/devices/me/attributes") == -1);
  char topic[48];
  CHECK(rpc_response_topic(42, topic, sizeof topic) && same(topic, "v1/devices/me/rpc/response/42"));
  CHECK(rpc_response_topic(42, topic, 20) == 0);

  Rpc call;
  CHECK(parse_rpc("{\"method\":\"setLed\",\"params\":{\"enabled\":true}}", &call));
  CHECK(same(call.method, "setLed") && call.has_enabled && call.enabled);
  CHECK(parse_rpc("{\"method\": \"setLed\", \"params\": false}", &call));
  CHECK(call.has_enabled && !call.enabled);
  CHECK(parse_rpc("{\"params\":{},\"method\":\"getReading\"}", &call));
  CHECK(same(call.method, "getReading") && !call.has_enabled);
  CHECK(!parse_rpc("{\"params\":{}}", &call));
  CHECK(!parse_rpc("{\"method\":\"a-method-name-much-too-long-for-the-buffer\"}", &call));
}

static void attributes() {
  float interval = 0;
  CHECK(json_number("{\"interval\":10}", "interval", &interval) && interval == 10.0f);
  CHECK(json_number("{\"shared\":{\"interval\": 2.5}}", "interval", &interval) && interval == 2.5f);
  CHECK(!json_number("{\"interval\":\"ten\"}", "interval", &interval));
  CHECK(!json_number("{\"name\":\"interval\"}", "interval", &interval));  // a value, not a key
  CHECK(!json_number("{\"interval\"", "interval", &interval));
  CHECK(!json_number("{\"interval\":1000000000000000000000000000000000000000000}", "interval",
                     &interval));  // beyond a float
  bool led = false;
  CHECK(json_bool("{\"led\": true}", "led", &led) && led);
  char name[8];
  CHECK(json_string("{\"a\":\"q\\\"x\"}", "a", name, sizeof name) && same(name, "q\"x"));
  CHECK(!json_string("{\"a\":\"unterminated", "a", name, sizeof name));
}

static void backoff() {
  Backoff b(1000, 60000);
  CHECK(b.next(0) == 1000);
  CHECK(b.next(0) == 2000);
  CHECK(b.next(0) == 4000);
  uint32_t last = 0;
  for (int i = 0; i < 10; ++i) last = b.next(0);
  CHECK(last == 60000);  // capped
  CHECK(b.next(12345) <= 66000 && b.next(12345) >= 60000);  // jitter up to 10 %
  b.reset();
  CHECK(b.next(0) == 1000);
}

int main() {
  numbers();
  payloads();
  replies();
  rpc();
  attributes();
  backoff();
  if (failures == 0) std::printf("all TinyboardCore tests passed\n");
  return failures == 0 ? 0 : 1;
}
