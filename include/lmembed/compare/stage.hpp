// lmembed/compare/stage.hpp - wall time and peak memory of one stage of a comparison.
//
// Peak memory per stage, not per process: on Linux, writing "5" to /proc/self/clear_refs
// resets the kernel's high-water mark of the resident set (VmHWM), so the VmHWM read at the
// end of a stage is the peak during that stage. Where that reset is refused, the value is the
// process peak so far (getrusage), and StageRecord::note says so.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#include "lmembed/compare/results.hpp"

namespace lmembed::compare {

namespace detail {
/// VmHWM (peak resident set) of this process in bytes from /proc/self/status, or -1.
inline std::int64_t read_vm_hwm() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      try {
        return std::stoll(line.substr(6)) * 1024;  // reported in kB
      } catch (const std::exception&) {
        return -1;
      }
    }
  return -1;
}
/// Resets VmHWM to the current resident set; false where the kernel refuses.
inline bool reset_vm_hwm() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return static_cast<bool>(f);
}
/// Process-lifetime peak RSS in bytes (getrusage), or -1.
inline std::int64_t process_peak_rss() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return -1;
  return static_cast<std::int64_t>(u.ru_maxrss) * 1024;
}
}  // namespace detail

/// Measures one stage: construct at its start, call finish() at its end.
class StageTimer {
 public:
  StageTimer(std::string design, std::string stage)
      : design_(std::move(design)),
        stage_(std::move(stage)),
        per_stage_(detail::reset_vm_hwm()),
        start_(std::chrono::steady_clock::now()) {}

  /// The record of the stage so far (wall time until now, peak since the start).
  StageRecord finish(std::string note = {}) const {
    StageRecord r;
    r.design = design_;
    r.stage = stage_;
    r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::int64_t hwm = detail::read_vm_hwm();
    r.peak_rss_bytes = per_stage_ && hwm > 0 ? hwm : detail::process_peak_rss();
    if (!per_stage_) note += std::string(note.empty() ? "" : "; ") + "peak RSS is the process peak";
    r.note = std::move(note);
    return r;
  }

 private:
  std::string design_, stage_;
  bool per_stage_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lmembed::compare
