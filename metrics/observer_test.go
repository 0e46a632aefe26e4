package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/emersion/go-smtp"

	"appliance/lists"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/smtpfront"
	"appliance/split"
)

func TestPackageKind(t *testing.T) {
	// The pipeline records a package's kind in seal's names; metrics count by their own.
	if seal.ModeEncrypted != ModeEncrypted || seal.ModeSigned != ModeSigned ||
		seal.ModePassThrough != ModePassThrough || seal.ProfileCompat != ProfileCompat ||
		seal.ProfileModern != ProfileModern || seal.ProfileNone != ProfileNone {
		t.Fatal("seal and metrics name modes and profiles differently")
	}
	tests := []struct {
		name, mode, prof   string
		wantMode, wantProf string
	}{
		{"ok compat", seal.ModeEncrypted, seal.ProfileCompat, ModeEncrypted, ProfileCompat},
		{"ok modern", seal.ModeEncrypted, seal.ProfileModern, ModeEncrypted, ProfileModern},
		{"ok passthrough", seal.ModePassThrough, seal.ProfileModern, ModePassThrough, ProfileModern},
		{"ok signed only", seal.ModeSigned, seal.ProfileNone, ModeSigned, ProfileNone},
		{"fail unlabelled", "", "", ModeOther, ProfileNone},
		{"fail encrypted without profile", seal.ModeEncrypted, seal.ProfileNone, ModeOther, ProfileNone},
		{"fail signed with profile", seal.ModeSigned, seal.ProfileCompat, ModeOther, ProfileNone},
		{"fail unknown", "x", "y", ModeOther, ProfileNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode, prof := packageKind(tt.mode, tt.prof)
			if mode != tt.wantMode || prof != tt.wantProf {
				t.Fatalf("packageKind = %s/%s, want %s/%s", mode, prof, tt.wantMode, tt.wantProf)
			}
		})
	}
}

type tempError struct{}

func (tempError) Error() string   { return "later" }
func (tempError) Temporary() bool { return true }

type permError struct{}

func (permError) Error() string   { return "never" }
func (permError) Temporary() bool { return false }

func TestRefusalReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"ok no certificate", &smtpfront.PolicyError{Text: "x", Err: fmt.Errorf("%w: %q", pipeline.ErrNoCertificate, "a@b")}, ReasonNoCert},
		{"ok unknown sender", &smtpfront.PolicyError{Text: "x", Err: pipeline.ErrUnknownSender}, ReasonSender},
		{"ok sender refused", smtpfront.ErrSenderRefused, ReasonSender},
		{"ok temporary policy", &smtpfront.PolicyError{Text: "x", Temporary: true}, ReasonTemporary},
		{"ok other policy", &smtpfront.PolicyError{Text: "x"}, ReasonPolicy},
		{"ok too big", fmt.Errorf("%w: x", smtpfront.ErrMessageTooBig), ReasonTooBig},
		{"ok too big go-smtp", smtp.ErrDataTooLarge, ReasonTooBig},
		{"ok spool full", fmt.Errorf("%w: %w", smtpfront.ErrSpoolFull, queue.ErrSpoolUnavailable), ReasonSpoolFull},
		{"ok malformed", smtpfront.ErrMalformedMessage, ReasonMalformed},
		{"ok temporary", tempError{}, ReasonTemporary},
		{"ok content refused", fmt.Errorf("%w: %w", &smtp.SMTPError{Code: 554}, &pipeline.RefusedError{Reason: "x"}), ReasonContent},
		{"ok recipientinfos refused", &smtpfront.MessageRefusal{Text: "x", Err: split.ErrRecipientInfoRejected}, ReasonContent},
		{"fail unknown", errors.New("boom"), ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refusalReason(tt.err); got != tt.want {
				t.Fatalf("refusalReason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestDeliveryResult(t *testing.T) {
	refused := &smtp.SMTPError{Code: 550}
	tests := []struct {
		name string
		res  []queue.RcptResult
		err  error
		want string
	}{
		{"ok all accepted", []queue.RcptResult{{Rcpt: "a"}, {Rcpt: "b"}}, nil, ResultOK},
		{"ok partial", []queue.RcptResult{{Rcpt: "a"}, {Rcpt: "b", Err: refused}}, nil, ResultPartial},
		{"ok all refused", []queue.RcptResult{{Rcpt: "a", Err: refused}}, nil, ResultRefused},
		{"fail temporary", nil, tempError{}, ResultTemporary},
		{"fail unsorted error is temporary", nil, errors.New("eof"), ResultTemporary},
		{"fail permanent", nil, permError{}, ResultPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := deliveryResult(tt.res, tt.err); got != tt.want {
				t.Fatalf("deliveryResult = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestObserverOff(t *testing.T) {
	var o *Observer // [metrics] absent
	var opts pipeline.Options
	o.Instrument(&opts)
	if opts.Token != nil || opts.Events.Sealed != nil || opts.Events.Refused != nil || opts.Events.Classified != nil {
		t.Error("pipeline instrumented without metrics")
	}
	if o.Start(nil, nil, nil) != nil {
		t.Error("start without metrics")
	}
	o.Close()
}

// TestPipelineEvents: the pipeline's events reach their series, and every class, stage and
// reason the pipeline names has its series at zero from the start.
func TestPipelineEvents(t *testing.T) {
	o := &Observer{m: New()}
	var opts pipeline.Options
	o.Instrument(&opts)
	for _, c := range []smime.Class{smime.Plain, smime.ClientEncrypted, smime.SignedOverEncrypted, smime.Refused} {
		if !slices.Contains(Classes, c.String()) {
			t.Errorf("class %q has no series", c)
		}
	}
	for _, r := range []string{pipeline.ReasonUnaccountable, pipeline.ReasonMalformed, pipeline.ReasonSignedOverEncrypted,
		pipeline.ReasonRecipientInfo, pipeline.ReasonUnsplittable, pipeline.ReasonSender, pipeline.ReasonTooBig, pipeline.ReasonOther} {
		if !slices.Contains(ContentReasons, r) {
			t.Errorf("reason %q has no series", r)
		}
	}
	if !slices.Equal(Stages, []string{pipeline.StageData, pipeline.StageSeal}) {
		t.Errorf("stages %v", Stages)
	}
	opts.Events.Classified(smime.ClientEncrypted.String())
	opts.Events.Refused(pipeline.StageData, pipeline.ReasonSignedOverEncrypted)
	opts.Events.Refused(pipeline.StageSeal, pipeline.RefusalReason(pipeline.ErrUnknownSender))
	opts.Events.Sealed(seal.ModePassThrough, seal.ProfileModern)
	opts.Events.Sealed("", "")
	if opts.Events.ListExpanded != nil {
		t.Error("list hook without lists")
	}
	rec := httptest.NewRecorder()
	o.m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, err := ParseText(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]float64{
		`appliance_messages_classified_total{class="client-encrypted"}`:                         1,
		`appliance_messages_classified_total{class="plain"}`:                                    0,
		`appliance_messages_content_refused_total{reason="signed_over_encrypted",stage="data"}`: 1,
		`appliance_messages_content_refused_total{reason="sender",stage="seal"}`:                1,
		`appliance_messages_content_refused_total{reason="unaccountable",stage="seal"}`:         0,
		`appliance_packages_sealed_total{mode="passthrough",profile="modern"}`:                  1,
		`appliance_packages_sealed_total{mode="other",profile="none"}`:                          1,
	} {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("%s = %v (present %v), want %v", k, gv, ok, v)
		}
	}
}

type plainPolicy struct{}

func (plainPolicy) CheckSender(context.Context, string, string) error { return nil }
func (plainPolicy) CheckRecipient(context.Context, string) error      { return nil }

type listPolicy struct{ plainPolicy }

func (listPolicy) IsList(addr string) bool { return addr == "team@example.test" }
func (listPolicy) CheckPoster(context.Context, string, string) error {
	return &smtpfront.PolicyError{Text: "no"}
}

// The front end detects lists by a type assertion; the metering wrapper must not hide them.
func TestMeteredPolicyKeepsListPolicy(t *testing.T) {
	o := &Observer{m: New()}
	tests := []struct {
		name     string
		in       smtpfront.Policy
		wantList bool
	}{
		{"ok plain stays plain", plainPolicy{}, false},
		{"ok list policy stays a list policy", listPolicy{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := o.Policy(tt.in)
			lp, ok := out.(smtpfront.ListPolicy)
			if ok != tt.wantList {
				t.Fatalf("wrapped policy implements ListPolicy: %v, want %v", ok, tt.wantList)
			}
			if ok && (!lp.IsList("team@example.test") || lp.CheckPoster(context.Background(), "team@example.test", "x@y") == nil) {
				t.Fatal("list methods not forwarded")
			}
		})
	}
}

func TestSpoolWritable(t *testing.T) {
	withTmp := t.TempDir()
	if err := os.Mkdir(filepath.Join(withTmp, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		wantErr bool
	}{
		{"ok spool with tmp", withTmp, false},
		{"ok spool without tmp", t.TempDir(), false},
		{"fail missing spool", filepath.Join(t.TempDir(), "gone"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := spoolWritable(tt.dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("spoolWritable(%q) = %v, want error %v", tt.dir, err, tt.wantErr)
			}
			// The probe leaves nothing behind for the queue to find.
			for _, d := range []string{tt.dir, filepath.Join(tt.dir, "tmp")} {
				if entries, _ := os.ReadDir(d); len(entries) > 0 && !(len(entries) == 1 && entries[0].Name() == "tmp") {
					t.Errorf("%s holds %v after the probe", d, entries)
				}
			}
		})
	}
}

// TestListSkipMetric: every configured list has its skipped-member series at zero from the
// start, and what the pipeline reports adds up per list and reason.
func TestListSkipMetric(t *testing.T) {
	const series = `appliance_list_members_skipped_total{list="%s",reason="%s"}`
	opts := ObserveOptions{Lists: []string{"team@example.test", "board@example.test"}}
	tests := []struct {
		name   string
		report func(f func(list, reason string, n int))
		want   map[string]float64
	}{
		{"ok zero from the start", func(func(string, string, int)) {}, map[string]float64{
			fmt.Sprintf(series, "team@example.test", lists.SkipNoCertificate):       0,
			fmt.Sprintf(series, "team@example.test", lists.SkipUnusableCertificate): 0,
			fmt.Sprintf(series, "board@example.test", lists.SkipNoCertificate):      0,
		}},
		{"ok counts add up per list and reason", func(f func(string, string, int)) {
			f("team@example.test", lists.SkipNoCertificate, 3)
			f("team@example.test", lists.SkipNoCertificate, 2)
			f("board@example.test", lists.SkipUnusableCertificate, 1)
		}, map[string]float64{
			fmt.Sprintf(series, "team@example.test", lists.SkipNoCertificate):        5,
			fmt.Sprintf(series, "team@example.test", lists.SkipUnusableCertificate):  0,
			fmt.Sprintf(series, "board@example.test", lists.SkipUnusableCertificate): 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Observer{m: New(), opts: opts}
			var opts pipeline.Options
			o.Instrument(&opts)
			if opts.Events.ListExpanded == nil {
				t.Fatal("no hook set on the pipeline")
			}
			tt.report(func(list, reason string, n int) {
				opts.Events.ListExpanded(list, 1, map[string]int{reason: n, "never": 0})
			})
			rec := httptest.NewRecorder()
			o.m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			got, err := ParseText(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if gv, ok := got[k]; !ok || gv != v {
					t.Errorf("%s = %v (present %v), want %v", k, gv, ok, v)
				}
			}
		})
	}
	t.Run("ok no lists, no series", func(t *testing.T) {
		o := &Observer{m: New()}
		var opts pipeline.Options
		o.Instrument(&opts)
		if opts.Events.ListExpanded != nil {
			t.Fatal("hook set without lists")
		}
	})
}

// TestJournalSealed: the journal packages compliance adds are counted as sealed packages of mode
// journal by their profile; their series exist at zero from the start.
func TestJournalSealed(t *testing.T) {
	o := &Observer{m: New()}
	o.JournalSealed(seal.ProfileCompat)
	o.JournalSealed(seal.ProfileCompat)
	o.JournalSealed("")
	var none *Observer
	none.JournalSealed(seal.ProfileCompat) // without [metrics]: nothing, no panic
	rec := httptest.NewRecorder()
	o.m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got, err := ParseText(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]float64{
		`appliance_packages_sealed_total{mode="journal",profile="compat"}`:   2,
		`appliance_packages_sealed_total{mode="journal",profile="modern"}`:   0,
		`appliance_packages_sealed_total{mode="journal",profile="none"}`:     1,
		`appliance_packages_sealed_total{mode="encrypted",profile="compat"}`: 0,
	} {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("%s = %v (present %v), want %v", k, gv, ok, v)
		}
	}
}
