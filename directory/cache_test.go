package directory

import (
	"fmt"
	"testing"
	"time"
)

func TestTTLCache(t *testing.T) {
	e := []*Entry{{ID: "x"}}
	for _, tt := range []struct {
		name string
		run  func(c *ttlCache) bool
	}{
		{"ok fresh hit", func(c *ttlCache) bool {
			c.put("a", e, t0.Add(time.Minute))
			got, ok := c.get("a", t0)
			return ok && len(got) == 1
		}},
		{"ok negative entry is a hit with no entries", func(c *ttlCache) bool {
			c.put("none", nil, t0.Add(time.Minute))
			got, ok := c.get("none", t0)
			return ok && got == nil
		}},
		{"fail expired is a miss", func(c *ttlCache) bool {
			c.put("a", e, t0.Add(time.Minute))
			_, ok := c.get("a", t0.Add(time.Minute))
			return !ok
		}},
		{"fail flushed is a miss", func(c *ttlCache) bool {
			c.put("a", e, t0.Add(time.Minute))
			c.flush()
			_, ok := c.get("a", t0)
			return !ok
		}},
		{"ok bounded, expired evicted first", func(c *ttlCache) bool {
			c.put("old", e, t0)
			for i := range 200 {
				c.put(fmt.Sprint(i), e, t0.Add(time.Hour))
			}
			_, oldKept := c.get("old", t0.Add(-time.Second))
			_, lastKept := c.get("199", t0)
			return c.len() <= 100 && !oldKept && lastKept
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.run(newTTLCache(100)) {
				t.Fatal("unexpected cache state")
			}
		})
	}
}

func FuzzCertsFromValue(f *testing.F) {
	p := testPKI(f)
	f.Add("userCertificate", p.interA.Raw)
	f.Add("userSMIMECertificate", p.interA.Raw)
	f.Add("userSMIMECertificate", []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, attr string, v []byte) {
		for _, c := range certsFromValue(attr, v) {
			if c == nil {
				t.Fatal("nil certificate")
			}
		}
	})
}

func FuzzSignedParts(f *testing.F) {
	f.Add([]byte("From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--x--\r\n"))
	f.Add([]byte("From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMA==\r\n"))
	f.Add([]byte("From: a@b\r\n\r\nplain\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fromAddress(msg)
		sd, _, err := signedParts(msg)
		if err == nil && sd == nil {
			t.Fatal("no error and no SignedData")
		}
	})
}
