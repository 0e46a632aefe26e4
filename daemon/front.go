package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"appliance/auth"
	"appliance/config"
	"appliance/smtpfront"
)

// front holds what the SMTP front end needs beyond the pipeline: TLS, the
// users file and the sender authorization built from [smtp]. SIGHUP rereads
// the users file (auth.Live's Reload): sessions in flight keep the identity
// they have, new checks see the new file. It also rereads the TLS pair (ReloadTLS,
// smtpfront.CertReloader): new handshakes present the new certificate.
type front struct {
	cfg   *config.Config
	tls   *tls.Config
	certs *smtpfront.CertReloader // nil without smtp.tls_cert
	*auth.Live
	log *slog.Logger
}

// newFront loads the TLS key pair and the users file and builds the
// authorizer. Errors name the file but never its content.
func newFront(cfg *config.Config, log *slog.Logger) (*front, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &front{cfg: cfg, log: log}
	s := cfg.SMTP
	if s.TLSCert != "" {
		r, err := smtpfront.NewCertReloader(s.TLSCert, s.TLSKey)
		if err != nil {
			return nil, err
		}
		f.certs = r
		f.tls = r.Config()
	}
	live, err := auth.NewLive(f.authorizer)
	if err != nil {
		return nil, err
	}
	f.Live = live
	return f, nil
}

func (f *front) authorizer() (*auth.Authorizer, error) {
	s := f.cfg.SMTP
	az := &auth.Authorizer{}
	if s.UsersFile != "" {
		u, err := auth.LoadUsers(s.UsersFile)
		if err != nil {
			return nil, err
		}
		az.Users = u
	}
	for _, n := range s.Trusted() {
		p, err := n.Prefix()
		if err != nil {
			// config validated it; a failure here is a bug, not input.
			return nil, fmt.Errorf("failed to parse trusted network %q: %w", n.CIDR, err)
		}
		az.Networks = append(az.Networks, auth.Network{Prefix: p, Senders: n.Senders})
	}
	return az, nil
}

// ReloadTLS rereads smtp.tls_cert and smtp.tls_key and returns the new
// leaf certificate; nil, nil when TLS is not configured. On error the
// previous pair stays in force.
func (f *front) ReloadTLS() (*x509.Certificate, error) {
	if f.certs == nil {
		return nil, nil
	}
	return f.certs.Reload()
}

// options fills in the security part of the front end's options.
func (f *front) options(o smtpfront.Options) smtpfront.Options {
	s := f.cfg.SMTP
	o.TLSConfig = f.tls
	if s.UsersFile != "" {
		o.Auth = f
	}
	o.AllowInsecureAuth = !s.RequireTLSForAuth
	o.RequireAuth = s.RequireAuth
	o.MaxConnsPerIP = s.MaxConnectionsPerIP
	o.MaxCommandsBeforeMail = s.MaxCommandsBeforeMail
	o.MaxAuthFailures = s.MaxAuthFailures
	o.AuthFailureDelay = s.AuthFailureDelay
	if s.AuthFailureDelay == 0 {
		o.AuthFailureDelay = -1 // 0 in the config means none, not the default
	}
	o.MaxAuthFailuresPerIP = s.MaxAuthFailuresPerIP
	o.AuthLockout = s.AuthLockout
	o.MaxLineLength = s.MaxLineLength
	o.MaxHeaderBytes = s.MaxHeaderBytes
	o.MaxHeaderFields = s.MaxHeaderFields
	o.MaxMIMEDepth = s.MaxMIMEDepth
	o.MaxMIMEParts = s.MaxMIMEParts
	o.ReadTimeout = s.IdleTimeout
	o.DataTimeout = s.DataTimeout
	o.SessionTimeout = s.SessionTimeout
	return o
}

// policy puts sender authorization in front of next: an address must be both the client's to
// use (a user's, or a trusted network's) and one the appliance can sign for.
func (f *front) policy(next smtpfront.Policy) smtpfront.Policy {
	return smtpfront.WithSenderAuth(next, func(ip netip.Addr, authUser, sender string) error {
		err := f.Authorize(ip, authUser, sender)
		if errors.Is(err, auth.ErrNotAuthenticated) {
			return fmt.Errorf("%w: %w", smtpfront.ErrAuthRequired, err)
		}
		return err
	})
}

// listenTLS opens smtp.listen_tls, or returns nil when it is not set.
func (f *front) listenTLS() (net.Listener, error) {
	if f.cfg.SMTP.ListenTLS == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", f.cfg.SMTP.ListenTLS)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %q: %w", f.cfg.SMTP.ListenTLS, err)
	}
	f.log.Info("implicit TLS listener", "listen_tls", l.Addr().String())
	return l, nil
}
