package smime_test

import (
	"testing"

	"appliance/cms"
	"appliance/smime"
)

func FuzzReadPost(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nTo: list@example.test\r\n\r\nhi\r\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := smime.ReadPost(msg)
		if err != nil {
			return
		}
		if len(p.History) > cms.MaxExpansionHistory+1 {
			t.Fatalf("%d history entries", len(p.History))
		}
	})
}
