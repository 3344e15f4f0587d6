// PubSubClient's interface, enough for tests/test_firmware.py to compile-check
// tinyboard_mqtt.ino on a PC (-fsyntax-only); it does not talk MQTT.
#pragma once

#include "Arduino.h"

class Client;

class PubSubClient {
 public:
  template <typename C>
  explicit PubSubClient(C&) {}
  PubSubClient& setServer(const char*, uint16_t) { return *this; }
  PubSubClient& setCallback(void (*)(char*, uint8_t*, unsigned int)) { return *this; }
  bool setBufferSize(uint16_t) { return true; }
  bool connect(const char*, const char*, const char*) { return false; }
  bool connected() { return false; }
  bool subscribe(const char*, uint8_t) { return true; }
  bool publish(const char*, const char*) { return true; }
  bool loop() { return true; }
  int state() { return -1; }
};
