package e2e

import (
	"fmt"
	"regexp"
	"strings"
)

// RecipientID is one RecipientInfo identifier as `openssl cms -cmsout -print` shows it: an issuer
// and serial number, or a subject key identifier (hex). Kind is the RecipientInfo type ("ktri",
// "kari", ...); a RecipientInfo of a type that names nobody (kekri, pwri) has neither identifier and
// so maps to no owner, which the checker reports.
type RecipientID struct {
	Kind   string
	Issuer string
	Serial string // decimal, or hex with 0x, as openssl prints it
	SKI    string // lowercase hex
}

func (id RecipientID) String() string {
	if id.SKI != "" {
		return id.Kind + " ski " + id.SKI
	}
	if id.Serial != "" {
		return fmt.Sprintf("%s issuer %q serial %s", id.Kind, id.Issuer, id.Serial)
	}
	return id.Kind + " without identifier"
}

// CMSInfo is what the checker reads from an enveloped package's printed structure.
type CMSInfo struct {
	ContentType    string // e.g. "pkcs7-envelopedData" or "id-smime-ct-authEnvelopedData"
	Recipients     []RecipientID
	OriginatorInfo bool // present: it may carry certificates, which reveal people
}

var asn1Dump = regexp.MustCompile(`^[0-9]+:d=[0-9]+ +hl=`)

var riKinds = map[string]string{"d.ktri:": "ktri", "d.kari:": "kari", "d.kekri:": "kekri", "d.pwri:": "pwri", "d.ori:": "ori"}

// ParseCMSPrint reads the output of `openssl cms -cmsout -print` for an EnvelopedData or
// AuthEnvelopedData.
func ParseCMSPrint(out string) (CMSInfo, error) {
	var info CMSInfo
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	riIndent := -1 // indentation of "recipientInfos:" while inside that block
	var cur *RecipientID
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		text := strings.TrimSpace(line)
		if text == "" {
			continue
		}
		if asn1Dump.MatchString(text) {
			continue // parameters printed by asn1parse, with their own indentation
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case strings.HasPrefix(text, "contentType:") && info.ContentType == "":
			info.ContentType = strings.Fields(strings.TrimPrefix(text, "contentType:") + " ?")[0]
		case strings.HasPrefix(text, "originatorInfo:"):
			info.OriginatorInfo = !strings.Contains(text, "<ABSENT>")
		case text == "recipientInfos:":
			riIndent = indent
		}
		if riIndent < 0 || text == "recipientInfos:" {
			continue
		}
		if indent <= riIndent {
			riIndent = -1
			continue
		}
		if kind, ok := riKinds[text]; ok {
			info.Recipients = append(info.Recipients, RecipientID{Kind: kind})
			cur = &info.Recipients[len(info.Recipients)-1]
			continue
		}
		if cur == nil {
			return info, fmt.Errorf("failed to parse recipientInfos: %q before any RecipientInfo", text)
		}
		switch {
		case strings.HasPrefix(text, "issuer:"):
			// A kari can name several recipients: each issuer starts a new identifier.
			if cur.Issuer != "" || cur.SKI != "" {
				info.Recipients = append(info.Recipients, RecipientID{Kind: cur.Kind})
				cur = &info.Recipients[len(info.Recipients)-1]
			}
			cur.Issuer = strings.TrimSpace(strings.TrimPrefix(text, "issuer:"))
		case strings.HasPrefix(text, "serialNumber:"):
			cur.Serial = strings.TrimSpace(strings.TrimPrefix(text, "serialNumber:"))
		case strings.HasSuffix(text, "subjectKeyIdentifier:"):
			var ski strings.Builder
			for i+1 < len(lines) && isHexDump(lines[i+1]) {
				i++
				ski.WriteString(hexDumpBytes(lines[i]))
			}
			if ski.Len() == 0 {
				return info, fmt.Errorf("failed to parse subjectKeyIdentifier at line %d", i+1)
			}
			if cur.Issuer != "" || cur.SKI != "" {
				info.Recipients = append(info.Recipients, RecipientID{Kind: cur.Kind})
				cur = &info.Recipients[len(info.Recipients)-1]
			}
			cur.SKI = ski.String()
		}
	}
	if info.ContentType == "" {
		return info, fmt.Errorf("failed to find a contentType in openssl's output")
	}
	for _, r := range info.Recipients {
		if r.Issuer != "" && r.Serial == "" {
			return info, fmt.Errorf("failed to find the serial number of %s", r)
		}
	}
	return info, nil
}

// isHexDump matches openssl's "0000 - 17 c6 78 ..." lines.
func isHexDump(line string) bool {
	text := strings.TrimSpace(line)
	off, _, ok := strings.Cut(text, " - ")
	if !ok || len(off) != 4 {
		return false
	}
	for _, c := range off {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

// hexDumpBytes returns the hex digits of one dump line, stopping where the ASCII column begins
// (after the first run of two or more spaces).
func hexDumpBytes(line string) string {
	_, rest, _ := strings.Cut(strings.TrimSpace(line), " - ")
	var b strings.Builder
	for len(rest) >= 2 {
		if !isHex(rest[0]) || !isHex(rest[1]) {
			break
		}
		b.WriteString(strings.ToLower(rest[:2]))
		rest = rest[2:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '-') || strings.HasPrefix(rest, "  ") {
			break
		}
		rest = rest[1:]
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
