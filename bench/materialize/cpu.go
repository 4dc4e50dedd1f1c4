package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on Linux.
const clockTicks = 100

// selfCPU is this process's user+system CPU time (getrusage RUSAGE_SELF):
// the materializer under test runs in it.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procTicks returns utime+stime of a process in clock ticks from
// /proc/PID/stat (fields after the command name's closing parenthesis);
// 0 when pid is 0 or unreadable.
func procTicks(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// machineTicks returns the machine's busy and total CPU ticks over all
// cores from /proc/stat (idle and iowait are not busy).
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		total += v[i]
	}
	return total - v[3] - v[4], total
}

// pidFile reads a pid file that deploy/local writes under $WEIR_DATA.
func pidFile(rel string) int {
	b, err := os.ReadFile(filepath.Join(envOr("WEIR_DATA", ".weir"), rel))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if procTicks(pid) == 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return 0
		}
	}
	return pid
}

// reading is one sample of every CPU counter the report uses.
type reading struct {
	at                      time.Time
	self                    time.Duration
	server, broker          int64 // ticks: the sink's server (ClickHouse or Redis), Kafka
	machineBusy, machineAll int64
}

type meter struct{ server, broker int }

func (m meter) read() reading {
	r := reading{at: time.Now(), self: selfCPU(), server: procTicks(m.server), broker: procTicks(m.broker)}
	r.machineBusy, r.machineAll = machineTicks()
	return r
}

// use is what an interval cost, in CPU seconds.
type use struct {
	Wall, Self, Server, Broker, MachineBusy, MachineCapacity, Other float64
}

func (a reading) to(b reading) use {
	sec := func(t int64) float64 { return float64(t) / clockTicks }
	u := use{Wall: b.at.Sub(a.at).Seconds(), Self: (b.self - a.self).Seconds(), Server: sec(b.server - a.server), Broker: sec(b.broker - a.broker),
		MachineBusy: sec(b.machineBusy - a.machineBusy), MachineCapacity: sec(b.machineAll - a.machineAll)}
	u.Other = max(0, u.MachineBusy-u.Self-u.Server-u.Broker)
	return u
}
