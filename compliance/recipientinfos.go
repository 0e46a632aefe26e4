package compliance

// What the journal and the audit trail need to know of the packages the pipeline made, without
// reading them again.

import (
	"io"

	"appliance/cms"
	"appliance/journal"
	"appliance/seal"
)

// PackageRecipientInfos names the RecipientInfos of a package body as Process returned it
// (journal.RecipientInfoIDs: "ski:HEX" or "issuer-serial:DN/0xSERIAL"): those of an
// appliance-sealed or pass-through package, and a list member's package (the identifiers the
// list expansion recorded as it built the member's envelope head). It returns nil for a
// signed-only package and for a body it does not know.
func PackageRecipientInfos(body io.WriterTo) ([]string, error) {
	if s, ok := body.(interface{ Unwrap() io.WriterTo }); ok {
		body = s.Unwrap() // the pipeline's trace field in front of the package
	}
	if lp, ok := body.(interface{ RecipientInfos() []*cms.RecipientInfo }); ok {
		// smime.ListPackage
		if ris := lp.RecipientInfos(); len(ris) > 0 {
			return journal.RecipientInfoIDs(ris), nil
		}
		return nil, nil
	}
	sp, ok := body.(*seal.Package)
	if !ok {
		return nil, nil
	}
	der := sp.CMS()
	if der == nil {
		return nil, nil
	}
	env, err := cms.ParseEnveloped(der.Bytes())
	if err != nil {
		return nil, err
	}
	return journal.RecipientInfoIDs(env.RecipientInfos), nil
}
