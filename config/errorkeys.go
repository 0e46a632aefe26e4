package config

import "errors"

// ErrorKeys are the configuration keys that err (from [Config.CheckFiles] or [Parse]) names.
func ErrorKeys(err error) map[string]bool {
	keys := map[string]bool{}
	var walk func(error)
	walk = func(err error) {
		var ce *Error
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			if errors.As(err, &ce) {
				keys[ce.Key] = true
			}
		}
	}
	walk(err)
	return keys
}
