package e2e

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/smime"
)

// rawMessage is a hand-written message: extra fields on top, then a plain header and body.
func rawMessage(top, hdr string) []byte {
	return []byte(top + hdr + "Subject: headers\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <h1@client.example.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n")
}

// sendRaw submits msg byte for byte over a raw SMTP connection (dot-stuffed, nothing else
// changed) and returns the reply to the end of DATA.
func sendRaw(t *testing.T, addr, from string, rcpt []string, msg []byte) (int, string) {
	t.Helper()
	c, err := DialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, msg, err := c.Cmd("MAIL FROM:<" + from + ">"); err != nil || code != 250 {
		t.Fatalf("MAIL: %d %s %v", code, msg, err)
	}
	for _, r := range rcpt {
		if code, msg, err := c.Cmd("RCPT TO:<" + r + ">"); err != nil || code != 250 {
			t.Fatalf("RCPT %s: %d %s %v", r, code, msg, err)
		}
	}
	if code, msg, err := c.Cmd("DATA"); err != nil || code != 354 {
		t.Fatalf("DATA: %d %s %v", code, msg, err)
	}
	body := bytes.ReplaceAll(msg, []byte("\n."), []byte("\n.."))
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		body = append(body, "\r\n"...)
	}
	code, text, err := c.Send(append(body, ".\r\n"...))
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	return code, text
}

