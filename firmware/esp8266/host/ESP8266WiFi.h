// ESP8266WiFi stand-in for a PC: WiFi is always connected, WiFiClient is a POSIX TCP socket
// with the Arduino Stream methods the tinyboard sketches use.
#pragma once

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "Arduino.h"

#define WL_CONNECTED 3
#define WIFI_STA 1

class WiFiClass {
 public:
  void mode(int) {}
  void begin(const char*, const char*) {}
  int status() { return WL_CONNECTED; }
};

inline WiFiClass WiFi;

class WiFiClient {
 public:
  ~WiFiClient() { stop(); }

  int connect(const char* host, uint16_t port) {
    stop();
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host, service, &hints, &found) != 0) return 0;
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd_ >= 0 && ::connect(fd_, a->ai_addr, a->ai_addrlen) != 0) {
        close(fd_);
        fd_ = -1;
      }
    }
    freeaddrinfo(found);
    return fd_ >= 0 ? 1 : 0;
  }

  bool connected() {
    if (fd_ < 0) return false;
    char probe;
    ssize_t n = recv(fd_, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      stop();
      return false;
    }
    return true;
  }

  size_t print(const char* text) {
    if (fd_ < 0) return 0;
    size_t len = strlen(text);
    ssize_t n = send(fd_, text, len, MSG_NOSIGNAL);
    if (n < 0) {
      stop();
      return 0;
    }
    return static_cast<size_t>(n);
  }

  int available() {
    if (fd_ < 0) return 0;
    int n = 0;
    return ioctl(fd_, FIONREAD, &n) == 0 ? n : 0;
  }

  void setTimeout(unsigned long ms) { timeout_ms_ = ms; }

  size_t readBytesUntil(char terminator, char* buffer, size_t length) {
    size_t n = 0;
    while (n < length && fd_ >= 0) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(timeout_ms_)) <= 0) break;
      char c;
      if (recv(fd_, &c, 1, 0) != 1) {
        stop();
        break;
      }
      if (c == terminator) break;
      buffer[n++] = c;
    }
    return n;
  }

  void stop() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
  unsigned long timeout_ms_ = 1000;
};
