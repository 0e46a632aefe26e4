package split

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

// TestPlanPassThrough: RecipientInfos attributed by identifier key, grouped, put where Make
// puts their owners; the sender's self-copy everywhere; the rest dropped with a reason, or the
// message refused under RejectUnknown; a recipient without one refused or, under
// DeliverMissing, given the visible ones.
func TestPlanPassThrough(t *testing.T) {
	in := PassThroughInput{
		Header:   header("From: alice@example.test\nTo: bob@x.test\nSubject: s"),
		MailFrom: "alice@example.test",
		RcptTo:   []string{"bob@x.test", "carol@y.test", "dave@z.test"},
		RecipientInfos: []RecipientRef{
			{Key: "k-bob", Kind: "keytrans"}, {Key: "k-carol", Kind: "keytrans"}, {Key: "k-bob", Kind: "keytrans"},
			{Key: "k-alice", Kind: "keytrans"}, {Kind: "keyagree"}, {Key: "k-erin", Kind: "keytrans", DirOwner: "erin@w.test"},
			{Key: "k-twice", Kind: "keytrans", Ambiguous: true}, {Key: "k-none", Kind: "keytrans"},
		},
		Owners: map[string]KeyOwner{"k-bob": {Addr: "bob@x.test", Recipient: true}, "k-carol": {Addr: "carol@y.test", Recipient: true},
			"k-alice": {Addr: "alice@example.test"}, "k-twice": {Addr: "bob@x.test", Recipient: true}},
		Authors: PassThroughAuthors("alice@example.test", header("From: alice@example.test"), false),
	}
	pt, err := PlanPassThrough(in)
	if err != nil {
		t.Fatal(err)
	}
	dropped := map[int]string{}
	for _, ri := range pt.RecipientInfos {
		if ri.Dropped != "" {
			dropped[ri.Index] = ri.Dropped
		}
	}
	want := map[int]string{4: "keyagree recipientinfo cannot be attributed", 5: "owner is not an envelope recipient",
		6: "identifier claimed by certificates of more than one owner", 7: "owner unknown"}
	if !maps.Equal(dropped, want) {
		t.Errorf("dropped %v, want %v", dropped, want)
	}
	if pt.RecipientInfos[5].Owner != "erin@w.test" || !pt.RecipientInfos[3].Sender {
		t.Errorf("owners: %+v", pt.RecipientInfos)
	}
	got := map[string][]int{}
	for _, pk := range pt.Packages {
		got[pk.Recipients[0]] = pk.RecipientInfos
	}
	if !slices.Equal(got["bob@x.test"], []int{0, 2, 3}) || !slices.Equal(got["carol@y.test"], []int{1, 3}) || len(got) != 2 {
		t.Errorf("packages %v", got)
	}
	if len(pt.Refused) != 1 || pt.Refused[0].Recipient != "dave@z.test" {
		t.Errorf("refused %+v", pt.Refused)
	}

	in.PassThrough.Missing = DeliverMissing
	if pt, err = PlanPassThrough(in); err != nil {
		t.Fatal(err)
	}
	daves := 0
	for _, pk := range pt.Packages {
		// dave gets what everyone may see: bob's (visible) and alice's, never carol's.
		if pk.Recipients[0] == "dave@z.test" {
			daves++
			if !slices.Equal(pk.RecipientInfos, []int{0, 2, 3}) {
				t.Errorf("dave's package carries %v", pk.RecipientInfos)
			}
		}
	}
	if daves != 1 || len(pt.Refused) != 0 {
		t.Errorf("deliver: %d packages for dave, refused %+v", daves, pt.Refused)
	}

	in.PassThrough.Unknown = RejectUnknown
	if pt, err = PlanPassThrough(in); !errors.Is(err, ErrRecipientInfoRejected) || pt == nil {
		t.Errorf("reject: %v", err)
	}
	if err := (PassThroughPolicy{Missing: 7}).Validate(); !errors.Is(err, ErrInvalidPassThroughPolicy) {
		t.Errorf("validate: %v", err)
	}
}
