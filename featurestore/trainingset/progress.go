package trainingset

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Bar draws a build's progress for Spec.Progress: on a terminal a bar
// redrawn in place (at most every 100 ms), elsewhere a line at most every
// 5 s; and a last line from Done.
type Bar struct {
	w     io.Writer
	now   func() time.Time
	tty   bool
	start time.Time
	last  time.Time
	drawn bool
	done  int64
	total int64
}

// NewBar returns a bar on w; now is the clock, tty says whether w is a
// terminal.
func NewBar(w io.Writer, now func() time.Time, tty bool) *Bar {
	t := now()
	return &Bar{w: w, now: now, tty: tty, start: t, total: -1}
}

// Update records progress: done rows of total (-1 when unknown).
func (b *Bar) Update(done, total int64) {
	b.done, b.total = done, total
	t := b.now()
	every := 5 * time.Second
	if b.tty {
		every = 100 * time.Millisecond
	}
	if b.drawn && t.Sub(b.last) < every {
		return
	}
	b.last, b.drawn = t, true
	b.draw(t, false)
}

// Done draws the final state and ends the line.
func (b *Bar) Done() { b.draw(b.now(), true) }

func (b *Bar) draw(t time.Time, final bool) {
	el := t.Sub(b.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(b.done) / s
	}
	var line string
	if b.total > 0 {
		frac := min(float64(b.done)/float64(b.total), 1)
		const width = 30
		fill := int(frac * width)
		line = fmt.Sprintf("training set [%s%s] %3.0f%% %d/%d rows, %.0f rows/s, %s",
			strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, b.done, b.total, rate, el.Round(100*time.Millisecond))
	} else {
		line = fmt.Sprintf("training set %d rows, %.0f rows/s, %s", b.done, rate, el.Round(100*time.Millisecond))
	}
	switch {
	case b.tty && final:
		fmt.Fprintf(b.w, "\r%s\033[K\n", line)
	case b.tty:
		fmt.Fprintf(b.w, "\r%s\033[K", line)
	default:
		fmt.Fprintln(b.w, line)
	}
}
