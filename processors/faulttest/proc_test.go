package faulttest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one run of `weir run --role processor` as a subprocess.
type proc struct {
	n       int // 0 for the first run
	cmd     *exec.Cmd
	logPath string
	started time.Time

	assigned chan struct{} // closed at the first "partitions assigned" log line
	exited   chan struct{} // closed once the process exited and was waited for
	waitErr  error

	tailed bool // its log was shown

	mu         sync.Mutex
	assignedAt time.Time
	restores   []restore
	errors     []string // log lines at level ERROR, and fatal "weir:" lines
}

// restore is one "state restored" log line.
type restore struct {
	at      time.Time
	records int
	took    time.Duration
}

var (
	restoreLine = regexp.MustCompile(`msg="state restored".* records=(\d+) took=(\S+)`)
	errorLine   = regexp.MustCompile(`level=ERROR|^weir: `)
)

// startProcessor starts the processor with the same --instance every time,
// so that each run's transactional id fences the previous one's and each
// run takes the previous one's place in the group as the same static member.
func (r *rig) startProcessor() *proc {
	t := r.t
	t.Helper()
	n := len(r.procs)
	p := &proc{n: n, logPath: filepath.Join(r.dir, fmt.Sprintf("processor.%02d.log", n)),
		assigned: make(chan struct{}), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(r.bin, "run", "--role", "processor", "--config", r.cfgPath, "--instance", "p1")
	p.cmd.Dir = r.dir
	// The file names every endpoint; the variables that .weir/env exports
	// would override it, so they are set to the same values.
	p.cmd.Env = append(os.Environ(),
		"WEIR_KAFKA_BROKERS="+strings.Join(r.cfg.Kafka.Brokers, ","),
		"WEIR_SCHEMA_REGISTRY_URL="+r.regURL,
		"GOTRACEBACK=all") // SIGQUIT on a stuck run dumps every goroutine
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start processor: %v", err)
	}
	pw.Close()
	r.procs = append(r.procs, p)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			now := time.Now()
			switch {
			case strings.Contains(line, `msg="partitions assigned"`):
				p.mu.Lock()
				if p.assignedAt.IsZero() {
					p.assignedAt = now
					close(p.assigned)
				}
				p.mu.Unlock()
			case restoreLine.MatchString(line):
				m := restoreLine.FindStringSubmatch(line)
				recs, _ := strconv.Atoi(m[1])
				took, _ := time.ParseDuration(m[2])
				p.mu.Lock()
				p.restores = append(p.restores, restore{at: now, records: recs, took: took})
				p.mu.Unlock()
			case errorLine.MatchString(line):
				p.mu.Lock()
				p.errors = append(p.errors, line)
				p.mu.Unlock()
			}
		}
		io.Copy(io.Discard, pr)
		p.waitErr = p.cmd.Wait()
		pr.Close()
		logf.Close()
	}()
	return p
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// quit sends SIGQUIT, so that a stuck run writes every goroutine's stack to
// its log as it exits, and SIGKILL if it has not exited 10s later.
func (p *proc) quit() {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// stop sends SIGTERM (a clean shutdown), and SIGKILL after timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Errorf("processor run %d did not stop %s after SIGTERM; killing it", p.n, timeout)
		p.kill()
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail logs the last n lines the run logged. If it dumped its goroutines
// (see quit), the lines are those before the dump, followed by the stacks
// of the goroutines running Weir's stream loop.
func (p *proc) tail(t *testing.T, n int) {
	p.tailed = true
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("processor run %d: %v", p.n, err)
		return
	}
	text, dump, dumped := strings.Cut(string(b), "SIGQUIT: quit")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	msg := fmt.Sprintf("processor run %d (%s, exit %v), last lines:\n%s", p.n, p.logPath, p.waitErr, strings.Join(lines[max(0, len(lines)-n):], "\n"))
	if dumped {
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "weir/streams.") {
				msg += "\n\n" + stackOnly(g)
			}
		}
	}
	t.Log(msg)
}

// stackOnly trims a goroutine's stack to function names and file:line.
func stackOnly(g string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(g), "\n") {
		if i := strings.Index(l, " +0x"); i >= 0 && strings.HasPrefix(l, "\t") {
			l = l[:i]
		} else if i := strings.Index(l, "(0x"); i >= 0 {
			l = l[:i] + "(...)"
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// summary reports how long a run took to get its partitions and restore.
func (p *proc) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.assignedAt.IsZero() {
		return "never assigned"
	}
	s := fmt.Sprintf("assigned %s after start", p.assignedAt.Sub(p.started).Round(10*time.Millisecond))
	for _, rs := range p.restores {
		s += fmt.Sprintf(", restored %d changelog records in %s", rs.records, rs.took)
	}
	return s
}