// sealRefusal runs `appliance seal` on msg and returns its error (nil: it sealed).
func sealRefusal(t *testing.T, r *rig, bin, from string, rcpt []string, msg []byte) error {
	t.Helper()
	args := []string{"seal", "-config", r.daemon.ConfigPath, "-from", from, "-out", filepath.Join(t.TempDir(), "sealed")}
	for _, a := range rcpt {
		args = append(args, "-rcpt", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for try := 1; ; try++ {
		_, err := Run(ctx, r.env, bin, msg, args...)
		if err != nil && try < 3 && TokenRace(err.Error()) {
			time.Sleep(time.Duration(try) * 500 * time.Millisecond)
			continue
		}
		return err
	}
}

// TestHeaderPolicy: hidden recipients named in every kind of header field, in every spelling,
// reach no one else through `serve` (a real SMTP client) or `seal`, and the packages keep the
// fields known to be safe.
func TestHeaderPolicy(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bin := Build(t)
	const base = "From: Alice <" + alice + ">\r\n"
	tests := []struct {
		name  string
		msg   []byte
		exp   Expect
		want  int
		check func(t *testing.T, pkgs []Package)
	}{
		{
			name: "ok bcc named in trace, unknown, x- and encoded fields",
			msg: rawMessage("Received: from laptop.example.test by relay.example.test with ESMTP id 1\r\n\tfor <"+carol+">, <"+dave+">; Sat, 28 Nov 2026 09:00:00 +0000\r\n"+
				"X-Original-To: "+carol+"\r\nDelivered-To: "+dave+"\r\nEnvelope-To: "+carol+"\r\nX-Envelope-Recipient: "+dave+"\r\n"+
				"Disposition-Notification-To: "+alice+"\r\nReturn-Receipt-To: "+alice+"\r\nX-Mailer: test\r\n",
				base+"To: Bob <"+bob+"> (copies: "+carol+")\r\nBcc: "+carol+", "+dave+"\r\n"+
					"Keywords: =?utf-8?q?"+strings.Replace(carol, "@", "=40", 1)+"?=\r\nComments: ask \"carol\"@EXAMPLE.test\r\nMail-Followup-To: "+dave+"\r\nOrganization: Example\r\n"),
			exp:  Expect{From: alice, To: []string{bob}, Bcc: []string{carol, dave}, Rcpt: []string{bob, carol, dave}},
			want: 3,
			check: func(t *testing.T, pkgs []Package) {
				for _, p := range pkgs {
					h := p.OuterHeader
					for _, k := range []string{"X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-Recipient", "Disposition-Notification-To", "Return-Receipt-To", "X-Mailer", "Mail-Followup-To", "Bcc"} {
						if h.Has(k) {
							t.Errorf("package to %v carries %s", p.Tx.RcptTo, k)
						}
					}
					if h.Get("Organization") != "Example" || h.Get("Message-Id") == "" || h.Get("Date") == "" {
						t.Errorf("package to %v lost a known field:\n%v", p.Tx.RcptTo, h)
					}
					var all []string
					for f := h.Fields(); f.Next(); {
						all = append(all, f.Key()+": "+f.Value())
					}
					text := strings.ToLower(strings.Join(all, "\n"))
					for _, who := range []string{"carol", "dave"} {
						if strings.Contains(text, who) && !strings.Contains(strings.Join(p.Tx.RcptTo, ","), who) {
							t.Errorf("package to %v names %s:\n%s", p.Tx.RcptTo, who, text)
						}
					}
				}
			},
		},
		{
			// RFC 5322 section 3.6.6: dave and erin get this copy, bob and carol were the
			// original recipients and stay readable text; erin's receipt is hers alone.
			name: "ok resent mail follows its newest block",
			msg: rawMessage("Resent-From: "+alice+"\r\nResent-To: "+dave+"\r\nResent-Bcc: "+erin+"\r\n"+
				"Resent-From: "+alice+"\r\nResent-To: "+heidi+"\r\nResent-Bcc: "+bob+"\r\n",
				base+"To: "+bob+"\r\nCc: "+carol+"\r\n"),
			exp:  Expect{From: alice, To: []string{dave, bob, heidi}, Cc: []string{carol}, Bcc: []string{erin}, Rcpt: []string{dave, erin}},
			want: 2,
			check: func(t *testing.T, pkgs []Package) {
				for _, p := range pkgs {
					h := p.OuterHeader
					to := strings.Join(p.Tx.RcptTo, ",")
					if to == dave && (len(h.Values("Resent-Bcc")) != 0 || !strings.Contains(h.Get("Resent-To"), dave) || h.Get("To") != bob) {
						t.Errorf("dave's header:\n%v", h)
					}
					for _, o := range p.Owners {
						if o != to && o != alice { // alice: the self-copy
							t.Errorf("package to %s has RecipientInfos of %v", to, p.Owners)
						}
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			code, text := sendRaw(t, r.daemon.Addr, alice, tt.exp.Rcpt, tt.msg)
			if code != 250 {
				t.Fatalf("end of DATA: %d %s", code, text)
			}
			tt.exp.Message = tt.msg
			pkgs := r.expect(t, tt.exp, tt.want)
			tt.check(t, pkgs)
			compareSeal(t, r, bin, tt.exp, pkgs)
		})
	}
}

// TestHeaderRefusals: what `serve` refuses at the end of DATA, `seal` refuses too, and nothing
// is delivered.
func TestHeaderRefusals(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bin := Build(t)
	const to = "To: " + bob + "\r\n"
	tests := []struct {
		name string
		msg  []byte
		code string // the reply to the end of DATA
		why  string // in both the reply and seal's error
	}{
		{"fail two from fields", rawMessage("", "From: "+alice+"\r\nFrom: "+bob+"\r\n"+to), "554 5.6.0", "more than one From field"},
		{"fail two to fields", rawMessage("", "From: "+alice+"\r\n"+to+"To: "+carol+"\r\n"), "554 5.6.0", "more than one To field"},
		{"fail resent-from someone else", rawMessage("Resent-From: "+bob+"\r\nResent-To: "+carol+"\r\n", "From: "+alice+"\r\n"+to), "550 5.7.1", ""},
		{"fail sender someone else", rawMessage("", "From: "+alice+"\r\nSender: "+bob+"\r\n"+to), "550 5.7.1", ""},
		{"fail content field naming the bcc recipient", rawMessage("", "From: "+alice+"\r\n"+to+"Bcc: "+carol+"\r\nContent-Description: for "+carol+"\r\n"), "554 5.7.0", "Content-Description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			rcpt := []string{bob, carol}
			code, text := sendRaw(t, r.daemon.Addr, alice, rcpt, tt.msg)
			if got := fmt.Sprintf("%d %s", code, text); !strings.HasPrefix(got, tt.code) || !strings.Contains(got, tt.why) {
				t.Fatalf("end of DATA: %q, want %s ... %s", got, tt.code, tt.why)
			}
			err := sealRefusal(t, r, bin, alice, rcpt, tt.msg)
			if err == nil || !strings.Contains(err.Error(), tt.why) {
				t.Fatalf("seal: %v, want a refusal naming %q", err, tt.why)
			}
			// Refused at DATA means never spooled: by the time seal has run, a spooled
			// message would usually have been delivered.
			if txs := r.sink.Transactions(); len(txs) != 0 {
				t.Fatalf("refused message delivered: %v", rcptSets(txs))
			}
		})
	}
}

// TestNormalizationBothDoors: the same odd bytes through `serve` (a raw SMTP client, so that
// nothing repairs them on the way) and through `seal` give the same packages or the same
// refusal.
func TestNormalizationBothDoors(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bin := Build(t)
	plain := "From: " + alice + "\r\nTo: " + bob + "\r\nSubject: odd\r\n"
	tests := []struct {
		name string
		msg  string
		why  string // "" accepts: the refusal's words otherwise
	}{
		// The last line end is CRLF: DATA ends at <CRLF>.<CRLF>, whatever came before it.
		{"ok bare lf everywhere", strings.ReplaceAll(plain+"\r\nline one\r\nline two", "\r\n", "\n") + "\r\n", ""},
		{"ok bare cr in the body", plain + "\r\nline\rline\rline\r\n", ""},
		{"ok mixed line ends", "From: " + alice + "\nTo: " + bob + "\r\nSubject: odd\r\r\nbody\n\rmore\r\n", ""},
		{"ok 8-bit header text", plain + "Comments: Gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n", ""},
		{"ok long line under the limit", plain + "\r\n" + strings.Repeat("x", 1500) + "\r\n", ""},
		{"fail nul in the header", plain + "Comments: a\x00b\r\n\r\nbody\r\n", "message header contains NUL"},
		{"fail header starts with white space", " " + plain + "\r\nbody\r\n", "malformed message header"},
		{"fail line over the limit", plain + "\r\n" + strings.Repeat("x", 2100) + "\r\n", "line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			rcpt := []string{bob, carol}
			code, text := sendRaw(t, r.daemon.Addr, alice, rcpt, []byte(tt.msg))
			serr := sealRefusal(t, r, bin, alice, rcpt, []byte(tt.msg))
			if tt.why != "" {
				if code/100 != 5 || !strings.Contains(text, tt.why) {
					t.Errorf("serve: %d %s, want a refusal with %q", code, text, tt.why)
				}
				if serr == nil || !strings.Contains(serr.Error(), tt.why) {
					t.Errorf("seal: %v, want a refusal with %q", serr, tt.why)
				}
				return
			}
			if code != 250 || serr != nil {
				t.Fatalf("serve: %d %s; seal: %v", code, text, serr)
			}
			// Both doors seal the normalised message: that is what the content must equal.
			norm, _, err := smime.Normalize([]byte(tt.msg), smime.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			exp := Expect{From: alice, To: []string{bob}, Rcpt: rcpt, Message: norm}
			pkgs := r.expect(t, exp, 2)
			compareSeal(t, r, bin, exp, pkgs)
		})
	}
}

// TestHeaderProperty: random messages whose headers name the recipients in every kind of field
// and spelling, random Bcc sets, both modes, submitted with a real SMTP client; the independent
// checker must find no package revealing anyone outside its visible set.
func TestHeaderProperty(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"individual", "group"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, func(c *Config) { c.Policy.Bcc = mode })
			rnd := mrand.New(mrand.NewPCG(20261203, uint64(len(mode))))
			people := []string{bob, carol, dave, erin, heidi}
			forms := []func(a string) string{
				func(a string) string { return "<" + a + ">" },
				func(a string) string { return "(" + a + ")" },
				func(a string) string { return "=?utf-8?q?" + strings.Replace(a, "@", "=40", 1) + "?=" },
				func(a string) string { l, d, _ := strings.Cut(a, "@"); return `"` + l + `"@` + strings.ToUpper(d) },
				func(a string) string { l, d, _ := strings.Cut(a, "@"); return l + " (x) @ " + d },
				func(a string) string { return a + ", " + a },
			}
			fields := []string{"Keywords", "Comments", "X-Original-To", "X-Envelope-Recipient", "Delivered-To",
				"Thread-Hint", "Mail-Followup-To", "Disposition-Notification-To", "Received", "Organization"}
			for i := range 8 {
				var to, cc, bcc []string
				for _, p := range people {
					switch rnd.IntN(4) {
					case 0:
						to = append(to, p)
					case 1:
						cc = append(cc, p)
					case 2:
						bcc = append(bcc, p)
					}
				}
				if len(to)+len(cc)+len(bcc) == 0 {
					bcc = append(bcc, people[rnd.IntN(len(people))])
				}
				var extra strings.Builder
				for range 1 + rnd.IntN(5) {
					k := fields[rnd.IntN(len(fields))]
					v := forms[rnd.IntN(len(forms))](people[rnd.IntN(len(people))])
					if k == "Received" {
						v = "from h.example.test by relay.example.test for " + v + "; Sat, 28 Nov 2026 09:00:00 +0000"
					}
					fmt.Fprintf(&extra, "%s: %s\r\n", k, v)
				}
				hdr := "From: " + alice + "\r\n"
				toField := "undisclosed-recipients:;"
				if len(to) > 0 {
					toField = strings.Join(to, ", ")
					if rnd.IntN(2) == 0 {
						toField += " (" + forms[rnd.IntN(len(forms))](people[rnd.IntN(len(people))]) + ")"
					}
				}
				hdr += "To: " + toField + "\r\n"
				if len(cc) > 0 {
					hdr += "Cc: " + strings.Join(cc, ", ") + "\r\n"
				}
				if len(bcc) > 0 && rnd.IntN(3) != 0 {
					hdr += "Bcc: " + strings.Join(bcc, ", ") + "\r\n"
				}
				msg := rawMessage(extra.String(), hdr)
				rcpt := append(append(append([]string{}, to...), cc...), bcc...)
				want := len(bcc)
				if mode == "group" && want > 0 {
					want = 1
				}
				if len(to)+len(cc) > 0 {
					want++
				}
				r.sink.Reset()
				res, err := SubmitGo(r.daemon.Addr, alice, rcpt, msg)
				if err != nil || res.Mail != nil || res.Data != nil {
					t.Fatalf("message %d: %v %+v\n%s", i, err, res, msg)
				}
				exp := Expect{From: alice, To: to, Cc: cc, Bcc: bcc, Rcpt: rcpt, GroupBcc: mode == "group", Message: msg}
				txs, err := WaitPackages(r.sink, want, 90*time.Second, 300*time.Millisecond)
				if err != nil {
					t.Fatalf("message %d: %v (got %v)\n%s", i, err, rcptSets(txs), msg)
				}
				if _, err := r.checker.Check(context.Background(), exp, txs); err != nil {
					t.Fatalf("message %d:\n%s\n%v", i, msg, err)
				}
			}
		})
	}
}
