package daemon

import (
	"appliance/config"
	"appliance/directory"
)

// DirectoryOptions maps the configuration onto the directory's options; serve, seal, inspect and
// certs all open the directory through it so they see the same sources.
func DirectoryOptions(cfg *config.Config) (directory.Options, error) {
	d := cfg.Directory
	o := directory.Options{
		CertsDir:               d.Certs,
		RootsFile:              d.Roots,
		CRLDir:                 d.CRLs,
		CaseSensitiveLocalPart: d.CaseSensitiveLocalPart,
		Sources:                d.SourceOrder(),
	}
	if len(d.CRLURLPrefixes) > 0 {
		o.CRLFetch = &directory.CRLFetchOptions{URLPrefixes: d.CRLURLPrefixes, Timeout: d.CRLFetchTimeout}
	}
	if !d.LDAP.Enabled() {
		return o, nil
	}
	l := d.LDAP
	lo := &directory.LDAPOptions{
		URL:         l.URL,
		StartTLS:    l.StartTLS(),
		BindDN:      l.BindDN,
		BaseDN:      l.BaseDN,
		Filter:      l.Filter,
		Attributes:  l.Attributes,
		Timeout:     l.Timeout,
		PoolSize:    l.PoolSize,
		CacheTTL:    l.CacheTTL,
		NegativeTTL: l.NegativeTTL,
	}
	var err error
	if lo.BindPassword, err = l.BindPassword(); err != nil {
		return o, err
	}
	if lo.TLSConfig, err = l.TLSConfig(); err != nil {
		return o, err
	}
	o.LDAP = lo
	return o, nil
}

// OpenDirectory opens the certificate directory a configuration describes.
func OpenDirectory(cfg *config.Config) (*directory.Directory, error) {
	o, err := DirectoryOptions(cfg)
	if err != nil {
		return nil, err
	}
	return directory.Open(o)
}
