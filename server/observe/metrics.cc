#include "server/observe/metrics.h"

#include <cmath>
#include <cstdio>

namespace quire::observe {
namespace {

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string Labels(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + EscapeLabel(values[i]) + "\"";
  }
  return out;
}

}  // namespace

std::string EscapeLabel(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i] = 0;
}

void Histogram::Observe(double value) {
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  const std::string sep = labels.empty() ? "" : labels + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    const std::string le = i < bounds_.size() ? Number(bounds_[i]) : "+Inf";
    *out += name + "_bucket{" + sep + "le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  *out += name + "_sum" + braces + " " + Number(sum_.load(std::memory_order_relaxed)) + "\n";
  *out += name + "_count" + braces + " " + std::to_string(count_.load()) + "\n";
}

MetricSet::Family* MetricSet::Find(const std::string& name) const {
  for (const auto& f : families_) {
    if (f->name == name) return f.get();
  }
  return nullptr;
}

void MetricSet::AddCounterFamily(const std::string& name, const std::string& help,
                                 std::vector<std::string> labels) {
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = "counter";
  f->labels = std::move(labels);
  std::lock_guard<std::mutex> lock(mu_);
  families_.push_back(std::move(f));
}

void MetricSet::Add(const std::string& name, const std::vector<std::string>& label_values,
                    std::uint64_t n) {
  std::atomic<std::uint64_t>* counter = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Family* f = Find(name);
    if (f == nullptr) return;
    auto& slot = f->counters[label_values];
    if (!slot) slot = std::make_unique<std::atomic<std::uint64_t>>(0);
    counter = slot.get();
  }
  counter->fetch_add(n, std::memory_order_relaxed);
}

void MetricSet::AddHistogramFamily(const std::string& name, const std::string& help,
                                   std::vector<double> upper_bounds, std::string label) {
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = "histogram";
  if (!label.empty()) f->labels = {std::move(label)};
  f->bounds = std::move(upper_bounds);
  std::lock_guard<std::mutex> lock(mu_);
  families_.push_back(std::move(f));
}

void MetricSet::Observe(const std::string& name, const std::string& label_value, double value) {
  Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Family* f = Find(name);
    if (f == nullptr) return;
    auto& slot = f->histograms[label_value];
    if (!slot) slot = std::make_unique<Histogram>(f->bounds);
    h = slot.get();
  }
  h->Observe(value);
}

void MetricSet::AddCallback(const std::string& name, const std::string& help,
                            const std::string& type, std::function<double()> read) {
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->type = type;
  f->read = std::move(read);
  std::lock_guard<std::mutex> lock(mu_);
  families_.push_back(std::move(f));
}

std::string MetricSet::Render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& f : families_) {
    out += "# HELP " + f->name + " " + f->help + "\n";
    out += "# TYPE " + f->name + " " + f->type + "\n";
    if (f->read) {
      out += f->name + " " + Number(f->read()) + "\n";
    } else if (f->type == "counter") {
      for (const auto& [values, count] : f->counters) {
        const std::string labels = Labels(f->labels, values);
        out += f->name + (labels.empty() ? "" : "{" + labels + "}") + " " +
               std::to_string(count->load(std::memory_order_relaxed)) + "\n";
      }
      if (f->counters.empty() && f->labels.empty()) out += f->name + " 0\n";
    } else {
      for (const auto& [value, histogram] : f->histograms) {
        histogram->Render(f->name, f->labels.empty() ? "" : Labels(f->labels, {value}), &out);
      }
    }
  }
  return out;
}

}  // namespace quire::observe
