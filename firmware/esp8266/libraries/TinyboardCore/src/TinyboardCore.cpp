// TinyboardCore: see TinyboardCore.h. Freestanding: every string helper is written here.
#include "TinyboardCore.h"

namespace tinyboard {
namespace {

const char kRpcRequest[] = "v1/devices/me/rpc/request/";
const char kRpcResponse[] = "v1/devices/me/rpc/response/";

size_t length(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

bool starts_with(const char* s, const char* prefix) {
  while (*prefix != '\0') {
    if (*s++ != *prefix++) return false;
  }
  return true;
}

bool contains(const char* s, const char* part) {
  for (; *s != '\0'; ++s) {
    if (starts_with(s, part)) return true;
  }
  return false;
}

// Appends text to out[*at..cap); false (and nothing more written) when it does not fit,
// leaving room for the final NUL.
bool put(char* out, size_t cap, size_t* at, const char* text, size_t n) {
  if (*at + n + 1 > cap) return false;
  for (size_t i = 0; i < n; ++i) out[*at + i] = text[i];
  *at += n;
  out[*at] = '\0';
  return true;
}

bool put_str(char* out, size_t cap, size_t* at, const char* text) {
  return put(out, cap, at, text, length(text));
}

bool put_number(char* out, size_t cap, size_t* at, float value, uint8_t decimals) {
  char digits[24];
  size_t n = format_number(value, decimals, digits, sizeof digits);
  return n != 0 && put(out, cap, at, digits, n);
}

size_t write_unsigned(uint64_t value, char* out, size_t cap) {
  char reversed[21];
  size_t n = 0;
  do {
    reversed[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  if (n + 1 > cap) return 0;
  for (size_t i = 0; i < n; ++i) out[i] = reversed[n - 1 - i];
  out[n] = '\0';
  return n;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

const char* skip_space(const char* p) {
  while (is_space(*p)) ++p;
  return p;
}

// The value after "key": (quoted key, then spaces, a colon, spaces), or nullptr.
const char* find_value(const char* json, const char* key) {
  size_t key_len = length(key);
  for (const char* p = json; *p != '\0'; ++p) {
    if (*p != '"') continue;
    const char* name = p + 1;
    size_t i = 0;
    while (i < key_len && name[i] == key[i]) ++i;
    if (i == key_len && name[i] == '"') {
      const char* after = skip_space(name + i + 1);
      if (*after == ':') return skip_space(after + 1);
    }
    // skip this string (it may be a value that merely contains the key)
    ++p;
    while (*p != '\0' && *p != '"') {
      if (*p == '\\' && p[1] != '\0') ++p;
      ++p;
    }
    if (*p == '\0') return nullptr;
  }
  return nullptr;
}

}  // namespace

size_t format_number(float value, uint8_t decimals, char* out, size_t cap) {
  // |value| < 1e12 and at most 6 decimals keep value * 10^decimals below 2^63: 64-bit
  // integers throughout, as `unsigned long` is only 32 bits on the ESP8266.
  if (value != value || value >= 1e12f || value <= -1e12f) return 0;  // NaN or too large
  if (decimals > 6) decimals = 6;
  uint64_t scale = 1;
  for (uint8_t i = 0; i < decimals; ++i) scale *= 10;
  bool negative = value < 0;
  double magnitude = negative ? -static_cast<double>(value) : static_cast<double>(value);
  uint64_t scaled = static_cast<uint64_t>(magnitude * static_cast<double>(scale) + 0.5);
  uint64_t whole = scaled / scale;
  uint64_t fraction = scaled % scale;
  size_t at = 0;
  if (cap == 0) return 0;
  out[0] = '\0';
  if (negative && scaled != 0 && !put(out, cap, &at, "-", 1)) return 0;
  char digits[21];
  size_t n = write_unsigned(whole, digits, sizeof digits);
  if (!put(out, cap, &at, digits, n)) return 0;
  if (decimals > 0) {
    if (!put(out, cap, &at, ".", 1)) return 0;
    char padded[7];
    for (int i = decimals - 1; i >= 0; --i) {
      padded[i] = static_cast<char>('0' + fraction % 10);
      fraction /= 10;
    }
    if (!put(out, cap, &at, padded, decimals)) return 0;
  }
  return at;
}

size_t format_pairs(const Field* fields, size_t count, char* out, size_t cap) {
  size_t at = 0;
  if (cap == 0) return 0;
  out[0] = '\0';
  for (size_t i = 0; i < count; ++i) {
    if (i > 0 && !put(out, cap, &at, " ", 1)) return 0;
    if (!put_str(out, cap, &at, fields[i].key) || !put(out, cap, &at, "=", 1) ||
        !put_number(out, cap, &at, fields[i].value, fields[i].decimals)) {
      return 0;
    }
  }
  return at;
}

size_t format_json(const Field* fields, size_t count, char* out, size_t cap) {
  size_t at = 0;
  if (cap == 0 || !put(out, cap, &at, "{", 1)) return 0;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0 && !put(out, cap, &at, ",", 1)) return 0;
    if (!put(out, cap, &at, "\"", 1) || !put_str(out, cap, &at, fields[i].key) ||
        !put(out, cap, &at, "\":", 2) ||
        !put_number(out, cap, &at, fields[i].value, fields[i].decimals)) {
      return 0;
    }
  }
  return put(out, cap, &at, "}", 1) ? at : 0;
}

ReplyKind classify_reply(const char* line) {
  if (starts_with(line, "OK ")) return ReplyKind::Ok;
  if (starts_with(line, "ERROR")) return ReplyKind::Error;
  if (contains(line, "(NOT STORED:")) return ReplyKind::NotStored;
  return ReplyKind::Echo;
}

long rpc_request_id(const char* topic) {
  if (!starts_with(topic, kRpcRequest)) return -1;
  const char* p = topic + length(kRpcRequest);
  if (*p == '\0') return -1;
  long id = 0;
  for (; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || id > 100000000L) return -1;
    id = id * 10 + (*p - '0');
  }
  return id;
}

size_t rpc_response_topic(long request_id, char* out, size_t cap) {
  if (request_id < 0 || cap == 0) return 0;
  size_t at = 0;
  out[0] = '\0';
  char digits[21];
  size_t n = write_unsigned(static_cast<uint64_t>(request_id), digits, sizeof digits);
  if (!put_str(out, cap, &at, kRpcResponse) || !put(out, cap, &at, digits, n)) return 0;
  return at;
}

bool json_string(const char* json, const char* key, char* out, size_t cap) {
  const char* p = find_value(json, key);
  if (p == nullptr || *p != '"' || cap == 0) return false;
  ++p;
  size_t n = 0;
  while (*p != '"') {
    if (*p == '\0' || n + 1 >= cap) return false;
    if (*p == '\\') {
      ++p;
      if (*p == '\0') return false;
    }
    out[n++] = *p++;
  }
  out[n] = '\0';
  return true;
}

bool json_number(const char* json, const char* key, float* out) {
  const char* p = find_value(json, key);
  if (p == nullptr) return false;
  bool negative = *p == '-';
  if (negative) ++p;
  if (*p < '0' || *p > '9') return false;
  double value = 0;
  while (*p >= '0' && *p <= '9' && value < 1e300) value = value * 10 + (*p++ - '0');
  if (*p >= '0' && *p <= '9') return false;  // absurdly many digits
  if (*p == '.') {
    double place = 0.1;
    for (++p; *p >= '0' && *p <= '9'; ++p, place /= 10) value += (*p - '0') * place;
  }
  if (*p == 'e' || *p == 'E') return false;  // the server never sends exponents here
  if (value > 3.0e38) return false;            // beyond a float: converting would be UB
  *out = static_cast<float>(negative ? -value : value);
  return true;
}

bool json_bool(const char* json, const char* key, bool* out) {
  const char* p = find_value(json, key);
  if (p == nullptr) return false;
  if (starts_with(p, "true")) {
    *out = true;
    return true;
  }
  if (starts_with(p, "false")) {
    *out = false;
    return true;
  }
  return false;
}

bool parse_rpc(const char* json, Rpc* out) {
  if (!json_string(json, "method", out->method, sizeof out->method)) return false;
  out->has_enabled = json_bool(json, "enabled", &out->enabled);
  if (!out->has_enabled) out->has_enabled = json_bool(json, "params", &out->enabled);
  return true;
}

uint32_t Backoff::next(uint32_t random_value) {
  uint32_t delay = next_;
  next_ = next_ >= max_ / 2 ? max_ : next_ * 2;
  uint32_t jitter = delay / 10 == 0 ? 0 : random_value % (delay / 10 + 1);
  return delay + jitter;
}

}  // namespace tinyboard
