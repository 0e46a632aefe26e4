package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/internal/ci"
	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// The Postfix tests run Debian's Postfix with a configuration directory of its own (a temporary
// main.cf and master.cf, queue and data directories, loopback ports only) so they touch no
// system instance. main.cf and master.cf are a minimal base plus the snippets shipped in
// deploy/postfix/, appended as the README tells operators to append them, with the example ports
// replaced by free ones. Postfix must be started as root.

// postfixBaseMaster is master.cf without the public smtpd and with chroot off: a chroot would
// need the queue directory populated with /etc files.
const postfixBaseMaster = `pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

var installPostfix sync.Once

// needPostfix installs Debian's postfix package when it is missing (as scripts/deps.sh does)
// and skips, or fails under CI (any value), when that is impossible.
func needPostfix(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) {
		if ci.On() {
			t.Fatalf("postfix: "+format+" (CI set: a failure, not a skip)", args...)
		}
		t.Skipf("postfix: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("Postfix's master must be started as root")
	}
	installPostfix.Do(func() {
		if _, err := exec.LookPath("postfix"); err == nil {
			return
		}
		// "No configuration": the package installs without making or starting a system
		// instance, which is all these tests need.
		sh := `echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections &&
			export DEBIAN_FRONTEND=noninteractive && apt-get update -qq &&
			apt-get install -y -qq --no-install-recommends postfix`
		if out, err := exec.Command("bash", "-c", sh).CombinedOutput(); err != nil {
			t.Logf("failed to install postfix: %v\n%s", err, tail(string(out), 20))
			return
		}
		// Should a preseeded configuration have started the system instance, stop it: the
		// tests want their own, and nothing else on this machine asked for one.
		if exec.Command("postfix", "status").Run() == nil {
			exec.Command("postfix", "stop").Run()
		}
	})
	if _, err := exec.LookPath("postfix"); err != nil {
		skip("not installed and could not be installed: %v", err)
	}
	if _, err := user.Lookup("postfix"); err != nil {
		skip("no postfix user: %v", err)
	}
}

// postfixInstance is one running Postfix.
type postfixInstance struct {
	dir  string // holds etc/, queue/, data/, maillog
	Addr string // its public smtpd
}

func (p *postfixInstance) etc() string { return filepath.Join(p.dir, "etc") }

// Log is Postfix's maillog so far.
func (p *postfixInstance) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// startPostfix writes main.cf (base settings, relaying everything from loopback to relayhost
// unless that is "", then mainExtra) and master.cf (the base services, a public smtpd on a free port, then
// masterExtra) and starts Postfix; it is stopped when the test ends.
func startPostfix(t *testing.T, relayhost, mainExtra, masterExtra string) *postfixInstance {
	t.Helper()
	// Not t.TempDir: the postfix user must be able to reach the queue, and t.TempDir's parent
	// is private to root.
	dir, err := os.MkdirTemp("", "appliance-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	p := &postfixInstance{dir: dir, Addr: FreeAddr(t)}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etc", "queue", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	relayLine := ""
	if relayhost != "" {
		relayLine = "relayhost = " + relayhost
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
%[2]s
alias_maps =
alias_database =
smtputf8_enable = no
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
# Retry a deferred message quickly: a test waits seconds, not minutes.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
`, dir, relayLine) + "\n" + mainExtra
	master := fmt.Sprintf("%s inet n - n - - smtpd\n", p.Addr) + postfixBaseMaster + "\n" + masterExtra
	if err := os.WriteFile(filepath.Join(p.etc(), "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.etc(), "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "postfix", "-c", p.etc(), "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s\n%s", err, out, p.Log())
	}
	if out, err := exec.CommandContext(ctx, "postfix", "-c", p.etc(), "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.Log())
	}
	t.Cleanup(func() {
		exec.Command("postfix", "-c", p.etc(), "stop").Run()
		if t.Failed() || os.Getenv("POSTFIX_LOG") != "" {
			t.Logf("postfix maillog (%s):\n%s", dir, tail(p.Log(), 80))
		}
	})
	waitFor(t, 30*time.Second, "postfix greeting on "+p.Addr, func() bool {
		r, err := DialRaw(p.Addr)
		if err != nil {
			return false
		}
		r.Close()
		return true
	})
	return p
}

// snippet reads a file of deploy/postfix with the example addresses replaced.
func snippet(t *testing.T, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(softhsmtest.RepoRoot(), "deploy", "postfix", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(repl...).Replace(string(b))
	return s
}

// pfMessageID returns the Message-ID field of a rendered message.
func pfMessageID(t *testing.T, msg []byte) string {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	return h.Get("Message-Id")
}

var byPostfix = regexp.MustCompile(`\bby\s+mx\.example\.test\s+\(Postfix\)`)

var receivedFor = regexp.MustCompile(`(?i)\bfor\s+<?([^\s<>;]+@[^\s<>;]+)>?`)

// checkTrace checks what the checker cannot know is Postfix's doing: no X-Original-To or
// Delivered-To at all, and every Received "for" clause names a recipient of that transaction.
func checkTrace(t *testing.T, tx sink.Transaction) {
	t.Helper()
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(tx.Data))).ReadMIMEHeader()
	if err != nil {
		t.Fatalf("package to %v: %v", tx.RcptTo, err)
	}
	for _, k := range []string{"X-Original-To", "Delivered-To", "Bcc"} {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("package to %v has %s: %q", tx.RcptTo, k, v)
		}
	}
	rcpt := set(normAll(tx.RcptTo))
	for _, r := range h.Values("Received") {
		for _, m := range receivedFor.FindAllStringSubmatch(r, -1) {
			if !rcpt[norm(m[1])] {
				t.Errorf("package to %v has a Received field naming %s: %q", tx.RcptTo, m[1], r)
			}
		}
	}
}

