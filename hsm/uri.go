package hsm

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// URI is a parsed RFC 7512 PKCS#11 URI naming a key or certificate. Empty fields match anything.
type URI struct {
	// Token attributes, compared with the connected token's CK_TOKEN_INFO.
	Token        string // token label
	Manufacturer string
	Serial       string
	Model        string
	// Slot and library attributes, compared with CK_SLOT_INFO and CK_INFO.
	SlotID              *uint
	SlotDescription     string
	SlotManufacturer    string
	LibraryManufacturer string
	LibraryDescription  string
	LibraryVersion      string // "major" or "major.minor"
	// Object attributes.
	Object string // CKA_LABEL
	ID     []byte // CKA_ID, raw bytes
	Type   string // "private", "public", "cert", "secret-key" or "data"
}

var uriTypes = map[string]bool{"private": true, "public": true, "cert": true, "secret-key": true, "data": true}

// ParseURI parses an RFC 7512 URI such as "pkcs11:token=appliance;object=alice;id=%01".
//
// Values are percent-decoded. A PIN in the URI (pin-source, pin-value) is refused: the PIN comes
// from a file or the environment, never from a key name that ends up in configs and logs. The
// module is chosen by the configuration, so module-name and module-path are refused too, as are
// unknown and vendor ("x-") attributes, since ignoring a restriction could select the wrong key.
func ParseURI(s string) (*URI, error) {
	bad := func(why string, args ...any) error {
		return &Error{Op: fmt.Sprintf("parse key URI %q", s), Kind: ErrBadURI, Err: fmt.Errorf(why, args...)}
	}
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, bad("scheme is not \"pkcs11:\"")
	}
	path, query, _ := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || name == "" {
				return nil, bad("attribute %q is not name=value", attr)
			}
			if seen[name] {
				return nil, bad("attribute %q given twice", name)
			}
			seen[name] = true
			v, err := url.PathUnescape(raw)
			if err != nil {
				return nil, bad("attribute %q: %w", name, err)
			}
			switch name {
			case "token":
				u.Token = v
			case "manufacturer":
				u.Manufacturer = v
			case "serial":
				u.Serial = v
			case "model":
				u.Model = v
			case "object":
				u.Object = v
			case "id":
				u.ID = []byte(v)
			case "type":
				if !uriTypes[v] {
					return nil, bad("type %q is not one of private, public, cert, secret-key, data", v)
				}
				u.Type = v
			case "slot-id":
				n, err := strconv.ParseUint(v, 10, 0)
				if err != nil {
					return nil, bad("slot-id %q is not a number", v)
				}
				id := uint(n)
				u.SlotID = &id
			case "slot-description":
				u.SlotDescription = v
			case "slot-manufacturer":
				u.SlotManufacturer = v
			case "library-manufacturer":
				u.LibraryManufacturer = v
			case "library-description":
				u.LibraryDescription = v
			case "library-version":
				if !validVersion(v) {
					return nil, bad("library-version %q is not M or M.N", v)
				}
				u.LibraryVersion = v
			default:
				return nil, bad("unsupported attribute %q", name)
			}
		}
	}
	if query != "" {
		for _, attr := range strings.Split(query, "&") {
			name, _, _ := strings.Cut(attr, "=")
			switch name {
			case "pin-source", "pin-value":
				return nil, bad("%s is not accepted: the PIN comes from the configuration's pin_file or pin_env", name)
			case "module-name", "module-path":
				return nil, bad("%s is not accepted: the module comes from the configuration", name)
			default:
				return nil, bad("unsupported query attribute %q", name)
			}
		}
	}
	return u, nil
}

func validVersion(v string) bool {
	major, minor, hasMinor := strings.Cut(v, ".")
	if _, err := strconv.ParseUint(major, 10, 8); err != nil {
		return false
	}
	if hasMinor {
		if _, err := strconv.ParseUint(minor, 10, 8); err != nil {
			return false
		}
	}
	return true
}

// String formats u as a URI that ParseURI reads back to the same value; the id is always
// percent-encoded in full, as RFC 7512 recommends for binary ids.
func (u *URI) String() string {
	var attrs []string
	add := func(name, v string) {
		if v != "" {
			attrs = append(attrs, name+"="+escape(v))
		}
	}
	add("token", u.Token)
	add("manufacturer", u.Manufacturer)
	add("serial", u.Serial)
	add("model", u.Model)
	if u.SlotID != nil {
		attrs = append(attrs, "slot-id="+strconv.FormatUint(uint64(*u.SlotID), 10))
	}
	add("slot-description", u.SlotDescription)
	add("slot-manufacturer", u.SlotManufacturer)
	add("library-manufacturer", u.LibraryManufacturer)
	add("library-description", u.LibraryDescription)
	add("library-version", u.LibraryVersion)
	add("object", u.Object)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02x", c)
		}
		attrs = append(attrs, "id="+b.String())
	}
	add("type", u.Type)
	return "pkcs11:" + strings.Join(attrs, ";")
}

// escape percent-encodes everything outside RFC 7512's unreserved and path-safe characters.
func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,&", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
