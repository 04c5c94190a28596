// The card's state while a timed loop runs: SM clock and NVML's clock-limit reasons, sampled from
// a host thread. A median alone hides a card that throttled (power cap, thermal)
// during the loop, and such a drop moves every ratio measured after it; the benchmarks print
// this next to each time so a reader can tell a slower kernel from a slower clock.
//
// NVML is loaded at run time (dlopen of the driver's libnvidia-ml.so.1), so the tools build and
// start without it; without it the state is reported as unknown, with the reason.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace i8h_tools {

// NVML clock-limit reason bits (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*).
inline constexpr uint64_t kClockLimitGpuIdle = 0x1, kClockLimitAppClocks = 0x2,
                          kClockLimitSwPowerCap = 0x4, kClockLimitHwSlowdown = 0x8,
                          kClockLimitSyncBoost = 0x10, kClockLimitSwThermal = 0x20,
                          kClockLimitHwThermal = 0x40, kClockLimitHwPowerBrake = 0x80,
                          kClockLimitDisplayClocks = 0x100;

struct CardSample {
  unsigned sm_mhz = 0;
  uint64_t reasons = 0;
};

struct CardState {
  bool known = false;       // NVML answered for this card
  std::string why_unknown;  // otherwise: why not (no NVML, no device, ...)
  int samples = 0;          // samples taken during the loop (0: it ended before the first)
  unsigned sm_mhz_min = 0, sm_mhz_median = 0, sm_mhz_max = 0;
  unsigned sm_mhz_card_max = 0;  // the card's highest SM clock (NVML max clock), 0 if unknown
  // OR over the samples of the clock-limit reasons, the idle bit dropped: between two launches
  // the card may report itself idle, which says nothing about the timed kernels.
  uint64_t limits = 0;
};

// Summary of the samples of one loop (pure; the unit tests check it).
CardState summarize_card_samples(const std::vector<CardSample>& samples, unsigned sm_mhz_card_max);
// "none", or the names of the set reason bits joined by '+', e.g. "sw-power-cap+hw-thermal".
std::string clock_limit_names(uint64_t limits);
// Short form for tables: "1755 (1650)" = median (min) SM MHz, "-" without samples, "n/a" unknown.
std::string describe_sm_clock(const CardState& s);

// Samples one card every `period_ms` between begin() and end() on a host thread.
class CardMonitor {
 public:
  // pci_bus_id: as cudaDeviceGetPCIBusId writes it ("0000:1B:00.0").
  explicit CardMonitor(const std::string& pci_bus_id, int period_ms = 1);
  ~CardMonitor();
  CardMonitor(const CardMonitor&) = delete;
  CardMonitor& operator=(const CardMonitor&) = delete;

  bool available() const;
  void begin();
  // Stops sampling; returns (and keeps, see last()) the summary of the samples since begin().
  const CardState& end();
  const CardState& last() const { return last_; }
  // The raw samples of the last begin() .. end() (for summaries over several loops) and the
  // card's highest SM clock (0 if unknown).
  const std::vector<CardSample>& samples() const;
  unsigned card_max_mhz() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  CardState last_;
};

}  // namespace i8h_tools
