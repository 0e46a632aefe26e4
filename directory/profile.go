package directory

import (
	"fmt"
	"strings"
	"time"
)

// EffectiveProfile is the content profile the pipeline uses for addr, whose valid certificates
// are valid, and why: a profile pinned for the address's domain ([[policy.domain]], pinned by
// lower-case domain) wins; otherwise what was learnt (a signed message, or the certificate's
// sMIMECapabilities) decides, then fallback (policy.profile). When the certificates disagree,
// compat wins (split's rule).
func (d *Directory) EffectiveProfile(addr string, valid []*Entry, pinned map[string]string, fallback string) (profile, why string) {
	_, domain, _ := strings.Cut(strings.ToLower(strings.Trim(addr, "<> ")), "@")
	if p := pinned[domain]; p != "" {
		return p, fmt.Sprintf("pinned by [[policy.domain]] %q", domain)
	}
	learnt, hasLearnt := d.LearntFor(addr)
	for _, e := range valid {
		p, w := e.Profile, ""
		switch {
		case p == "":
			p, w = fallback, "policy.profile, nothing learnt"
		case hasLearnt:
			w = fmt.Sprintf("learnt %s from a signed message, %s", learnt.LearntAt.Format(time.RFC3339), learnt.File)
		default:
			w = "from the certificate's sMIMECapabilities extension"
		}
		if profile == "" {
			profile, why = p, w
		} else if p != profile {
			return ProfileCompat, "certificates differ; compat is readable with all of them"
		}
	}
	return profile, why
}
