package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxPINFile bounds the read: a PIN file is a few bytes, and a
// misconfigured path to a large file should fail, not be read whole.
const maxPINFile = 4096

// PIN reads the token PIN from hsm.pin_file or hsm.pin_env. A pin file must
// be a regular file with no group or other permissions (0600 or stricter),
// as ssh does for private keys; one trailing newline is removed. The PIN is
// returned, never kept.
func (c *Config) PIN() (string, error) {
	if c.HSM.PINEnv != "" {
		pin, ok := os.LookupEnv(c.HSM.PINEnv)
		if !ok {
			return "", &Error{Key: "hsm.pin_env", Err: ErrPINEnvNotSet, Detail: fmt.Sprintf("%q", c.HSM.PINEnv)}
		}
		if pin == "" {
			return "", &Error{Key: "hsm.pin_env", Err: ErrPINEmpty, Detail: fmt.Sprintf("%q", c.HSM.PINEnv)}
		}
		return pin, nil
	}
	if c.HSM.PINFile == "" {
		return "", &Error{Key: "hsm.pin_file", Err: ErrMissing, Detail: "set pin_file or pin_env"}
	}
	f, err := os.Open(c.HSM.PINFile)
	if err != nil {
		return "", &Error{Key: "hsm.pin_file", Err: ErrFile, Detail: fmt.Sprintf("failed to open: %v", err)}
	}
	defer f.Close()
	// Stat the open file, not the path, so the mode checked is the mode
	// of what is read.
	st, err := f.Stat()
	if err != nil {
		return "", &Error{Key: "hsm.pin_file", Err: ErrFile, Detail: fmt.Sprintf("failed to stat %q: %v", c.HSM.PINFile, err)}
	}
	if !st.Mode().IsRegular() {
		return "", &Error{Key: "hsm.pin_file", Err: ErrFile, Detail: fmt.Sprintf("%q is not a regular file", c.HSM.PINFile)}
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", &Error{Key: "hsm.pin_file", Err: ErrPINFileMode,
			Detail: fmt.Sprintf("%q has mode %04o; want 0600 or stricter", c.HSM.PINFile, st.Mode().Perm())}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return "", &Error{Key: "hsm.pin_file", Err: ErrFile, Detail: fmt.Sprintf("failed to read %q: %v", c.HSM.PINFile, err)}
	}
	if len(data) > maxPINFile {
		return "", &Error{Key: "hsm.pin_file", Err: ErrFile, Detail: fmt.Sprintf("%q is larger than %d bytes", c.HSM.PINFile, maxPINFile)}
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pin == "" {
		return "", &Error{Key: "hsm.pin_file", Err: ErrPINEmpty, Detail: fmt.Sprintf("%q", c.HSM.PINFile)}
	}
	return pin, nil
}

// CheckFiles reports files and directories named by the config that do not
// exist or have the wrong kind, so check-config and serve can fail at start
// rather than at the first message. It does not read certificates: the
// directory and hsm packages do that with their own checks. The pin file is
// checked through [Config.PIN], whose value is discarded.
func (c *Config) CheckFiles() error {
	var errs []error
	check := func(key, path string, wantDir bool) {
		if path == "" {
			return
		}
		st, err := os.Stat(path)
		switch {
		case err != nil:
			errs = append(errs, &Error{Key: key, Err: ErrFile, Detail: err.Error()})
		case wantDir && !st.IsDir():
			errs = append(errs, &Error{Key: key, Err: ErrFile, Detail: fmt.Sprintf("%q is not a directory", path)})
		case !wantDir && st.IsDir():
			errs = append(errs, &Error{Key: key, Err: ErrFile, Detail: fmt.Sprintf("%q is a directory", path)})
		}
	}
	if len(c.Tokens) > 0 {
		errs = append(errs, c.checkTokenFiles()...)
	} else if _, err := c.PIN(); err != nil {
		errs = append(errs, err)
	}
	if strings.ContainsRune(c.HSM.Module, os.PathSeparator) {
		check("hsm.module", c.HSM.Module, false)
	}
	check("smtp.tls_cert", c.SMTP.TLSCert, false)
	check("smtp.tls_key", c.SMTP.TLSKey, false)
	check("smtp.users_file", c.SMTP.UsersFile, false)
	// The queue creates a missing spool; it only needs a place to do so.
	if c.Spool.Dir != "" {
		if _, err := os.Stat(c.Spool.Dir); errors.Is(err, fs.ErrNotExist) {
			check("spool.dir", existingAncestor(c.Spool.Dir), true)
		} else {
			check("spool.dir", c.Spool.Dir, true)
		}
	}
	check("directory.certs", c.Directory.Certs, true)
	check("directory.roots", c.Directory.Roots, false)
	check("directory.crls", c.Directory.CRLs, true)
	for i, s := range c.Senders {
		check(fmt.Sprintf("sender[%d].cert", i), s.Cert, false)
	}
	return errors.Join(errs...)
}

func existingAncestor(p string) string {
	for {
		parent := filepath.Dir(p)
		if _, err := os.Lstat(parent); err == nil || parent == p {
			return parent
		}
		p = parent
	}
}
