// A small stand-in for the Arduino core on a PC (Linux/POSIX), enough to build and run
// tinyboard_tcp.ino in a test against a real tinyboard server. Not for production use.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <chrono>
#include <thread>

#include <string.h>

#define D4 2
#define A0 17
#define LED_BUILTIN 2
#define OUTPUT 1
#define LOW 0
#define HIGH 1

typedef uint8_t byte;

inline void pinMode(int, int) {}
inline void digitalWrite(int, int) {}

class EspClass {
 public:
  uint32_t getChipId() { return 0x00c0ffee; }
};

inline EspClass ESP;

inline unsigned long millis() {
  using namespace std::chrono;
  static const auto start = steady_clock::now();
  return static_cast<unsigned long>(
      duration_cast<milliseconds>(steady_clock::now() - start).count());
}

inline void delay(unsigned long ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

inline long random(long max) { return max > 0 ? ::random() % max : 0; }
inline void randomSeed(unsigned long seed) { ::srandom(static_cast<unsigned>(seed)); }

inline unsigned long micros() {
  using namespace std::chrono;
  return static_cast<unsigned long>(
      duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

inline int analogRead(int) { return 512 + static_cast<int>(millis() / 100 % 64); }

// Serial goes to standard output, one flush per line, so a test can read it.
class HardwareSerial {
 public:
  void begin(unsigned long) {}
  void print(const char* text) { fputs(text, stdout); }
  void print(long value) { printf("%ld", value); }
  void print(unsigned long value) { printf("%lu", value); }
  void print(int value) { printf("%d", value); }
  void println(const char* text) {
    puts(text);
    fflush(stdout);
  }
  void println(long value) {
    printf("%ld\n", value);
    fflush(stdout);
  }
  void println(unsigned long value) {
    printf("%lu\n", value);
    fflush(stdout);
  }
  void println(int value) {
    printf("%d\n", value);
    fflush(stdout);
  }
};

inline HardwareSerial Serial;

void setup();
void loop();
