package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc: 100 on Linux.
const clockTicks = 100

// result is one timed run of one side.
type result struct {
	side     string
	wall     float64 // seconds, process start to exit
	rssMB    float64 // the process's peak RSS (GNU time's %M)
	cpu      float64 // the process's user+sys seconds
	chCPU    float64 // ClickHouse server's CPU seconds during the run
	chRSSMB  float64 // ClickHouse server's peak RSS growth over the run (sampled)
	otherCPU float64 // the rest of the machine's CPU seconds during the run
	noisy    bool    // otherCPU over the -noisy share of the machine
	killed   string  // why the watchdog stopped it, if it did
	stdout   string
}

// procTicks reads utime+stime of a process from /proc/PID/stat.
func procTicks(pid int) int64 {
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

// statusKB reads a field (VmRSS, VmHWM) of /proc/PID/status in kB.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
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

// descendants lists pid and every process below it.
func descendants(pid int) []int {
	parent := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		end := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[end+1:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[pp] = append(parent[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parent[out[i]]...)
	}
	return out
}

// timed runs argv under GNU time (which forks, so its %M is the child's own
// peak RSS, not a high-water mark inherited across vfork+exec) and reads
// ClickHouse's and the machine's CPU over the run. A watchdog kills the
// process group past maxRSS or timeout.
func timed(ctx context.Context, side string, chPid int, maxRSSMB float64, timeout time.Duration, noisy float64, argv ...string) (*result, error) {
	tf, err := os.CreateTemp("", "weirbench-time-*")
	if err != nil {
		return nil, err
	}
	tf.Close()
	defer os.Remove(tf.Name())
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%e %M %U %S", "-o", tf.Name()}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	chTicks0 := procTicks(chPid)
	chRSS0 := statusKB(chPid, "VmRSS")
	busy0, total0 := machineTicks()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	r := &result{side: side}
	var chRSSMax int64
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var werr error
loop:
	for {
		select {
		case werr = <-done:
			break loop
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return nil, ctx.Err()
		case <-tick.C:
			if rss := statusKB(chPid, "VmRSS"); rss > chRSSMax {
				chRSSMax = rss
			}
			var rss int64
			for _, p := range descendants(cmd.Process.Pid) {
				rss += statusKB(p, "VmRSS")
			}
			if r.killed == "" && float64(rss)/1024 > maxRSSMB {
				r.killed = fmt.Sprintf("RSS %.0f MB over -max-rss %.0f MB", float64(rss)/1024, maxRSSMB)
			}
			if r.killed == "" && time.Now().After(deadline) {
				r.killed = fmt.Sprintf("over -timeout %s", timeout)
			}
			if r.killed != "" {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
	}
	busy1, total1 := machineTicks()
	r.chCPU = float64(procTicks(chPid)-chTicks0) / clockTicks
	if chRSSMax > chRSS0 {
		r.chRSSMB = float64(chRSSMax-chRSS0) / 1024
	}
	r.stdout = stdout.String()
	if r.killed != "" {
		return r, nil
	}
	if werr != nil {
		return nil, fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), werr, stdout.String(), tail(stderr.String(), 3000))
	}
	tb, err := os.ReadFile(tf.Name())
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(tb)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 4 {
		return nil, fmt.Errorf("GNU time wrote %q", tb)
	}
	r.wall, _ = strconv.ParseFloat(f[0], 64)
	kb, _ := strconv.ParseFloat(f[1], 64)
	r.rssMB = kb / 1024
	u, _ := strconv.ParseFloat(f[2], 64)
	s, _ := strconv.ParseFloat(f[3], 64)
	r.cpu = u + s
	machine := float64(busy1-busy0) / clockTicks
	r.otherCPU = machine - r.cpu - r.chCPU
	if r.otherCPU < 0 {
		r.otherCPU = 0
	}
	ncpu := float64(total1-total0) / clockTicks / r.wall // cores' worth of ticks per second
	r.noisy = r.otherCPU > noisy*ncpu*r.wall
	return r, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// clickHousePid finds the ClickHouse server: the pid file the local stack
// writes, else the process listening on addr's port (by name).
func clickHousePid(data string) int {
	if b, err := os.ReadFile(filepath.Join(data, "clickhouse", "clickhouse.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && procTicks(pid) > 0 {
			return pid
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.HasPrefix(string(c), "clickhouse") {
			return pid
		}
	}
	return 0
}
