package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on Linux.
const clockTicks = 100

// procTicks returns utime+stime of a process, in clock ticks, from
// /proc/PID/stat (fields 14 and 15; the command name in parentheses may
// hold spaces, so fields are counted after its closing parenthesis).
func procTicks(pid int) (int64, error) {
	_, ticks, err := procStat(strconv.Itoa(pid))
	return ticks, err
}

func procStat(pid string) (comm string, ticks int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return "", 0, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return "", 0, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, fmt.Errorf("/proc/%s/stat: bad utime/stime", pid)
	}
	return comm, ut + st, nil
}

// machineTicks returns the whole machine's busy and total CPU time in clock
// ticks, summed over all cores, from the first line of /proc/stat. Idle and
// iowait count as not busy; guest time is already inside user time.
func machineTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	for _, x := range v {
		total += x
	}
	return total - v[3] - v[4], total, nil
}

// cpuSample is one reading of the CPU counters during a run.
type cpuSample struct {
	at                  time.Time
	proc, broker, self  int64 // ticks of the system under test, the broker, this harness
	machBusy, machTotal int64
}

// cpuSampler reads the counters of the process under test, the broker and
// this harness, and of the whole machine.
type cpuSampler struct {
	pid, brokerPid int
	samples        []cpuSample
}

func (s *cpuSampler) sample() cpuSample {
	c := cpuSample{at: time.Now()}
	c.proc, _ = procTicks(s.pid) // 0 once it exited: the run fails on that anyway
	if s.brokerPid > 0 {
		c.broker, _ = procTicks(s.brokerPid)
	}
	c.self, _ = procTicks(os.Getpid())
	c.machBusy, c.machTotal, _ = machineTicks()
	s.samples = append(s.samples, c)
	return c
}

// at returns the last sample taken at or before t (the first one if none).
func (s *cpuSampler) at(t time.Time) cpuSample {
	i := sort.Search(len(s.samples), func(i int) bool { return s.samples[i].at.After(t) })
	if i == 0 {
		return s.samples[0]
	}
	return s.samples[i-1]
}

// cpuUse is CPU seconds spent over an interval.
type cpuUse struct {
	Proc            float64 `json:"process"` // seconds, the system under test
	Broker          float64 `json:"broker"`
	Self            float64 `json:"harness"`
	MachineBusy     float64 `json:"machine_busy"`     // seconds, all cores
	MachineCapacity float64 `json:"machine_capacity"` // seconds: cores × wall time, from /proc/stat's total
	Other           float64 `json:"other"`            // MachineBusy minus the three above
}

func diff(a, b cpuSample) cpuUse {
	sec := func(t int64) float64 { return float64(t) / clockTicks }
	u := cpuUse{
		Proc: sec(b.proc - a.proc), Broker: sec(b.broker - a.broker), Self: sec(b.self - a.self),
		MachineBusy: sec(b.machBusy - a.machBusy), MachineCapacity: sec(b.machTotal - a.machTotal),
	}
	u.Other = max(0, u.MachineBusy-u.Proc-u.Broker-u.Self)
	return u
}

// procSnapshot is every process's CPU ticks and name, by pid.
type procSnapshot map[string]procEntry

type procEntry struct {
	comm  string
	ticks int64
}

func snapshotProcs() procSnapshot {
	s := procSnapshot{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if comm, ticks, err := procStat(e.Name()); err == nil {
			s[e.Name()] = procEntry{comm, ticks}
		}
	}
	return s
}

// topOthers names the processes, other than those in skip, that used the
// most CPU between two snapshots: "name(pid) 1.23s".
func topOthers(a, b procSnapshot, skip map[int]bool, n int) []string {
	type use struct {
		name string
		sec  float64
	}
	var us []use
	for pid, e := range b {
		if p, _ := strconv.Atoi(pid); skip[p] {
			continue
		}
		d := e.ticks - a[pid].ticks // a process started in between counts from 0
		if d > 0 {
			us = append(us, use{fmt.Sprintf("%s(%s)", e.comm, pid), float64(d) / clockTicks})
		}
	}
	sort.Slice(us, func(i, j int) bool { return us[i].sec > us[j].sec })
	var out []string
	for _, u := range us[:min(n, len(us))] {
		out = append(out, fmt.Sprintf("%s %.2fs", u.name, u.sec))
	}
	return out
}

// brokerPid finds the local Kafka broker: the pid file deploy/local/kafka.sh
// writes, else a process whose command line runs kafka.Kafka. 0 if none.
func brokerPid(dataDir string) int {
	if b, err := os.ReadFile(filepath.Join(dataDir, "kafka", "kafka.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if _, err := procTicks(pid); err == nil {
				return pid
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte("kafka.Kafka\x00")) {
			return pid
		}
	}
	return 0
}
