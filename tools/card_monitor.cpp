#include "card_monitor.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

namespace i8h_tools {

CardState summarize_card_samples(const std::vector<CardSample>& samples, unsigned sm_mhz_card_max) {
  CardState s;
  s.known = true;
  s.sm_mhz_card_max = sm_mhz_card_max;
  s.samples = static_cast<int>(samples.size());
  if (samples.empty()) return s;
  std::vector<unsigned> mhz;
  mhz.reserve(samples.size());
  for (const CardSample& c : samples) {
    mhz.push_back(c.sm_mhz);
    s.limits |= c.reasons & ~kClockLimitGpuIdle;
  }
  std::sort(mhz.begin(), mhz.end());
  s.sm_mhz_min = mhz.front();
  s.sm_mhz_max = mhz.back();
  s.sm_mhz_median = mhz[mhz.size() / 2];
  return s;
}

std::string clock_limit_names(uint64_t limits) {
  static const std::pair<uint64_t, const char*> kNames[] = {
      {kClockLimitGpuIdle, "idle"},
      {kClockLimitAppClocks, "app-clocks"},
      {kClockLimitSwPowerCap, "sw-power-cap"},
      {kClockLimitHwSlowdown, "hw-slowdown"},
      {kClockLimitSyncBoost, "sync-boost"},
      {kClockLimitSwThermal, "sw-thermal"},
      {kClockLimitHwThermal, "hw-thermal"},
      {kClockLimitHwPowerBrake, "hw-power-brake"},
      {kClockLimitDisplayClocks, "display-clocks"},
  };
  std::string out;
  uint64_t rest = limits;
  for (const auto& [bit, name] : kNames) {
    if (!(limits & bit)) continue;
    rest &= ~bit;
    out += (out.empty() ? "" : "+") + std::string(name);
  }
  if (rest) {  // bits this table does not name (a newer driver's reasons)
    char hex[32];
    std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(rest));
    out += (out.empty() ? "" : "+") + std::string(hex);
  }
  return out.empty() ? "none" : out;
}

std::string describe_sm_clock(const CardState& s) {
  if (!s.known) return "n/a";
  if (s.samples == 0) return "-";
  return std::to_string(s.sm_mhz_median) + " (" + std::to_string(s.sm_mhz_min) + ")";
}

// ---- NVML through dlopen ----------------------------------------------------------------------
namespace {
using NvmlDevice = struct NvmlDeviceOpaque*;
using NvmlReturn = int;          // nvmlReturn_t; NVML_SUCCESS = 0
constexpr int kNvmlClockSm = 1;  // NVML_CLOCK_SM

struct NvmlApi {
  void* lib = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*by_pci)(const char*, NvmlDevice*) = nullptr;
  NvmlReturn (*clock)(NvmlDevice, int, unsigned*) = nullptr;
  NvmlReturn (*max_clock)(NvmlDevice, int, unsigned*) = nullptr;
  NvmlReturn (*reasons)(NvmlDevice, unsigned long long*) = nullptr;
};
}  // namespace

struct CardMonitor::Impl {
  NvmlApi nvml;
  NvmlDevice dev = nullptr;
  bool initialized = false;
  std::string why;  // why not available
  unsigned card_max_mhz = 0;
  int period_ms = 1;
  std::atomic<bool> stop{false};
  std::thread thread;
  std::vector<CardSample> samples;

  template <typename F>
  bool sym(F& f, const char* name) {
    f = reinterpret_cast<F>(dlsym(nvml.lib, name));
    return f != nullptr;
  }
  CardSample sample() const {
    CardSample c;
    unsigned long long r = 0;
    if (nvml.clock(dev, kNvmlClockSm, &c.sm_mhz) != 0) c.sm_mhz = 0;
    if (nvml.reasons(dev, &r) == 0) c.reasons = r;
    return c;
  }
};

CardMonitor::CardMonitor(const std::string& pci_bus_id, int period_ms) : impl_(new Impl) {
  Impl& m = *impl_;
  m.period_ms = std::max(1, period_ms);
  m.nvml.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!m.nvml.lib) {
    m.why = "libnvidia-ml.so.1 not found";
    return;
  }
  bool ok = m.sym(m.nvml.init, "nvmlInit_v2") && m.sym(m.nvml.shutdown, "nvmlShutdown") &&
            m.sym(m.nvml.by_pci, "nvmlDeviceGetHandleByPciBusId_v2") &&
            m.sym(m.nvml.clock, "nvmlDeviceGetClockInfo") &&
            m.sym(m.nvml.max_clock, "nvmlDeviceGetMaxClockInfo");
  // The reasons call was renamed (CUDA 12.3 drivers); older drivers have only the first name.
  ok = ok && (m.sym(m.nvml.reasons, "nvmlDeviceGetCurrentClocksEventReasons") ||
              m.sym(m.nvml.reasons, "nvmlDeviceGetCurrentClocksThrottleReasons"));
  if (!ok) {
    m.why = "libnvidia-ml.so.1 lacks a needed function";
    return;
  }
  if (m.nvml.init() != 0) {
    m.why = "nvmlInit failed";
    return;
  }
  m.initialized = true;
  if (m.nvml.by_pci(pci_bus_id.c_str(), &m.dev) != 0) {
    m.dev = nullptr;
    m.why = "NVML has no device at PCI " + pci_bus_id;
    return;
  }
  if (m.nvml.max_clock(m.dev, kNvmlClockSm, &m.card_max_mhz) != 0) m.card_max_mhz = 0;
  // The first queries after nvmlInit can block for seconds (a timed loop started right after
  // construction got a single sample, its sampler stuck in that first query): take one here, so
  // the wait falls on construction and not on the first timed loop.
  (void)m.sample();
}

CardMonitor::~CardMonitor() {
  if (impl_->thread.joinable()) end();
  if (impl_->initialized) impl_->nvml.shutdown();
  if (impl_->nvml.lib) dlclose(impl_->nvml.lib);
}

bool CardMonitor::available() const {
  return impl_->dev != nullptr;
}

const std::vector<CardSample>& CardMonitor::samples() const {
  return impl_->samples;
}

unsigned CardMonitor::card_max_mhz() const {
  return impl_->card_max_mhz;
}

void CardMonitor::begin() {
  Impl& m = *impl_;
  if (m.thread.joinable()) end();
  m.samples.clear();
  if (!available()) return;
  m.stop = false;
  m.thread = std::thread([&m] {
    while (!m.stop.load(std::memory_order_relaxed)) {
      m.samples.push_back(m.sample());
      std::this_thread::sleep_for(std::chrono::milliseconds(m.period_ms));
    }
  });
}

const CardState& CardMonitor::end() {
  Impl& m = *impl_;
  if (m.thread.joinable()) {
    m.stop = true;
    m.thread.join();
  }
  if (!available()) {
    last_ = CardState{};
    last_.why_unknown = m.why;
  } else {
    last_ = summarize_card_samples(m.samples, m.card_max_mhz);
  }
  return last_;
}

}  // namespace i8h_tools
