// tinyboard_mqtt (course milestone 3): an ESP8266 sends telemetry over MQTT to tinyboard
// or to a ThingsBoard server, exactly as ThingsBoard's device API asks: the access token as
// the MQTT user name, JSON on v1/devices/me/telemetry. It follows the shared attribute
// `interval` (seconds) and answers the RPCs setLed, getLed and getReading.
//
// Board: "NodeMCU 1.0 (ESP-12E Module)". Libraries: PubSubClient (Nick O'Leary), "DHT sensor
// library" (Adafruit) and TinyboardCore (firmware/esp8266/libraries). See README.md.
#include <DHT.h>
#include <ESP8266WiFi.h>
#include <PubSubClient.h>
#include <TinyboardCore.h>

// ---- settings: change these ------------------------------------------------------------
constexpr char WIFI_SSID[] = "your-wifi";
constexpr char WIFI_PASSWORD[] = "your-wifi-password";
constexpr char THINGSBOARD_SERVER[] = "192.168.1.10";  // tinyboard (or ThingsBoard) host
constexpr uint16_t THINGSBOARD_PORT = 1883U;              // --mqtt-port
constexpr char TOKEN[] = "your-device-token";             // shown when the device is added
constexpr bool SENSOR_DHT = true;  // true: DHT22 on D4; false: an LDR on A0 (light)
// ------------------------------------------------------------------------------------------

constexpr uint8_t DHT_PIN = D4;
constexpr uint8_t LED = LED_BUILTIN;  // active low on NodeMCU
constexpr char TELEMETRY[] = "v1/devices/me/telemetry";
constexpr char ATTRIBUTES[] = "v1/devices/me/attributes";
constexpr char RPC_REQUESTS[] = "v1/devices/me/rpc/request/+";
constexpr char ATTRIBUTES_RESPONSE[] = "v1/devices/me/attributes/response/";

WiFiClient wifi;
PubSubClient mqtt(wifi);
DHT dht(DHT_PIN, DHT22);
tinyboard::Backoff backoff;
unsigned long interval_ms = 30000;
unsigned long last_reading = 0;
unsigned long retry_at = 0;
bool led_on = false;

size_t read_sensors(char* json, size_t cap) {
  tinyboard::Field fields[2];
  size_t count = 0;
  if (SENSOR_DHT) {
    fields[count++] = {"temperature", dht.readTemperature(), 1};
    fields[count++] = {"humidity", dht.readHumidity(), 1};
  } else {
    fields[count++] = {"light", static_cast<float>(analogRead(A0)), 0};
  }
  return tinyboard::format_json(fields, count, json, cap);
}

void set_led(bool on) {
  led_on = on;
  digitalWrite(LED, on ? LOW : HIGH);
}

void on_message(char* topic, byte* payload, unsigned int length) {
  char body[256];
  if (length >= sizeof body) return;  // too long for this sketch; ignore
  memcpy(body, payload, length);
  body[length] = '\0';

  float seconds = 0;
  bool attributes = strcmp(topic, ATTRIBUTES) == 0 || strncmp(topic, ATTRIBUTES_RESPONSE, 30) == 0;
  if (attributes && tinyboard::json_number(body, "interval", &seconds) && seconds >= 1 &&
      seconds <= 86400) {
    interval_ms = static_cast<unsigned long>(seconds * 1000);
    Serial.print("new interval (ms): ");
    Serial.println(interval_ms);
    return;
  }
  long request = tinyboard::rpc_request_id(topic);
  tinyboard::Rpc rpc;
  if (request < 0 || !tinyboard::parse_rpc(body, &rpc)) return;
  char reply[96];
  if (strcmp(rpc.method, "setLed") == 0 && rpc.has_enabled) {
    set_led(rpc.enabled);
    snprintf(reply, sizeof reply, "{\"led\":%s}", led_on ? "true" : "false");
  } else if (strcmp(rpc.method, "getLed") == 0) {
    snprintf(reply, sizeof reply, "{\"led\":%s}", led_on ? "true" : "false");
  } else if (strcmp(rpc.method, "getReading") == 0) {
    if (read_sensors(reply, sizeof reply) == 0) strcpy(reply, "{\"error\":\"sensor\"}");
  } else {
    strcpy(reply, "{\"error\":\"unknown method\"}");
  }
  char response_topic[48];
  if (tinyboard::rpc_response_topic(request, response_topic, sizeof response_topic) > 0) {
    mqtt.publish(response_topic, reply);
  }
}

bool connect_to_server() {
  char client_id[24];
  snprintf(client_id, sizeof client_id, "esp8266-%06x", static_cast<unsigned>(ESP.getChipId()));
  if (!mqtt.connect(client_id, TOKEN, nullptr)) {
    Serial.print("MQTT connect failed, state ");
    Serial.println(mqtt.state());  // 4 or 5: a wrong token
    return false;
  }
  mqtt.subscribe(ATTRIBUTES, 1);
  mqtt.subscribe(RPC_REQUESTS, 1);
  mqtt.subscribe("v1/devices/me/attributes/response/+", 1);
  // the interval set on the server while this board was off (or before a reboot)
  mqtt.publish("v1/devices/me/attributes/request/1", "{\"sharedKeys\":\"interval\"}");
  Serial.println("connected");
  return true;
}

void setup() {
  Serial.begin(115200);
  randomSeed(ESP.getChipId() ^ micros());  // boards must not all retry at the same moment
  pinMode(LED, OUTPUT);
  set_led(false);
  dht.begin();
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  mqtt.setServer(THINGSBOARD_SERVER, THINGSBOARD_PORT);
  mqtt.setCallback(on_message);
  mqtt.setBufferSize(512);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    delay(500);
    return;
  }
  if (!mqtt.connected()) {
    if (static_cast<long>(millis() - retry_at) < 0) {
      delay(10);
      return;
    }
    if (!connect_to_server()) {
      retry_at = millis() + backoff.next(static_cast<uint32_t>(random(0x7fffffff)));
      return;
    }
    backoff.reset();
    last_reading = millis() - interval_ms;
  }
  mqtt.loop();
  if (millis() - last_reading >= interval_ms) {
    last_reading = millis();
    char json[96];
    if (read_sensors(json, sizeof json) > 0) {
      mqtt.publish(TELEMETRY, json);
      Serial.println(json);
    } else {
      Serial.println("the sensor gave no reading; trying again next time");
    }
  }
}
