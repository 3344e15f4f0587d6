// DHT sensor stand-in for a PC: a slowly varying room temperature and humidity.
#pragma once

#include <math.h>

#include "Arduino.h"

#define DHT22 22

class DHT {
 public:
  DHT(int, int) {}
  void begin() {}
  float readTemperature() { return 21.0f + 2.0f * sinf(static_cast<float>(millis()) / 60000.0f); }
  float readHumidity() { return 45.0f; }
};
