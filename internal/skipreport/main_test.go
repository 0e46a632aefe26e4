package main

import (
	"strings"
	"testing"
)

const sample = `{"Action":"start","Package":"appliance/a"}
{"Action":"run","Package":"appliance/a","Test":"TestTool"}
{"Action":"output","Package":"appliance/a","Test":"TestTool","Output":"=== RUN   TestTool\n"}
{"Action":"output","Package":"appliance/a","Test":"TestTool","Output":"--- SKIP: TestTool (0.00s)\n"}
{"Action":"output","Package":"appliance/a","Test":"TestTool","Output":"    a_test.go:9: openssl not found\n"}
{"Action":"skip","Package":"appliance/a","Test":"TestTool","Elapsed":0}
{"Action":"run","Package":"appliance/a","Test":"TestOK"}
{"Action":"pass","Package":"appliance/a","Test":"TestOK","Elapsed":0}
{"Action":"run","Package":"appliance/a","Test":"TestOK/sub"}
{"Action":"skip","Package":"appliance/a","Test":"TestOK/sub","Elapsed":0}
{"Action":"pass","Package":"appliance/a","Elapsed":0.1}
`

func TestCheck(t *testing.T) {
	tests := []struct {
		name, required string
		fail           []string // substrings of the error; none: no error
	}{
		{name: "ok nothing required"},
		{name: "ok required passed", required: "appliance/a TestOK\n# comment\n"},
		{name: "ok package not in the run", required: "appliance/b TestX\n"},
		{name: "fail required skipped", required: "appliance/a TestTool # the decoder", fail: []string{"TestTool skipped: a_test.go:9: openssl not found"}},
		{name: "fail required subtest skipped", required: "appliance/a TestOK/sub", fail: []string{"TestOK/sub skipped"}},
		{name: "fail required never ran", required: "appliance/a TestGone\nappliance/a TestTool", fail: []string{"TestGone did not run", "TestTool skipped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := read(strings.NewReader(sample))
			if err != nil {
				t.Fatal(err)
			}
			req, err := readRequired(strings.NewReader(tt.required))
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			err = check(&out, rep, req)
			if !strings.Contains(out.String(), "2 tests skipped\nSKIP appliance/a TestOK/sub") ||
				!strings.Contains(out.String(), "SKIP appliance/a TestTool: a_test.go:9: openssl not found") {
				t.Errorf("summary:\n%s", out.String())
			}
			if (err != nil) != (len(tt.fail) > 0) {
				t.Fatalf("err = %v, want failure %v", err, tt.fail)
			}
			for _, f := range tt.fail {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q lacks %q", err, f)
				}
			}
		})
	}
	if _, err := readRequired(strings.NewReader("TestAlone\n")); err == nil {
		t.Error("a line without a package was accepted")
	}
}

func TestFailures(t *testing.T) {
	in := sample + `{"Action":"run","Package":"appliance/b","Test":"TestBad"}
{"Action":"output","Package":"appliance/b","Test":"TestBad","Output":"    b_test.go:3: wrong\n"}
{"Action":"fail","Package":"appliance/b","Test":"TestBad","Elapsed":0}
{"Action":"output","Package":"appliance/b","Output":"FAIL\n"}
{"Action":"fail","Package":"appliance/b","Elapsed":0}
`
	rep, err := read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rep.failed, "")
	if want := "FAIL appliance/b TestBad\n    b_test.go:3: wrong\nFAIL appliance/b\nFAIL\n"; got != want {
		t.Fatalf("failures %q, want %q", got, want)
	}
}
