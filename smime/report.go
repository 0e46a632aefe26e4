package smime

import (
	"bufio"
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"appliance/cms"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// peopleFields are the outer header fields that can name a person (the privacy rule in package split's doc).
var peopleFields = []string{
	"From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Bcc",
	"Return-Path", "Delivered-To", "X-Original-To", "Disposition-Notification-To",
}

type ReportField struct {
	Field     string   `json:"field"`
	Value     string   `json:"value"`
	Addresses []string `json:"addresses,omitempty"`
}

type ReportRecipient struct {
	Kind         string `json:"kind"`
	Issuer       string `json:"issuer,omitempty"`
	Serial       string `json:"serial,omitempty"`
	SubjectKeyID string `json:"subject_key_id,omitempty"`
	KeyEncAlg    string `json:"key_encryption,omitempty"`
	Owner        string `json:"owner,omitempty"`
}

// ReportLayer is one CMS structure of the message, as the appliance's classifier sees it.
type ReportLayer struct {
	Path      string            `json:"path"` // MIME part ("" the message; "/signed" inside a signature)
	MediaType string            `json:"media_type,omitempty"`
	Label     string            `json:"smime_type,omitempty"`
	Type      string            `json:"type"` // what the DER is
	Error     string            `json:"error,omitempty"`
	Fields    []string          `json:"fields_naming_people,omitempty"`
	RIs       []ReportRecipient `json:"recipient_infos,omitempty"`
}

type Report struct {
	File string `json:"file"`
	// Kind: enveloped-data, authEnveloped-data, signed-over-encrypted, signed, refused, plain.
	Kind string `json:"kind"`
	// Class is the classifier's verdict, Refused its reason when it refuses the message.
	Class         string            `json:"class"`
	Refused       string            `json:"refused,omitempty"`
	Layers        []ReportLayer     `json:"layers,omitempty"`
	Headers       []ReportField     `json:"headers"`
	Recipients    []ReportRecipient `json:"recipient_infos"`
	Unknown       int               `json:"unknown_owners"`
	Revealed      []string          `json:"revealed"`
	EncryptedSize int               `json:"encrypted_content_bytes,omitempty"`
	// Envelopes counts the envelopes that could be read.
	Envelopes int `json:"-"`
}

var receivedFor = regexp.MustCompile(`(?i)\bfor\s+<?([^\s<>;]+@[^\s<>;]+)>?`)

// Inspect is the leak audit of one message (name is its file): every header field that can
// name a person, what the classifier sees (every CMS layer, the RecipientInfos of every
// envelope, nested ones included) and who the message reveals to whoever receives it. owner
// names the person a RecipientInfo is for ("" when unknown).
func Inspect(name string, data []byte, owner func(*cms.RecipientInfo) string) (*Report, error) {
	r := &Report{File: name, Kind: "plain", Recipients: []ReportRecipient{}}
	revealed := map[string]bool{}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("failed to read header: %w", err)
	}
	for _, f := range peopleFields {
		for _, v := range h.Values(f) {
			fld := ReportField{Field: f, Value: v}
			if list, err := (&mail.Header{Header: message.Header{Header: h}}).AddressList(f); err == nil {
				for _, a := range list {
					fld.Addresses = append(fld.Addresses, strings.ToLower(a.Address))
				}
			} else if f == "Return-Path" || f == "Delivered-To" || f == "X-Original-To" {
				fld.Addresses = []string{strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>"))}
			}
			if f != "Return-Path" { // the reverse path is the sender, known to everyone
				for _, a := range fld.Addresses {
					revealed[a] = true
				}
			}
			r.Headers = append(r.Headers, fld)
		}
	}
	for _, v := range h.Values("Received") {
		if m := receivedFor.FindStringSubmatch(v); m != nil {
			a := strings.ToLower(m[1])
			r.Headers = append(r.Headers, ReportField{Field: "Received", Value: oneLine(v), Addresses: []string{a}})
			revealed[a] = true
		}
	}

	// The classifier the pipeline dispatches on decides what the message is; every CMS layer
	// it found is shown, and every envelope's RecipientInfos, nested ones included.
	c := Classify(data)
	r.Class = c.Class.String()
	switch c.Class {
	case ClientEncrypted:
		r.Kind = c.EnvelopeType
	case SignedOverEncrypted:
		r.Kind = c.Class.String()
		r.Refused = c.Reason
	case Refused:
		r.Kind = "refused"
		r.Refused = c.Reason
	default:
		if len(c.Layers) > 0 && c.Layers[0].Path == "" && c.Layers[0].Type == TypeSignedData {
			r.Kind = "signed"
		} else if _, err := ParseSigned(data); err == nil {
			r.Kind = "signed"
		}
	}
	envelopes := 0
	for _, l := range c.Layers {
		il := ReportLayer{Path: l.Path, MediaType: l.MediaType, Label: l.Label, Type: l.Type}
		if l.Type == TypeEnvelopedData || l.Type == TypeAuthEnvelopedData {
			env, err := cms.ParseEnveloped(l.DER)
			if err != nil {
				il.Error = err.Error()
			} else {
				envelopes++
				if ct, err := env.EncryptedContent(); err == nil && r.EncryptedSize == 0 {
					r.EncryptedSize = len(ct)
				}
				il.Fields = env.UnsignedFields()
				for _, ri := range env.RecipientInfos {
					ir := describeRecipient(ri, owner)
					if ir.Owner != "" {
						revealed[ir.Owner] = true
					} else {
						r.Unknown++
					}
					il.RIs = append(il.RIs, ir)
					r.Recipients = append(r.Recipients, ir)
				}
			}
		}
		r.Layers = append(r.Layers, il)
	}
	r.Envelopes = envelopes
	for a := range revealed {
		r.Revealed = append(r.Revealed, a)
	}
	sort.Strings(r.Revealed)
	return r, nil
}

func describeRecipient(ri *cms.RecipientInfo, owner func(*cms.RecipientInfo) string) ReportRecipient {
	ir := ReportRecipient{Kind: ri.Kind.String()}
	// A key agreement entry names its owner like key transport when it is for one certificate.
	if ri.Kind != cms.KeyTrans && (ri.Kind != cms.KeyAgree || ri.IDKey() == "") {
		return ir
	}
	switch {
	case ri.SubjectKeyID != nil:
		ir.SubjectKeyID = hex.EncodeToString(ri.SubjectKeyID)
	case ri.Serial != nil:
		ir.Issuer = dnString(ri.Issuer)
		ir.Serial = "0x" + ri.Serial.Text(16)
	}
	ir.Owner = owner(ri)
	if h, err := ri.OAEPHash(); err == nil {
		if h == 0 {
			ir.KeyEncAlg = "rsaEncryption (PKCS#1 v1.5)"
		} else {
			ir.KeyEncAlg = "RSAES-OAEP " + h.String()
		}
	} else {
		ir.KeyEncAlg = ri.KeyEncryptionAlgorithm.Algorithm.String()
	}
	return ir
}

func dnString(raw []byte) string {
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(raw, &rdn); err != nil {
		return hex.EncodeToString(raw)
	}
	var n pkix.Name
	n.FillFromRDNSequence(&rdn)
	return n.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
