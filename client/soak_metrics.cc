// retain load --soak, checks (c) and (d): the server's /metrics (Prometheus text format, names
// from server/metrics.cc) and its resident memory. prometheus-cpp exports no process metrics, so
// the memory comes from /proc/PID/status of --server-pid (the server runs on this machine: the
// soak is 127.0.0.1-only unless --allow-remote).
#include <fstream>
#include <sstream>

#include <httplib.h>

#include "client/soak.h"

namespace retain::client {
namespace {

// The value of label `name` in `{a="x",b="y"}`; "" when absent.
std::string Label(const std::string& labels, const std::string& name) {
  const std::string key = name + "=\"";
  size_t at = labels.find(key);
  while (at != std::string::npos && at > 0 && labels[at - 1] != '{' && labels[at - 1] != ',')
    at = labels.find(key, at + 1);
  if (at == std::string::npos) return "";
  const size_t from = at + key.size();
  const size_t to = labels.find('"', from);
  return to == std::string::npos ? "" : labels.substr(from, to - from);
}

}  // namespace

std::string ReadRss(int pid, int64_t* bytes) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  if (!f) return "cannot read /proc/" + std::to_string(pid) + "/status (is --server-pid the server, on this machine?)";
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) {
      *bytes = std::stoll(line.substr(6)) * 1024;  // "VmRSS:   123456 kB"
      return "";
    }
  return "/proc/" + std::to_string(pid) + "/status has no VmRSS";
}

bool ScrapeMetrics(const std::string& address, int server_pid, MetricsSample* out, std::string* error) {
  *out = MetricsSample();
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    *error = "--metrics " + address + ": not HOST:PORT";
    return false;
  }
  httplib::Client http(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  http.set_connection_timeout(10);
  http.set_read_timeout(30);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) {
    *error = "GET http://" + address + "/metrics: " + (res ? "HTTP " + std::to_string(res->status) : httplib::to_string(res.error()));
    return false;
  }
  std::istringstream body(res->body);
  std::string line;
  while (std::getline(body, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string name = line.substr(0, std::min(brace, space));
    const std::string labels = brace == std::string::npos ? "" : line.substr(brace, space - brace);
    const double v = std::stod(line.substr(space + 1));
    if (name == "retain_requests_finished_total") {
      out->finished_by_reason[Label(labels, "reason")] += v;
    } else if (name == "retain_request_errors_total") {
      out->errors_by_code[Label(labels, "code")] += v;
    } else if (name == "retain_generation_tokens_total") {
      out->generation_tokens += v;
    } else if (name == "retain_requests_running") {
      out->requests_running += v;
    } else if (name == "retain_requests_waiting") {
      out->requests_waiting += v;
    } else if (name == "retain_prefix_cache_bytes" || name == "retain_checkpoint_bytes" || name == "retain_tier_bytes") {
      out->held_bytes += v;
    }
  }
  if (server_pid > 0) {
    std::string why = ReadRss(server_pid, &out->rss_bytes);
    if (!why.empty()) {
      *error = why;
      return false;
    }
  }
  return true;
}

}  // namespace retain::client
