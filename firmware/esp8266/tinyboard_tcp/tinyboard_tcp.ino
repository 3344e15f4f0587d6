// tinyboard_tcp (course milestone 2): an ESP8266 sends sensor readings to tinyboard's line
// protocol over plain TCP. It sends `TOKEN <token>`, then one `key=value` line every
// INTERVAL_MS, prints every reply from the server to Serial, and reconnects with backoff.
//
// Board: "NodeMCU 1.0 (ESP-12E Module)". Libraries: "DHT sensor library" (Adafruit) and
// TinyboardCore (firmware/esp8266/libraries). See README.md for wiring and set-up.
#include <DHT.h>
#include <ESP8266WiFi.h>
#include <TinyboardCore.h>

// ---- settings: change these (or pass them with -D when building on a PC) ---------------
#ifndef WIFI_SSID
#define WIFI_SSID "your-wifi"
#endif
#ifndef WIFI_PASSWORD
#define WIFI_PASSWORD "your-wifi-password"
#endif
#ifndef TINYBOARD_HOST
#define TINYBOARD_HOST "192.168.1.10"  // the computer running `tinyboard serve`
#endif
#ifndef TINYBOARD_PORT
#define TINYBOARD_PORT 12000  // --line-port
#endif
#ifndef TINYBOARD_TOKEN
#define TINYBOARD_TOKEN "your-device-token"  // `tinyboard device add NAME` prints it
#endif
#ifndef INTERVAL_MS
#define INTERVAL_MS 30000UL  // the course asks for a reading every 30 s
#endif
#ifndef SENSOR_DHT
#define SENSOR_DHT 1  // 1: DHT22 on D4 (temperature, humidity); 0: an LDR on A0 (light)
#endif
#define DHT_PIN D4
#define DHT_TYPE DHT22
// ------------------------------------------------------------------------------------------

WiFiClient client;
DHT dht(DHT_PIN, DHT_TYPE);
tinyboard::Backoff backoff;
unsigned long last_reading = 0;
unsigned long retry_at = 0;

// One line from the server into `line` (without the newline); false on timeout.
bool read_line(char* line, size_t cap) {
  client.setTimeout(5000);
  size_t n = client.readBytesUntil('\n', line, cap - 1);
  line[n] = '\0';
  return n > 0;
}

bool connect_to_server() {
  Serial.print("connecting to ");
  Serial.print(TINYBOARD_HOST);
  Serial.print(":");
  Serial.println(TINYBOARD_PORT);
  if (!client.connect(TINYBOARD_HOST, TINYBOARD_PORT)) return false;
  client.print("TOKEN ");
  client.print(TINYBOARD_TOKEN);
  client.print("\n");
  char reply[128];
  if (!read_line(reply, sizeof reply)) {
    client.stop();
    return false;
  }
  Serial.print("server: ");
  Serial.println(reply);
  if (tinyboard::classify_reply(reply) != tinyboard::ReplyKind::Ok) {
    client.stop();  // a wrong token: check TINYBOARD_TOKEN
    return false;
  }
  return true;
}

void send_reading() {
  tinyboard::Field fields[2];
  size_t count = 0;
#if SENSOR_DHT
  fields[count++] = {"temperature", dht.readTemperature(), 1};
  fields[count++] = {"humidity", dht.readHumidity(), 1};
#else
  fields[count++] = {"light", static_cast<float>(analogRead(A0)), 0};
#endif
  char line[96];
  if (tinyboard::format_pairs(fields, count, line, sizeof line) == 0) {
    Serial.println("the sensor gave no reading; trying again next time");
    return;
  }
  client.print(line);
  client.print("\n");
}

void setup() {
  Serial.begin(115200);
  randomSeed(ESP.getChipId() ^ micros());  // boards must not all retry at the same moment
  dht.begin();
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    delay(500);
    return;
  }
  if (!client.connected()) {
    if (static_cast<long>(millis() - retry_at) < 0) {
      delay(10);
      return;
    }
    if (!connect_to_server()) {
      unsigned long wait = backoff.next(static_cast<uint32_t>(random(0x7fffffff)));
      Serial.print("server unreachable; retrying in ");
      Serial.print(wait);
      Serial.println(" ms");
      retry_at = millis() + wait;
      return;
    }
    backoff.reset();
    last_reading = millis() - INTERVAL_MS;  // a first reading at once
  }
  if (millis() - last_reading >= INTERVAL_MS) {
    last_reading = millis();
    send_reading();
  }
  while (client.available() > 0) {
    char line[128];
    if (read_line(line, sizeof line)) {
      Serial.print("server: ");  // the reading echoed in CAPITALS = stored
      Serial.println(line);
      if (tinyboard::classify_reply(line) == tinyboard::ReplyKind::NotStored) {
        client.stop();  // the server does not know us as a device: connect and send TOKEN
      }
    }
  }
  delay(10);
}
