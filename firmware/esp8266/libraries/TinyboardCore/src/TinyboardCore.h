// TinyboardCore: the parts of the tinyboard sketches that need no hardware.
//
// Formatting readings for the line protocol and for ThingsBoard JSON, reading the server's
// replies, RPC requests and shared attributes, and reconnect backoff. Freestanding C++:
// no heap, no libc, no Arduino, so the same file is unit-tested on a PC with g++ and
// compiled for the ESP8266 (xtensa-lx106) unchanged.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tinyboard {

// One measured value, e.g. {"temperature", 21.5f, 1}.
struct Field {
  const char* key;
  float value;
  uint8_t decimals;  // digits after the point, 0..6
};

// "temperature=21.5 humidity=40.0": the line protocol's key=value form.
// Returns the length written (a NUL follows), or 0 if it does not fit or a value is NaN.
size_t format_pairs(const Field* fields, size_t count, char* out, size_t cap);

// {"temperature":21.5,"humidity":40.0}: ThingsBoard telemetry JSON. Same return as above.
size_t format_json(const Field* fields, size_t count, char* out, size_t cap);

// A float as decimal text with `decimals` digits (at most 6); 0 for NaN, |value| >= 1e12
// or no room.
size_t format_number(float value, uint8_t decimals, char* out, size_t cap);

// What a line from the line protocol server means: Ok (TOKEN accepted), Error, Echo (the
// reading in CAPITALS: stored), or NotStored (the echo of a reading sent before TOKEN, which
// the server marks with "(NOT STORED: SEND TOKEN <ACCESS-TOKEN> FIRST)").
enum class ReplyKind { Ok, Error, Echo, NotStored };
ReplyKind classify_reply(const char* line);

// MQTT RPC: "v1/devices/me/rpc/request/42" -> 42, or -1 for any other topic.
long rpc_request_id(const char* topic);
// "v1/devices/me/rpc/response/42" into out; returns its length or 0.
size_t rpc_response_topic(long request_id, char* out, size_t cap);

// Small JSON lookups for the server's short messages: the first "key" anywhere in `json`
// (nested objects included, as in {"shared":{"interval":10}}). False if absent or mistyped.
bool json_string(const char* json, const char* key, char* out, size_t cap);
bool json_number(const char* json, const char* key, float* out);
bool json_bool(const char* json, const char* key, bool* out);

// An RPC request: {"method":"setLed","params":{"enabled":true}} or "params":true.
struct Rpc {
  char method[32];
  bool has_enabled;
  bool enabled;
};
bool parse_rpc(const char* json, Rpc* out);

// Reconnect delays: first_ms, doubling up to max_ms, plus up to 10 % jitter taken from
// `random_value` (pass random() or any 32-bit noise). reset() after a good connection.
class Backoff {
 public:
  explicit Backoff(uint32_t first_ms = 1000, uint32_t max_ms = 60000)
      : first_(first_ms), max_(max_ms), next_(first_ms) {}
  uint32_t next(uint32_t random_value);
  void reset() { next_ = first_; }

 private:
  uint32_t first_;
  uint32_t max_;
  uint32_t next_;
};

}  // namespace tinyboard
