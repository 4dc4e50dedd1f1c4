package rollout

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	rewardsDesc = prometheus.NewDesc("weir_rollout_posterior_rewards",
		"Bandit rewards the scorers of this process sample from (the rewards topic as read), per model, arm, version and outcome (success, failure).",
		[]string{"model", "arm", "version", "outcome"}, nil)
	updatedDesc = prometheus.NewDesc("weir_rollout_posterior_updated_seconds",
		"Wall time of the rewards State the scorers of this process sample from, per model (Unix seconds).",
		[]string{"model"}, nil)
)

// Collector exports the posteriors scorers read: the counts of every arm
// version and when their State was written, per model. Register it with
// the process's registry.
func (p *Posteriors) Collector() prometheus.Collector { return posteriorCollector{p} }

type posteriorCollector struct{ p *Posteriors }

func (c posteriorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rewardsDesc
	ch <- updatedDesc
}

func (c posteriorCollector) Collect(ch chan<- prometheus.Metric) {
	for model, st := range *c.p.snap.Load() {
		for _, a := range st.Arms {
			v := strconv.FormatInt(int64(a.Version), 10)
			ch <- prometheus.MustNewConstMetric(rewardsDesc, prometheus.GaugeValue, float64(a.Successes), model, a.Arm, v, "success")
			ch <- prometheus.MustNewConstMetric(rewardsDesc, prometheus.GaugeValue, float64(a.Failures), model, a.Arm, v, "failure")
		}
		ch <- prometheus.MustNewConstMetric(updatedDesc, prometheus.GaugeValue, float64(st.UpdatedAt)/1000, model)
	}
}
