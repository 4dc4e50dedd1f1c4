package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on Linux.
const clockTicks = 100

// stat reads a process's process group and utime+stime (clock ticks) from
// /proc/PID/stat; fields are counted after the command name's closing
// parenthesis, since the name may hold spaces.
func stat(pid int) (pgrp int, ticks int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	pgrp, _ = strconv.Atoi(f[2])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return pgrp, ut + st, nil
}

// groupPids lists the processes of a process group.
func groupPids(pgid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, _, err := stat(pid); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
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
	if len(f) < 9 {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		total += v[i]
	}
	return total - v[3] - v[4], total
}

// cpuMeter reads the CPU of the server, Redis, this harness and the machine.
type cpuMeter struct{ redis int }

func newCPU(redisPid int) *cpuMeter { return &cpuMeter{redis: redisPid} }

// cpuReading is one reading, in clock ticks.
type cpuReading struct {
	server      map[int]int64
	redis, self int64
	busy, total int64
}

func (m *cpuMeter) read(server []int) cpuReading {
	r := cpuReading{server: map[int]int64{}}
	for _, p := range server {
		if _, t, err := stat(p); err == nil {
			r.server[p] = t
		}
	}
	if m.redis > 0 {
		_, r.redis, _ = stat(m.redis)
	}
	_, r.self, _ = stat(os.Getpid())
	r.busy, r.total = machineTicks()
	return r
}

// cpuUse is CPU seconds over a step.
type cpuUse struct {
	Server          float64 `json:"server"` // the side's server processes
	Redis           float64 `json:"redis"`
	Harness         float64 `json:"harness"` // this process: the load generator (and, for weir-client, the client)
	MachineBusy     float64 `json:"machine_busy"`
	MachineCapacity float64 `json:"machine_capacity"` // cores x wall time
	Other           float64 `json:"other"`
}

func (a cpuReading) to(b cpuReading) cpuUse {
	sec := func(t int64) float64 { return float64(t) / clockTicks }
	var server int64
	for p, t := range b.server {
		server += max(0, t-a.server[p]) // a worker started in between counts from 0
	}
	u := cpuUse{Server: sec(server), Redis: sec(b.redis - a.redis), Harness: sec(b.self - a.self),
		MachineBusy: sec(b.busy - a.busy), MachineCapacity: sec(b.total - a.total)}
	u.Other = max(0, u.MachineBusy-u.Server-u.Redis-u.Harness)
	return u
}

// redisPid finds the local Redis: the pid file deploy/local/redis.sh
// writes, else a redis-server process whose command line names the port.
func redisPid(f *flags) int {
	if b, err := os.ReadFile(filepath.Join(envOr("WEIR_DATA", ".weir"), "redis", "redis.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if _, _, err := stat(pid); err == nil {
				return pid
			}
		}
	}
	_, port, _ := strings.Cut(f.redis, ":")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmd, []byte("redis-server")) && bytes.Contains(cmd, []byte(":"+port)) {
			return pid
		}
	}
	return 0
}
