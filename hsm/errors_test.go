package hsm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"

	"appliance/hsm"
)

func TestIsTemporary(t *testing.T) {
	gone := &hsm.Error{Op: "sign", Kind: hsm.ErrTokenGone, Err: pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ok token gone", gone, true},
		{"ok wrapped token gone", fmt.Errorf("failed to seal: %w", gone), true},
		{"ok joined", errors.Join(errors.New("x"), &hsm.Error{Op: "get session", Kind: hsm.ErrPoolExhausted}), true},
		{"fail wrong PIN", &hsm.Error{Op: "open", Kind: hsm.ErrPINIncorrect}, false},
		{"fail bad blob", &hsm.Error{Op: "unwrap", Kind: hsm.ErrUnwrap}, false},
		{"fail nil", nil, false},
		{"fail plain", errors.New("x"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hsm.IsTemporary(tc.err); got != tc.want {
				t.Fatalf("IsTemporary(%v) = %v", tc.err, got)
			}
		})
	}
	if code, ok := gone.Code(); !ok || code != pkcs11.CKR_OBJECT_HANDLE_INVALID {
		t.Errorf("Code() = %#x, %v", code, ok)
	}
	var p pkcs11.Error
	if !errors.As(gone, &p) {
		t.Error("the pkcs11.Error cause is not reachable with errors.As")
	}
	if got := gone.Error(); got != "failed to sign: token unavailable: pkcs11: 0x82: CKR_OBJECT_HANDLE_INVALID" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(&hsm.Error{Op: "get session", Kind: context.Canceled}, context.Canceled) {
		t.Error("canceled is not context.Canceled")
	}
}

func TestLoadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, nl, crlf, empty := write("a", "1234"), write("b", "1234\n"), write("c", "1234\r\nmore"), write("d", "\n")
	t.Setenv("HSM_TEST_PIN", "4321")
	tests := []struct {
		name, file, env, want string
	}{
		{"ok file", plain, "", "1234"},
		{"ok file newline", nl, "", "1234"},
		{"ok file crlf", crlf, "", "1234"},
		{"ok env", "", "HSM_TEST_PIN", "4321"},
		{"fail both", plain, "HSM_TEST_PIN", ""},
		{"fail neither", "", "", ""},
		{"fail empty file", empty, "", ""},
		{"fail missing file", filepath.Join(dir, "none"), "", ""},
		{"fail unset env", "", "HSM_TEST_PIN_UNSET", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hsm.LoadPIN(tc.file, tc.env)
			if tc.want == "" {
				if !errors.Is(err, hsm.ErrInvalidArgument) {
					t.Fatalf("LoadPIN: %q, %v; want ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("LoadPIN = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
