package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"appliance/cms"
	"appliance/daemon"
	"appliance/directory"
	"appliance/internal/tty"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smime"
)

// inspectReport is smime's report of one file, with what the appliance would do with it.
type inspectReport struct {
	*smime.Report
	// Split is what the appliance would do with a client-encrypted message (needs -plan).
	Split *smime.SplitPlan `json:"split,omitempty"`
	// Protected is the header inside a package, read with -key (inspect_hp.go).
	Protected *smime.ProtectedReport `json:"protected,omitempty"`
}

// inspector is what inspect knows beyond the file: who owns a RecipientInfo and, with -plan, a
// pipeline that plans splits and the envelope to plan them for.
type inspector struct {
	owner func(*cms.RecipientInfo) string
	pipe  *pipeline.Pipeline
	from  string
	rcpts []string
	key   *recipientKey // -key
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", "[-json] [-config FILE] [-key FILE [-cert FILE]] FILE.eml ...", stderr)
	asJSON := fs.Bool("json", false, "print JSON, one report per file in an array")
	cfgPath := fs.String("config", "", "configuration whose directory maps RecipientInfos to owners")
	plan := fs.Bool("plan", false, "for a client-encrypted message, show how the appliance would split it (needs -config)")
	from := fs.String("from", "", "envelope sender for -plan (default: From)")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient for -plan (repeat; default: To, Cc and Bcc)")
	keyFile := fs.String("key", "", "a recipient's PEM private key (and certificate): decrypt and show the protected header")
	certFile := fs.String("cert", "", "the certificate of the -key, when the key file holds none")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	in := inspector{owner: directory.Owners(nil, nil), from: *from, rcpts: rcpts}
	if *keyFile != "" {
		var err error
		if in.key, err = loadRecipientKey(*keyFile, *certFile); err != nil {
			return err
		}
	}
	if *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return err
		}
		dir, err := daemon.OpenDirectory(cfg)
		if err != nil {
			return err
		}
		// Senders' certificates need not be in the recipients' folder, but their self-copy
		// RecipientInfos name them all the same.
		var others []directory.CertOwner
		var senders []pipeline.Sender
		for _, s := range cfg.Senders {
			chain, err := directory.LoadChain(s.Cert)
			if err != nil {
				return fmt.Errorf("sender %q: %v", s.Address, err)
			}
			others = append(others, directory.CertOwner{Address: s.Address, Cert: chain[0]})
			senders = append(senders, pipeline.Sender{Address: s.Address, KeyURI: s.Key, Chain: chain})
		}
		in.owner = directory.Owners(dir, others)
		// A pipeline without a token plans but cannot seal: enough to show what the split of
		// a client-encrypted message would do.
		if *plan {
			in.pipe, err = pipeline.New(pipeline.Options{Directory: dir, Senders: senders,
				Policy: daemon.SplitPolicy(cfg), PassThrough: daemon.PassThroughPolicy(cfg)})
			if err != nil {
				return err
			}
		}
	} else if *plan {
		return fmt.Errorf("%w: -plan needs -config", errUsage)
	}
	var reports []*inspectReport
	prog := tty.NewProgress(stderr, "inspect", fs.NArg()) // drawn on a terminal only
	defer prog.Done()
	for _, name := range fs.Args() {
		prog.Step(name)
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		r, err := in.inspect(name, data)
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
		r.WriteText(tty.EscapingWriter(stdout), r.Split)
		r.Protected.WriteText(tty.EscapingWriter(stdout), r.Envelopes)
	}
	return nil
}

func (in inspector) inspect(name string, data []byte) (*inspectReport, error) {
	r, err := smime.Inspect(name, data, in.owner)
	if err != nil {
		return nil, err
	}
	ir := &inspectReport{Report: r}
	if in.key != nil && r.Envelopes > 0 {
		ir.Protected = smime.InspectProtected(data, in.key.cert, in.key.key)
	}
	if in.pipe == nil || r.Envelopes == 0 {
		return ir, nil
	}
	// The envelope is -from/-rcpt, or the header's From and To, Cc and Bcc when not given.
	from, rcpts, err := smime.HeaderEnvelope(data)
	if err != nil {
		return nil, err
	}
	env := queue.Envelope{MailFrom: in.from, RcptTo: in.rcpts}
	if env.MailFrom == "" {
		env.MailFrom = from
	}
	if len(env.RcptTo) == 0 {
		env.RcptTo = rcpts
	}
	plan, err := in.pipe.PlanPassThrough(env, data)
	if err != nil {
		ir.Split = &smime.SplitPlan{Error: err.Error()}
		return ir, nil
	}
	// Numbered from 1, as the recipientinfo lines of the report.
	sp := &smime.SplitPlan{}
	for _, p := range plan.Packages {
		pp := smime.PlannedPackage(p)
		pp.RecipientInfos = make([]int, len(p.RecipientInfos))
		for j, n := range p.RecipientInfos {
			pp.RecipientInfos[j] = n + 1
		}
		sp.Packages = append(sp.Packages, pp)
	}
	for _, ri := range plan.RecipientInfos {
		if ri.Dropped != "" {
			sp.Dropped = append(sp.Dropped, smime.DroppedInfo{Index: ri.Index + 1, Why: ri.Dropped})
		}
	}
	for _, rf := range plan.Refused {
		sp.Refused = append(sp.Refused, smime.RefusedRcpt{Recipient: rf.Recipient, Status: rf.Enhanced, Reason: rf.Reason})
	}
	ir.Split = sp
	return ir, nil
}