// postfixMessages are the messages both modes send: one with visible and (client-stripped)
// hidden recipients, and one whose only recipient is hidden, for which Postfix's Received has a
// "for" clause.
func postfixMessages() []submission {
	return []submission{
		{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "through postfix", Text: "Hello via Postfix.\n"},
			rcpt: []string{bob, carol, dave, erin}},
		{msg: Message{From: alice, Subject: "only hidden", Text: "Just for you.\n"}, rcpt: []string{dave}},
	}
}

// sendAndCheck submits every message to Postfix, waits for want packages at the sink, and runs
// the privacy checker on each message's packages plus the trace check on every package.
func sendAndCheck(t *testing.T, pf *postfixInstance, s *sink.Sink, checker *Checker, want int) {
	t.Helper()
	subs := postfixMessages()
	var ids []string
	for _, sub := range subs {
		raw := sub.msg.Bytes()
		ids = append(ids, pfMessageID(t, raw))
		res, err := SubmitGo(pf.Addr, sub.msg.From, sub.rcpt, raw)
		if err != nil {
			t.Fatal(err)
		}
		if res.Mail != nil || res.Data != nil || len(res.Accepted(sub.rcpt)) != len(sub.rcpt) {
			t.Fatalf("postfix refused the submission: MAIL %v, RCPT %v, DATA %v", res.Mail, res.Rcpt, res.Data)
		}
	}
	txs, err := WaitPackages(s, want, 90*time.Second, time.Second)
	if err != nil {
		t.Fatalf("%v (got %v)", err, rcptSets(txs))
	}
	for i, sub := range subs {
		var mine []sink.Transaction
		for _, tx := range txs {
			if bytes.Contains(tx.Data, []byte(ids[i])) {
				mine = append(mine, tx)
			}
		}
		exp := Expect{From: sub.msg.From, To: sub.msg.To, Cc: sub.msg.Cc, Rcpt: sub.rcpt, Message: nil}
		pkgs, err := checker.Check(context.Background(), exp, mine)
		if err != nil {
			t.Fatalf("message %d (%s): privacy/completeness check failed:\n%v", i+1, sub.msg.Subject, err)
		}
		for _, p := range pkgs {
			if p.Kind != Encrypted {
				t.Errorf("message %d: package to %v is %s, want encrypted", i+1, p.Tx.RcptTo, p.Kind)
			}
		}
	}
	for _, tx := range txs {
		checkTrace(t, tx)
		if !strings.EqualFold(tx.MailFrom, alice) {
			t.Errorf("package to %v has MAIL FROM %q, want %s", tx.RcptTo, tx.MailFrom, alice)
		}
	}
}

// TestPostfixContentFilter: Postfix -> appliance (content_filter) -> Postfix (re-injection) ->
// sink, with deploy/postfix/main.cf.content_filter and master.cf.content_filter.
func TestPostfixContentFilter(t *testing.T) {
	t.Parallel()
	needPostfix(t)
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	appAddr, reinject := FreeAddr(t), FreeAddr(t)
	cfg := NewConfig(t, env, reinject)
	cfg.SMTP.Listen = appAddr
	StartDaemon(t, env, cfg)
	pf := startPostfix(t, "["+hostOf(s.Addr())+"]:"+portOf(s.Addr()),
		snippet(t, "main.cf.content_filter", "[127.0.0.1]:10025", "["+hostOf(appAddr)+"]:"+portOf(appAddr)),
		snippet(t, "master.cf.content_filter", "127.0.0.1:10026", reinject))

	// Message 1: bob+carol, dave, erin; message 2: dave.
	sendAndCheck(t, pf, s, &Checker{PKI: pki, Tmp: t.TempDir()}, 4)
	// Every package went back through Postfix: its re-injection smtpd received it from the
	// appliance (two Postfix Received fields: before and after the appliance).
	for _, tx := range s.Transactions() {
		h, _, err := splitMessage(tx.Data)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range h.Values("Received") {
			if byPostfix.MatchString(r) {
				n++
			}
		}
		if n != 2 {
			t.Errorf("package to %v: %d Postfix Received fields in the outer header, want 2 (before and after the appliance)", tx.RcptTo, n)
		}
	}
}

// TestPostfixRelayhost: Postfix -> appliance (relayhost) -> sink, with
// deploy/postfix/main.cf.relayhost.
func TestPostfixRelayhost(t *testing.T) {
	t.Parallel()
	needPostfix(t)
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	appAddr := FreeAddr(t)
	cfg := NewConfig(t, env, s.Addr())
	cfg.SMTP.Listen = appAddr
	StartDaemon(t, env, cfg)
	main := snippet(t, "main.cf.relayhost", "[127.0.0.1]:10025", "["+hostOf(appAddr)+"]:"+portOf(appAddr))
	pf := startPostfix(t, "", main, "") // the snippet sets relayhost

	sendAndCheck(t, pf, s, &Checker{PKI: pki, Tmp: t.TempDir()}, 4)
}

func hostOf(addr string) string { h, _, _ := strings.Cut(addr, ":"); return h }

func portOf(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	if _, err := strconv.Atoi(p); err != nil {
		panic("bad address " + addr)
	}
	return p
}
