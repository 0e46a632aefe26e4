package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"appliance/cms"
	"appliance/directory"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// inspectReport is smime's report of one file, with what the appliance would do with it.
type inspectReport struct {
	*smime.Report
	// Split is what the appliance would do with a client-encrypted message (needs -config).
	Split *splitReport `json:"split,omitempty"`
}

func inspect(name string, data []byte, own owners) (*inspectReport, error) {
	r, err := smime.Inspect(name, data, own.of)
	if err != nil {
		return nil, err
	}
	ir := &inspectReport{Report: r}
	if own.pipe != nil && r.Envelopes > 0 {
		h, err := textproto.ReadHeader(bufioReader(data))
		if err != nil {
			return nil, fmt.Errorf("failed to read header: %w", err)
		}
		ir.Split = planSplit(own, h, data)
	}
	return ir, nil
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[-json] [-config FILE] FILE.eml ...", stderr)
	asJSON := fs.Bool("json", false, "print JSON, one report per file in an array")
	cfgPath := fs.String("config", "", "configuration whose directory maps RecipientInfos to owners")
	plan := fs.Bool("plan", false, "for a client-encrypted message, show how the appliance would split it (needs -config)")
	from := fs.String("from", "", "envelope sender for -plan (default: From)")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient for -plan (repeat; default: To, Cc and Bcc)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	var own owners
	if *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		if own.dir, err = openDirectory(cfg); err != nil {
			return err
		}
		// Senders' certificates need not be in the recipients' folder, but their self-copy
		// RecipientInfos name them all the same.
		for _, s := range cfg.Senders {
			chain, err := directory.LoadCertificates(s.Cert)
			if err != nil || len(chain) == 0 {
				return fmt.Errorf("sender %q: %v", s.Address, err)
			}
			own.senders = append(own.senders, sender{s.Address, chain[0]})
			own.pipeSenders = append(own.pipeSenders, pipeline.Sender{Address: s.Address, KeyURI: s.Key, Chain: chain})
		}
		// A pipeline without a token plans but cannot seal: enough to show what the split of
		// a client-encrypted message would do.
		if *plan {
			own.pipe, err = pipeline.New(pipeline.Options{Directory: own.dir, Senders: own.pipeSenders,
				Policy: splitPolicy(cfg), PassThrough: passThroughPolicy(cfg)})
			if err != nil {
				return err
			}
		}
	} else if *plan {
		return fmt.Errorf("%w: -plan needs -config", errUsage)
	}
	own.from, own.rcpts = *from, rcpts
	var reports []*inspectReport
	prog := newProgress(stderr, "inspect", fs.NArg()) // progress.go: on a terminal only
	defer prog.done()
	for _, name := range fs.Args() {
		prog.step(name)
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		r, err := inspect(name, data, own)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		reports = append(reports, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	for _, r := range reports {
		printReport(escapingWriter{stdout}, r)
	}
	return nil
}

// owners maps RecipientInfos back to people: the directory, then the configured senders.
type owners struct {
	dir         *directory.Directory
	senders     []sender
	pipeSenders []pipeline.Sender
	pipe        *pipeline.Pipeline
	from        string
	rcpts       []string
}

type sender struct {
	address string
	cert    *x509.Certificate
}

func (o owners) of(ri *cms.RecipientInfo) string {
	if o.dir != nil {
		if ri.SubjectKeyID != nil {
			if a, err := o.dir.OwnerBySKI(ri.SubjectKeyID); err == nil {
				return a
			}
		} else if ri.Serial != nil {
			if a, err := o.dir.OwnerByIssuerSerial(ri.Issuer, ri.Serial); err == nil {
				return a
			}
		}
	}
	for _, s := range o.senders {
		if ri.Matches(s.cert) {
			return s.address
		}
	}
	return ""
}

func printReport(w io.Writer, r *inspectReport) {
	fmt.Fprintf(w, "%s: %s\n", r.File, r.Kind)
	if r.Refused != "" {
		fmt.Fprintf(w, "  refused: %s\n", r.Refused)
	}
	for _, f := range r.Headers {
		fmt.Fprintf(w, "  header %-12s %s\n", f.Field+":", f.Value)
	}
	n := 0
	for _, l := range r.Layers {
		path := l.Path
		if path == "" {
			path = "message"
		}
		fmt.Fprintf(w, "  layer %s: %s", path, l.Type)
		if l.MediaType != "" {
			fmt.Fprintf(w, " (labelled %s", l.MediaType)
			if l.Label != "" {
				fmt.Fprintf(w, "; smime-type=%s", l.Label)
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintln(w)
		if l.Error != "" {
			fmt.Fprintf(w, "    cannot read: %s\n", l.Error)
		}
		if len(l.Fields) > 0 {
			fmt.Fprintf(w, "    carries %s\n", strings.Join(l.Fields, ", "))
		}
		for _, ri := range l.RIs {
			n++
			id := ri.SubjectKeyID
			if id == "" {
				id = ri.Issuer + " serial " + ri.Serial
			} else {
				id = "ski " + id
			}
			owner := ri.Owner
			if owner == "" {
				owner = "(unknown to the directory)"
			}
			fmt.Fprintf(w, "  recipientinfo #%d %s -> %s [%s; %s]\n", n, ri.Kind, owner, id, ri.KeyEncAlg)
		}
	}
	fmt.Fprintf(w, "  reveals: %s\n", strings.Join(r.Revealed, ", "))
	if sp := r.Split; sp != nil {
		if sp.Error != "" {
			fmt.Fprintf(w, "  split: cannot plan: %s\n", sp.Error)
			return
		}
		fmt.Fprintf(w, "  split without decryption, as the appliance would do it:\n")
		for i, p := range sp.Packages {
			kind := "visible"
			if p.Hidden {
				kind = "hidden"
			}
			fmt.Fprintf(w, "    package %d (%s) to %s: recipientinfos #%s of %s\n", i+1, kind,
				strings.Join(p.Recipients, ", "), joinInts(p.RecipientInfos), strings.Join(p.Owners, ", "))
		}
		for _, d := range sp.Dropped {
			fmt.Fprintf(w, "    recipientinfo #%d dropped: %s\n", d.Index, d.Why)
		}
		for _, rf := range sp.Refused {
			fmt.Fprintf(w, "    <%s> refused: %s %s\n", rf.Recipient, rf.Status, rf.Reason)
		}
	}
}

type splitReport struct {
	Error    string                 `json:"error,omitempty"`
	Packages []split.PlannedPackage `json:"packages,omitempty"`
	Dropped  []droppedInfo          `json:"dropped,omitempty"`
	Refused  []refusedRcpt          `json:"refused,omitempty"`
}

type droppedInfo struct {
	Index int    `json:"index"`
	Why   string `json:"why"`
}

type refusedRcpt struct {
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
}

// planSplit asks the pipeline how it would split a client-encrypted message; the envelope is
// -from/-rcpt, or the header's From and To, Cc and Bcc when not given.
func planSplit(own owners, h textproto.Header, data []byte) *splitReport {
	env := queue.Envelope{MailFrom: own.from, RcptTo: own.rcpts}
	mh := mail.Header{Header: message.Header{Header: h}}
	if env.MailFrom == "" {
		if list, err := mh.AddressList("From"); err == nil && len(list) > 0 {
			env.MailFrom = list[0].Address
		}
	}
	if len(env.RcptTo) == 0 {
		for _, f := range []string{"To", "Cc", "Bcc"} {
			list, _ := mh.AddressList(f)
			for _, a := range list {
				env.RcptTo = append(env.RcptTo, a.Address)
			}
		}
	}
	plan, err := own.pipe.PlanPassThrough(env, data)
	if err != nil {
		return &splitReport{Error: err.Error()}
	}
	// Numbered from 1, as the recipientinfo lines above.
	sr := &splitReport{Packages: plan.Packages}
	for i := range sr.Packages {
		idx := make([]int, len(sr.Packages[i].RecipientInfos))
		for j, n := range sr.Packages[i].RecipientInfos {
			idx[j] = n + 1
		}
		sr.Packages[i].RecipientInfos = idx
	}
	for _, ri := range plan.RecipientInfos {
		if ri.Dropped != "" {
			sr.Dropped = append(sr.Dropped, droppedInfo{ri.Index + 1, ri.Dropped})
		}
	}
	for _, rf := range plan.Refused {
		sr.Refused = append(sr.Refused, refusedRcpt{rf.Recipient, rf.Enhanced, rf.Reason})
	}
	return sr
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",#")
}
