#pragma once
// What /proc says about the server under test: CPU time (all threads) and
// resident memory. Linux only, like the rest of bench/.

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace load {

struct ProcSample {
  bool ok = false;
  std::uint64_t cpuNs = 0;      // on-CPU time of every thread (schedstat), ns
  std::uint64_t userTicks = 0;  // utime from /proc/PID/stat, clock ticks
  std::uint64_t sysTicks = 0;   // stime
  std::uint64_t rssKb = 0;      // VmRSS
};

inline ProcSample sampleProcess(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  const std::string base = "/proc/" + std::to_string(pid);

  // utime and stime: fields 14 and 15, counted after the ")" that ends comm.
  if (FILE* f = std::fopen((base + "/stat").c_str(), "r")) {
    char buf[1024];
    std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long long ut = 0, st = 0;
      // After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
      // stime
      if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) ==
          2) {
        s.userTicks = ut;
        s.sysTicks = st;
        s.ok = true;
      }
    }
  }
  if (!s.ok) return s;

  // schedstat has nanosecond resolution, per thread; /proc/PID/stat ticks are 10 ms.
  bool haveSched = false;
  if (DIR* d = opendir((base + "/task").c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      if (FILE* f = std::fopen((base + "/task/" + e->d_name + "/schedstat").c_str(), "r")) {
        unsigned long long ns = 0;
        if (std::fscanf(f, "%llu", &ns) == 1) {
          s.cpuNs += ns;
          haveSched = true;
        }
        std::fclose(f);
      }
    }
    closedir(d);
  }
  if (!haveSched) {
    const long hz = sysconf(_SC_CLK_TCK);
    s.cpuNs = (s.userTicks + s.sysTicks) * (1000000000ull / static_cast<unsigned long long>(hz));
  }

  if (FILE* f = std::fopen((base + "/status").c_str(), "r")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f)) {
      unsigned long long kb = 0;
      if (std::sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
        s.rssKb = kb;
        break;
      }
    }
    std::fclose(f);
  }
  return s;
}

}  // namespace load
