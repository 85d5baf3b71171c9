// Metrics in the Prometheus text format (version 0.0.4), written once:
// counters with labels, histograms with fixed buckets, and values read when
// scraped (gauges, or counters kept elsewhere). A MetricSet renders them all
// for GET /metrics.
//
// Thread-safety: every method may be called from any thread; Add and Observe
// are lock-free on their hot path except for a labelled counter's first use
// of a label set.
// Ownership: a MetricSet owns its metrics; the references it hands out live
// as long as it does.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace quire::observe {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  // Appends the _bucket, _sum and _count lines of `name` with `labels`
  // (already formatted, "" or `route="/x"`).
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // one per bound, then +Inf
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class MetricSet {
 public:
  // A counter; `labels` are the label names (values are given to Add).
  void AddCounterFamily(const std::string& name, const std::string& help,
                        std::vector<std::string> labels);
  void Add(const std::string& name, const std::vector<std::string>& label_values,
           std::uint64_t n = 1);

  // A histogram family with one histogram per value of its label (or one
  // when `label` is empty).
  void AddHistogramFamily(const std::string& name, const std::string& help,
                          std::vector<double> upper_bounds, std::string label = "");
  void Observe(const std::string& name, const std::string& label_value, double value);

  // A value read when scraped: type "gauge" or "counter".
  void AddCallback(const std::string& name, const std::string& help, const std::string& type,
                   std::function<double()> read);

  // Every metric, in the order they were added.
  std::string Render() const;

 private:
  struct Family {
    std::string name, help, type;
    std::vector<std::string> labels;  // counters: names; histograms: at most one
    std::vector<double> bounds;
    std::function<double()> read;
    std::map<std::vector<std::string>, std::unique_ptr<std::atomic<std::uint64_t>>> counters;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  Family* Find(const std::string& name) const;

  mutable std::mutex mu_;  // guards the families and their maps, not the values
  std::vector<std::unique_ptr<Family>> families_;
};

// `text` escaped for a label value: backslash, double quote and newline.
std::string EscapeLabel(const std::string& text);

}  // namespace quire::observe
