// Runs an Arduino sketch on a PC: setup() once, then loop() for TB_HOST_SECONDS (default 5).
#include <stdlib.h>

#include "Arduino.h"

int main() {
  const char* seconds = getenv("TB_HOST_SECONDS");
  unsigned long run_ms = 1000UL * static_cast<unsigned long>(seconds ? atol(seconds) : 5);
  setup();
  while (millis() < run_ms) loop();
  return 0;
}
