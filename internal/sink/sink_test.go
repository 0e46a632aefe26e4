package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

type send struct {
	from string
	rcpt []string
	data string
	// want is the reply code expected for each step: at MAIL (index 0), each RCPT, then DATA.
	// A missing entry means 250. A 4xx/5xx at MAIL ends the send.
	want map[string]int
}

func msg(subject string) string {
	return "From: a@example.test\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
}

// deliver runs one transaction and returns the code of each step, keyed "MAIL", the recipient, or
// "DATA".
func deliver(t *testing.T, addr string, s send) map[string]int {
	t.Helper()
	got := map[string]int{}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	code := func(err error) int {
		if err == nil {
			return 250
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return -1 // connection trouble
	}
	got["MAIL"] = code(c.Mail(s.from, nil))
	if got["MAIL"] != 250 {
		return got
	}
	accepted := 0
	for _, r := range s.rcpt {
		got[r] = code(c.Rcpt(r, nil))
		if got[r] == 250 {
			accepted++
		}
	}
	if accepted == 0 {
		return got
	}
	w, err := c.Data()
	if err != nil {
		got["DATA"] = code(err)
		return got
	}
	if _, err := w.Write([]byte(s.data)); err != nil {
		t.Fatalf("write data: %v", err)
	}
	got["DATA"] = code(w.Close())
	if got["DATA"] == 250 {
		if err := c.Quit(); err != nil {
			t.Errorf("quit: %v", err)
		}
	}
	return got
}

func TestSink(t *testing.T) {
	t.Parallel()
	tempFail := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	bye := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "going away"}
	noUser := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	tests := []struct {
		name   string
		opts   Options
		faults []Fault
		sends  []send
		want   [][]string // RcptTo of each recorded transaction
	}{
		{
			name:  "ok one transaction",
			sends: []send{{from: "a@example.test", rcpt: []string{"b@example.test", "c@example.test"}, data: msg("one")}},
			want:  [][]string{{"b@example.test", "c@example.test"}},
		},
		{
			name: "ok null reverse path",
			sends: []send{
				{from: "", rcpt: []string{"a@example.test"}, data: msg("dsn")},
			},
			want: [][]string{{"a@example.test"}},
		},
		{
			name:   "ok per-recipient 550 keeps the others",
			faults: []Fault{{Stage: AtRcpt, Rcpt: "C@example.test", Reply: noUser}},
			sends: []send{{from: "a@example.test", rcpt: []string{"b@example.test", "c@example.test", "d@example.test"}, data: msg("x"),
				want: map[string]int{"c@example.test": 550}}},
			want: [][]string{{"b@example.test", "d@example.test"}},
		},
		{
			name:   "ok 451 at data fires once",
			faults: []Fault{{Stage: AtData, Reply: tempFail, Times: 1}},
			sends: []send{
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("first"), want: map[string]int{"DATA": 451}},
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("second")},
			},
			want: [][]string{{"b@example.test"}},
		},
		{
			name:   "ok 451 at mail until cleared",
			faults: []Fault{{Stage: AtMail, Reply: tempFail}},
			sends: []send{
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("1"), want: map[string]int{"MAIL": 451}},
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("2"), want: map[string]int{"MAIL": 451}},
			},
		},
		{
			name:   "ok 421 at rcpt",
			faults: []Fault{{Stage: AtRcpt, Reply: bye, Times: 1}},
			sends: []send{
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("1"), want: map[string]int{"b@example.test": 421}},
				{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("2")},
			},
			want: [][]string{{"b@example.test"}},
		},
		{
			name:  "fail over size",
			opts:  Options{MaxMessageBytes: 100},
			sends: []send{{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg(strings.Repeat("x", 200)), want: map[string]int{"DATA": 552}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Start(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, f := range tt.faults {
				s.AddFault(f)
			}
			for i, snd := range tt.sends {
				got := deliver(t, s.Addr(), snd)
				for step, code := range got {
					want := 250
					if w, ok := snd.want[step]; ok {
						want = w
					}
					if code != want {
						t.Errorf("send %d: %s got %d, want %d", i, step, code, want)
					}
				}
			}
			txs := s.Transactions()
			var got [][]string
			for _, tx := range txs {
				got = append(got, tx.RcptTo)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("recorded %v, want %v", got, tt.want)
			}
			for i, tx := range txs {
				if tx.Seq != i+1 || tx.Size != len(tx.Data) || tx.Time.IsZero() {
					t.Errorf("transaction %d: seq %d size %d/%d time %v", i, tx.Seq, tx.Size, len(tx.Data), tx.Time)
				}
			}
		})
	}
}

func TestSinkData(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Dot-stuffing and 8bit bytes must come out exactly as the client meant them.
	body := "From: a@example.test\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\n\r\n.leading dot\r\n..two\r\nlast\r\n"
	deliver(t, s.Addr(), send{from: "a@example.test", rcpt: []string{"b@example.test"}, data: body})
	txs, err := s.Wait(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(txs[0].Data); got != body {
		t.Errorf("data %q, want %q", got, body)
	}
	if txs[0].MailFrom != "a@example.test" || txs[0].Helo != "localhost" {
		t.Errorf("envelope %q helo %q", txs[0].MailFrom, txs[0].Helo)
	}
}

func TestSinkDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	for round := 1; round <= 2; round++ {
		s, err := Start(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, s.Addr(), send{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg(fmt.Sprint(round))})
		txs, err := s.Wait(context.Background(), 1)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		// A restarted sink continues the numbering instead of overwriting.
		want := fmt.Sprintf("%03d.eml", round)
		if txs[0].File != want || txs[0].Seq != round {
			t.Fatalf("round %d: file %q seq %d, want %q", round, txs[0].File, txs[0].Seq, want)
		}
		eml, err := os.ReadFile(filepath.Join(dir, want))
		if err != nil || string(eml) != msg(fmt.Sprint(round)) {
			t.Fatalf("round %d: %s: %q %v", round, want, eml, err)
		}
		var meta Transaction
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%03d.json", round)))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.MailFrom != "a@example.test" || !slices.Equal(meta.RcptTo, []string{"b@example.test"}) || meta.Size != len(eml) || meta.File != want {
			t.Errorf("round %d: metadata %+v", round, meta)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

func TestSinkDownUp(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr()
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("sink accepts connections while down")
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("address changed from %q to %q", addr, s.Addr())
	}
	deliver(t, addr, send{from: "a@example.test", rcpt: []string{"b@example.test"}, data: msg("up")})
	if n := len(s.Transactions()); n != 1 {
		t.Fatalf("%d transactions after up, want 1", n)
	}
}

func TestSinkWait(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on an idle sink: %v, want deadline exceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Wait(context.Background(), 1)
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("wait on a closed sink: %v, want ErrClosed", err)
	}
	if err := s.Up(); !errors.Is(err, ErrClosed) {
		t.Errorf("up after close: %v, want ErrClosed", err)
	}
}

func TestSink421Hangs(t *testing.T) {
	t.Parallel()
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddFault(Fault{Stage: AtMail, Reply: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "going away"}})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var se *smtp.SMTPError
	if err := c.Mail("a@example.test", nil); !errors.As(err, &se) || se.Code != 421 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 2}) {
		t.Fatalf("mail: %v, want 421 4.3.2", err)
	}
	// After 421 the server must hang up: the next command gets no SMTP reply at all.
	if err := c.Noop(); err == nil || errors.As(err, &se) && se.Code != 421 {
		t.Fatalf("noop after 421: %v, want a closed connection", err)
	}
	if s.Refused() != 1 {
		t.Errorf("refused %d, want 1", s.Refused())
	}
}
